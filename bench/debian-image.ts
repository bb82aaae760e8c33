/**
 * bench/debian-image: the full Debian image (issue 15).
 *
 *   npx tsx bench/debian-image.ts            first pull on an empty cache (a temporary
 *                                             XDG_CACHE_HOME), then the runs below
 *   npx tsx bench/debian-image.ts --cached   use the cache XDG_CACHE_HOME points at
 *
 * Prints: the pull's phases (download, unpack, ext4 write, configure in a guest), the base
 * image's size and the biggest packages in it, a cached `visor run -- true` (CLI, wall time to
 * its exit), and the same image booted by QEMU TCG in the same run (same kernel, initramfs and
 * command line; the root disk a qcow2 overlay on the same base, on virtio-blk).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { inflateInitrd } from '../src/host/initrd.js';
import { cacheRoot, indexDir } from '../src/images/cache.js';
import { planRootfs } from '../src/images/debian-rootfs.js';
import { encodeCommand, ensureImage, ROOT_ARG } from '../src/images/index.js';
import { formatBytes } from '../src/images/progress.js';
import { DEBIAN_DEFAULT_PACKAGES } from '../src/images/recipes.js';
import { PackageUniverse } from '../src/images/resolver.js';

const args = process.argv.slice(2);
const repo = fileURLToPath(new URL('..', import.meta.url));
let tmpCache: string | undefined;
if (!args.includes('--cached')) {
  tmpCache = mkdtempSync(join(tmpdir(), 'visor-bench-cache-'));
  process.env.XDG_CACHE_HOME = tmpCache;
}
console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}, Node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);

const t0 = performance.now();
const img = await ensureImage('debian', { progress: true });
const pullWall = (performance.now() - t0) / 1000;
const m = img.manifest;
if (tmpCache) {
  const s = m.rootfs!.seconds;
  console.log(`first pull (empty cache): ${pullWall.toFixed(0)} s wall; download ${s.download.toFixed(1)} s, unpack ${s.unpack.toFixed(1)} s, ext4 write ${s.write.toFixed(1)} s, configure in a guest ${s.configure.toFixed(0)} s`);
}
console.log(`base image: ${formatBytes(m.files.rootfs!.size)} qcow2; ${m.rootfs!.packageCount} packages, ${m.rootfs!.files} files, ${formatBytes(m.rootfs!.bytes)} of file data unpacked`);

// What takes the room: the biggest packages by Installed-Size, from the cached index.
const idx = readdirSync(indexDir(cacheRoot())).find((n) => /^[0-9a-f]{64}$/.test(n));
if (idx) {
  const text = gunzipSync(readFileSync(join(indexDir(cacheRoot()), idx))).toString('utf8');
  const plan = planRootfs(PackageUniverse.fromIndex(text, m.arch), m.rootfs?.requested ?? DEBIAN_DEFAULT_PACKAGES);
  const top = [...plan.packages].sort((a, b) => b.installedSize - a.installedSize).slice(0, 10);
  const total = plan.packages.reduce((n, p) => n + p.installedSize, 0);
  console.log(`installed size ${formatBytes(total * 1024)}; largest: ${top.map((p) => `${p.name} ${formatBytes(p.installedSize * 1024)}`).join(', ')}`);
}

function wall(cmd: string, argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ s: number; out: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const p = spawn(cmd, argv, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', () => {});
    p.on('error', reject);
    p.on('exit', (code) => resolve({ s: (performance.now() - t) / 1000, out, code }));
  });
}

// Cached `visor run -- true`, through the CLI as a user runs it (an ephemeral overlay each time).
const runs: number[] = [];
for (let i = 0; i < 2; i++) {
  const r = await wall(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', '--', 'true']);
  if (r.code !== 0) throw new Error(`visor run -- true exited ${r.code}: ${r.out}`);
  runs.push(r.s);
}
console.log(`visor run -- true (cached, CLI): ${runs.map((s) => s.toFixed(2)).join(' s, ')} s`);

const haveQemu = !args.includes('--no-qemu') && spawnSync('qemu-system-riscv64', ['--version']).status === 0 && spawnSync('qemu-img', ['--version']).status === 0;
const fw = img.firmwareDynamic ?? img.firmware;
if (haveQemu && fw) {
  const dir = mkdtempSync(join(tmpdir(), 'visor-bench-qemu-'));
  const overlay = join(dir, 'root.qcow2');
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', img.rootfs!, overlay], { stdio: 'inherit' });
  // The same initramfs form visor boots (inflated on the host for a 512 MiB guest).
  const initrd = join(dir, 'initramfs.cpio');
  writeFileSync(initrd, inflateInitrd(readFileSync(img.initrd), 512 * 2 ** 20));
  const append = `${img.append} ${ROOT_ARG}=/dev/vda ${encodeCommand(['true'])}`;
  const q = await wall('qemu-system-riscv64', ['-M', 'virt', '-m', '512', '-smp', '1', '-nographic', '-no-reboot', '-bios', fw,
    '-kernel', img.kernel, '-initrd', initrd, '-append', append,
    '-drive', `file=${overlay},if=none,id=d0,format=qcow2`, '-device', 'virtio-blk-device,drive=d0']);
  rmSync(dir, { recursive: true, force: true });
  if (!/VISOR_EXIT=0/.test(q.out)) console.log(`qemu: the guest did not report VISOR_EXIT=0:\n${q.out.slice(-2000)}`);
  console.log(`qemu TCG, same image (OpenSBI fw_dynamic, -- true): ${q.s.toFixed(2)} s; visor/qemu ${(Math.min(...runs) / q.s).toFixed(2)}x`);
} else {
  console.log('qemu: not measured (qemu-system-riscv64/qemu-img not installed or --no-qemu)');
}
if (tmpCache) rmSync(tmpCache, { recursive: true, force: true });
