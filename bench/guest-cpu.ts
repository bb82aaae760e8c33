/**
 * Guest CPU benchmarks (issue 8): in-guest `sha256sum` of 32 MiB and a BusyBox shell loop,
 * on visor and (where installed) on QEMU TCG in the same run, with the ratio.
 * Each phase is timed from the host between marker lines the guest prints around it (wall
 * seconds and the CPU seconds the emulator used meanwhile), so boot time does not count and a
 * guest clock paced by visor's progress cannot flatter it; the guest's own /proc/uptime
 * figure is printed beside.
 * Usage: npm run build && npx tsx bench/guest-cpu.ts [--mib N] [--loops N] [--accel jit|interp] [--no-qemu | --only-qemu]
 */
import { cpus, loadavg } from 'node:os';
import type { Machine as MachineClass } from '../src/sdk/index.js';
import { runMachine } from '../test/support/run-machine.js';
import { encodeCommand, findImage } from '../src/images/index.js';
import { MarkerClock, haveQemu, processCpuSeconds, qemuGuest, selfCpuSeconds } from './guest-qemu.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
};
const MIB = Number(arg('mib', '32'));
const LOOPS = Number(arg('loops', '100000'));
const ACCEL = arg('accel', 'jit') as 'interp' | 'jit';
const TIMEOUT_MS = Number(arg('timeout-s', '1800')) * 1000;
// The SDK's Machine from the build, as bench/boot.ts: the path `visor run` takes (a worker
// thread running src/vm/), with the hart's opcode enum inlined by tsc (tsx does not).
const { Machine } = (await import('../dist/sdk/index.js' as string)) as { Machine: typeof MachineClass };

const SCRIPT = [
  't() { cut -d" " -f1 /proc/uptime; }',
  `echo BENCH_S0; a=$(t); dd if=/dev/zero bs=1M count=${MIB} 2>/dev/null | sha256sum; b=$(t); echo BENCH_S1`,
  `echo BENCH_L0; c=$(t); i=0; while [ $i -lt ${LOOPS} ]; do i=$((i+1)); done; d=$(t); echo BENCH_L1`,
  'echo "BENCH guest sha $a $b loop $c $d"',
].join('; ');
const MARKERS = ['BENCH_S0', 'BENCH_S1', 'BENCH_L0', 'BENCH_L1'];
/** sha256 of MIB MiB of zeros, to check the guest computed it. */
const ZERO_SHA_32MIB = '83ee47245398adee79bd9c0a8bc57b821e92aba10f5f9ade8a5d1fae4d8c4302';

interface Figures { sha: number; shaCpu: number; loop: number; loopCpu: number; guestSha: number; guestLoop: number }

function figures(out: string, m: MarkerClock): Figures {
  const g = /BENCH guest sha ([\d.]+) ([\d.]+) loop ([\d.]+) ([\d.]+)/.exec(out);
  if (!g) throw new Error(`no BENCH line in guest output:\n${out.slice(-2000)}`);
  if (MIB === 32 && !out.includes(ZERO_SHA_32MIB)) throw new Error(`wrong sha256 in guest output:\n${out.slice(-2000)}`);
  const [a, b, c, d] = g.slice(1).map(Number) as [number, number, number, number];
  const s = m.span('BENCH_S0', 'BENCH_S1');
  const l = m.span('BENCH_L0', 'BENCH_L1');
  return { sha: s.wallS, shaCpu: s.cpuS, loop: l.wallS, loopCpu: l.cpuS, guestSha: b - a, guestLoop: d - c };
}

const show = (who: string, f: Figures) =>
  console.log(`${who}: sha256sum ${MIB} MiB ${f.sha.toFixed(2)} s wall (${f.shaCpu.toFixed(2)} CPU-s), shell loop x${LOOPS} ${f.loop.toFixed(2)} s wall (${f.loopCpu.toFixed(2)} CPU-s); guest clock: ${f.guestSha.toFixed(2)} s, ${f.guestLoop.toFixed(2)} s`);

const img = await findImage('tiny');
if (!img) {
  console.log('bench/guest-cpu: no tiny image in the cache; run `visor image pull tiny` first');
  process.exit(process.env.CI ? 1 : 0);
}
console.log(`bench/guest-cpu: ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, visor tier ${ACCEL}`);
let v: Figures | undefined;
if (!argv.includes('--only-qemu')) {
  const m = new MarkerClock(MARKERS, selfCpuSeconds);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  const res = await runMachine(Machine, {
    accel: ACCEL, kernel: img.kernel, initrd: img.initrd, append: `${img.append} ${encodeCommand(['sh', '-c', SCRIPT])}`, bios: 'builtin',
  }, { commandMode: true, signal: abort.signal, onOutput: (t) => m.feed(t) }).finally(() => clearTimeout(timer));
  const out = res.output;
  if (res.kind !== 'poweroff') throw new Error(`visor run ended with ${res.kind}:\n${out.slice(-2000)}`);
  if (ACCEL === 'jit' && res.stats.jit.modulesCompiled === 0) throw new Error('the JIT was asked for but the hart runs without it');
  v = figures(out.replace(/\r/g, ''), m);
  show('visor', v);
}
if (argv.includes('--no-qemu') || !haveQemu()) {
  console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');
} else {
  let pid: number | undefined;
  const m = new MarkerClock(MARKERS, () => processCpuSeconds(pid));
  const out = await qemuGuest(img, ['sh', '-c', SCRIPT], [], TIMEOUT_MS, '', {
    onOutput: (t, p) => {
      pid = p;
      m.feed(t);
    },
  });
  const q = figures(out, m);
  show('qemu ', q);
  if (v) {
    console.log(`ratio visor/qemu, wall: sha256sum ${(v.sha / q.sha).toFixed(2)}x, shell loop ${(v.loop / q.loop).toFixed(2)}x`);
    console.log(`ratio visor/qemu, CPU-s: sha256sum ${(v.shaCpu / q.shaCpu).toFixed(2)}x, shell loop ${(v.loopCpu / q.loopCpu).toFixed(2)}x`);
  }
}
