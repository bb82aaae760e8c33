import type { HartStats, SbiTarget } from '../cpu/hart.js';
import type { HartState } from '../cpu/state.js';
import type { CompiledTier, JitStats } from '../cpu/tier.js';
import type { InterruptTarget } from './irq.js';

/**
 * What the board needs of a hart (src/cpu/hart.ts implements it). Declared here so the board
 * and its tests depend on the contract, not on the interpreter.
 */
export interface BoardHart extends InterruptTarget {
  /** x[i]: low 32 bits at regs[2i], high at regs[2i+1]. */
  readonly regs: Int32Array;
  pc: number;
  priv: number;
  reset(pc: number): void;
  /** Runs at most `budget` instructions; returns how many ran. */
  run(budget: number): number;
  requestStop(): void;
  readonly waitingForInterrupt: boolean;
  sbiCall: ((hart: SbiTarget) => boolean) | null;
  /** stimecmp in timer ticks (a huge number when disabled), for idle sleeping. */
  stimecmpTicks(): number;
  readCsr(num: number): bigint;
  /** Instructions retired so far (minstret), also during run() at CSR accesses. */
  readonly instructionsRetired: number;
  /** Device DMA wrote guest RAM at this physical range: drop code decoded from it. */
  invalidateCode(physAddr: number, length: number): void;
  writeCsr(num: number, value: bigint): void;
  /** Architectural state for snapshots; restore validates it (saved state is untrusted). */
  saveState(): HartState;
  restoreState(s: HartState): void;
  /** Counters (--stats, vm.stats()). */
  readonly stats: HartStats;
  /** Tier 1's counters, when the hart runs the JIT. */
  readonly jitStats: JitStats | undefined;
  /** Tier 1 itself (its compiled pages move between machines: CompiledTier.exportCode). */
  readonly jit?: CompiledTier | null;
  /** Interpret only for the next `instructions`, then the JIT again (Hart.holdJit). */
  holdJit?(instructions: number): void;
  /** Drops the write TLB: every page's next store translates (and is seen) again. */
  flushWriteTlb?(): void;
}

/** Reads x[i] as an unsigned Number (exact below 2^53). */
export function regU(h: { regs: Int32Array }, i: number): number {
  return (h.regs[2 * i + 1]! >>> 0) * 0x1_0000_0000 + (h.regs[2 * i]! >>> 0);
}

/** Reads x[i] as a 64-bit bigint (unsigned). */
export function regBig(h: { regs: Int32Array }, i: number): bigint {
  return (BigInt(h.regs[2 * i + 1]! >>> 0) << 32n) | BigInt(h.regs[2 * i]! >>> 0);
}

/** Sets x[i] to a signed value (sign-extended from a Number in the safe range or a bigint). */
export function setReg(h: { regs: Int32Array }, i: number, v: number | bigint): void {
  if (i === 0) return;
  const b = BigInt.asUintN(64, typeof v === 'bigint' ? v : BigInt(v));
  h.regs[2 * i] = Number(b & 0xffffffffn) | 0;
  h.regs[2 * i + 1] = Number(b >> 32n) | 0;
}

export const REG_A0 = 10;
export const REG_A1 = 11;
export const REG_A2 = 12;
