/**
 * bench/debian-image: the full Debian image (issue 15).
 *
 *   npx tsx bench/debian-image.ts            first pull on an empty cache (a temporary
 *                                             XDG_CACHE_HOME), then the runs below
 *   npx tsx bench/debian-image.ts --cached   use the cache XDG_CACHE_HOME points at
 *
 * Prints: the pull's phases (download, unpack, ext4 write, configure in a guest), the base
 * image's size and the biggest packages in it, a cached `visor run -- true` (the built CLI, as
 * users run it: `npm run build` first; wall time to its exit) from the image's boot snapshot
 * (docs/guest-init.md; a first run that saves it is timed apart) and booted (`--cold-boot`),
 * and the same image booted by
 * QEMU TCG in the same run (same kernel, initramfs and command line; the root disk a qcow2
 * overlay on the same base, on virtio-blk), once with the disk alone and once with visor's
 * other devices (virtio-net on user networking, virtio-rng). Then each run's phases: start-up,
 * kernel to /init, initramfs, root init + command, way out (medians; visor's with the guest's
 * instructions and the machine thread's CPU seconds from `visor run --verbose`).
 *
 *   --rounds=N   alternated rounds (default 3)    --no-qemu   visor alone
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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

const haveQemu = !args.includes('--no-qemu') && spawnSync('qemu-system-riscv64', ['--version']).status === 0 && spawnSync('qemu-img', ['--version']).status === 0;
const fw = img.firmwareDynamic ?? img.firmware;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rounds = Number(/^--rounds=(\d+)$/.exec(args.find((a) => a.startsWith('--rounds=')) ?? '')?.[1] ?? 3);

/**
 * The phases of a run, from the guest's console lines stamped as they reach the host: start-up
 * until the machine exists (visor only: CLI, image, overlay, worker), the kernel until the
 * initramfs's /init (its VISOR_INIT_START), the initramfs (modules, the root's mount,
 * switch_root) until the root's init prints its own, the root's init until the command's
 * VISOR_EXIT, and the way out (poweroff, overlay removed, process gone).
 */
const PHASES = ['start-up', 'kernel to /init', 'initramfs', 'root init + command', 'way out'] as const;
/**
 * A run from the boot snapshot: start-up until the machine is restored, from there until the
 * root's init has read its VISOR_ARGS line (its VISOR_INIT_START: the restored machine resumes,
 * the clock and entropy), the root's init until the command's VISOR_EXIT, the way out.
 */
const RESTORED_PHASES = ['start-up + restore', 'resume to the line read', 'root init + command', 'way out'] as const;
interface Run { s: number; cpu: number; phases: number[]; instr?: number[]; machineCpu?: number[] }

/** Runs a command, stamping each output line (stdout and stderr) on arrival; wall and CPU seconds (/usr/bin/time). */
function stamped(cmd: string, argv: string[]): Promise<{ s: number; cpu: number; lines: { t: number; text: string }[]; code: number | null }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn('/usr/bin/time', ['-f', 'VISOR_BENCH_CPU %U %S', cmd, ...argv], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: { t: number; text: string }[] = [];
    const tails = ['', ''];
    const feed = (i: number) => (d: Buffer) => {
      const parts = (tails[i] + d.toString('latin1')).split('\n');
      tails[i] = parts.pop()!;
      const t = (performance.now() - t0) / 1000;
      for (const text of parts) lines.push({ t, text: text.replace(/\r$/, '') });
    };
    p.stdout.on('data', feed(0));
    p.stderr.on('data', feed(1));
    p.on('error', reject);
    p.on('exit', (code) => {
      const s = (performance.now() - t0) / 1000;
      const m = lines.map((l) => /VISOR_BENCH_CPU ([\d.]+) ([\d.]+)/.exec(l.text)).find((x) => x);
      resolve({ s, cpu: m ? Number(m[1]) + Number(m[2]) : NaN, lines, code });
    });
  });
}

