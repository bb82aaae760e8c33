/**
 * A slow, obviously-correct reference for the F and D extensions, used by the tests to check
 * the fast paths of fpu.ts. Values are exact rationals (BigInt numerator/denominator);
 * rounding follows IEEE 754-2008 §4.3 literally: find the exponent of the exact value, take
 * the floor at the result's ulp, compare the remainder with half an ulp. Square roots are
 * rounded by integer square roots and exact comparisons, never by a floating-point guess.
 *
 * It shares no code with fpu.ts on purpose. Speed is irrelevant here.
 */

export interface Fmt {
  readonly p: number;
  readonly emin: number;
  readonly emax: number;
  readonly width: 32 | 64;
}

export const F32: Fmt = { p: 24, emin: -126, emax: 127, width: 32 };
export const F64: Fmt = { p: 53, emin: -1022, emax: 1023, width: 64 };

export const NV = 0x10;
export const DZ = 0x08;
export const OF = 0x04;
export const UF = 0x02;
export const NX = 0x01;

export type Val =
  | { kind: 'nan'; snan: boolean }
  | { kind: 'inf'; neg: boolean }
  | { kind: 'zero'; neg: boolean }
  | { kind: 'fin'; neg: boolean; n: bigint; d: bigint }; // |value| = n/d > 0

export interface Result {
  bits: bigint; // unsigned, width bits
  flags: number;
}

const fracBits = (f: Fmt) => f.p - 1;
const expBits = (f: Fmt) => f.width - f.p;
const bias = (f: Fmt) => f.emax;

export function canonicalNaN(f: Fmt): bigint {
  return f.width === 32 ? 0x7fc00000n : 0x7ff8000000000000n;
}

export function decode(bits: bigint, f: Fmt): Val {
  const fb = BigInt(fracBits(f));
  const neg = (bits >> BigInt(f.width - 1)) & 1n ? true : false;
  const ex = Number((bits >> fb) & ((1n << BigInt(expBits(f))) - 1n));
  const frac = bits & ((1n << fb) - 1n);
  const exMax = (1 << expBits(f)) - 1;
  if (ex === exMax) {
    if (frac === 0n) return { kind: 'inf', neg };
    return { kind: 'nan', snan: (frac >> (fb - 1n)) === 0n };
  }
  if (ex === 0 && frac === 0n) return { kind: 'zero', neg };
  const m = ex === 0 ? frac : frac | (1n << fb);
  const e = (ex === 0 ? 1 : ex) - bias(f) - fracBits(f); // value = m * 2^e
  return e >= 0 ? { kind: 'fin', neg, n: m << BigInt(e), d: 1n } : { kind: 'fin', neg, n: m, d: 1n << BigInt(-e) };
}

function infBits(neg: boolean, f: Fmt): bigint {
  const b = ((1n << BigInt(expBits(f))) - 1n) << BigInt(fracBits(f));
  return neg ? b | (1n << BigInt(f.width - 1)) : b;
}

function zeroBits(neg: boolean, f: Fmt): bigint {
  return neg ? 1n << BigInt(f.width - 1) : 0n;
}

export function bitLen(n: bigint): number {
  return n === 0n ? 0 : n.toString(2).length;
}

function isqrt(n: bigint): bigint {
  // Bit-by-bit (digit-by-digit) method, deliberately different from Newton in fpu.ts.
  let res = 0n;
  let bit = 1n << BigInt(bitLen(n) & ~1);
  let x = n;
  while (bit > x && bit > 0n) bit >>= 2n;
  while (bit !== 0n) {
    if (x >= res + bit) {
      x -= res + bit;
      res = (res >> 1n) + bit;
    } else res >>= 1n;
    bit >>= 2n;
  }
  return res;
}

/** floor(log2(n/d)) for n/d > 0. */
function ilog2(n: bigint, d: bigint): number {
  let e = bitLen(n) - bitLen(d);
  // Is n/d >= 2^e ?
  const ge = e >= 0 ? n >= d << BigInt(e) : n << BigInt(-e) >= d;
  if (!ge) e--;
  return e;
}

