/**
 * The RISC-V F and D extensions: every computational instruction, bit-exact.
 *
 * References: RISC-V Unprivileged ISA 20191213, ch. 11 "F" and ch. 12 "D"; IEEE 754-2008
 * §4.3 (rounding), §6.3 (signs of zero), §7 (exceptions).
 *
 * JavaScript arithmetic rounds to nearest-even and reports nothing, so every operation has
 * three tiers:
 *  1. a fast path in plain double arithmetic, used where it is provably the correctly
 *     rounded result, with error-free transformations (TwoSum, Dekker's TwoProduct, exact
 *     remainders) telling whether the result is inexact and on which side the exact value lies;
 *  2. directed rounding modes fix the round-to-nearest result up by one ulp from that side;
 *  3. exact BigInt arithmetic for the rest (overflow, underflow, subnormal operands of
 *     mul/div/sqrt/fma, exact-zero FMA cancellation). It is rare in real code and allocates,
 *     so it stays off the hot path.
 * Single precision needs no BigInt: every single operation's exact result is a double plus
 * a tail whose sign is known (products of singles are exact in double), which roundS rounds.
 */

export const FFLAG_NV = 0x10;
export const FFLAG_DZ = 0x08;
export const FFLAG_OF = 0x04;
export const FFLAG_UF = 0x02;
export const FFLAG_NX = 0x01;

export const RM_RNE = 0;
export const RM_RTZ = 1;
export const RM_RDN = 2;
export const RM_RUP = 3;
export const RM_RMM = 4;

/** §11.3 canonical NaNs: results never propagate a payload. */
const CANON_NAN_S = 0x7fc00000;
const CANON_NAN_D_HI = 0x7ff80000;

const TWO32 = 4294967296;
const TWO63 = 9223372036854775808;
const TWO64 = 18446744073709551616;
/** Largest finite single, 0x7f7fffff. */
const MAX_S = 3.4028234663852886e38;
const MIN_NORMAL_S = 1.1754943508222875e-38; // 2^-126
/** Dekker's splitting constant for 53-bit doubles: 2^27 + 1. */
const SPLITTER = 134217729;

/** POW2[k + POW2_BIAS] = 2^k, exact, for k in [-1100, 1100] (0 and Infinity beyond range). */
const POW2_BIAS = 1100;
const POW2 = new Float64Array(2 * POW2_BIAS + 1);
{
  let v = 1;
  for (let k = 0; k <= POW2_BIAS; k++) {
    POW2[POW2_BIAS + k] = v;
    v *= 2;
  }
  // Halving is exact down to 2^-1074; below that the table holds 0, which is never read.
  v = 1;
  for (let k = 0; k <= POW2_BIAS; k++) {
    POW2[POW2_BIAS - k] = v;
    v /= 2;
  }
}

/** Scratch for bit access to doubles; module-level so no op allocates. */
const SCR = new Float64Array(1);
const SCR_I = new Int32Array(SCR.buffer);
/** Double arguments of the rounding helpers (value, tail): see Fpu.roundS. */
const ARGS = new Float64Array(2);
const NAN_F64 = new Float64Array([NaN]);

/** Error of s = fl(a + b): a + b = s + err exactly (Knuth's TwoSum; holds unless s overflows). */
function twoSumErr(a: number, b: number, s: number): number {
  const bb = s - a;
  return a - (s - bb) + (b - bb);
}

/**
 * Error of p = fl(a * b): a * b = p + err exactly (Dekker/Veltkamp). Holds when |a|, |b| <
 * 2^996 (the split does not overflow) and ulp(a) * ulp(b) >= 2^-1074 (the error does not
 * underflow); callers check exponents first.
 */
function twoProdErr(a: number, b: number, p: number): number {
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  return ah * bh - p + ah * bl + al * bh + al * bl;
}

/**
 * Replaces the finite double in SCR[0] by its neighbour toward +inf (up) or -inf; the step
 * above the largest finite is Infinity. Works in place so no double crosses a call.
 */
function stepScr(up: boolean): void {
  let lo = SCR_I[0]!;
  let hi = SCR_I[1]!;
  if (((hi & 0x7fffffff) | lo) === 0) {
    SCR_I[0] = 1; // ±0 steps to the smallest subnormal of the direction's sign
    SCR_I[1] = up ? 0 : 0x80000000 | 0;
    return;
  }
  if (hi >= 0 === up) {
    lo = (lo + 1) | 0;
    if (lo === 0) hi = (hi + 1) | 0;
  } else {
    if (lo === 0) hi = (hi - 1) | 0;
    lo = (lo - 1) | 0;
  }
  SCR_I[0] = lo;
  SCR_I[1] = hi;
}

/** Set by roundQ: whether the value it rounded was inexact. */
let qInexact = false;

/**
 * Rounds the magnitude q + tail to an integer, where q >= 0 is a double and tail (sign only
 * matters) is smaller than half an ulp of q. neg is the sign of the whole number, which the
 * directed modes need. §4.3 of IEEE 754.
 */
function roundQ(q: number, tail: number, rm: number, neg: boolean): number {
  let fl = Math.floor(q);
  let frac = q - fl;
  if (frac === 0) {
    if (tail === 0) {
      qInexact = false;
      return fl;
    }
    // Just below or above an integer: only the side of 1/2 matters from here on.
    if (tail < 0) {
      fl -= 1;
      frac = 0.75;
    } else frac = 0.25;
  } else if (frac === 0.5 && tail !== 0) {
    frac = tail > 0 ? 0.75 : 0.25;
  }
  qInexact = true;
  switch (rm) {
    case RM_RNE:
      return frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
    case RM_RTZ:
      return fl;
    case RM_RDN:
      return neg ? fl + 1 : fl;
    case RM_RUP:
      return neg ? fl : fl + 1;
    default: // RMM: ties away from zero
      return frac >= 0.5 ? fl + 1 : fl;
  }
}

/** Set by rint: whether the conversion to integer was inexact. */
let rintInexact = false;

/** Rounds finite x to an integer-valued double in mode rm. */
function rint(x: number, rm: number): number {
  const t = Math.trunc(x);
  const f = x - t; // exact: x and t share the binade or t is 0
  if (f === 0) {
    rintInexact = false;
    return t;
  }
  rintInexact = true;
  switch (rm) {
    case RM_RNE: {
      const af = Math.abs(f);
      return af > 0.5 || (af === 0.5 && t % 2 !== 0) ? t + Math.sign(x) : t;
    }
    case RM_RTZ:
      return t;
    case RM_RDN:
      return Math.floor(x);
    case RM_RUP:
      return Math.ceil(x);
    default:
      return Math.abs(f) >= 0.5 ? t + Math.sign(x) : t;
  }
}

