/**
 * Parity with QEMU (issue 19): every row on visor and on QEMU TCG in the same run, with the
 * `tiny` image, alternating the two, and a table of medians: wall and CPU seconds each side
 * and the ratio visor/QEMU (below 1: visor is faster).
 *
 *   npm run bench:parity -- [--rows boot,shell,sha256,float,blk,net] [--runs N] [--json]
 *                           [--accel jit|interp] [--loops N] [--float N] [--sha-mib N] [--blk-mib N] [--net-mib N]
 *
 * Rows (each reuses its bench module):
 *   boot    start to the guest's /init (bench/boot.ts; visor stops there, QEMU runs to poweroff)
 *   shell   BusyBox shell loop (bench/guest-cpu.ts; shell, sha256 and float share one boot per side)
 *   sha256  sha256sum of dd's zeros (8 MiB by default; 32 in the issue: --sha-mib 32)
 *   float   an awk loop on doubles
 *   blk     dd of 64 MiB from a virtio-blk disk, page cache dropped (bench/blk.ts)
 *   net     TCP between two guests through busybox nc (bench/net.ts; visor: both VMs in this
 *           process on one L2 switch; QEMU: two processes on a socket netdev)
 * The defaults are sized for a shared 2-core machine (a run of all rows is ~1.5 CPU-minutes);
 * every guest script first stops the image's visor-agent (bench/guest-cpu.ts SETTLE).
 * CPU seconds are the emulator's: this process (all threads) for visor, the QEMU processes
 * from /proc. Each run does visor then QEMU, the next QEMU then visor.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { findImage, encodeCommand, type GuestImage } from '../src/images/index.js';
import { bootQemu, bootVisor, inflatedInitrdForQemu } from './boot.js';
import { blkQemu, blkVisor, scratchDisk } from './blk.js';
import { cpuPhasesQemu, cpuPhasesVisor, floatPhase, shaPhase, shellPhase, type CpuPhase } from './guest-cpu.js';
import { haveQemu } from './guest-qemu.js';
import { netQemu, netVisor } from './net.js';
import { benchArg } from './args.js';

const ALL_ROWS = ['boot', 'shell', 'sha256', 'float', 'blk', 'net'] as const;
type Row = (typeof ALL_ROWS)[number];

const argv = process.argv.slice(2);
const arg = (name: string, def: string): string => benchArg(name, def);
const rows = arg('rows', ALL_ROWS.join(',')).split(',').map((r) => r.trim()) as Row[];
for (const r of rows) if (!ALL_ROWS.includes(r)) throw new Error(`unknown row ${r}: the rows are ${ALL_ROWS.join(', ')}`);
const RUNS = Number(arg('runs', '3'));
const ACCEL = arg('accel', 'jit') as 'interp' | 'jit';
const LOOPS = Number(arg('loops', '20000'));
const FLOAT = Number(arg('float', '50000'));
const SHA_MIB = Number(arg('sha-mib', '8'));
const BLK_MIB = Number(arg('blk-mib', '64'));
const NET_MIB = Number(arg('net-mib', '4'));
const JSON_OUT = argv.includes('--json');
const TIMEOUT_MS = Number(arg('timeout-s', '1800')) * 1000;

const log = (s: string) => (JSON_OUT ? process.stderr : process.stdout).write(`${s}\n`);

const label: Record<Row, string> = {
  boot: 'boot to /init',
  shell: `shell loop x${LOOPS}`,
  sha256: `sha256sum ${SHA_MIB} MiB`,
  float: `awk float loop x${FLOAT}`,
  blk: `dd ${BLK_MIB} MiB from virtio-blk`,
  net: `TCP ${NET_MIB} MiB guest to guest`,
};

interface Sample { wallS: number; cpuS: number }
const samples = new Map<string, { visor: Sample[]; qemu: Sample[] }>();
const record = (row: Row, who: 'visor' | 'qemu', s: Sample) => {
  if (!samples.has(row)) samples.set(row, { visor: [], qemu: [] });
  samples.get(row)![who].push({ wallS: s.wallS, cpuS: s.cpuS });
  log(`  ${who.padEnd(5)} ${label[row]}: ${s.wallS.toFixed(2)} s wall, ${s.cpuS.toFixed(2)} CPU-s`);
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return 'unknown';
  }
}

const img = await findImage('tiny');
if (!img) {
  log('bench/parity: no tiny image in the cache; run `visor image pull tiny` first');
  process.exit(process.env.CI ? 1 : 0);
}
if (!haveQemu()) {
  log('bench/parity: qemu-system-riscv64 is not installed: there is nothing to compare against');
  process.exit(process.env.CI ? 1 : 0);
}
const fw = img.firmwareDynamic ?? img.firmware;
if (!fw) throw new Error('the tiny image has no OpenSBI firmware for QEMU');
const qemuVersion = spawnSync('qemu-system-riscv64', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? '?';
const machine = `${cpus()[0]?.model ?? '?'} x${cpus().length}, Node ${process.version}, ${qemuVersion}`;
const loadStart = loadavg();
const started = new Date();
log(`bench/parity: ${machine}; commit ${commit()}; visor tier ${ACCEL}; ${RUNS} runs; load ${loadStart.map((l) => l.toFixed(2)).join(' ')}`);

const cpuPhases: CpuPhase[] = [
  ...(rows.includes('sha256') ? [shaPhase(SHA_MIB)] : []),
  ...(rows.includes('shell') ? [shellPhase(LOOPS)] : []),
  ...(rows.includes('float') ? [floatPhase(FLOAT)] : []),
];

/** One group of rows sharing a boot, both sides. */
interface Group { name: string; visor(): Promise<void>; qemu(): Promise<void> }
const groups: Group[] = [];

