/**
 * Builds the web console into dist/web/public (run by `npm run build`, so `npm install`
 * leaves it ready): one esbuild bundle of src/web/app/main.ts with xterm.js and uPlot, the
 * page, and the stylesheets. Everything the page loads is served by the daemon; it makes no
 * request to any other host.
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { webAssetsDir } from './assets.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The package root, from either src/web (tsx) or dist/web (built). */
const root = resolve(here, '..', '..');
const appDir = join(root, 'src', 'web', 'app');
const require = createRequire(import.meta.url);

export async function buildWeb(outDir = webAssetsDir()): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: [join(appDir, 'main.ts')],
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    sourcemap: false,
    outfile: join(outDir, 'app.js'),
    logLevel: 'warning',
  });
  copyFileSync(join(appDir, 'index.html'), join(outDir, 'index.html'));
  copyFileSync(join(appDir, 'style.css'), join(outDir, 'style.css'));
  copyFileSync(require.resolve('@xterm/xterm/css/xterm.css'), join(outDir, 'xterm.css'));
  copyFileSync(require.resolve('uplot/dist/uPlot.min.css'), join(outDir, 'uPlot.min.css'));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildWeb().catch((err) => {
    console.error(`visor: building the web console failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(70);
  });
}
