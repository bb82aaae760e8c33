#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/cli/main.js (built by `npm install` through `prepare`).
const argv = process.argv.slice(2);
// `visor run` boots a machine on a worker thread: start that worker now, so its start-up
// (the thread, visor's modules, the hart's warm-up) runs beside the CLI's own loading instead
// of after it (src/sdk/worker-pool.ts). The machine takes it from the pool; an unused one
// (`visor run --help`, a bad flag) does not keep the process alive.
if (argv.find((a) => !a.startsWith('-')) === 'run') {
  import('../dist/sdk/worker-pool.js').then((m) => m.prewarmWorkers(1)).catch(() => {});
}
import('../dist/cli/main.js').then((m) => m.main(argv)).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli')) {
    console.error('visor: the package is not built. Run `npm install` (or `npm run build`) in the visor folder.');
    process.exit(70);
  }
  throw err;
});
