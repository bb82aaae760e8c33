/**
 * Guest CPU benchmarks (issue 8): in-guest `sha256sum` of 32 MiB, a BusyBox shell loop and a
 * float loop (BusyBox awk: doubles), on visor and (where installed) on QEMU TCG in the same
 * run, with the ratio.
 * Each phase is timed from the host between marker lines the guest prints around it (wall
 * seconds and the CPU seconds the emulator used meanwhile), so boot time does not count and a
 * guest clock paced by visor's progress cannot flatter it; the guest's own /proc/uptime
 * figure is printed beside.
 * Usage: npm run build && npx tsx bench/guest-cpu.ts [--mib N] [--loops N] [--float N] [--accel jit|interp] [--no-qemu | --only-qemu]
 * (--float 0 leaves the float phase out). bench/parity.ts imports the phases from here.
 */
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import type { Machine as MachineClass } from '../src/sdk/index.js';
import { runMachine } from '../test/support/run-machine.js';
import { encodeCommand, findImage, type GuestImage } from '../src/images/index.js';
import { MarkerClock, haveQemu, processCpuSeconds, qemuGuest, selfCpuSeconds } from './guest-qemu.js';
import { benchArg } from './args.js';

/** One timed phase of the guest script: a shell command between two marker lines. */
export interface CpuPhase {
  name: 'sha256' | 'shell' | 'float';
  command: string;
  /** Checks the guest's output of the run (throws when the phase computed something wrong). */
  check(out: string): void;
}

/** sha256 of 32 MiB of zeros, to check the guest computed it. */
const ZERO_SHA_32MIB = '83ee47245398adee79bd9c0a8bc57b821e92aba10f5f9ade8a5d1fae4d8c4302';

export function shaPhase(mib: number): CpuPhase {
  return {
    name: 'sha256',
    command: `dd if=/dev/zero bs=1M count=${mib} 2>/dev/null | sha256sum`,
    check: (out) => {
      if (mib === 32 && !out.includes(ZERO_SHA_32MIB)) throw new Error(`wrong sha256 in guest output:\n${out.slice(-2000)}`);
    },
  };
}

export function shellPhase(loops: number): CpuPhase {
  return { name: 'shell', command: `i=0; while [ $i -lt ${loops} ]; do i=$((i+1)); done`, check: () => {} };
}

/**
 * A float workload: BusyBox awk keeps numbers as doubles, so this loop is fadd.d/fmul.d/fdiv.d
 * and conversions inside an interpreter (with its integer work around them). The printed sum
 * is checked against the host's double arithmetic, the same IEEE operations in the same order.
 */
export function floatPhase(iters: number): CpuPhase {
  let s = 0;
  for (let i = 0; i < iters; i++) s = (s + i * 1.5) / 1.0000001;
  // awk prints with %.6g (OFMT): compare at that precision.
  const want = `FLOAT_SUM ${Number(s.toPrecision(6))}`;
  return {
    name: 'float',
    command: `awk 'BEGIN { s = 0; for (i = 0; i < ${iters}; i++) s = (s + i * 1.5) / 1.0000001; printf "FLOAT_SUM %.6g\\n", s }'`,
    check: (out) => {
      const m = /FLOAT_SUM (\S+)/.exec(out);
      if (!m || Number(m[1]) !== Number(want.split(' ')[1])) throw new Error(`float phase printed ${m?.[0] ?? 'nothing'}, expected ${want}`);
    },
  };
}

/** Wall and CPU seconds of one phase, and the guest's own clock. */
export interface Span { wallS: number; cpuS: number; guestS: number }

const markers = (p: CpuPhase) => [`BENCH_${p.name}_0`, `BENCH_${p.name}_1`] as const;

/**
 * Run first in every benchmark script: the image's init starts visor-agent, which without a
 * vsock device (these machines have none) retries its socket 300 times over ~30 s of guest
 * time, each try making the kernel spawn modprobe for the missing transport: a fork/exec
 * storm beside whatever phase runs then (it was most of a sha256 phase's instructions).
 * Stop it, on both emulators, so the phases time only their own work.
 */
export const SETTLE = 'kill $(pidof visor-agent) 2>/dev/null; while pidof visor-agent modprobe >/dev/null; do sleep 0.2; done';

function script(phases: CpuPhase[]): string {
  return [
    SETTLE,
    't() { cut -d" " -f1 /proc/uptime; }',
    ...phases.map((p) => {
      const [a, b] = markers(p);
      return `echo ${a}; a=$(t); ${p.command}; b=$(t); echo ${b}; echo "BENCH guest ${p.name} $a $b"`;
    }),
  ].join('; ');
}