if (rows.includes('boot')) {
  const append = `${img.append} ${encodeCommand(['true'])}`;
  groups.push({
    name: 'boot',
    visor: async () => {
      const t = await bootVisor(img.kernel, img.initrd, append, 'builtin', { accel: ACCEL, initOnly: true });
      record('boot', 'visor', { wallS: t.init, cpuS: t.initCpu ?? NaN });
    },
    qemu: async () => {
      const raw = inflatedInitrdForQemu(img.initrd);
      try {
        const t = await bootQemu(img.kernel, raw.path, append, fw);
        record('boot', 'qemu', { wallS: t.init, cpuS: t.initCpu ?? NaN });
      } finally {
        raw.remove();
      }
    },
  });
}
if (cpuPhases.length > 0) {
  const take = (who: 'visor' | 'qemu', r: Awaited<ReturnType<typeof cpuPhasesVisor>>) => {
    for (const p of cpuPhases) record(p.name, who, r[p.name]!);
  };
  groups.push({
    name: cpuPhases.map((p) => p.name).join('+'),
    visor: async () => take('visor', await cpuPhasesVisor(img, cpuPhases, { accel: ACCEL, timeoutMs: TIMEOUT_MS })),
    qemu: async () => take('qemu', await cpuPhasesQemu(img, cpuPhases, { timeoutMs: TIMEOUT_MS })),
  });
}
if (rows.includes('blk')) {
  const o = { mib: BLK_MIB, write: false, accel: ACCEL, timeoutMs: TIMEOUT_MS };
  const withDisk = async (f: (img: GuestImage, path: string) => Promise<void>) => {
    const disk = await scratchDisk(BLK_MIB);
    try {
      await f(img, disk.path);
    } finally {
      disk.remove();
    }
  };
  groups.push({
    name: 'blk',
    visor: () => withDisk(async (i, p) => record('blk', 'visor', (await blkVisor(i, p, o)).read)),
    qemu: () => withDisk(async (i, p) => record('blk', 'qemu', (await blkQemu(i, p, o)).read)),
  });
}
if (rows.includes('net')) {
  const o = { mib: NET_MIB, accel: ACCEL, timeoutMs: TIMEOUT_MS };
  groups.push({
    name: 'net',
    visor: async () => record('net', 'visor', await netVisor(img, o)),
    qemu: async () => record('net', 'qemu', await netQemu(img, o)),
  });
}

for (let run = 0; run < RUNS; run++) {
  for (const g of groups) {
    log(`run ${run + 1}/${RUNS}, ${g.name} (load ${loadavg()[0]!.toFixed(2)})`);
    // Alternate which side goes first, so neither always meets the same minute of load.
    if (run % 2 === 0) {
      await g.visor();
      await g.qemu();
    } else {
      await g.qemu();
      await g.visor();
    }
  }
}

const loadEnd = loadavg();
const table = rows.map((row) => {
  const s = samples.get(row)!;
  const v = { wallS: median(s.visor.map((x) => x.wallS)), cpuS: median(s.visor.map((x) => x.cpuS)) };
  const q = { wallS: median(s.qemu.map((x) => x.wallS)), cpuS: median(s.qemu.map((x) => x.cpuS)) };
  return { row, label: label[row], visor: v, qemu: q, ratioWall: v.wallS / q.wallS, ratioCpu: v.cpuS / q.cpuS, runs: s };
});

if (JSON_OUT) {
  console.log(JSON.stringify({
    started: started.toISOString(), machine, commit: commit(), accel: ACCEL, runs: RUNS, loadStart, loadEnd, rows: table,
  }, null, 2));
} else {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
  console.log('');
  console.log(`${started.toISOString()}, ${machine}, commit ${commit()}, visor ${ACCEL}, medians of ${RUNS} alternated runs, load ${loadStart.map((l) => l.toFixed(2)).join(' ')} at the start, ${loadEnd.map((l) => l.toFixed(2)).join(' ')} at the end`);
  console.log('');
  console.log('| row | visor wall s | QEMU wall s | ratio (wall) | visor CPU-s | QEMU CPU-s | ratio (CPU-s) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const t of table) console.log(`| ${t.label} | ${f(t.visor.wallS)} | ${f(t.qemu.wallS)} | ${f(t.ratioWall)}× | ${f(t.visor.cpuS)} | ${f(t.qemu.cpuS)} | ${f(t.ratioCpu)}× |`);
}
