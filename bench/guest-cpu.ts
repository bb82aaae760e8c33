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
import type { Hart as HartClass } from '../src/cpu/hart.js';
import type { BoardHart } from '../src/machine/hart.js';
import { guestImage, runGuest } from '../test/virtio/guest-vm.js';
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
// The built hart (tsc inlines its opcode enum; tsx does not) and the host's V8 tuning for the JIT.
const { Hart } = (await import('../dist/cpu/hart.js' as string)) as { Hart: typeof HartClass };
const { tuneV8ForJit } = (await import('../dist/host/v8-tuning.js' as string)) as { tuneV8ForJit: () => void };
if (ACCEL === 'jit') tuneV8ForJit();

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

const img = await guestImage();
if (!img) {
  console.log('bench/guest-cpu: no debian image in the cache; run `visor image pull debian` first');
  process.exit(process.env.CI ? 1 : 0);
}
console.log(`bench/guest-cpu: ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, visor tier ${ACCEL}`);
let v: Figures | undefined;
if (!argv.includes('--only-qemu')) {
  const m = new MarkerClock(MARKERS, selfCpuSeconds);
  const r = await runGuest(img, {
    command: ['sh', '-c', SCRIPT],
    timeoutMs: TIMEOUT_MS,
    onOutput: (t) => m.feed(t),
    createHart: (mem, opts) => new Hart(mem, { ...opts, accel: ACCEL }) as unknown as BoardHart,
  });
  v = figures(r.output, m);
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