/** Quantizes the exact value at ulp 2^u: floor, sign of (fraction - 1/2), exactness. */
type Quant = (u: number) => { fl: bigint; half: number; exact: boolean };

function ratQuant(n: bigint, d: bigint): Quant {
  return (u) => {
    const num = u >= 0 ? n : n << BigInt(-u);
    const den = u >= 0 ? d << BigInt(u) : d;
    const fl = num / den;
    const r = num - fl * den;
    const c = 2n * r - den;
    return { fl, half: c < 0n ? -1 : c > 0n ? 1 : 0, exact: r === 0n };
  };
}

function roundInt(fl: bigint, half: number, exact: boolean, neg: boolean, rm: number): bigint {
  if (exact) return fl;
  switch (rm) {
    case 0:
      return half > 0 || (half === 0 && (fl & 1n) === 1n) ? fl + 1n : fl;
    case 1:
      return fl;
    case 2:
      return neg ? fl + 1n : fl;
    case 3:
      return neg ? fl : fl + 1n;
    case 4:
      return half >= 0 ? fl + 1n : fl;
  }
  throw new Error(`bad rm ${rm}`);
}

/** Rounds a nonzero exact value with exponent e (2^e <= |x| < 2^(e+1)) to format f. */
function roundQuant(neg: boolean, e: number, quant: Quant, f: Fmt, rm: number): Result {
  const u = Math.max(e, f.emin) - (f.p - 1);
  const { fl, half, exact } = quant(u);
  let q = roundInt(fl, half, exact, neg, rm);
  let flags = exact ? 0 : NX;
  // Overflow: the result rounded with unbounded exponent is above the largest finite.
  if (q !== 0n && u + bitLen(q) - 1 > f.emax) {
    // q * 2^u >= 2^(emax+1)
    const toInf = rm === 0 || rm === 4 || (rm === 3 && !neg) || (rm === 2 && neg);
    flags |= OF | NX;
    return { bits: toInf ? infBits(neg, f) : infBits(neg, f) - 1n, flags };
  }
  if (!exact && e < f.emin) {
    const u2 = e - (f.p - 1);
    const r2 = quant(u2);
    const q2 = roundInt(r2.fl, r2.half, r2.exact, neg, rm);
    // Tiny after rounding: q2 * 2^u2 < 2^emin.
    if (q2 < 1n << BigInt(f.emin - u2)) flags |= UF;
  }
  if (q === 0n) return { bits: zeroBits(neg, f), flags };
  let uu = u;
  while (q >= 1n << BigInt(f.p)) {
    q >>= 1n;
    uu++;
  }
  let bits: bigint;
  if (q < 1n << BigInt(f.p - 1)) {
    bits = q; // subnormal, uu is the minimum
  } else {
    const biased = BigInt(uu + f.p - 1 + bias(f));
    bits = (biased << BigInt(fracBits(f))) | (q - (1n << BigInt(f.p - 1)));
  }
  if (neg) bits |= 1n << BigInt(f.width - 1);
  return { bits, flags };
}

/** Rounds the exact rational (-1)^neg * n/d (n > 0) to format f. */
export function roundRational(neg: boolean, n: bigint, d: bigint, f: Fmt, rm: number): Result {
  return roundQuant(neg, ilog2(n, d), ratQuant(n, d), f, rm);
}

// ---- operations ---------------------------------------------------------------------

interface Rat {
  n: bigint; // signed
  d: bigint; // > 0
}

function toRat(v: Val): Rat {
  if (v.kind === 'zero') return { n: 0n, d: 1n };
  if (v.kind !== 'fin') throw new Error('not finite');
  return { n: v.neg ? -v.n : v.n, d: v.d };
}

function addRat(a: Rat, b: Rat): Rat {
  return { n: a.n * b.d + b.n * a.d, d: a.d * b.d };
}

