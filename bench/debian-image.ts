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
const startedAt = Date.now();
const img = await ensureImage('debian', { progress: true });
const pullWall = (performance.now() - t0) / 1000;
const m = img.manifest;
// Built by this run: on an empty cache, or with --cached when the cached image was stale.
const built = Date.parse(m.created) >= startedAt;
const load = () => loadavg().map((l) => l.toFixed(1)).join(' ');
{
  // The phases of the pull that made the cached image (this run's when the cache was empty).
  const s = m.rootfs!.seconds;
  const cpu = m.rootfs!.cpuSeconds;
  const what = tmpCache ? 'first pull (empty cache)' : built ? `pull (this run, cached downloads and index)` : `pull that built the cached image (${m.created})`;
  console.log(`${what}: ${built ? `${pullWall.toFixed(0)} s wall, ` : ''}` +
    `download ${s.download.toFixed(1)} s, unpack ${s.unpack.toFixed(1)} s, ext4 write ${s.write.toFixed(1)} s, configure in a guest ${s.configure.toFixed(0)} s` +
    `${cpu !== undefined ? `; ${cpu.toFixed(0)} CPU s in all` : ''}; load now ${load()}`);
  if (m.rootfs!.slowest) console.log(`configure, slowest steps (wall s): ${m.rootfs!.slowest.map((x) => `${x.step} ${x.seconds}`).join(', ')}`);
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

/** Wall seconds and the child's CPU seconds (user + system, from /usr/bin/time). */
function wall(cmd: string, argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ s: number; cpu: number; out: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const p = spawn('/usr/bin/time', ['-f', 'VISOR_BENCH_CPU %U %S', cmd, ...argv], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    p.on('error', reject);
    p.on('exit', (code) => {
      const m = /VISOR_BENCH_CPU ([\d.]+) ([\d.]+)/.exec(err);
      resolve({ s: (performance.now() - t) / 1000, cpu: m ? Number(m[1]) + Number(m[2]) : NaN, out, code });
    });
  });
}

const haveQemu = !args.includes('--no-qemu') && spawnSync('qemu-system-riscv64', ['--version']).status === 0 && spawnSync('qemu-img', ['--version']).status === 0;
const fw = img.firmwareDynamic ?? img.firmware;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rounds = Number(/^--rounds=(\d+)$/.exec(args.find((a) => a.startsWith('--rounds=')) ?? '')?.[1] ?? 3);
const visorRuns: { s: number; cpu: number }[] = [];
const qemuRuns: { s: number; cpu: number }[] = [];
// Alternated: `visor run -- true` through the CLI as a user runs it (an ephemeral overlay each
// time), then QEMU on the same image, `rounds` times; medians of each.
for (let i = 0; i < rounds; i++) {
  const r = await wall(process.execPath, ['--import', 'tsx', '-e', "import('./src/cli/main.ts').then((m) => m.main(['run', '--image', 'debian', '--', 'true']))"]);
  if (r.code !== 0) throw new Error(`visor run -- true exited ${r.code}: ${r.out}`);
  visorRuns.push(r);
  const q = haveQemu && fw ? await qemuRun() : undefined;
  if (q) qemuRuns.push(q);
}
const fmt = (rs: { s: number; cpu: number }[]) => `median ${median(rs.map((r) => r.s)).toFixed(2)} s wall, ${median(rs.map((r) => r.cpu)).toFixed(2)} CPU s (runs: ${rs.map((r) => r.s.toFixed(1)).join(', ')})`;
console.log(`visor run -- true (cached, CLI, JIT): ${fmt(visorRuns)}; load ${load()}`);
if (qemuRuns.length) {
  console.log(`qemu TCG, same image (OpenSBI fw_dynamic, -- true): ${fmt(qemuRuns)}; visor/qemu ${(median(visorRuns.map((r) => r.s)) / median(qemuRuns.map((r) => r.s))).toFixed(2)}x wall`);
} else {
  console.log('qemu: not measured (qemu-system-riscv64/qemu-img not installed or --no-qemu)');
}

async function qemuRun(): Promise<{ s: number; cpu: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'visor-bench-qemu-'));
  const overlay = join(dir, 'root.qcow2');
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', img.rootfs!, overlay], { stdio: 'inherit' });
  // The same initramfs form visor boots (inflated on the host for a 512 MiB guest).
  const initrd = join(dir, 'initramfs.cpio');
  writeFileSync(initrd, inflateInitrd(readFileSync(img.initrd), 512 * 2 ** 20));
  const append = `${img.append} ${ROOT_ARG}=/dev/vda ${encodeCommand(['true'])}`;
  const q = await wall('qemu-system-riscv64', ['-M', 'virt', '-m', '512', '-smp', '1', '-nographic', '-no-reboot', '-bios', fw!,
    '-kernel', img.kernel, '-initrd', initrd, '-append', append,
    '-drive', `file=${overlay},if=none,id=d0,format=qcow2`, '-device', 'virtio-blk-device,drive=d0']);
  rmSync(dir, { recursive: true, force: true });
  if (!/VISOR_EXIT=0/.test(q.out)) throw new Error(`qemu: the guest did not report VISOR_EXIT=0:\n${q.out.slice(-2000)}`);
  return q;
}
if (tmpCache) rmSync(tmpCache, { recursive: true, force: true });
