/**
 * Warms V8's type feedback for the hart before a real guest runs (issue 8, speed).
 *
 * V8 optimizes a function with the types each operation has seen so far; an operation that
 * never ran has no feedback, and reaching it in optimized code deoptimizes the whole function
 * ("Insufficient type feedback"). The interpreter (Hart.execute, one large switch) meets new
 * opcodes and slow paths all through a Linux boot, so a first boot in a fresh process was
 * deoptimized and recompiled ~16-20 times (~150 ms of TurboFan each, on V8's worker threads);
 * a second boot in the same process was ~2.5 CPU-s cheaper. Running a short program that takes
 * those paths first (program.ts) gives V8 the feedback up front.
 *
 * The program runs on a small board of the real classes (VirtMachine, Bus, Hart, the devices,
 * the JIT when the tier is 'jit'), so the feedback the real run sees stays monomorphic where it
 * can be: V8's feedback is per function and shared by every instance of a class. It runs on a
 * machine of its own (its own RAM and devices), so the guest sees nothing of it; it runs once
 * per process and tier.
 */
import { decode } from '../cpu/decoder.js';
import type { JitStats } from '../jit/jit.js';
import { buildResetRom, Rom } from '../machine/boot/rom.js';
import { ManualClock } from '../machine/clock.js';
import { VIRT_MEMMAP } from '../machine/memmap.js';
import { MIN_MEMORY_MIB, VirtMachine } from '../machine/virt.js';
import { createHart } from './assembler.js';
import { buildWarmUpImage, RAM_BASE, WARMUP_JIT_THRESHOLD } from '../machine/warmup/program.js';

export interface WarmUpResult {
  /** The program reached its poweroff (it always should; false means a path is broken). */
  finished: boolean;
  instructions: number;
  /** Wall milliseconds, building the board included. */
  ms: number;
  /** Synchronous traps and interrupts taken, by cause. */
  traps: number[];
  interrupts: number[];
  tlbMisses: number;
  jit: JitStats | undefined;
}

/** Instructions per run() call: the board's run loops use batches of this order. */
const BATCH = 20_000;
/** A guard: the program runs ~40 k instructions. */
const MAX_BATCHES = 100;

/** Odd and prime, so the parcels it visits vary every field. */
const DECODE_STRIDE = 37;

const warmed = new Set<'interp' | 'jit'>();

/**
 * Runs the warm-up program once per process and tier; later calls return undefined at once.
 * A JIT hart interprets every instruction before its pages compile, so warming 'jit' warms
 * 'interp' too.
 */
export function warmUpHart(accel: 'interp' | 'jit'): WarmUpResult | undefined {
  if (warmed.has(accel)) return undefined;
  warmed.add(accel);
  if (accel === 'jit') warmed.add('interp');
  return runWarmUp(accel);
}

/** Runs the program on a fresh small board (no once-only guard: tests and measurements). */
export function runWarmUp(accel: 'interp' | 'jit'): WarmUpResult {
  const t0 = performance.now();
  const clock = new ManualClock();
  // mtime beyond 2^32, as a host clock's readings are: the time CSR's paths see Numbers.
  clock.ticks = 0x1_2345_6789;
  const vm = new VirtMachine({
    memoryMiB: MIN_MEMORY_MIB,
    kernel: new Uint8Array(0),
    clock,
    createHart: (mem, opts) => createHart(mem, opts, { accel, jitThreshold: WARMUP_JIT_THRESHOLD }),
  });
  vm.onConsoleOutput = () => {};
  const image = buildWarmUpImage();
  const ram = vm.bus.ram;
  for (const s of image.segments) ram.set(s.bytes, s.ramOffset);
  vm.bus.map(VIRT_MEMMAP.mrom.base, VIRT_MEMMAP.mrom.size, new Rom('mrom', buildResetRom({ firmwareEntry: image.entry, dtbAddr: RAM_BASE, kernelEntry: 0 })));
  const hart = vm.hart;
  hart.reset(VIRT_MEMMAP.mrom.base);
  hart.sbiCall = vm.sbi!.handle;
  for (let i = 0; i < MAX_BATCHES && vm.exit === undefined; i++) {
    // wfi with nothing pending: let time reach the timer the program set.
    if (hart.waitingForInterrupt) clock.advance(1000);
    vm.step(BATCH);
  }
  // The compressed decoder's reserved and hint encodings, which no program should execute:
  // a spread of 16-bit parcels over every quadrant, funct3 and register field (~1800 decodes).
  for (let h = 0; h < 0x10000; h += DECODE_STRIDE) if ((h & 3) !== 3) decode(h);
  return {
    finished: vm.exit?.kind === 'poweroff',
    instructions: hart.stats.instructions,
    ms: performance.now() - t0,
    traps: [...hart.stats.traps],
    interrupts: [...hart.stats.interrupts],
    tlbMisses: hart.stats.tlbMisses,
    jit: hart.jitStats ? { ...hart.jitStats } : undefined,
  };
}
