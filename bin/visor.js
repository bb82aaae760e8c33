#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/cli/main.js (built by `npm install` through `prepare`).
import('../dist/cli/main.js').then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli')) {
    console.error('visor: the package is not built. Run `npm install` (or `npm run build`) in the visor folder.');
    process.exit(70);
  }
  throw err;
});