// ---------------------------------------------------------------------------------------
// Exact arithmetic for the slow path. A finite nonzero value is (-1)^neg * M * 2^E.

interface Exact {
  neg: boolean;
  M: bigint;
  E: number;
}

interface Format {
  p: number; // precision in bits, with the hidden bit
  emin: number;
  emax: number;
}

const FMT_D: Format = { p: 53, emin: -1022, emax: 1023 };

function bitLen(n: bigint): number {
  return n === 0n ? 0 : n.toString(2).length;
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = 1n << BigInt((bitLen(n) >> 1) + 1); // >= sqrt(n), so Newton descends to the floor
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

/** Set by shiftRound: whether bits were lost. */
let bigInexact = false;

/** Rounds (M + sticky) / 2^sh to an integer; sh >= 1 whenever sticky is set (callers ensure). */
function shiftRound(M: bigint, sh: number, sticky: boolean, rm: number, neg: boolean): bigint {
  if (sh <= 0) {
    bigInexact = sticky;
    return M << BigInt(-sh);
  }
  const q = M >> BigInt(sh);
  const rem = M - (q << BigInt(sh));
  const half = 1n << BigInt(sh - 1);
  const rb = rem >= half;
  const st = sticky || (rb ? rem > half : rem > 0n);
  bigInexact = rb || st;
  let inc = false;
  switch (rm) {
    case RM_RNE:
      inc = rb && (st || (q & 1n) === 1n);
      break;
    case RM_RTZ:
      break;
    case RM_RDN:
      inc = neg && (rb || st);
      break;
    case RM_RUP:
      inc = !neg && (rb || st);
      break;
    default:
      inc = rb;
  }
  return inc ? q + 1n : q;
}

/** Reads double register bits as BigInt-free fields then builds the exact value. */
function exactOfD(lo: number, hi: number, negate: boolean): Exact {
  const ex = (hi >>> 20) & 0x7ff;
  let M = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo >>> 0);
  let E = -1074;
  if (ex !== 0) {
    M |= 1n << 52n;
    E = ex - 1075;
  }
  return { neg: hi < 0 !== negate, M, E };
}

// ---------------------------------------------------------------------------------------

export class Fpu {
  /** Raw register bits: register i is lo = regs[2i], hi = regs[2i+1]. */
  readonly regs: Int32Array;
  private readonly f64: Float64Array;
  private readonly f32: Float32Array;
  /** Accrued exception flags (fflags, §11.2); operations OR into it. */
  fflags = 0;
  /** Dynamic rounding mode (frm) as software wrote it; the hart resolves DYN. */
  frm = 0;
  /** Integer results, as a sign-extended 64-bit lo/hi pair. */
  resLo = 0;
  resHi = 0;

  constructor(regs: Int32Array) {
    if (regs.length < 64 || (regs.byteOffset & 7) !== 0) {
      throw new RangeError('Fpu needs 64 int32 elements at an 8-byte aligned offset');
    }
    this.regs = regs;
    this.f64 = new Float64Array(regs.buffer, regs.byteOffset, 32);
    this.f32 = new Float32Array(regs.buffer, regs.byteOffset, 64);
  }

  // ---- operand access ----------------------------------------------------------------

  /** §12.2 NaN boxing: a single is valid only if the upper 32 bits are all ones. */
  private s(i: number): number {
    // NaN comes from a typed array, not a literal: V8 (11.3) boxes a phi that merges a float
    // load with a non-Smi constant, which would allocate on every single-precision read.
    return this.regs[2 * i + 1] === -1 ? this.f32[2 * i]! : NAN_F64[0]!;
  }

  /** Bits of the single held in register i after unboxing. */
  private sBits(i: number): number {
    return this.regs[2 * i + 1] === -1 ? this.regs[2 * i]! : CANON_NAN_S;
  }

  private isSNaNS(i: number): boolean {
    if (this.regs[2 * i + 1] !== -1) return false; // reads as the canonical (quiet) NaN
    const b = this.regs[2 * i]!;
    return (b & 0x7fc00000) === 0x7f800000 && (b & 0x003fffff) !== 0;
  }

  private isSNaND(i: number): boolean {
    const hi = this.regs[2 * i + 1]!;
    return (hi & 0x7ff80000) === 0x7ff00000 && ((hi & 0x7ffff) | this.regs[2 * i]!) !== 0;
  }

  /** Unbiased exponent field of double register i (-1023 for zero/subnormal, 1024 inf/NaN). */
  private expD(i: number): number {
    return ((this.regs[2 * i + 1]! >>> 20) & 0x7ff) - 1023;
  }

  private writeS(rd: number, v: number): void {
    this.f32[2 * rd] = v;
    this.regs[2 * rd + 1] = -1;
  }

  private writeNaNS(rd: number): void {
    this.regs[2 * rd] = CANON_NAN_S;
    this.regs[2 * rd + 1] = -1;
  }

  private writeNaND(rd: number): void {
    this.regs[2 * rd] = 0;
    this.regs[2 * rd + 1] = CANON_NAN_D_HI;
  }

  // ---- rounding ------------------------------------------------------------------------

