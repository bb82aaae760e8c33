/**
 * Where the built web console lives: dist/web/public in the package (built by `npm run build`).
 * The daemon serves this folder at `/`.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export function webAssetsDir(): string {
  // From dist/web (built) or src/web (tsx): both resolve to <package>/dist/web/public.
  return join(resolve(here, '..', '..'), 'dist', 'web', 'public');
}

/** True when the console has been built (`npm run build`). */
export function webAssetsBuilt(dir = webAssetsDir()): boolean {
  return existsSync(join(dir, 'index.html')) && existsSync(join(dir, 'app.js'));
}