/** Phase boundaries (host seconds) from the marker lines; throws when one is missing. */
function phasesOf(lines: { t: number; text: string }[], s: number, created: number, what: string, inits = 2): { phases: number[]; at: number[] } {
  const marks = lines.filter((l) => /VISOR_INIT_START\s*$/.test(l.text));
  const exit = lines.find((l) => /VISOR_EXIT=0\s*$/.test(l.text));
  if (marks.length < inits || !exit) throw new Error(`${what}: the console did not show ${inits} VISOR_INIT_START and VISOR_EXIT=0:\n${lines.slice(-30).map((l) => l.text).join('\n')}`);
  const at = [0, created, ...marks.slice(0, inits).map((l) => l.t), exit.t, s];
  return { phases: at.slice(1).map((t, i) => t - at[i]!), at };
}

/**
 * `visor run --image debian -- true` as a user runs it: the built CLI (bin/visor.js; run
 * `npm run build` first), a fresh ephemeral overlay each time, with --verbose so the console's
 * lines carry the guest's instructions and the machine thread's CPU seconds.
 */
async function visorRun(how: 'cold' | 'snapshot' | 'saving'): Promise<Run> {
  const r = await stamped(process.execPath, [join(repo, 'bin', 'visor.js'), 'run', '--verbose', '--image', 'debian', ...(how === 'cold' ? ['--cold-boot'] : []), '--', 'true']);
  if (r.code !== 0) throw new Error(`visor run -- true exited ${r.code}:\n${r.lines.slice(-30).map((l) => l.text).join('\n')}`);
  // --verbose lines: "[  12.345 1234 Mi 5.6 s] text"; visor's stamps are its own clock, the bench's are used.
  const parsed = r.lines.map((l) => ({ ...l, m: /^\[\s*[\d.]+ (\d+) Mi ([\d.]+) s\] (.*)$/.exec(l.text) }));
  const want = { cold: 'booted', saving: 'booted, saving a boot snapshot', snapshot: 'restored' }[how];
  const created = parsed.find((l) => l.m?.[3]?.startsWith('visor: machine created'));
  if (!created) throw new Error('visor run --verbose printed no "machine created" line');
  if (created.m![3] !== `visor: machine created (${want})`) throw new Error(`visor run (${how}): expected "machine created (${want})", got "${created.m![3]}"`);
  const { phases, at } = phasesOf(r.lines.map((l, i) => ({ t: l.t, text: parsed[i]!.m?.[3] ?? l.text })), r.s, created.t, 'visor', how === 'cold' ? 2 : 1);
  // Instructions and machine-thread CPU at each boundary (the last line stands for the end).
  const counters = at.map((t) => {
    const upTo = parsed.filter((l) => l.m && l.t <= t);
    const last = upTo.at(-1)?.m;
    return last ? { mi: Number(last[1]), cpu: Number(last[2]) } : { mi: 0, cpu: 0 };
  });
  counters[counters.length - 1] = (() => { const m = parsed.filter((l) => l.m).at(-1)!.m!; return { mi: Number(m[1]), cpu: Number(m[2]) }; })();
  return {
    s: r.s, cpu: r.cpu, phases,
    instr: phases.map((_, i) => counters[i + 1]!.mi - counters[i]!.mi),
    machineCpu: phases.map((_, i) => counters[i + 1]!.cpu - counters[i]!.cpu),
  };
}

/**
 * QEMU TCG on the same image: kernel, initramfs (inflated, as visor boots it), command line,
 * OpenSBI, the root disk a qcow2 overlay on the same base on virtio-blk. `sameDevices` adds
 * what `visor run` attaches besides the disk: a virtio-net NIC on user-mode networking (the
 * root's init then asks DHCP, as in visor) and a virtio-rng (their drivers load too).
 */
async function qemuRun(sameDevices: boolean): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'visor-bench-qemu-'));
  const overlay = join(dir, 'root.qcow2');
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', img.rootfs!, overlay], { stdio: 'inherit' });
  const initrd = join(dir, 'initramfs.cpio');
  writeFileSync(initrd, inflateInitrd(readFileSync(img.initrd), 512 * 2 ** 20));
  const append = `${img.append} ${ROOT_ARG}=/dev/vda ${encodeCommand(['true'])}`;
  const devices = sameDevices ? ['-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0', '-device', 'virtio-rng-device'] : ['-nic', 'none'];
  const q = await stamped('qemu-system-riscv64', ['-M', 'virt', '-m', '512', '-smp', '1', '-nographic', '-no-reboot', '-bios', fw!,
    '-kernel', img.kernel, '-initrd', initrd, '-append', append,
    '-drive', `file=${overlay},if=none,id=d0,format=qcow2`, '-device', 'virtio-blk-device,drive=d0', ...devices]);
  rmSync(dir, { recursive: true, force: true });
  return { s: q.s, cpu: q.cpu, phases: phasesOf(q.lines, q.s, 0, 'qemu').phases };
}