function spans(phases: CpuPhase[], out: string, m: MarkerClock): Record<string, Span> {
  const r: Record<string, Span> = {};
  for (const p of phases) {
    const g = new RegExp(`BENCH guest ${p.name} ([\\d.]+) ([\\d.]+)`).exec(out);
    if (!g) throw new Error(`no BENCH line for ${p.name} in guest output:\n${out.slice(-2000)}`);
    p.check(out);
    const [a, b] = markers(p);
    r[p.name] = { ...m.span(a, b), guestS: Number(g[2]) - Number(g[1]) };
  }
  return r;
}

export interface CpuRunOptions { accel?: 'interp' | 'jit'; timeoutMs?: number }

// The SDK's Machine from the build, as bench/boot.ts: the path `visor run` takes (a worker
// thread running src/vm/), with the hart's opcode enum inlined by tsc (tsx does not).
async function builtMachine(): Promise<typeof MachineClass> {
  return ((await import('../dist/sdk/index.js' as string)) as { Machine: typeof MachineClass }).Machine;
}

/** Boots the tiny image on visor (the SDK's Machine from dist/), runs the phases, times each. */
export async function cpuPhasesVisor(img: GuestImage, phases: CpuPhase[], o: CpuRunOptions = {}): Promise<Record<string, Span>> {
  const accel = o.accel ?? 'jit';
  const m = new MarkerClock(phases.flatMap(markers), selfCpuSeconds);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), o.timeoutMs ?? 1_800_000);
  const res = await runMachine(await builtMachine(), {
    accel, kernel: img.kernel, initrd: img.initrd, append: `${img.append} ${encodeCommand(['sh', '-c', script(phases)])}`, bios: 'builtin',
  }, { commandMode: true, signal: abort.signal, onOutput: (t) => m.feed(t) }).finally(() => clearTimeout(timer));
  const out = res.output.replace(/\r/g, '');
  if (res.kind !== 'poweroff') throw new Error(`visor run ended with ${res.kind}:\n${out.slice(-2000)}`);
  if (accel === 'jit' && res.stats.jit.modulesCompiled === 0) throw new Error('the JIT was asked for but the hart runs without it');
  return spans(phases, out, m);
}

/** The same phases under QEMU TCG (OpenSBI fw_dynamic), CPU seconds of its process from /proc. */
export async function cpuPhasesQemu(img: GuestImage, phases: CpuPhase[], o: CpuRunOptions = {}): Promise<Record<string, Span>> {
  let pid: number | undefined;
  const m = new MarkerClock(phases.flatMap(markers), () => processCpuSeconds(pid));
  const out = await qemuGuest(img, ['sh', '-c', script(phases)], [], o.timeoutMs ?? 1_800_000, '', {
    onOutput: (t, p) => {
      pid = p;
      m.feed(t);
    },
  });
  return spans(phases, out, m);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, def: string): string => benchArg(name, def);
  const MIB = Number(arg('mib', '32'));
  const LOOPS = Number(arg('loops', '100000'));
  const FLOAT = Number(arg('float', '200000'));
  const ACCEL = arg('accel', 'jit') as 'interp' | 'jit';
  const timeoutMs = Number(arg('timeout-s', '1800')) * 1000;
  const phases = [shaPhase(MIB), shellPhase(LOOPS), ...(FLOAT > 0 ? [floatPhase(FLOAT)] : [])];
  const label = { sha256: `sha256sum ${MIB} MiB`, shell: `shell loop x${LOOPS}`, float: `awk float loop x${FLOAT}` };
  const show = (who: string, r: Record<string, Span>) =>
    console.log(`${who}: ${phases.map((p) => `${label[p.name]} ${r[p.name]!.wallS.toFixed(2)} s wall (${r[p.name]!.cpuS.toFixed(2)} CPU-s, guest clock ${r[p.name]!.guestS.toFixed(2)} s)`).join(', ')}`);

  const img = await findImage('tiny');
  if (!img) {
    console.log('bench/guest-cpu: no tiny image in the cache; run `visor image pull tiny` first');
    process.exit(process.env.CI ? 1 : 0);
  }
  console.log(`bench/guest-cpu: ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, visor tier ${ACCEL}`);
  let v: Record<string, Span> | undefined;
  if (!argv.includes('--only-qemu')) {
    v = await cpuPhasesVisor(img, phases, { accel: ACCEL, timeoutMs });
    show('visor', v);
  }
  if (argv.includes('--no-qemu') || !haveQemu()) {
    console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');
    return;
  }
  const q = await cpuPhasesQemu(img, phases, { timeoutMs });
  show('qemu ', q);
  if (v) {
    const ratios = (k: 'wallS' | 'cpuS') => phases.map((p) => `${label[p.name]} ${(v[p.name]![k] / q[p.name]![k]).toFixed(2)}x`).join(', ');
    console.log(`ratio visor/qemu, wall: ${ratios('wallS')}`);
    console.log(`ratio visor/qemu, CPU-s: ${ratios('cpuS')}`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