  /**
   * Rounds the exact value s + tail (ARGS[0], ARGS[1]) to single precision in mode rm and raises NX, UF, OF.
   * s is a double; tail's sign tells where the exact value lies when it is not s itself,
   * and |tail| < ulp(s)/2 (as TwoSum and exact remainders guarantee). Tininess is detected
   * after rounding (RISC-V, §11.2 / IEEE 754 §7.5).
   */
  private roundS(rd: number, rm: number): void {
    // Doubles travel in ARGS and the result is stored, not returned: V8 boxes doubles passed
    // to or returned from calls it does not inline, which would allocate on every operation.
    const s = ARGS[0]!;
    const tail = ARGS[1]!;
    if (tail === 0 && Math.fround(s) === s) return this.writeS(rd, s); // exact, incl. 0 and inf
    if (rm === RM_RNE) {
      const a = s < 0 ? -s : s;
      if (a >= MIN_NORMAL_S && a <= MAX_S) {
        // In the normal range a single keeps the top 24 of the double's 53 significand bits:
        // the low 29 bits say whether s is a single (0), a midpoint between two singles
        // (0x10000000, where the tail breaks the tie), or neither (the tail cannot matter).
        SCR[0] = s;
        const low = SCR_I[0]! & 0x1fffffff;
        if (low === 0) {
          this.fflags |= FFLAG_NX; // tail !== 0 here, and far below half an ulp
          return this.writeS(rd, s);
        }
        if (low !== 0x10000000 || tail === 0) {
          this.fflags |= FFLAG_NX;
          return this.writeS(rd, Math.fround(s));
        }
      }
    }
    const neg = s < 0;
    const a = neg ? -s : s;
    const tm = neg ? -tail : tail;
    SCR[0] = a;
    let e = ((SCR_I[1]! >>> 20) & 0x7ff) - 1023; // exponent of a (far below -149 if subnormal)
    // Just below a power of two the exact value lies in the binade under it.
    if (tm < 0 && (SCR_I[1]! & 0xfffff) === 0 && SCR_I[0] === 0) e -= 1;
    if (e >= 128) return this.writeS(rd, this.overflowS(neg, rm));
    const ue = e < -126 ? -126 : e;
    const q = roundQ(a * POW2[POW2_BIAS + 23 - ue]!, tm, rm, neg);
    if (!qInexact) return this.writeS(rd, s);
    this.fflags |= FFLAG_NX;
    const r = q * POW2[POW2_BIAS + ue - 23]!;
    if (r > MAX_S) return this.writeS(rd, this.overflowS(neg, rm));
    if (e < -126) {
      // Tiny if rounding to 24 bits with unbounded exponent stays below 2^-126.
      let tiny = true;
      if (e === -127) tiny = roundQ(a * POW2[POW2_BIAS + 150]!, tm, rm, neg) < 16777216;
      if (tiny) this.fflags |= FFLAG_UF;
    }
    this.writeS(rd, neg ? -r : r);
  }

  /** §7.4: overflow gives infinity or the largest finite number depending on the mode. */
  private overflowS(neg: boolean, rm: number): number {
    this.fflags |= FFLAG_OF | FFLAG_NX;
    const toInf = rm === RM_RNE || rm === RM_RMM || (rm === RM_RUP && !neg) || (rm === RM_RDN && neg);
    const m = toInf ? Infinity : MAX_S;
    return neg ? -m : m;
  }

  /**
   * Given r = RNE(exact) (finite, not tiny) and err = exact - r in ARGS[0], ARGS[1] (nonzero; only its sign matters
   * unless ties are possible), returns the result in mode rm. Raises NX, and OF when a
   * directed step leaves the finite range.
   */
  private directD(rd: number, rm: number, tiesPossible: boolean): void {
    const r = ARGS[0]!; // see roundS for why arguments travel in ARGS
    const err = ARGS[1]!;
    this.fflags |= FFLAG_NX;
    SCR[0] = r;
    switch (rm) {
      case RM_RNE:
        break;
      case RM_RTZ:
        if (err < 0 !== r < 0 && r !== 0) stepScr(r < 0);
        break;
      case RM_RDN:
        if (err < 0) stepScr(false);
        break;
      case RM_RUP:
        if (err > 0) stepScr(true);
        break;
      default:
        // RMM differs from RNE only on a tie that RNE resolved toward zero.
        if (tiesPossible && err < 0 === r < 0) {
          stepScr(r > 0);
          if (2 * Math.abs(err) !== Math.abs(SCR[0]! - r)) SCR[0] = r;
        }
    }
    const x = SCR[0]!;
    if (x === Infinity || x === -Infinity) this.fflags |= FFLAG_OF;
    this.f64[rd] = x; // stored, not returned: see roundS
  }

  /**
   * Rounds an exact value to double precision, raising NX/UF/OF, and writes register rd.
   * sticky means the value is slightly above M * 2^E; then M has at least p + 3 bits.
   */
  private roundBigD(rd: number, x: Exact, sticky: boolean, rm: number): void {
    const { p, emin, emax } = FMT_D;
    const neg = x.neg;
    const n = bitLen(x.M);
    const e = x.E + n - 1; // 2^e <= |x| < 2^(e+1)
    const u = (e > emin ? e : emin) - (p - 1); // exponent of the result's ulp
    let q = shiftRound(x.M, u - x.E, sticky, rm, neg);
    const inexact = bigInexact;
    let hi: number;
    let lo: number;
    if (u + bitLen(q) - 1 > emax) {
      // Overflow: the rounded result, exponent unbounded, exceeds the largest finite.
      this.fflags |= FFLAG_OF | FFLAG_NX;
      const toInf = rm === RM_RNE || rm === RM_RMM || (rm === RM_RUP && !neg) || (rm === RM_RDN && neg);
      hi = toInf ? 0x7ff00000 : 0x7fefffff;
      lo = toInf ? 0 : -1;
    } else {
      if (inexact) {
        this.fflags |= FFLAG_NX;
        if (e < emin) {
          let tiny = true;
          if (e === emin - 1) {
            const q2 = shiftRound(x.M, e - (p - 1) - x.E, sticky, rm, neg);
            tiny = q2 < 1n << BigInt(p);
          }
          if (tiny) this.fflags |= FFLAG_UF;
        }
      }
      // bits = (u - uMin) << (p-1) + q covers subnormals, normals and the carry into the
      // next binade alike (the hidden bit lands in the exponent field).
      const bits = (BigInt(u - (emin - p + 1)) << BigInt(p - 1)) + q;
      lo = Number(bits & 0xffffffffn) | 0;
      hi = Number(bits >> 32n) | 0;
    }
    this.regs[2 * rd] = lo;
    this.regs[2 * rd + 1] = neg ? hi | 0x80000000 : hi;
  }