if (!existsSync(join(repo, 'dist', 'cli', 'main.js'))) throw new Error('bench/debian-image runs the built CLI, as users do: run `npm run build` first');
const runs: Record<'visor' | 'cold' | 'qemu' | 'qemuDevices', Run[]> = { visor: [], cold: [], qemu: [], qemuDevices: [] };
// The image's boot snapshots are dropped, so the first run saves one (timed apart).
for (const n of readdirSync(img.dir)) if (/^boot-.*\.snap$/.test(n)) rmSync(join(img.dir, n));
const saving = await visorRun('saving');
console.log(`visor run -- true, first run (boots and saves the boot snapshot): ${saving.s.toFixed(2)} s wall, ${saving.cpu.toFixed(2)} CPU s`);
// Alternated, `rounds` times; medians of each.
for (let i = 0; i < rounds; i++) {
  runs.visor.push(await visorRun('snapshot'));
  runs.cold.push(await visorRun('cold'));
  if (haveQemu && fw) {
    runs.qemu.push(await qemuRun(false));
    runs.qemuDevices.push(await qemuRun(true));
  }
}
const fmt = (rs: Run[]) => `median ${median(rs.map((r) => r.s)).toFixed(2)} s wall, ${median(rs.map((r) => r.cpu)).toFixed(2)} CPU s (runs: ${rs.map((r) => r.s.toFixed(1)).join(', ')})`;
console.log(`visor run -- true (cached, built CLI, JIT), from the boot snapshot: ${fmt(runs.visor)}; load ${load()}`);
console.log(`visor run --cold-boot -- true (booted): ${fmt(runs.cold)}`);
if (runs.qemu.length) {
  const ratio = (rs: Run[]) => (median(rs.map((r) => r.s)) / median(runs.qemu.map((r) => r.s))).toFixed(2);
  console.log(`qemu TCG, same image, disk only (OpenSBI fw_dynamic, -- true): ${fmt(runs.qemu)}; visor/qemu ${ratio(runs.visor)}x wall from the boot snapshot, ${ratio(runs.cold)}x booted`);
  console.log(`qemu TCG, same image, visor's devices (+ virtio-net on user networking, virtio-rng): ${fmt(runs.qemuDevices)}`);
} else {
  console.log('qemu: not measured (qemu-system-riscv64/qemu-img not installed or --no-qemu)');
}
const col = (rs: Run[], f: (r: Run) => number | undefined, d = 1) => (rs.length ? median(rs.map((r) => f(r) ?? NaN)).toFixed(d) : '-');
console.log('\nbooted: phase (medians)      visor wall s  machine CPU s  guest Mi  | qemu wall s  qemu+devices wall s');
PHASES.forEach((p, i) => {
  console.log(`${p.padEnd(28)} ${col(runs.cold, (r) => r.phases[i]).padStart(12)} ${col(runs.cold, (r) => r.machineCpu?.[i]).padStart(14)} ${col(runs.cold, (r) => r.instr?.[i], 0).padStart(9)}  | ${col(runs.qemu, (r) => r.phases[i]).padStart(11)} ${col(runs.qemuDevices, (r) => r.phases[i]).padStart(20)}`);
});
console.log('\nfrom the boot snapshot       visor wall s  machine CPU s  guest Mi');
RESTORED_PHASES.forEach((p, i) => {
  console.log(`${p.padEnd(28)} ${col(runs.visor, (r) => r.phases[i]).padStart(12)} ${col(runs.visor, (r) => r.machineCpu?.[i]).padStart(14)} ${col(runs.visor, (r) => r.instr?.[i], 0).padStart(9)}`);
});
if (tmpCache) rmSync(tmpCache, { recursive: true, force: true });