function isNeg(v: Val): boolean {
  return v.kind !== 'nan' && v.neg;
}

function fromRat(r: Rat, f: Fmt, rm: number, zeroNeg: boolean): Result {
  if (r.n === 0n) return { bits: zeroBits(zeroNeg, f), flags: 0 };
  return r.n < 0n ? roundRational(true, -r.n, r.d, f, rm) : roundRational(false, r.n, r.d, f, rm);
}

const nanResult = (f: Fmt, flags: number): Result => ({ bits: canonicalNaN(f), flags });

function anySNaN(...vs: Val[]): boolean {
  return vs.some((v) => v.kind === 'nan' && v.snan);
}

function negVal(v: Val): Val {
  return v.kind === 'nan' ? v : { ...v, neg: !v.neg };
}

export function refAdd(a: Val, b: Val, f: Fmt, rm: number): Result {
  if (a.kind === 'nan' || b.kind === 'nan') return nanResult(f, anySNaN(a, b) ? NV : 0);
  if (a.kind === 'inf' || b.kind === 'inf') {
    if (a.kind === 'inf' && b.kind === 'inf' && a.neg !== b.neg) return nanResult(f, NV);
    return { bits: infBits(a.kind === 'inf' ? a.neg : isNeg(b), f), flags: 0 };
  }
  const s = addRat(toRat(a), toRat(b));
  // IEEE 754 §6.3: x + x keeps the sign of zero; an exact zero otherwise is +0 (-0 in RDN).
  const zeroNeg = a.kind === 'zero' && b.kind === 'zero' && a.neg === b.neg ? a.neg : rm === 2;
  return fromRat(s, f, rm, zeroNeg);
}

export function refSub(a: Val, b: Val, f: Fmt, rm: number): Result {
  return refAdd(a, negVal(b), f, rm);
}

export function refMul(a: Val, b: Val, f: Fmt, rm: number): Result {
  if (a.kind === 'nan' || b.kind === 'nan') return nanResult(f, anySNaN(a, b) ? NV : 0);
  const neg = a.neg !== b.neg;
  if (a.kind === 'inf' || b.kind === 'inf') {
    if (a.kind === 'zero' || b.kind === 'zero') return nanResult(f, NV);
    return { bits: infBits(neg, f), flags: 0 };
  }
  if (a.kind === 'zero' || b.kind === 'zero') return { bits: zeroBits(neg, f), flags: 0 };
  return roundRational(neg, a.n * b.n, a.d * b.d, f, rm);
}

export function refDiv(a: Val, b: Val, f: Fmt, rm: number): Result {
  if (a.kind === 'nan' || b.kind === 'nan') return nanResult(f, anySNaN(a, b) ? NV : 0);
  const neg = a.neg !== b.neg;
  if (a.kind === 'inf') return b.kind === 'inf' ? nanResult(f, NV) : { bits: infBits(neg, f), flags: 0 };
  if (b.kind === 'inf') return { bits: zeroBits(neg, f), flags: 0 };
  if (b.kind === 'zero') return a.kind === 'zero' ? nanResult(f, NV) : { bits: infBits(neg, f), flags: DZ };
  if (a.kind === 'zero') return { bits: zeroBits(neg, f), flags: 0 };
  return roundRational(neg, a.n * b.d, a.d * b.n, f, rm);
}

export function refSqrt(a: Val, f: Fmt, rm: number): Result {
  if (a.kind === 'nan') return nanResult(f, a.snan ? NV : 0);
  if (a.kind === 'zero') return { bits: zeroBits(a.neg, f), flags: 0 };
  if (a.neg) return nanResult(f, NV);
  if (a.kind === 'inf') return { bits: infBits(false, f), flags: 0 };
  const { n, d } = a;
  const e = Math.floor(ilog2(n, d) / 2);
  const quant: Quant = (u) => {
    // s = sqrt(n/d) / 2^u = sqrt(y) with y = n / (d * 4^u).
    const num = u >= 0 ? n : n << BigInt(-2 * u);
    const den = u >= 0 ? d << BigInt(2 * u) : d;
    const fl = isqrt(num / den); // floor(sqrt(y)) = isqrt(floor(y))
    const exact = fl * fl * den === num;
    // sqrt(y) vs fl + 1/2  <=>  4y vs (2fl + 1)^2
    const lhs = 4n * num;
    const rhs = (2n * fl + 1n) ** 2n * den;
    return { fl, half: lhs < rhs ? -1 : lhs > rhs ? 1 : 0, exact };
  };
  return roundQuant(false, e, quant, f, rm);
}