  /** Exact a*b + c for finite operands, then rounded: the slow path of add, mul and fma. */
  private slowFmaD(rd: number, a: Exact, b: Exact | null, c: Exact, rm: number): void {
    // b === null means 1 (plain addition).
    const P = b === null ? a.M : a.M * b.M;
    const EP = b === null ? a.E : a.E + b.E;
    const np = b === null ? a.neg : a.neg !== b.neg;
    let sum: Exact;
    if (P === 0n || c.M === 0n) {
      if (P === 0n && c.M === 0n) {
        // §6.3: exact zero sum of opposite signs is +0, except -0 when rounding down.
        const neg = np === c.neg ? np : rm === RM_RDN;
        this.regs[2 * rd] = 0;
        this.regs[2 * rd + 1] = neg ? 0x80000000 | 0 : 0;
        return;
      }
      sum = P === 0n ? c : { neg: np, M: P, E: EP };
    } else {
      const E = EP < c.E ? EP : c.E;
      const A = P << BigInt(EP - E);
      const C = c.M << BigInt(c.E - E);
      const S = (np ? -A : A) + (c.neg ? -C : C);
      if (S === 0n) {
        this.regs[2 * rd] = 0;
        this.regs[2 * rd + 1] = rm === RM_RDN ? 0x80000000 | 0 : 0;
        return;
      }
      sum = S < 0n ? { neg: true, M: -S, E } : { neg: false, M: S, E };
    }
    this.roundBigD(rd, sum, false, rm);
  }

  private exactD(i: number, negate: boolean): Exact {
    return exactOfD(this.regs[2 * i]!, this.regs[2 * i + 1]!, negate);
  }

  // ---- add / sub ---------------------------------------------------------------------

  faddS(rd: number, rs1: number, rs2: number, rm: number): void {
    this.addS(rd, rs1, rs2, false, rm);
  }
  fsubS(rd: number, rs1: number, rs2: number, rm: number): void {
    this.addS(rd, rs1, rs2, true, rm);
  }
  faddD(rd: number, rs1: number, rs2: number, rm: number): void {
    this.addD(rd, rs1, rs2, false, rm);
  }
  fsubD(rd: number, rs1: number, rs2: number, rm: number): void {
    this.addD(rd, rs1, rs2, true, rm);
  }

  private addS(rd: number, i: number, j: number, sub: boolean, rm: number): void {
    const a = this.s(i);
    let b = this.s(j);
    if (sub) b = -b;
    if (a !== a || b !== b) {
      if (this.isSNaNS(i) || this.isSNaNS(j)) this.fflags |= FFLAG_NV;
      this.writeNaNS(rd);
      return;
    }
    const s = a + b; // exact operands are singles: no overflow in double
    if (s !== s) {
      this.fflags |= FFLAG_NV; // inf - inf
      this.writeNaNS(rd);
      return;
    }
    if (s === 0) {
      this.writeS(rd, this.zeroSum(a, b, rm));
      return;
    }
    ARGS[0] = s;
    ARGS[1] = s === Infinity || s === -Infinity ? 0 : twoSumErr(a, b, s);
    this.roundS(rd, rm);
  }

  /** §6.3 sign of an exact zero sum: +0 unless both addends are -0, or -0 in RDN. */
  private zeroSum(a: number, b: number, rm: number): number {
    if (rm !== RM_RDN) return a + b; // JS already implements the round-to-nearest rule
    return 1 / a > 0 && 1 / b > 0 ? 0 : -0;
  }

