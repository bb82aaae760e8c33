/**
 * Test support for the FPU tests: register access by bit pattern and a seeded generator of
 * operands that favours the hard cases (subnormals, extremes, short significands that make
 * exact results and ties, near-cancellation). Not used by the emulator itself.
 */
import { Fpu } from './fpu.js';

export class FpuHarness {
  readonly regs = new Int32Array(64);
  readonly fpu = new Fpu(this.regs);

  setD(i: number, bits: bigint): void {
    this.regs[2 * i] = Number(bits & 0xffffffffn) | 0;
    this.regs[2 * i + 1] = Number((bits >> 32n) & 0xffffffffn) | 0;
  }
  getD(i: number): bigint {
    return (BigInt(this.regs[2 * i + 1]! >>> 0) << 32n) | BigInt(this.regs[2 * i]! >>> 0);
  }
  /** Writes a NaN-boxed single. */
  setS(i: number, bits: bigint | number): void {
    this.regs[2 * i] = Number(BigInt(bits) & 0xffffffffn) | 0;
    this.regs[2 * i + 1] = -1;
  }
  /** Reads a single result; returns -1n if it is not properly NaN-boxed. */
  getS(i: number): bigint {
    if (this.regs[2 * i + 1] !== -1) return -1n;
    return BigInt(this.regs[2 * i]! >>> 0);
  }
  /** The 64-bit integer result as a signed BigInt. */
  res(): bigint {
    return (BigInt(this.fpu.resHi) << 32n) | BigInt(this.fpu.resLo >>> 0);
  }
}

const SCR = new Float64Array(1);
const SCR_B = new BigUint64Array(SCR.buffer);
const SCR32 = new Float32Array(1);
const SCR32_U = new Uint32Array(SCR32.buffer);

export function bitsOfD(x: number): bigint {
  SCR[0] = x;
  return SCR_B[0]!;
}
export function dOfBits(b: bigint): number {
  SCR_B[0] = b;
  return SCR[0]!;
}
export function bitsOfS(x: number): bigint {
  SCR32[0] = x;
  return BigInt(SCR32_U[0]!);
}
export function sOfBits(b: bigint): number {
  SCR32_U[0] = Number(b);
  return SCR32[0]!;
}

/** mulberry32: small, seedable, good enough to pick test operands. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  float(): number {
    return this.u32() / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }
  bits(n: number): bigint {
    let r = 0n;
    for (let k = 0; k < n; k += 32) r = (r << 32n) | BigInt(this.u32());
    return r & ((1n << BigInt(n)) - 1n);
  }
}

export interface FloatKind {
  width: 32 | 64;
  fracBits: number;
  expMax: number; // all-ones exponent field
  bias: number;
}
export const KS: FloatKind = { width: 32, fracBits: 23, expMax: 255, bias: 127 };
export const KD: FloatKind = { width: 64, fracBits: 52, expMax: 2047, bias: 1023 };

function mantissa(rng: Rng, k: FloatKind): bigint {
  const r = rng.float();
  const fb = BigInt(k.fracBits);
  if (r < 0.45) return rng.bits(k.fracBits);
  if (r < 0.75) {
    // A short significand: products and sums of these are often exact or exact ties.
    const n = rng.int(1, 10);
    return (rng.bits(n) << (fb - BigInt(n))) & ((1n << fb) - 1n);
  }
  if (r < 0.85) {
    // Runs of ones at the bottom or top: carries through the whole significand.
    const n = rng.int(1, k.fracBits);
    return rng.float() < 0.5 ? (1n << BigInt(n)) - 1n : (((1n << BigInt(n)) - 1n) << (fb - BigInt(n)));
  }
  // Short significand with a low bit set: results just off a tie.
  const n = rng.int(1, 8);
  return ((rng.bits(n) << (fb - BigInt(n))) | (rng.float() < 0.5 ? 1n : 0n)) & ((1n << fb) - 1n);
}

export function make(k: FloatKind, neg: boolean, exField: number, frac: bigint): bigint {
  return (neg ? 1n << BigInt(k.width - 1) : 0n) | (BigInt(exField) << BigInt(k.fracBits)) | frac;
}

export function specials(k: FloatKind): bigint[] {
  const fb = BigInt(k.fracBits);
  const list: bigint[] = [];
  for (const neg of [false, true]) {
    list.push(make(k, neg, 0, 0n)); // zero
    list.push(make(k, neg, k.expMax, 0n)); // inf
    list.push(make(k, neg, 0, 1n)); // min subnormal
    list.push(make(k, neg, 0, (1n << fb) - 1n)); // max subnormal
    list.push(make(k, neg, 1, 0n)); // min normal
    list.push(make(k, neg, k.expMax - 1, (1n << fb) - 1n)); // max finite
    list.push(make(k, neg, k.bias, 0n)); // 1
  }
  list.push(make(k, false, k.expMax, 1n << (fb - 1n))); // canonical qNaN
  list.push(make(k, true, k.expMax, (1n << (fb - 1n)) | 5n)); // qNaN with payload
  list.push(make(k, false, k.expMax, 1n)); // sNaN
  return list;
}

/** A random operand; `centre` biases exponents to a window (e.g. the integer range). */
export function randFloat(rng: Rng, k: FloatKind, centre?: { lo: number; hi: number }): bigint {
  const neg = rng.float() < 0.5;
  const r = rng.float();
  if (r < 0.06) {
    const sp = specials(k);
    return sp[rng.int(0, sp.length - 1)]!;
  }
  if (centre && r < 0.7) return make(k, neg, k.bias + rng.int(centre.lo, centre.hi), mantissa(rng, k));
  if (r < 0.18) return make(k, neg, 0, mantissa(rng, k) | (rng.float() < 0.5 ? 1n : 0n) || 1n); // subnormal
  if (r < 0.55) return make(k, neg, k.bias + rng.int(-8, 8), mantissa(rng, k));
  if (r < 0.63) return make(k, neg, k.expMax - rng.int(1, 30), mantissa(rng, k));
  if (r < 0.71) return make(k, neg, rng.int(1, 30), mantissa(rng, k));
  return make(k, neg, rng.int(1, k.expMax - 1), mantissa(rng, k));
}

/** An operand close to -x (or x), for cancellation in sums. */
export function nearNeg(rng: Rng, k: FloatKind, x: bigint): bigint {
  const signBit = 1n << BigInt(k.width - 1);
  let y = x ^ (rng.float() < 0.8 ? signBit : 0n);
  const ex = Number((y >> BigInt(k.fracBits)) & BigInt(k.expMax));
  if (ex === k.expMax) return y;
  const tweak = BigInt(rng.int(-3, 3));
  y = y + tweak; // a few ulps off, possibly across a binade
  if (rng.float() < 0.3) {
    const de = rng.int(-2, 2);
    const ne = ex + de;
    if (ne > 0 && ne < k.expMax) y = (y & ~(BigInt(k.expMax) << BigInt(k.fracBits))) | (BigInt(ne) << BigInt(k.fracBits));
  }
  return y & ((1n << BigInt(k.width)) - 1n);
}