/** (-1)^negP * a * b + (-1)^negC * c, rounded once. */
export function refFma(a: Val, b: Val, c: Val, negP: boolean, negC: boolean, f: Fmt, rm: number): Result {
  const infZero = (a.kind === 'inf' && b.kind === 'zero') || (a.kind === 'zero' && b.kind === 'inf');
  // RISC-V §11.6: inf * 0 raises NV even when the addend is a quiet NaN.
  if (a.kind === 'nan' || b.kind === 'nan' || c.kind === 'nan') return nanResult(f, anySNaN(a, b, c) || infZero ? NV : 0);
  if (infZero) return nanResult(f, NV);
  const pNeg = (a.neg !== b.neg) !== negP;
  const cNeg = c.neg !== negC;
  if (a.kind === 'inf' || b.kind === 'inf') {
    if (c.kind === 'inf' && c.neg !== negC !== pNeg) return nanResult(f, NV);
    return { bits: infBits(pNeg, f), flags: 0 };
  }
  if (c.kind === 'inf') return { bits: infBits(cNeg, f), flags: 0 };
  const pz = a.kind === 'zero' || b.kind === 'zero';
  const p: Rat = pz ? { n: 0n, d: 1n } : { n: (pNeg ? -1n : 1n) * (a as { n: bigint }).n * (b as { n: bigint }).n, d: (a as { d: bigint }).d * (b as { d: bigint }).d };
  const cr = toRat(c);
  const s = addRat(p, negC ? { n: -cr.n, d: cr.d } : cr);
  const zeroNeg = pz && c.kind === 'zero' && pNeg === cNeg ? pNeg : rm === 2;
  return fromRat(s, f, rm, zeroNeg);
}

export function refCvtFF(a: Val, to: Fmt, rm: number): Result {
  if (a.kind === 'nan') return nanResult(to, a.snan ? NV : 0);
  if (a.kind === 'inf') return { bits: infBits(a.neg, to), flags: 0 };
  if (a.kind === 'zero') return { bits: zeroBits(a.neg, to), flags: 0 };
  return roundRational(a.neg, a.n, a.d, to, rm);
}

/** Integer (as BigInt) to float. */
export function refCvtIF(v: bigint, to: Fmt, rm: number): Result {
  if (v === 0n) return { bits: 0n, flags: 0 };
  return v < 0n ? roundRational(true, -v, 1n, to, rm) : roundRational(false, v, 1n, to, rm);
}

/** Float to integer of the given width and signedness: RISC-V Table 11.4 saturation. */
export function refCvtFI(a: Val, width: 32 | 64, signed: boolean, rm: number): { value: bigint; flags: number } {
  const max = signed ? (1n << BigInt(width - 1)) - 1n : (1n << BigInt(width)) - 1n;
  const min = signed ? -(1n << BigInt(width - 1)) : 0n;
  if (a.kind === 'nan') return { value: max, flags: NV };
  if (a.kind === 'inf') return { value: a.neg ? min : max, flags: NV };
  if (a.kind === 'zero') return { value: 0n, flags: 0 };
  const { fl, half, exact } = ratQuant(a.n, a.d)(0);
  const mag = roundInt(fl, half, exact, a.neg, rm);
  const v = a.neg ? -mag : mag;
  if (v > max) return { value: max, flags: NV };
  if (v < min) return { value: min, flags: NV };
  return { value: v, flags: exact ? 0 : NX };
}
