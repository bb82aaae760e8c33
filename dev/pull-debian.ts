// Dev: pull the full Debian image with plain progress (XDG_CACHE_HOME decides the cache).
// KEEP_FRESH=FILE keeps a copy of the root disk as written, before the guest configures it.
import { copyFile } from 'node:fs/promises';
import { pullImage } from '../src/images/index.js';
import { plainProgress } from '../src/images/progress.js';
import { writeRootDisk } from '../src/images/root-disk.js';
const t0 = performance.now();
const packages = process.argv[2] ? process.argv[2].split(',') : [];
const keep = process.env.KEEP_FRESH;
const r = await pullImage(process.env.IMAGE ?? 'debian', {
  progress: plainProgress(process.stderr), force: process.env.FORCE === '1', packages,
  rootDiskWriter: async (root, path, o) => { await writeRootDisk(root, path, o); if (keep) await copyFile(path, keep); if (process.env.ONLY_WRITE) process.exit(0); },
});
console.log(JSON.stringify({ dir: r.dir, rootfs: r.manifest.rootfs, files: r.manifest.files.rootfs, seconds: (performance.now() - t0) / 1000 }, null, 1));