  private addD(rd: number, i: number, j: number, sub: boolean, rm: number): void {
    const a = this.f64[i]!;
    let b = this.f64[j]!;
    if (sub) b = -b;
    if (a !== a || b !== b) {
      if (this.isSNaND(i) || this.isSNaND(j)) this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    let r = a + b;
    if (r !== r) {
      this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    if (r === Infinity || r === -Infinity) {
      if (a === r || b === r) {
        this.f64[rd] = r; // an infinite operand: exact
        return;
      }
      this.slowFmaD(rd, this.exactD(i, false), null, this.exactD(j, sub), rm);
      return;
    }
    if (r === 0) {
      this.f64[rd] = this.zeroSum(a, b, rm);
      return;
    }
    // A sum that lands in the subnormal range is exact, so no underflow on this path.
    const err = twoSumErr(a, b, r);
    if (err - err !== 0) {
      // TwoSum's r - a overflowed (operands near the largest finite): use exact arithmetic.
      this.slowFmaD(rd, this.exactD(i, false), null, this.exactD(j, sub), rm);
      return;
    }
    if (err !== 0) {
      ARGS[0] = r;
      ARGS[1] = err;
      this.directD(rd, rm, true);
    } else this.f64[rd] = r;
  }

  // ---- mul ---------------------------------------------------------------------------

  fmulS(rd: number, rs1: number, rs2: number, rm: number): void {
    const a = this.s(rs1);
    const b = this.s(rs2);
    if (a !== a || b !== b) {
      if (this.isSNaNS(rs1) || this.isSNaNS(rs2)) this.fflags |= FFLAG_NV;
      this.writeNaNS(rd);
      return;
    }
    const p = a * b; // exact: 24 x 24 bits fit in 53, exponents in double range
    if (p !== p) {
      this.fflags |= FFLAG_NV; // 0 * inf
      this.writeNaNS(rd);
      return;
    }
    ARGS[0] = p;
    ARGS[1] = 0;
    this.roundS(rd, rm);
  }

  fmulD(rd: number, rs1: number, rs2: number, rm: number): void {
    const a = this.f64[rs1]!;
    const b = this.f64[rs2]!;
    if (a !== a || b !== b) {
      if (this.isSNaND(rs1) || this.isSNaND(rs2)) this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    let r = a * b;
    if (r !== r) {
      this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    if (a === 0 || b === 0 || r === Infinity || r === -Infinity) {
      if (a === 0 || b === 0 || a - a !== 0 || b - b !== 0) {
        this.f64[rd] = r; // zero or infinite operand: exact
        return;
      }
    } else {
      const ea = this.expD(rs1);
      const eb = this.expD(rs2);
      if (ea > -1023 && eb > -1023 && ea <= 990 && eb <= 990 && ea + eb >= -968 && ea + eb <= 1021) {
        const err = twoProdErr(a, b, r);
        if (err !== 0) {
          ARGS[0] = r;
          ARGS[1] = err;
          this.directD(rd, rm, true);
        } else this.f64[rd] = r;
        return;
      }
    }
    this.slowFmaD(rd, this.exactD(rs1, false), this.exactD(rs2, false), { neg: false, M: 0n, E: 0 }, rm);
  }

  // ---- div ---------------------------------------------------------------------------

  fdivS(rd: number, rs1: number, rs2: number, rm: number): void {
    const a = this.s(rs1);
    const b = this.s(rs2);
    if (a !== a || b !== b) {
      if (this.isSNaNS(rs1) || this.isSNaNS(rs2)) this.fflags |= FFLAG_NV;
      this.writeNaNS(rd);
      return;
    }
    const q = a / b;
    if (q !== q) {
      this.fflags |= FFLAG_NV; // 0/0, inf/inf
      this.writeNaNS(rd);
      return;
    }
    if (b === 0 || q === 0 || q === Infinity || q === -Infinity) {
      if (b === 0 && a - a === 0) this.fflags |= FFLAG_DZ; // finite nonzero / 0
      this.writeS(rd, q); // every such quotient of singles is exact (0, inf)
      return;
    }
    // The exact quotient is q + rem/b; rem = a - q*b is exact (q*b does not underflow).
    const p = q * b;
    const rem = a - p - twoProdErr(q, b, p);
    ARGS[0] = q;
    ARGS[1] = rem === 0 ? 0 : rem < 0 !== b < 0 ? -1 : 1;
    this.roundS(rd, rm);
  }

  fdivD(rd: number, rs1: number, rs2: number, rm: number): void {
    const a = this.f64[rs1]!;
    const b = this.f64[rs2]!;
    if (a !== a || b !== b) {
      if (this.isSNaND(rs1) || this.isSNaND(rs2)) this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    let q = a / b;
    if (q !== q) {
      this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    if (a === 0 || b === 0 || a - a !== 0 || b - b !== 0) {
      if (b === 0 && a !== 0 && a - a === 0) this.fflags |= FFLAG_DZ;
      this.f64[rd] = q; // zero or infinite operands give exact 0 or inf
      return;
    }
    const ea = this.expD(rs1);
    const eb = this.expD(rs2);
    if (ea >= -960 && ea <= 990 && eb > -1023 && eb <= 990 && ea - eb >= -990 && ea - eb <= 990) {
      // q is normal and q*b cannot overflow or underflow: the remainder is exact.
      const p = q * b;
      const rem = a - p - twoProdErr(q, b, p);
      // A quotient of normal doubles is never a tie, so only the remainder's sign matters.
      if (rem !== 0) {
        ARGS[0] = q;
        ARGS[1] = rem < 0 !== b < 0 ? -1 : 1;
        this.directD(rd, rm, false);
      } else this.f64[rd] = q;
      return;
    }
    // Exact long division with p + 3 quotient bits and a sticky remainder.
    const x = this.exactD(rs1, false);
    const y = this.exactD(rs2, false);
    const k = Math.max(0, 53 + 3 + bitLen(y.M) - bitLen(x.M));
    const N = x.M << BigInt(k);
    const Q = N / y.M;
    this.roundBigD(rd, { neg: x.neg !== y.neg, M: Q, E: x.E - k - y.E }, Q * y.M !== N, rm);
  }

  // ---- sqrt --------------------------------------------------------------------------

  fsqrtS(rd: number, rs1: number, rm: number): void {
    const a = this.s(rs1);
    if (a !== a || a < 0) {
      // NaN in or the root of a negative number (-0 is not negative: sqrt(-0) = -0).
      if (a < 0 || this.isSNaNS(rs1)) this.fflags |= FFLAG_NV;
      this.writeNaNS(rd);
      return;
    }
    const r = Math.sqrt(a);
    if (a === 0 || a === Infinity) {
      this.writeS(rd, r);
      return;
    }
    const p = r * r;
    const rem = a - p - twoProdErr(r, r, p); // exact root = r + rem/(2r) roughly: same sign
    ARGS[0] = r;
    ARGS[1] = rem;
    this.roundS(rd, rm);
  }

  fsqrtD(rd: number, rs1: number, rm: number): void {
    const a = this.f64[rs1]!;
    if (a !== a || a < 0) {
      if (a < 0 || this.isSNaND(rs1)) this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    let r = Math.sqrt(a);
    if (a === 0 || a === Infinity) {
      this.f64[rd] = r;
      return;
    }
    const ea = this.expD(rs1);
    if (ea >= -960 && ea <= 1020) {
      // r*r neither overflows nor loses its error term to underflow.
      const p = r * r;
      const rem = a - p - twoProdErr(r, r, p);
      // A square root is never a tie, so only the remainder's sign matters.
      if (rem !== 0) {
        ARGS[0] = r;
        ARGS[1] = rem;
        this.directD(rd, rm, false);
      } else this.f64[rd] = r;
      return;
    }
    // Tiny operand: integer square root with p + 3 bits and a sticky bit.
    const x = this.exactD(rs1, false);
    let k = Math.max(0, 2 * (53 + 3) + 1 - bitLen(x.M));
    if ((x.E - k) % 2 !== 0) k++;
    const N = x.M << BigInt(k);
    const R = isqrt(N);
    this.roundBigD(rd, { neg: false, M: R, E: (x.E - k) / 2 }, R * R !== N, rm);
  }

  // ---- min / max (§11.6, 2019 semantics: IEEE 754-2019 minimumNumber/maximumNumber) --

  fminS(rd: number, rs1: number, rs2: number): void {
    this.minMaxS(rd, rs1, rs2, false);
  }
  fmaxS(rd: number, rs1: number, rs2: number): void {
    this.minMaxS(rd, rs1, rs2, true);
  }
  fminD(rd: number, rs1: number, rs2: number): void {
    this.minMaxD(rd, rs1, rs2, false);
  }
  fmaxD(rd: number, rs1: number, rs2: number): void {
    this.minMaxD(rd, rs1, rs2, true);
  }

  private minMaxS(rd: number, i: number, j: number, max: boolean): void {
    const a = this.s(i);
    const b = this.s(j);
    if (this.isSNaNS(i) || this.isSNaNS(j)) this.fflags |= FFLAG_NV;
    const ab = this.sBits(i);
    const bb = this.sBits(j);
    let bits: number;
    if (a !== a) bits = b !== b ? CANON_NAN_S : bb;
    else if (b !== b) bits = ab;
    else if (a === b) bits = max ? ab & bb : ab | bb; // ±0: -0 < +0; otherwise equal bits
    else bits = a < b !== max ? ab : bb;
    this.regs[2 * rd] = bits;
    this.regs[2 * rd + 1] = -1;
  }

  private minMaxD(rd: number, i: number, j: number, max: boolean): void {
    const a = this.f64[i]!;
    const b = this.f64[j]!;
    if (this.isSNaND(i) || this.isSNaND(j)) this.fflags |= FFLAG_NV;
    const R = this.regs;
    let lo: number;
    let hi: number;
    if (a !== a && b !== b) {
      lo = 0;
      hi = CANON_NAN_D_HI;
    } else {
      let pick: number;
      if (a !== a) pick = j;
      else if (b !== b) pick = i;
      else if (a === b) pick = (R[2 * i + 1]! < 0) !== max ? i : j; // ±0: -0 is the smaller
      else pick = a < b !== max ? i : j;
      lo = R[2 * pick]!;
      hi = R[2 * pick + 1]!;
    }
    R[2 * rd] = lo;
    R[2 * rd + 1] = hi;
  }

  // ---- fused multiply-add (§11.6: rounded once; inf*0 raises NV even with a qNaN addend) --

  fmaddS(rd: number, rs1: number, rs2: number, rs3: number, rm: number): void {
    this.fmaS(rd, rs1, rs2, rs3, false, false, rm);
  }
  fmsubS(rd: number, rs1: number, rs2: number, rs3: number, rm: number): void {
    this.fmaS(rd, rs1, rs2, rs3, false, true, rm);
  }
  fnmsubS(rd: number, rs1: number, rs2: number, rs3: number, rm: number): void {
    this.fmaS(rd, rs1, rs2, rs3, true, false, rm);
  }
  fnmaddS(rd: number, rs1: number, rs2: number, rs3: number, rm: number): void {
    this.fmaS(rd, rs1, rs2, rs3, true, true, rm);
  }
  fmaddD(rd: number, rs1: number, rs2: number, rs3: number, rm: number): void {
    this.fmaD(rd, rs1, rs2, rs3, false, false, rm);
  }
  fmsubD(rd: number, rs1: number, rs2: number, rs3: number, rm: number): void {
    this.fmaD(rd, rs1, rs2, rs3, false, true, rm);
  }
  fnmsubD(rd: number, rs1: number, rs2: number, rs3: number, rm: number): void {
    this.fmaD(rd, rs1, rs2, rs3, true, false, rm);
  }
  fnmaddD(rd: number, rs1: number, rs2: number, rs3: number, rm: number): void {
    this.fmaD(rd, rs1, rs2, rs3, true, true, rm);
  }

  private fmaS(rd: number, i: number, j: number, k: number, negP: boolean, negC: boolean, rm: number): void {
    const a = this.s(i);
    const b = this.s(j);
    let c = this.s(k);
    if (a !== a || b !== b || c !== c) {
      if (this.isSNaNS(i) || this.isSNaNS(j) || this.isSNaNS(k)) this.fflags |= FFLAG_NV;
      else if ((a === 0 && (b === Infinity || b === -Infinity)) || (b === 0 && (a === Infinity || a === -Infinity)))
        this.fflags |= FFLAG_NV;
      this.writeNaNS(rd);
      return;
    }
    let p = a * b; // exact in double
    if (negP) p = -p;
    if (negC) c = -c;
    const s = p + c;
    if (s !== s) {
      this.fflags |= FFLAG_NV; // inf*0, or inf - inf
      this.writeNaNS(rd);
      return;
    }
    if (s === 0) {
      this.writeS(rd, this.zeroSum(p, c, rm));
      return;
    }
    // p + c = s + t exactly, so one rounding of (s, t) to single is the fused result.
    ARGS[0] = s;
    ARGS[1] = s === Infinity || s === -Infinity ? 0 : twoSumErr(p, c, s);
    this.roundS(rd, rm);
  }

  private fmaD(rd: number, i: number, j: number, k: number, negP: boolean, negC: boolean, rm: number): void {
    let a = this.f64[i]!;
    const b = this.f64[j]!;
    let c = this.f64[k]!;
    if (a !== a || b !== b || c !== c) {
      if (this.isSNaND(i) || this.isSNaND(j) || this.isSNaND(k)) this.fflags |= FFLAG_NV;
      else if ((a === 0 && (b === Infinity || b === -Infinity)) || (b === 0 && (a === Infinity || a === -Infinity)))
        this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    if (negP) a = -a;
    if (negC) c = -c;
    if (a - a !== 0 || b - b !== 0) {
      // An infinite factor: the result is that infinity, or invalid (inf*0, inf - inf).
      const p = a * b;
      if (p !== p || (c - c !== 0 && c !== p)) {
        this.fflags |= FFLAG_NV;
        this.writeNaND(rd);
      } else this.f64[rd] = p;
      return;
    }
    if (c - c !== 0) {
      this.f64[rd] = c; // finite product (even if it would overflow) plus infinity
      return;
    }
    if (a === 0 || b === 0) {
      // An exact zero product: the sum is c, or a signed zero by §6.3.
      const p = a * b;
      this.f64[rd] = c === 0 ? this.zeroSum(p, c, rm) : c;
      return;
    }
    const ea = this.expD(i);
    const eb = this.expD(j);
    const ec = this.expD(k);
    if (
      ea > -1023 && eb > -1023 && ea <= 990 && eb <= 990 && ea + eb >= -900 && ea + eb <= 990 &&
      ((ec >= -900 && ec <= 990) || c === 0)
    ) {
      // Boldo & Melquiond (IEEE TC 2008), "Emulation of FMA ... using rounding to odd":
      // a*b = ph + pl, c + ph = th + tl exactly; v = RO(tl + pl); RN(th + v) = RN(a*b + c).
      const ph = a * b;
      const pl = twoProdErr(a, b, ph);
      const th = c + ph;
      const tl = twoSumErr(c, ph, th);
      const u = tl + pl;
      const w = twoSumErr(tl, pl, u);
      let v = u;
      if (w !== 0) {
        SCR[0] = u;
        if ((SCR_I[0]! & 1) === 0) {
          stepScr(w > 0); // round to odd
          v = SCR[0]!;
        }
      }
      const r = th + v;
      const ar = r < 0 ? -r : r;
      if (ar >= 1e-289 && ar !== Infinity) {
        // exact - r = e2 + w', with e2 the error of th + v and w' = tl + pl - v the odd
        // rounding's error. w' has w's sign, or the opposite one if the odd rounding stepped
        // past the exact sum. |w'| < ulp(v) <= |e2| whenever e2 is nonzero (if v outweighs
        // th there was cancellation, so tl = 0 and w' = 0), so the sign of exact - r is e2's,
        // else w''s. A tie needs w' = 0, where e2 is the whole of exact - r.
        const e2 = twoSumErr(th, v, r);
        const sw = w > 0 ? 1 : -1;
        const wSign = w === 0 ? 0 : v === u ? sw : -sw;
        if (e2 === 0 && wSign === 0) this.f64[rd] = r;
        else {
          ARGS[0] = r;
          ARGS[1] = e2 !== 0 ? e2 : wSign;
          this.directD(rd, rm, wSign === 0);
        }
        return;
      }
    }
    this.slowFmaD(rd, this.exactD(i, negP), this.exactD(j, false), this.exactD(k, negC), rm);
  }

  // ---- sign injection (§11.6: pure bit operations) ------------------------------------

  fsgnjS(rd: number, rs1: number, rs2: number): void {
    this.writeSgnjS(rd, this.sBits(rs1), this.sBits(rs2) & 0x80000000);
  }
  fsgnjnS(rd: number, rs1: number, rs2: number): void {
    this.writeSgnjS(rd, this.sBits(rs1), ~this.sBits(rs2) & 0x80000000);
  }
  fsgnjxS(rd: number, rs1: number, rs2: number): void {
    const a = this.sBits(rs1);
    this.writeSgnjS(rd, a, (a ^ this.sBits(rs2)) & 0x80000000);
  }
  private writeSgnjS(rd: number, a: number, sign: number): void {
    this.regs[2 * rd] = (a & 0x7fffffff) | sign;
    this.regs[2 * rd + 1] = -1;
  }

  fsgnjD(rd: number, rs1: number, rs2: number): void {
    this.writeSgnjD(rd, rs1, this.regs[2 * rs2 + 1]! & 0x80000000);
  }
  fsgnjnD(rd: number, rs1: number, rs2: number): void {
    this.writeSgnjD(rd, rs1, ~this.regs[2 * rs2 + 1]! & 0x80000000);
  }
  fsgnjxD(rd: number, rs1: number, rs2: number): void {
    this.writeSgnjD(rd, rs1, (this.regs[2 * rs1 + 1]! ^ this.regs[2 * rs2 + 1]!) & 0x80000000);
  }
  private writeSgnjD(rd: number, rs1: number, sign: number): void {
    const R = this.regs;
    R[2 * rd] = R[2 * rs1]!;
    R[2 * rd + 1] = (R[2 * rs1 + 1]! & 0x7fffffff) | sign;
  }

  // ---- compares (§11.8: feq signals only on sNaN, flt/fle on any NaN) ----------------

  feqS(rs1: number, rs2: number): number {
    const a = this.s(rs1);
    const b = this.s(rs2);
    if (a !== a || b !== b) {
      if (this.isSNaNS(rs1) || this.isSNaNS(rs2)) this.fflags |= FFLAG_NV;
      return 0;
    }
    return a === b ? 1 : 0;
  }
  fltS(rs1: number, rs2: number): number {
    const a = this.s(rs1);
    const b = this.s(rs2);
    if (a !== a || b !== b) {
      this.fflags |= FFLAG_NV;
      return 0;
    }
    return a < b ? 1 : 0;
  }
  fleS(rs1: number, rs2: number): number {
    const a = this.s(rs1);
    const b = this.s(rs2);
    if (a !== a || b !== b) {
      this.fflags |= FFLAG_NV;
      return 0;
    }
    return a <= b ? 1 : 0;
  }
  feqD(rs1: number, rs2: number): number {
    const a = this.f64[rs1]!;
    const b = this.f64[rs2]!;
    if (a !== a || b !== b) {
      if (this.isSNaND(rs1) || this.isSNaND(rs2)) this.fflags |= FFLAG_NV;
      return 0;
    }
    return a === b ? 1 : 0;
  }
  fltD(rs1: number, rs2: number): number {
    const a = this.f64[rs1]!;
    const b = this.f64[rs2]!;
    if (a !== a || b !== b) {
      this.fflags |= FFLAG_NV;
      return 0;
    }
    return a < b ? 1 : 0;
  }
  fleD(rs1: number, rs2: number): number {
    const a = this.f64[rs1]!;
    const b = this.f64[rs2]!;
    if (a !== a || b !== b) {
      this.fflags |= FFLAG_NV;
      return 0;
    }
    return a <= b ? 1 : 0;
  }

  // ---- classify (§11.9, Table 11.5) ---------------------------------------------------

  fclassS(rs1: number): number {
    const b = this.sBits(rs1);
    const neg = b < 0;
    const ex = (b >>> 23) & 0xff;
    const frac = b & 0x7fffff;
    return classify(neg, ex === 0xff, ex === 0, frac === 0, (frac & 0x400000) !== 0);
  }

  fclassD(rs1: number): number {
    const hi = this.regs[2 * rs1 + 1]!;
    const ex = (hi >>> 20) & 0x7ff;
    const fracZero = ((hi & 0xfffff) | this.regs[2 * rs1]!) === 0;
    return classify(hi < 0, ex === 0x7ff, ex === 0, fracZero, (hi & 0x80000) !== 0);
  }

  // ---- conversions between formats (§12.5) ------------------------------------------

  fcvtSD(rd: number, rs1: number, rm: number): void {
    const a = this.f64[rs1]!;
    if (a !== a) {
      if (this.isSNaND(rs1)) this.fflags |= FFLAG_NV;
      this.writeNaNS(rd);
      return;
    }
    ARGS[0] = a;
    ARGS[1] = 0;
    this.roundS(rd, rm);
  }

  fcvtDS(rd: number, rs1: number, rm: number): void {
    const a = this.s(rs1);
    if (a !== a) {
      if (this.isSNaNS(rs1)) this.fflags |= FFLAG_NV;
      this.writeNaND(rd);
      return;
    }
    this.f64[rd] = a; // every single is a double
  }

  // ---- float → integer (§11.7: saturating, NV on invalid, NX on inexact) ---------------

  fcvtWS(rs1: number, rm: number): void {
    this.toW(this.s(rs1), rm);
  }
  fcvtWUS(rs1: number, rm: number): void {
    this.toWU(this.s(rs1), rm);
  }
  fcvtLS(rs1: number, rm: number): void {
    this.toL(this.s(rs1), rm);
  }
  fcvtLUS(rs1: number, rm: number): void {
    this.toLU(this.s(rs1), rm);
  }
  fcvtWD(rs1: number, rm: number): void {
    this.toW(this.f64[rs1]!, rm);
  }
  fcvtWUD(rs1: number, rm: number): void {
    this.toWU(this.f64[rs1]!, rm);
  }
  fcvtLD(rs1: number, rm: number): void {
    this.toL(this.f64[rs1]!, rm);
  }
  fcvtLUD(rs1: number, rm: number): void {
    this.toLU(this.f64[rs1]!, rm);
  }

  // Table 11.4: NaN and +inf give the largest value, -inf the smallest; out-of-range
  // values clamp. Invalid conversions raise NV only, never NX.

  private toW(x: number, rm: number): void {
    let v: number;
    if (x !== x) v = this.invalid(2147483647);
    else if (x === Infinity || x === -Infinity) v = this.invalid(x > 0 ? 2147483647 : -2147483648);
    else {
      v = rint(x, rm);
      if (v > 2147483647) v = this.invalid(2147483647);
      else if (v < -2147483648) v = this.invalid(-2147483648);
      else if (rintInexact) this.fflags |= FFLAG_NX;
    }
    this.resLo = v | 0;
    this.resHi = this.resLo >> 31;
  }

  private toWU(x: number, rm: number): void {
    let v: number;
    if (x !== x) v = this.invalid(4294967295);
    else if (x === Infinity || x === -Infinity) v = this.invalid(x > 0 ? 4294967295 : 0);
    else {
      v = rint(x, rm);
      if (v > 4294967295) v = this.invalid(4294967295);
      else if (v < 0) v = this.invalid(0);
      else if (rintInexact) this.fflags |= FFLAG_NX;
    }
    // §11.7: 32-bit results are sign-extended, unsigned ones too.
    this.resLo = v | 0;
    this.resHi = this.resLo >> 31;
  }

  private toL(x: number, rm: number): void {
    if (x !== x) return this.setInvalid64(-1, 0x7fffffff);
    if (x === Infinity) return this.setInvalid64(-1, 0x7fffffff);
    if (x === -Infinity) return this.setInvalid64(0, 0x80000000 | 0);
    const v = rint(x, rm);
    if (v >= TWO63) return this.setInvalid64(-1, 0x7fffffff);
    if (v < -TWO63) return this.setInvalid64(0, 0x80000000 | 0);
    if (rintInexact) this.fflags |= FFLAG_NX;
    const hi = Math.floor(v / TWO32);
    this.resLo = (v - hi * TWO32) | 0;
    this.resHi = hi | 0;
  }

  private toLU(x: number, rm: number): void {
    if (x !== x || x === Infinity) return this.setInvalid64(-1, -1);
    if (x === -Infinity) return this.setInvalid64(0, 0);
    const v = rint(x, rm);
    if (v >= TWO64) return this.setInvalid64(-1, -1);
    if (v < 0) return this.setInvalid64(0, 0);
    if (rintInexact) this.fflags |= FFLAG_NX;
    const hi = Math.floor(v / TWO32);
    this.resLo = (v - hi * TWO32) | 0;
    this.resHi = hi | 0;
  }

  private invalid(v: number): number {
    this.fflags |= FFLAG_NV;
    return v;
  }

  private setInvalid64(lo: number, hi: number): void {
    this.fflags |= FFLAG_NV;
    this.resLo = lo;
    this.resHi = hi;
  }

  // ---- integer → float (§11.7, §12.5) -------------------------------------------------

  fcvtSW(rd: number, lo: number, hi: number, rm: number): void {
    ARGS[0] = lo | 0;
    ARGS[1] = 0;
    this.roundS(rd, rm);
  }
  fcvtSWU(rd: number, lo: number, hi: number, rm: number): void {
    ARGS[0] = lo >>> 0;
    ARGS[1] = 0;
    this.roundS(rd, rm);
  }
  fcvtSL(rd: number, lo: number, hi: number, rm: number): void {
    const H = (hi | 0) * TWO32;
    const L = lo >>> 0;
    const s = H + L;
    ARGS[0] = s;
    ARGS[1] = twoSumErr(H, L, s);
    this.roundS(rd, rm);
  }
  fcvtSLU(rd: number, lo: number, hi: number, rm: number): void {
    const H = (hi >>> 0) * TWO32;
    const L = lo >>> 0;
    const s = H + L;
    ARGS[0] = s;
    ARGS[1] = twoSumErr(H, L, s);
    this.roundS(rd, rm);
  }
  fcvtDW(rd: number, lo: number, hi: number, rm: number): void {
    this.f64[rd] = lo | 0;
  }
  fcvtDWU(rd: number, lo: number, hi: number, rm: number): void {
    this.f64[rd] = lo >>> 0;
  }
  fcvtDL(rd: number, lo: number, hi: number, rm: number): void {
    this.int64ToD(rd, (hi | 0) * TWO32, lo >>> 0, rm);
  }
  fcvtDLU(rd: number, lo: number, hi: number, rm: number): void {
    this.int64ToD(rd, (hi >>> 0) * TWO32, lo >>> 0, rm);
  }
  private int64ToD(rd: number, H: number, L: number, rm: number): void {
    const s = H + L;
    const err = twoSumErr(H, L, s); // exact: the integer is H + L
    if (err !== 0) {
      ARGS[0] = s;
      ARGS[1] = err;
      this.directD(rd, rm, true);
    } else this.f64[rd] = s;
  }

  // ---- moves (§11.10, §12.6: raw bits, no unboxing) -----------------------------------

  fmvXW(rs1: number): void {
    this.resLo = this.regs[2 * rs1]!;
    this.resHi = this.resLo >> 31;
  }
  fmvWX(rd: number, lo: number): void {
    this.regs[2 * rd] = lo;
    this.regs[2 * rd + 1] = -1;
  }
  fmvXD(rs1: number): void {
    this.resLo = this.regs[2 * rs1]!;
    this.resHi = this.regs[2 * rs1 + 1]!;
  }
  fmvDX(rd: number, lo: number, hi: number): void {
    this.regs[2 * rd] = lo;
    this.regs[2 * rd + 1] = hi;
  }
}

/** §11.9 Table 11.5: fclass result bits. */
function classify(neg: boolean, expMax: boolean, expZero: boolean, fracZero: boolean, quiet: boolean): number {
  if (expMax) {
    if (fracZero) return neg ? 1 << 0 : 1 << 7;
    return quiet ? 1 << 9 : 1 << 8;
  }
  if (expZero) {
    if (fracZero) return neg ? 1 << 3 : 1 << 4;
    return neg ? 1 << 2 : 1 << 5;
  }
  return neg ? 1 << 1 : 1 << 6;
}
