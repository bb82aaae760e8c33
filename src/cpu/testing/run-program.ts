/**
 * Test support: runs a flat program on a hart with RAM at 0x8000_0000 and a one-register
 * "finisher" at 0x0010_0000 (the syscon's address): any write stops the hart.
 */
import { Hart, type HartOptions } from '../hart.js';
import { allocateGuestRam } from '../guest-ram.js';
import type { PhysicalMemory } from '../memory.js';

export const RAM_BASE = 0x8000_0000;
export const FINISHER = 0x0010_0000;

export interface ProgramRun {
  hart: Hart;
  ram: Uint8Array;
  executed: number;
  finished: boolean;
  mmioLog: { addr: number; size: number; value: number; write: boolean }[];
}

/**
 * Options every test hart gets: the interpreter here; src/jit/conformance.test.ts sets
 * { accel: 'jit', jitThreshold: 0 } and reruns the hart's suites, so the JIT passes the
 * interpreter's tests.
 */
export const testHartOptions: HartOptions = { accel: 'interp' };

export function makeHart(ramBytes = 1 << 20, timeSource?: () => number): { hart: Hart; ram: Uint8Array; run: ProgramRun } {
  const ram = allocateGuestRam(ramBytes);
  const state: ProgramRun = { hart: undefined as unknown as Hart, ram, executed: 0, finished: false, mmioLog: [] };
  const memory: PhysicalMemory = {
    ramBase: RAM_BASE,
    ram,
    mmioRead(addr, size) {
      state.mmioLog.push({ addr, size, value: 0, write: false });
      if (addr >= 0x1000_0000 && addr < 0x1000_0100) return addr === 0x1000_0005 ? 0x60 : 0;
      return undefined;
    },
    mmioWrite(addr, size, value) {
      state.mmioLog.push({ addr, size, value, write: true });
      if (addr === FINISHER) {
        state.finished = true;
        state.hart.requestStop();
        return true;
      }
      return addr >= 0x1000_0000 && addr < 0x1000_0100;
    },
  };
  const hart = new Hart(memory, { ...testHartOptions, hartId: 0, timeSource: timeSource ?? (() => 0) });
  state.hart = hart;
  return { hart, ram, run: state };
}

/** Loads `code` at RAM_BASE, runs until the finisher is written or the budget is spent. */
export function runProgram(code: Uint8Array, opts: { budget?: number; ramBytes?: number; timeSource?: () => number } = {}): ProgramRun {
  const { hart, ram, run } = makeHart(opts.ramBytes, opts.timeSource);
  ram.set(code, 0);
  hart.reset(RAM_BASE);
  const budget = opts.budget ?? 1_000_000;
  while (!run.finished && run.executed < budget) {
    const n = hart.run(Math.min(100_000, budget - run.executed));
    run.executed += n;
    if (n === 0) break;
  }
  return run;
}
