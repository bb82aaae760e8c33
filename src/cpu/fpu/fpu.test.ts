/**
 * Hand-written cases for the F and D extensions: the corners the spec and IEEE 754 spell
 * out. Bit patterns are written in hex so each expectation can be checked against the
 * spec by eye; the random comparison with the exact reference lives in fpu.property.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  FFLAG_DZ,
  FFLAG_NV,
  FFLAG_NX,
  FFLAG_OF,
  FFLAG_UF,
  Fpu,
  RM_RDN,
  RM_RMM,
  RM_RNE,
  RM_RTZ,
  RM_RUP,
} from './fpu.js';
import { FpuHarness, bitsOfD, bitsOfS } from './test-harness.js';

const D = (x: number) => bitsOfD(x);
const S = (x: number) => bitsOfS(x);
const ALL_RM = [RM_RNE, RM_RTZ, RM_RDN, RM_RUP, RM_RMM];

const QNAN_S = 0x7fc00000n;
const QNAN_D = 0x7ff8000000000000n;
const SNAN_S = 0x7f800001n;
const SNAN_D = 0x7ff0000000000001n;
const MAX_S = 0x7f7fffffn;
const MAX_D = 0x7fefffffffffffffn;
const INF_S = 0x7f800000n;
const INF_D = 0x7ff0000000000000n;
const NEG_S = 0x80000000n;
const NEG_D = 0x8000000000000000n;

type Op2 = (rd: number, rs1: number, rs2: number, rm: number) => void;

/** Runs a two-operand double op on fresh state and returns [result bits, flags]. */
function d2(op: keyof Fpu, a: bigint, b: bigint, rm = RM_RNE): [bigint, number] {
  const h = new FpuHarness();
  h.setD(1, a);
  h.setD(2, b);
  (h.fpu[op] as Op2).call(h.fpu, 3, 1, 2, rm);
  return [h.getD(3), h.fpu.fflags];
}

function s2(op: keyof Fpu, a: bigint, b: bigint, rm = RM_RNE): [bigint, number] {
  const h = new FpuHarness();
  h.setS(1, a);
  h.setS(2, b);
  (h.fpu[op] as Op2).call(h.fpu, 3, 1, 2, rm);
  return [h.getS(3), h.fpu.fflags];
}

function d1(op: keyof Fpu, a: bigint, rm = RM_RNE): [bigint, number] {
  const h = new FpuHarness();
  h.setD(1, a);
  (h.fpu[op] as (rd: number, rs1: number, rm: number) => void).call(h.fpu, 3, 1, rm);
  return [h.getD(3), h.fpu.fflags];
}

function s1(op: keyof Fpu, a: bigint, rm = RM_RNE): [bigint, number] {
  const h = new FpuHarness();
  h.setS(1, a);
  (h.fpu[op] as (rd: number, rs1: number, rm: number) => void).call(h.fpu, 3, 1, rm);
  return [h.getS(3), h.fpu.fflags];
}

function d3(op: keyof Fpu, a: bigint, b: bigint, c: bigint, rm = RM_RNE): [bigint, number] {
  const h = new FpuHarness();
  h.setD(1, a);
  h.setD(2, b);
  h.setD(4, c);
  (h.fpu[op] as (rd: number, a: number, b: number, c: number, rm: number) => void).call(h.fpu, 3, 1, 2, 4, rm);
  return [h.getD(3), h.fpu.fflags];
}

function s3(op: keyof Fpu, a: bigint, b: bigint, c: bigint, rm = RM_RNE): [bigint, number] {
  const h = new FpuHarness();
  h.setS(1, a);
  h.setS(2, b);
  h.setS(4, c);
  (h.fpu[op] as (rd: number, a: number, b: number, c: number, rm: number) => void).call(h.fpu, 3, 1, 2, 4, rm);
  return [h.getS(3), h.fpu.fflags];
}

/** Float to integer: [64-bit signed result, flags]. */
function toInt(op: keyof Fpu, a: bigint, single: boolean, rm = RM_RNE): [bigint, number] {
  const h = new FpuHarness();
  if (single) h.setS(1, a);
  else h.setD(1, a);
  (h.fpu[op] as (rs1: number, rm: number) => void).call(h.fpu, 1, rm);
  return [h.res(), h.fpu.fflags];
}

/** Integer to float: [result bits, flags]. */
function fromInt(op: keyof Fpu, v: bigint, single: boolean, rm = RM_RNE): [bigint, number] {
  const h = new FpuHarness();
  const u = BigInt.asUintN(64, v);
  (h.fpu[op] as (rd: number, lo: number, hi: number, rm: number) => void).call(
    h.fpu,
    3,
    Number(u & 0xffffffffn) | 0,
    Number(u >> 32n) | 0,
    rm,
  );
  return [single ? h.getS(3) : h.getD(3), h.fpu.fflags];
}

describe('Fpu construction', () => {
  it('views the hart register file in place', () => {
    const regs = new Int32Array(80);
    const fpu = new Fpu(regs);
    fpu.fmvDX(5, 0x12345678, 0x3ff00000);
    expect(regs[10]).toBe(0x12345678);
    expect(regs[11]).toBe(0x3ff00000);
    fpu.fmvXD(5);
    expect([fpu.resLo, fpu.resHi]).toEqual([0x12345678, 0x3ff00000]);
  });
  it('rejects a register file that is too small or misaligned', () => {
    expect(() => new Fpu(new Int32Array(63))).toThrow(RangeError);
    expect(() => new Fpu(new Int32Array(new ArrayBuffer(4 + 256), 4, 64))).toThrow(RangeError);
  });
});

describe('NaN boxing (§12.2)', () => {
  it('an improperly boxed single reads as the canonical NaN', () => {
    const h = new FpuHarness();
    h.setD(1, 0x000000003f800000n); // 1.0f but upper half not all ones
    h.setS(2, S(1));
    h.fpu.faddS(3, 1, 2, RM_RNE);
    expect(h.getS(3)).toBe(QNAN_S);
    expect(h.fpu.fflags).toBe(0); // canonical NaN is quiet
    expect(h.fpu.fclassS(1)).toBe(1 << 9);
    expect(h.fpu.feqS(1, 2)).toBe(0);
    expect(h.fpu.fflags).toBe(0);
    expect(h.fpu.fltS(1, 2)).toBe(0);
    expect(h.fpu.fflags).toBe(FFLAG_NV);
  });
  it('upper bits that are almost all ones do not box', () => {
    const h = new FpuHarness();
    h.regs[2] = 0x3f800000;
    h.regs[3] = 0x7fffffff;
    expect(h.fpu.fclassS(1)).toBe(1 << 9);
  });
  it('single results are written boxed', () => {
    const h = new FpuHarness();
    h.setD(3, 0x123456789abcdefn);
    h.setS(1, S(1.5));
    h.setS(2, S(2.25));
    h.fpu.fmulS(3, 1, 2, RM_RNE);
    expect(h.regs[7]).toBe(-1);
    expect(h.getS(3)).toBe(S(3.375));
  });
  it('fmv.x.w moves raw low bits sign-extended, without unboxing', () => {
    const h = new FpuHarness();
    h.setD(1, 0x12345678_bf800000n);
    h.fpu.fmvXW(1);
    expect([h.fpu.resLo, h.fpu.resHi]).toEqual([0xbf800000 | 0, -1]);
    h.setD(1, 0xffffffff_3f800000n);
    h.fpu.fmvXW(1);
    expect([h.fpu.resLo, h.fpu.resHi]).toEqual([0x3f800000, 0]);
  });
  it('fmv.w.x boxes; fmv.d.x and fmv.x.d keep NaN payloads', () => {
    const h = new FpuHarness();
    h.fpu.fmvWX(4, 0x7f800001);
    expect(h.getS(4)).toBe(SNAN_S);
    h.fpu.fmvDX(5, 0x1, 0x7ff00000);
    expect(h.getD(5)).toBe(SNAN_D);
    h.fpu.fmvXD(5);
    expect(h.res()).toBe(BigInt.asIntN(64, SNAN_D));
  });
  it('sign injection of an unboxed single uses the canonical NaN', () => {
    const h = new FpuHarness();
    h.setD(1, 0n);
    h.setS(2, S(-1));
    h.fpu.fsgnjS(3, 1, 2);
    expect(h.getS(3)).toBe(QNAN_S | NEG_S);
    expect(h.fpu.fflags).toBe(0);
  });
  it('fcvt.d.s of an unboxed value gives the canonical double NaN', () => {
    const h = new FpuHarness();
    h.setD(1, 0x3ff0000000000000n);
    h.fpu.fcvtDS(3, 1, RM_RNE);
    expect(h.getD(3)).toBe(QNAN_D);
  });
});

describe('NaN results are canonical (§11.3)', () => {
  it('quiet NaN operands give the canonical NaN without NV', () => {
    expect(d2('faddD', 0xfff8000000001234n, D(1))).toEqual([QNAN_D, 0]);
    expect(s2('fmulS', 0xffc01234n, S(1))).toEqual([QNAN_S, 0]);
    expect(d1('fsqrtD', 0x7ff8dead00000000n)).toEqual([QNAN_D, 0]);
  });
  it('signaling NaN operands raise NV', () => {
    expect(d2('fsubD', D(1), SNAN_D)).toEqual([QNAN_D, FFLAG_NV]);
    expect(s2('fdivS', SNAN_S, S(1))).toEqual([QNAN_S, FFLAG_NV]);
    expect(s1('fsqrtS', SNAN_S)).toEqual([QNAN_S, FFLAG_NV]);
  });
  it('invalid operations produce the canonical NaN with NV', () => {
    expect(d2('faddD', INF_D, INF_D | NEG_D)).toEqual([QNAN_D, FFLAG_NV]);
    expect(d2('fmulD', INF_D, 0n)).toEqual([QNAN_D, FFLAG_NV]);
    expect(s2('fmulS', NEG_S, INF_S)).toEqual([QNAN_S, FFLAG_NV]);
    expect(d2('fdivD', 0n, NEG_D)).toEqual([QNAN_D, FFLAG_NV]);
    expect(s2('fdivS', INF_S, INF_S | NEG_S)).toEqual([QNAN_S, FFLAG_NV]);
    expect(d1('fsqrtD', D(-1))).toEqual([QNAN_D, FFLAG_NV]);
    expect(s1('fsqrtS', INF_S | NEG_S)).toEqual([QNAN_S, FFLAG_NV]);
  });
  it('conversions between formats canonicalize NaNs', () => {
    const h = new FpuHarness();
    h.setD(1, 0x7ff0000000000abcn); // sNaN
    h.fpu.fcvtSD(3, 1, RM_RNE);
    expect([h.getS(3), h.fpu.fflags]).toEqual([QNAN_S, FFLAG_NV]);
    h.fpu.fflags = 0;
    h.setS(1, 0xffc00abcn); // qNaN with payload
    h.fpu.fcvtDS(3, 1, RM_RNE);
    expect([h.getD(3), h.fpu.fflags]).toEqual([QNAN_D, 0]);
  });
});

describe('signed zeros (IEEE 754 §6.3)', () => {
  it('an exact zero sum is +0, or -0 when rounding down', () => {
    for (const rm of ALL_RM) {
      const z = rm === RM_RDN ? NEG_D : 0n;
      expect(d2('faddD', 0n, NEG_D, rm)).toEqual([z, 0]);
      expect(d2('fsubD', D(1.5), D(1.5), rm)).toEqual([z, 0]);
      expect(s2('faddS', S(-2), S(2), rm)).toEqual([rm === RM_RDN ? NEG_S : 0n, 0]);
      // x + x keeps the sign of zero in every mode.
      expect(d2('faddD', NEG_D, NEG_D, rm)).toEqual([NEG_D, 0]);
      expect(d2('fsubD', 0n, NEG_D, rm)).toEqual([0n, 0]);
      expect(s2('faddS', 0n, 0n, rm)).toEqual([0n, 0]);
    }
  });
  it('products, quotients and roots of zeros carry the right sign', () => {
    expect(d2('fmulD', NEG_D, D(5))).toEqual([NEG_D, 0]);
    expect(d2('fmulD', NEG_D, D(-5))).toEqual([0n, 0]);
    expect(s2('fdivS', 0n, S(-3))).toEqual([NEG_S, 0]);
    expect(d1('fsqrtD', NEG_D)).toEqual([NEG_D, 0]);
    expect(s1('fsqrtS', NEG_S)).toEqual([NEG_S, 0]);
  });
  it('fma with an exact zero product follows the addition rule', () => {
    expect(d3('fmaddD', 0n, D(3), NEG_D)).toEqual([0n, 0]);
    expect(d3('fmaddD', NEG_D, D(3), NEG_D)).toEqual([NEG_D, 0]);
    expect(d3('fmaddD', 0n, D(3), 0n, RM_RDN)).toEqual([0n, 0]);
    expect(d3('fmsubD', 0n, D(3), 0n, RM_RDN)).toEqual([NEG_D, 0]);
    expect(s3('fmaddS', S(2), S(3), S(-6), RM_RDN)).toEqual([NEG_S, 0]);
    expect(s3('fmaddS', S(2), S(3), S(-6), RM_RNE)).toEqual([0n, 0]);
    expect(d3('fnmaddD', D(2), D(3), D(-6), RM_RNE)).toEqual([0n, 0]);
  });
});

describe('rounding modes', () => {
  const one = 0x3ff0000000000000n;
  it('double addition: 1 + 2^-60 and -(1 + 2^-60)', () => {
    const tiny = D(2 ** -60);
    const want: Record<number, bigint> = { [RM_RNE]: one, [RM_RTZ]: one, [RM_RDN]: one, [RM_RUP]: one + 1n, [RM_RMM]: one };
    for (const rm of ALL_RM) {
      expect(d2('faddD', one, tiny, rm)).toEqual([want[rm], FFLAG_NX]);
      const nwant = rm === RM_RDN ? one + 1n : one;
      expect(d2('fsubD', one | NEG_D, tiny, rm)).toEqual([nwant | NEG_D, FFLAG_NX]);
    }
  });
  it('ties: RNE to even, RMM away from zero', () => {
    // 1 + 2^-53 is exactly half an ulp above 1.
    const half = D(2 ** -53);
    expect(d2('faddD', one, half, RM_RNE)).toEqual([one, FFLAG_NX]);
    expect(d2('faddD', one, half, RM_RMM)).toEqual([one + 1n, FFLAG_NX]);
    expect(d2('fsubD', one | NEG_D, half, RM_RMM)).toEqual([(one + 1n) | NEG_D, FFLAG_NX]);
    // (1 + 2^-52) + 2^-53: tie with an odd neighbour below, both modes go up.
    expect(d2('faddD', one + 1n, half, RM_RNE)).toEqual([one + 2n, FFLAG_NX]);
    expect(d2('faddD', one + 1n, half, RM_RMM)).toEqual([one + 2n, FFLAG_NX]);
    // Single: 1 + 2^-24.
    expect(s2('faddS', S(1), S(2 ** -24), RM_RNE)).toEqual([S(1), FFLAG_NX]);
    expect(s2('faddS', S(1), S(2 ** -24), RM_RMM)).toEqual([S(1) + 1n, FFLAG_NX]);
    expect(s2('faddS', S(1), S(2 ** -24), RM_RUP)).toEqual([S(1) + 1n, FFLAG_NX]);
    expect(s2('faddS', S(1), S(2 ** -24), RM_RTZ)).toEqual([S(1), FFLAG_NX]);
  });
  it('a single sum whose tail is lost in double still rounds in the right direction', () => {
    // 1 ± 2^-80 is not a double: the tail must still decide the directed modes.
    expect(s2('faddS', S(1), S(2 ** -80), RM_RNE)).toEqual([S(1), FFLAG_NX]);
    expect(s2('faddS', S(1), S(2 ** -80), RM_RUP)).toEqual([S(1) + 1n, FFLAG_NX]);
    expect(s2('faddS', S(1), S(2 ** -80), RM_RDN)).toEqual([S(1), FFLAG_NX]);
    expect(s2('fsubS', S(1), S(2 ** -80), RM_RTZ)).toEqual([0x3f7fffffn, FFLAG_NX]);
    expect(s2('fsubS', S(1), S(2 ** -80), RM_RNE)).toEqual([S(1), FFLAG_NX]);
    expect(s2('fsubS', S(-1), S(2 ** -80), RM_RUP)).toEqual([0xbf800000n, FFLAG_NX]);
    expect(s2('fsubS', S(-1), S(2 ** -80), RM_RDN)).toEqual([0xbf800001n, FFLAG_NX]);
  });
  it('sqrt(2) in every mode', () => {
    const lo = 0x3ff6a09e667f3bccn; // sqrt(2) lies between these two
    const hi = 0x3ff6a09e667f3bcdn;
    const want: Record<number, bigint> = { [RM_RNE]: hi, [RM_RTZ]: lo, [RM_RDN]: lo, [RM_RUP]: hi, [RM_RMM]: hi };
    for (const rm of ALL_RM) expect(d1('fsqrtD', D(2), rm)).toEqual([want[rm], FFLAG_NX]);
    expect(d1('fsqrtD', D(2.25))).toEqual([D(1.5), 0]);
    expect(s1('fsqrtS', S(2), RM_RTZ)).toEqual([0x3fb504f3n, FFLAG_NX]);
    expect(s1('fsqrtS', S(2), RM_RUP)).toEqual([0x3fb504f4n, FFLAG_NX]);
  });
  it('division 1/3 in every mode', () => {
    const dn = 0x3fd5555555555555n; // below 1/3; RNE also picks it (…5555 vs …5556)
    for (const rm of ALL_RM) {
      const want = rm === RM_RUP ? dn + 1n : dn;
      expect(d2('fdivD', D(1), D(3), rm)).toEqual([want, FFLAG_NX]);
      const nwant = rm === RM_RDN ? dn + 1n : dn;
      expect(d2('fdivD', D(-1), D(3), rm)).toEqual([nwant | NEG_D, FFLAG_NX]);
    }
    expect(s2('fdivS', S(1), S(3), RM_RNE)).toEqual([0x3eaaaaabn, FFLAG_NX]);
    expect(s2('fdivS', S(1), S(3), RM_RTZ)).toEqual([0x3eaaaaaan, FFLAG_NX]);
  });
});

describe('overflow: infinity or the largest finite number by mode (IEEE 754 §7.4)', () => {
  it('double and single, both signs', () => {
    const toInf = (rm: number, neg: boolean) => rm === RM_RNE || rm === RM_RMM || (rm === RM_RUP && !neg) || (rm === RM_RDN && neg);
    for (const rm of ALL_RM) {
      for (const neg of [false, true]) {
        const sd = neg ? NEG_D : 0n;
        const ss = neg ? NEG_S : 0n;
        const wantD = (toInf(rm, neg) ? INF_D : MAX_D) | sd;
        const wantS = (toInf(rm, neg) ? INF_S : MAX_S) | ss;
        expect(d2('faddD', MAX_D | sd, MAX_D | sd, rm)).toEqual([wantD, FFLAG_OF | FFLAG_NX]);
        expect(d2('fmulD', D(2 ** 600) | sd, D(2 ** 600), rm)).toEqual([wantD, FFLAG_OF | FFLAG_NX]);
        expect(d2('fdivD', D(2 ** 1000) | sd, D(2 ** -100), rm)).toEqual([wantD, FFLAG_OF | FFLAG_NX]);
        expect(s2('fmulS', MAX_S | ss, S(2), rm)).toEqual([wantS, FFLAG_OF | FFLAG_NX]);
        expect(s3('fmaddS', MAX_S | ss, S(1.5), 0n, rm)).toEqual([wantS, FFLAG_OF | FFLAG_NX]);
        const h = new FpuHarness();
        h.setD(1, D(1e39) | sd);
        h.fpu.fcvtSD(3, 1, rm);
        expect([h.getS(3), h.fpu.fflags]).toEqual([wantS, FFLAG_OF | FFLAG_NX]);
      }
    }
  });
  it('just above the largest finite: overflow only where the mode rounds up', () => {
    // MAX + 2^970 (a quarter ulp): RNE and RTZ give MAX without overflow, RUP overflows.
    const q = D(2 ** 969);
    expect(d2('faddD', MAX_D, q, RM_RNE)).toEqual([MAX_D, FFLAG_NX]);
    expect(d2('faddD', MAX_D, q, RM_RTZ)).toEqual([MAX_D, FFLAG_NX]);
    expect(d2('faddD', MAX_D, q, RM_RUP)).toEqual([INF_D, FFLAG_OF | FFLAG_NX]);
    // MAX + half an ulp is a tie: RNE goes to the even neighbour, 2^1024, which overflows.
    expect(d2('faddD', MAX_D, D(2 ** 970), RM_RNE)).toEqual([INF_D, FFLAG_OF | FFLAG_NX]);
    expect(d2('faddD', MAX_D, D(2 ** 970), RM_RTZ)).toEqual([MAX_D, FFLAG_NX]);
  });
  it('sums of operands near the largest finite (where TwoSum itself would overflow)', () => {
    // 0x7fd6c90b722a00af - MAX: r - a in TwoSum rounds past MAX; found by the property test.
    expect(d2('fsubD', 0x7fd6c90b722a00afn, MAX_D, RM_RUP)).toEqual([0xffe49b7a46eaffa7n, FFLAG_NX]);
    expect(d2('fsubD', 0x7fd6c90b722a00afn, MAX_D, RM_RDN)).toEqual([0xffe49b7a46eaffa8n, FFLAG_NX]);
  });
  it('infinite operands are exact, and x/0 raises DZ', () => {
    expect(d2('faddD', INF_D, MAX_D)).toEqual([INF_D, 0]);
    expect(d2('fdivD', D(1), 0n)).toEqual([INF_D, FFLAG_DZ]);
    expect(d2('fdivD', D(-1), 0n)).toEqual([INF_D | NEG_D, FFLAG_DZ]);
    expect(s2('fdivS', S(1), NEG_S)).toEqual([INF_S | NEG_S, FFLAG_DZ]);
    expect(d2('fdivD', INF_D, 0n)).toEqual([INF_D, 0]);
    expect(d2('fdivD', D(1), INF_D)).toEqual([0n, 0]);
    expect(d1('fsqrtD', INF_D)).toEqual([INF_D, 0]);
  });
});

describe('underflow is detected after rounding (RISC-V, IEEE 754 §7.5)', () => {
  it('single: tiny before rounding but not after gives NX only', () => {
    // (1 + 2^-23) * (2^-126 - 2^-149) = 2^-126 - 2^-172.
    const a = 0x3f800001n;
    const b = 0x007fffffn;
    expect(s2('fmulS', a, b, RM_RNE)).toEqual([0x00800000n, FFLAG_NX]);
    expect(s2('fmulS', a, b, RM_RUP)).toEqual([0x00800000n, FFLAG_NX]);
    expect(s2('fmulS', a, b, RM_RTZ)).toEqual([0x007fffffn, FFLAG_UF | FFLAG_NX]);
    expect(s2('fmulS', a, b, RM_RDN)).toEqual([0x007fffffn, FFLAG_UF | FFLAG_NX]);
  });
  it('single: tiny after rounding even when the subnormal result rounds up to 2^-126', () => {
    // (1 - 2^-24) * 2^-126 = 2^-126 - 2^-150: exact at 24 bits, a tie on the subnormal grid.
    expect(s2('fmulS', 0x3f7fffffn, 0x00800000n, RM_RNE)).toEqual([0x00800000n, FFLAG_UF | FFLAG_NX]);
  });
  it('single via fcvt.s.d: 2^-126 - 2^-152', () => {
    const h = new FpuHarness();
    h.setD(1, D(2 ** -126 - 2 ** -152));
    h.fpu.fcvtSD(3, 1, RM_RNE);
    expect([h.getS(3), h.fpu.fflags]).toEqual([0x00800000n, FFLAG_NX]);
    h.fpu.fflags = 0;
    h.fpu.fcvtSD(3, 1, RM_RTZ);
    expect([h.getS(3), h.fpu.fflags]).toEqual([0x007fffffn, FFLAG_UF | FFLAG_NX]);
  });
  it('double: (1 + 2^-52) * (2^-1022 - 2^-1074) = 2^-1022 - 2^-1126', () => {
    const a = 0x3ff0000000000001n;
    const b = 0x000fffffffffffffn;
    expect(d2('fmulD', a, b, RM_RNE)).toEqual([0x0010000000000000n, FFLAG_NX]);
    expect(d2('fmulD', a, b, RM_RMM)).toEqual([0x0010000000000000n, FFLAG_NX]);
    expect(d2('fmulD', a, b, RM_RTZ)).toEqual([0x000fffffffffffffn, FFLAG_UF | FFLAG_NX]);
    expect(d3('fmaddD', a, b, 0n, RM_RNE)).toEqual([0x0010000000000000n, FFLAG_NX]);
  });
  it('double: (1 - 2^-53) * 2^-1022 is tiny after rounding too', () => {
    expect(d2('fmulD', 0x3fefffffffffffffn, 0x0010000000000000n, RM_RNE)).toEqual([0x0010000000000000n, FFLAG_UF | FFLAG_NX]);
  });
  it('exact subnormal results raise nothing; results that flush to zero raise UF and NX', () => {
    expect(d2('fsubD', 0x0010000000000000n, 0x000fffffffffffffn)).toEqual([1n, 0]);
    expect(d2('fmulD', D(2 ** -1000), D(2 ** -74))).toEqual([1n, 0]);
    expect(d2('fmulD', D(2 ** -1000), D(2 ** -80))).toEqual([0n, FFLAG_UF | FFLAG_NX]);
    expect(d2('fmulD', D(2 ** -1000), D(2 ** -80), RM_RUP)).toEqual([1n, FFLAG_UF | FFLAG_NX]);
    expect(d2('fmulD', D(-(2 ** -1000)), D(2 ** -80), RM_RDN)).toEqual([1n | NEG_D, FFLAG_UF | FFLAG_NX]);
    expect(s2('fmulS', S(2 ** -100), S(2 ** -60))).toEqual([0n, FFLAG_UF | FFLAG_NX]);
    expect(s2('fdivS', S(2 ** -100), S(2 ** 40), RM_RUP)).toEqual([S(2 ** -140), 0]); // exact subnormal
    expect(s2('fdivS', S(2 ** -100), S(2 ** 60), RM_RUP)).toEqual([1n, FFLAG_UF | FFLAG_NX]);
  });
  it('subnormal operands are handled exactly', () => {
    expect(d1('fsqrtD', 1n)).toEqual([D(2 ** -537), 0]);
    expect(d2('fdivD', 1n, D(0.5))).toEqual([2n, 0]);
    expect(d2('fmulD', 3n, D(0.5))).toEqual([2n, FFLAG_UF | FFLAG_NX]); // 1.5 ulp: tie to even
    expect(s1('fsqrtS', 1n)).toEqual([S(Math.sqrt(2 ** -149)), FFLAG_NX]);
  });
});

describe('fused multiply-add rounds once', () => {
  it('double: (1 + 2^-27)^2 - 1 keeps the 2^-54 the product loses', () => {
    const a = D(1 + 2 ** -27);
    expect(d3('fmaddD', a, a, D(-1))).toEqual([D(2 ** -26 + 2 ** -54), 0]);
    expect(d3('fmsubD', a, a, D(1))).toEqual([D(2 ** -26 + 2 ** -54), 0]);
    expect(d3('fnmsubD', a, a, D(1))).toEqual([D(-(2 ** -26 + 2 ** -54)), 0]);
    expect(d3('fnmaddD', a, a, D(-1))).toEqual([D(-(2 ** -26 + 2 ** -54)), 0]);
  });
  it('double in directed modes: the product is inexact in double', () => {
    // (1 + 2^-52)(1 - 2^-53) = 1 + 2^-53 - 2^-105: just below the tie at 1 + 2^-53.
    const a = 0x3ff0000000000001n;
    const b = 0x3fefffffffffffffn;
    const one = D(1);
    expect(d3('fmaddD', a, b, 0n, RM_RNE)).toEqual([one, FFLAG_NX]);
    expect(d3('fmaddD', a, b, 0n, RM_RTZ)).toEqual([one, FFLAG_NX]);
    expect(d3('fmaddD', a, b, 0n, RM_RUP)).toEqual([one + 1n, FFLAG_NX]);
    expect(d3('fmaddD', a, b, 0n, RM_RMM)).toEqual([one, FFLAG_NX]);
    expect(d3('fnmaddD', a, b, 0n, RM_RDN)).toEqual([(one + 1n) | NEG_D, FFLAG_NX]);
    // Subtract 1: the exact 2^-53 - 2^-105 is representable.
    expect(d3('fmaddD', a, b, D(-1), RM_RDN)).toEqual([D(2 ** -53 - 2 ** -105), 0]);
  });
  it('single: a tie in double is not a tie for the exact sum', () => {
    // (1 + 2^-12)^2 + 2^-80 = 1 + 2^-11 + 2^-24 + 2^-80: just above a single tie.
    const a = S(1 + 2 ** -12);
    expect(s3('fmaddS', a, a, S(2 ** -80))).toEqual([0x3f801001n, FFLAG_NX]);
    expect(s3('fmaddS', a, a, S(-(2 ** -80)))).toEqual([0x3f801000n, FFLAG_NX]);
    expect(s3('fmaddS', a, a, 0n)).toEqual([0x3f801000n, FFLAG_NX]); // exact tie: to even
    expect(s3('fmaddS', a, a, 0n, RM_RMM)).toEqual([0x3f801001n, FFLAG_NX]);
  });
  it('inf * 0 raises NV even when the addend is a quiet NaN (§11.6)', () => {
    expect(d3('fmaddD', INF_D, 0n, QNAN_D)).toEqual([QNAN_D, FFLAG_NV]);
    expect(s3('fmaddS', 0n, INF_S | NEG_S, QNAN_S)).toEqual([QNAN_S, FFLAG_NV]);
    expect(d3('fmaddD', D(1), D(2), QNAN_D)).toEqual([QNAN_D, 0]);
    expect(d3('fmaddD', D(1), D(2), SNAN_D)).toEqual([QNAN_D, FFLAG_NV]);
  });
  it('infinities: inf*x - inf is invalid, finite overflowing product + inf is inf', () => {
    expect(d3('fmsubD', INF_D, D(2), INF_D)).toEqual([QNAN_D, FFLAG_NV]);
    expect(d3('fmaddD', INF_D, D(-2), INF_D | NEG_D)).toEqual([INF_D | NEG_D, 0]);
    expect(d3('fmaddD', MAX_D, D(4), INF_D | NEG_D)).toEqual([INF_D | NEG_D, 0]);
    expect(s3('fnmaddS', INF_S, S(2), INF_S | NEG_S)).toEqual([QNAN_S, FFLAG_NV]);
  });
});

describe('fmin / fmax (2019 semantics: minimumNumber, maximumNumber)', () => {
  it('-0 is less than +0, in either operand order', () => {
    expect(d2('fminD', 0n, NEG_D)).toEqual([NEG_D, 0]);
    expect(d2('fminD', NEG_D, 0n)).toEqual([NEG_D, 0]);
    expect(d2('fmaxD', 0n, NEG_D)).toEqual([0n, 0]);
    expect(d2('fmaxD', NEG_D, 0n)).toEqual([0n, 0]);
    expect(s2('fminS', 0n, NEG_S)).toEqual([NEG_S, 0]);
    expect(s2('fmaxS', NEG_S, 0n)).toEqual([0n, 0]);
  });
  it('one NaN gives the other operand; NV only for sNaN', () => {
    expect(d2('fminD', QNAN_D, D(3))).toEqual([D(3), 0]);
    expect(d2('fmaxD', D(-3), QNAN_D)).toEqual([D(-3), 0]);
    expect(d2('fminD', SNAN_D, D(3))).toEqual([D(3), FFLAG_NV]);
    expect(s2('fmaxS', S(2), SNAN_S)).toEqual([S(2), FFLAG_NV]);
    expect(s2('fminS', QNAN_S, S(-1))).toEqual([S(-1), 0]);
  });
  it('two NaNs give the canonical NaN', () => {
    expect(d2('fminD', 0x7ff8000000000123n, QNAN_D | NEG_D)).toEqual([QNAN_D, 0]);
    expect(d2('fmaxD', SNAN_D, SNAN_D)).toEqual([QNAN_D, FFLAG_NV]);
    expect(s2('fminS', 0xffc00001n, SNAN_S)).toEqual([QNAN_S, FFLAG_NV]);
  });
  it('ordinary values, infinities and an unboxed operand', () => {
    expect(d2('fminD', D(1), D(2))).toEqual([D(1), 0]);
    expect(d2('fmaxD', D(1), D(2))).toEqual([D(2), 0]);
    expect(d2('fminD', INF_D | NEG_D, MAX_D | NEG_D)).toEqual([INF_D | NEG_D, 0]);
    const h = new FpuHarness();
    h.setD(1, 0x3ff0000000000000n); // not a boxed single: reads as qNaN
    h.setS(2, S(7));
    h.fpu.fminS(3, 1, 2);
    expect([h.getS(3), h.fpu.fflags]).toEqual([S(7), 0]);
  });
});

describe('compares (§11.8)', () => {
  it('feq signals only on sNaN; flt and fle on any NaN', () => {
    const h = new FpuHarness();
    const cases: [string, bigint, bigint, number, number][] = [
      ['feqD', QNAN_D, D(1), 0, 0],
      ['feqD', SNAN_D, D(1), 0, FFLAG_NV],
      ['fltD', QNAN_D, D(1), 0, FFLAG_NV],
      ['fleD', D(1), QNAN_D, 0, FFLAG_NV],
      ['feqD', 0n, NEG_D, 1, 0],
      ['fltD', NEG_D, 0n, 0, 0],
      ['fleD', NEG_D, 0n, 1, 0],
      ['fltD', D(1), D(2), 1, 0],
      ['fleD', D(2), D(1), 0, 0],
      ['fltD', INF_D | NEG_D, MAX_D | NEG_D, 1, 0],
    ];
    for (const [op, a, b, want, flags] of cases) {
      h.fpu.fflags = 0;
      h.setD(1, a);
      h.setD(2, b);
      expect([(h.fpu[op as 'feqD'] as (a: number, b: number) => number).call(h.fpu, 1, 2), h.fpu.fflags], `${op} ${a} ${b}`).toEqual([
        want,
        flags,
      ]);
    }
    const sc: [string, bigint, bigint, number, number][] = [
      ['feqS', QNAN_S, S(1), 0, 0],
      ['feqS', SNAN_S, S(1), 0, FFLAG_NV],
      ['fltS', S(1), QNAN_S, 0, FFLAG_NV],
      ['fleS', QNAN_S, QNAN_S, 0, FFLAG_NV],
      ['feqS', 0n, NEG_S, 1, 0],
      ['fltS', S(-1), S(1), 1, 0],
      ['fleS', S(1), S(1), 1, 0],
    ];
    for (const [op, a, b, want, flags] of sc) {
      h.fpu.fflags = 0;
      h.setS(1, a);
      h.setS(2, b);
      expect([(h.fpu[op as 'feqS'] as (a: number, b: number) => number).call(h.fpu, 1, 2), h.fpu.fflags], `${op} ${a} ${b}`).toEqual([
        want,
        flags,
      ]);
    }
  });
});

describe('fclass (§11.9)', () => {
  it('all ten classes, single and double', () => {
    const d: [bigint, number][] = [
      [INF_D | NEG_D, 0],
      [D(-1), 1],
      [1n | NEG_D, 2],
      [NEG_D, 3],
      [0n, 4],
      [1n, 5],
      [D(1), 6],
      [INF_D, 7],
      [SNAN_D, 8],
      [QNAN_D, 9],
    ];
    const s: [bigint, number][] = [
      [INF_S | NEG_S, 0],
      [S(-1), 1],
      [0x807fffffn, 2],
      [NEG_S, 3],
      [0n, 4],
      [0x00400000n, 5],
      [MAX_S, 6],
      [INF_S, 7],
      [0xff800001n, 8],
      [0xffc00000n, 9],
    ];
    const h = new FpuHarness();
    for (const [bits, cls] of d) {
      h.setD(1, bits);
      expect(h.fpu.fclassD(1)).toBe(1 << cls);
    }
    for (const [bits, cls] of s) {
      h.setS(1, bits);
      expect(h.fpu.fclassS(1)).toBe(1 << cls);
    }
    expect(h.fpu.fflags).toBe(0);
  });
});

describe('sign injection is a pure bit operation', () => {
  it('double, NaN payloads untouched, rd may alias a source', () => {
    const h = new FpuHarness();
    h.setD(1, 0x7ff0000000000abcn);
    h.setD(2, D(-2));
    h.fpu.fsgnjD(3, 1, 2);
    expect(h.getD(3)).toBe(0xfff0000000000abcn);
    h.fpu.fsgnjnD(3, 1, 2);
    expect(h.getD(3)).toBe(0x7ff0000000000abcn);
    h.fpu.fsgnjxD(3, 2, 2);
    expect(h.getD(3)).toBe(D(2));
    h.fpu.fsgnjxD(2, 2, 1); // fabs-like in place: -2 xor + = -2
    expect(h.getD(2)).toBe(D(-2));
    expect(h.fpu.fflags).toBe(0);
  });
  it('single', () => {
    const h = new FpuHarness();
    h.setS(1, SNAN_S);
    h.setS(2, S(-1));
    h.fpu.fsgnjS(3, 1, 2);
    expect(h.getS(3)).toBe(SNAN_S | NEG_S);
    h.fpu.fsgnjnS(3, 2, 2); // fneg
    expect(h.getS(3)).toBe(S(1));
    h.fpu.fsgnjxS(3, 2, 2); // fabs
    expect(h.getS(3)).toBe(S(1));
    expect(h.fpu.fflags).toBe(0);
  });
});

describe('float to integer: saturating (§11.7 Table 11.4)', () => {
  const MAXW = 2147483647n;
  const MINW = -2147483648n;
  it('fcvt.w.s corners', () => {
    expect(toInt('fcvtWS', S(2 ** 31), true)).toEqual([MAXW, FFLAG_NV]);
    expect(toInt('fcvtWS', S(-(2 ** 31)), true)).toEqual([MINW, 0]);
    expect(toInt('fcvtWS', S(-(2 ** 31) - 256), true)).toEqual([MINW, FFLAG_NV]);
    expect(toInt('fcvtWS', QNAN_S, true)).toEqual([MAXW, FFLAG_NV]);
    expect(toInt('fcvtWS', 0xffc00000n, true)).toEqual([MAXW, FFLAG_NV]); // negative NaN too
    expect(toInt('fcvtWS', INF_S | NEG_S, true)).toEqual([MINW, FFLAG_NV]);
    expect(toInt('fcvtWS', INF_S, true)).toEqual([MAXW, FFLAG_NV]);
    expect(toInt('fcvtWS', S(-1.5), true, RM_RTZ)).toEqual([-1n, FFLAG_NX]);
  });
  it('fcvt.w.d at and beyond the bounds', () => {
    expect(toInt('fcvtWD', D(2147483647.4), false)).toEqual([MAXW, FFLAG_NX]);
    expect(toInt('fcvtWD', D(2147483647.5), false)).toEqual([MAXW, FFLAG_NV]); // rounds to 2^31
    expect(toInt('fcvtWD', D(2147483647.5), false, RM_RTZ)).toEqual([MAXW, FFLAG_NX]);
    expect(toInt('fcvtWD', D(-2147483649), false)).toEqual([MINW, FFLAG_NV]);
    expect(toInt('fcvtWD', D(-2147483648.5), false)).toEqual([MINW, FFLAG_NX]); // tie to even
    expect(toInt('fcvtWD', D(-2147483648.5), false, RM_RDN)).toEqual([MINW, FFLAG_NV]);
    expect(toInt('fcvtWD', D(-2147483648.5), false, RM_RMM)).toEqual([MINW, FFLAG_NV]);
  });
  it('rounding modes on halves', () => {
    const cases: [number, number, bigint][] = [
      [2.5, RM_RNE, 2n],
      [3.5, RM_RNE, 4n],
      [-2.5, RM_RNE, -2n],
      [2.5, RM_RMM, 3n],
      [-2.5, RM_RMM, -3n],
      [2.5, RM_RTZ, 2n],
      [-2.5, RM_RTZ, -2n],
      [2.5, RM_RDN, 2n],
      [-2.5, RM_RDN, -3n],
      [2.5, RM_RUP, 3n],
      [-2.5, RM_RUP, -2n],
      [0.4, RM_RUP, 1n],
      [-0.4, RM_RDN, -1n],
    ];
    for (const [x, rm, want] of cases) {
      expect(toInt('fcvtWD', D(x), false, rm), `${x} rm ${rm}`).toEqual([want, FFLAG_NX]);
      expect(toInt('fcvtLS', S(x), true, rm), `${x} rm ${rm}`).toEqual([want, FFLAG_NX]);
    }
  });
  it('fcvt.wu.d of -0.5: RUP gives 0 (inexact), RDN is invalid', () => {
    expect(toInt('fcvtWUD', D(-0.5), false, RM_RUP)).toEqual([0n, FFLAG_NX]);
    expect(toInt('fcvtWUD', D(-0.5), false, RM_RTZ)).toEqual([0n, FFLAG_NX]);
    expect(toInt('fcvtWUD', D(-0.5), false, RM_RNE)).toEqual([0n, FFLAG_NX]);
    expect(toInt('fcvtWUD', D(-0.5), false, RM_RDN)).toEqual([0n, FFLAG_NV]);
    expect(toInt('fcvtWUD', D(-0.5), false, RM_RMM)).toEqual([0n, FFLAG_NV]);
    expect(toInt('fcvtWUD', NEG_D, false)).toEqual([0n, 0]);
    expect(toInt('fcvtWUD', D(-1), false)).toEqual([0n, FFLAG_NV]);
  });
  it('fcvt.wu results are sign-extended from 32 bits', () => {
    expect(toInt('fcvtWUD', D(3e9), false)).toEqual([BigInt.asIntN(32, 3000000000n), 0]);
    expect(toInt('fcvtWUD', D(2 ** 32), false)).toEqual([-1n, FFLAG_NV]);
    expect(toInt('fcvtWUS', QNAN_S, true)).toEqual([-1n, FFLAG_NV]);
    expect(toInt('fcvtWUS', INF_S | NEG_S, true)).toEqual([0n, FFLAG_NV]);
    expect(toInt('fcvtWUD', D(4294967295.4), false)).toEqual([-1n, FFLAG_NX]);
  });
  it('64-bit conversions', () => {
    const MAXL = (1n << 63n) - 1n;
    const MINL = -(1n << 63n);
    expect(toInt('fcvtLD', D(2 ** 63), false)).toEqual([MAXL, FFLAG_NV]);
    expect(toInt('fcvtLD', D(-(2 ** 63)), false)).toEqual([MINL, 0]);
    expect(toInt('fcvtLD', 0xc3e0000000000001n, false)).toEqual([MINL, FFLAG_NV]); // just below -2^63
    expect(toInt('fcvtLD', 0x43dfffffffffffffn, false)).toEqual([(1n << 63n) - 1024n, 0]);
    expect(toInt('fcvtLD', D(-123456789012.75), false)).toEqual([-123456789013n, FFLAG_NX]);
    expect(toInt('fcvtLD', QNAN_D, false)).toEqual([MAXL, FFLAG_NV]);
    expect(toInt('fcvtLD', INF_D | NEG_D, false)).toEqual([MINL, FFLAG_NV]);
    expect(toInt('fcvtLUD', QNAN_D, false)).toEqual([-1n, FFLAG_NV]);
    expect(toInt('fcvtLUD', D(2 ** 64), false)).toEqual([-1n, FFLAG_NV]);
    expect(toInt('fcvtLUD', 0x43efffffffffffffn, false)).toEqual([BigInt.asIntN(64, (1n << 64n) - 2048n), 0]);
    expect(toInt('fcvtLUD', D(-0.75), false, RM_RTZ)).toEqual([0n, FFLAG_NX]);
    expect(toInt('fcvtLUD', D(-0.75), false)).toEqual([0n, FFLAG_NV]);
    expect(toInt('fcvtLUS', S(2 ** 63), true)).toEqual([BigInt.asIntN(64, 1n << 63n), 0]);
    expect(toInt('fcvtLS', S(-(2 ** 63)), true)).toEqual([MINL, 0]);
    expect(toInt('fcvtLS', S(2 ** 63), true)).toEqual([MAXL, FFLAG_NV]);
  });
});

describe('integer to float', () => {
  it('exact conversions raise nothing', () => {
    expect(fromInt('fcvtDW', -5n, false)).toEqual([D(-5), 0]);
    expect(fromInt('fcvtDWU', 0xffffffffn, false)).toEqual([D(4294967295), 0]);
    expect(fromInt('fcvtDL', -(1n << 63n), false)).toEqual([D(-(2 ** 63)), 0]);
    expect(fromInt('fcvtSW', -(1n << 31n), true)).toEqual([S(-(2 ** 31)), 0]);
    expect(fromInt('fcvtSW', 0n, true)).toEqual([0n, 0]);
    expect(fromInt('fcvtDLU', 0n, false)).toEqual([0n, 0]);
  });
  it('the W forms read only the low 32 bits', () => {
    expect(fromInt('fcvtDW', 0x12345678_fffffffen, false)).toEqual([D(-2), 0]);
    expect(fromInt('fcvtSWU', 0xdeadbeef_00000010n, true)).toEqual([S(16), 0]);
  });
  it('inexact conversions round per mode', () => {
    const t = (1n << 53n) + 1n; // halfway between 2^53 and 2^53 + 2
    expect(fromInt('fcvtDL', t, false, RM_RNE)).toEqual([D(2 ** 53), FFLAG_NX]);
    expect(fromInt('fcvtDL', t, false, RM_RMM)).toEqual([D(2 ** 53 + 2), FFLAG_NX]);
    expect(fromInt('fcvtDL', t, false, RM_RUP)).toEqual([D(2 ** 53 + 2), FFLAG_NX]);
    expect(fromInt('fcvtDL', -t, false, RM_RDN)).toEqual([D(-(2 ** 53) - 2), FFLAG_NX]);
    expect(fromInt('fcvtDL', -t, false, RM_RTZ)).toEqual([D(-(2 ** 53)), FFLAG_NX]);
    const all = (1n << 64n) - 1n;
    expect(fromInt('fcvtDLU', all, false, RM_RNE)).toEqual([D(2 ** 64), FFLAG_NX]);
    expect(fromInt('fcvtDLU', all, false, RM_RTZ)).toEqual([D(2 ** 64 - 2048), FFLAG_NX]);
    expect(fromInt('fcvtSLU', all, true, RM_RTZ)).toEqual([S(2 ** 64 - 2 ** 40), FFLAG_NX]);
    expect(fromInt('fcvtSW', 16777217n, true, RM_RNE)).toEqual([S(16777216), FFLAG_NX]);
    expect(fromInt('fcvtSW', 16777217n, true, RM_RUP)).toEqual([S(16777218), FFLAG_NX]);
    expect(fromInt('fcvtSWU', 0xffffffffn, true, RM_RNE)).toEqual([S(2 ** 32), FFLAG_NX]);
    // 2^24 + 1 + 2^-? cannot occur; but a 64-bit value just above a single tie:
    expect(fromInt('fcvtSL', (1n << 40n) + (1n << 16n) + 1n, true, RM_RNE)).toEqual([S(2 ** 40 + 2 ** 17), FFLAG_NX]);
    expect(fromInt('fcvtSL', (1n << 40n) + (1n << 16n), true, RM_RNE)).toEqual([S(2 ** 40), FFLAG_NX]);
  });
});

describe('flags accrue', () => {
  it('operations OR into fflags and never clear it', () => {
    const h = new FpuHarness();
    h.setD(1, D(1));
    h.setD(2, 0n);
    h.fpu.fdivD(3, 1, 2, RM_RNE);
    h.setD(2, D(3));
    h.fpu.fdivD(3, 1, 2, RM_RNE);
    h.fpu.fdivD(3, 2, 2, RM_RNE); // exact: adds nothing
    expect(h.fpu.fflags).toBe(FFLAG_DZ | FFLAG_NX);
  });
});

describe('destination may alias the sources', () => {
  it('every arithmetic op gives the same bits and flags with rd = rs1 = rs2 (= rs3)', async () => {
    const { Rng, randFloat, KD, KS } = await import('./test-harness.js');
    const rng = new Rng(99);
    const bins = ['faddS', 'fsubS', 'fmulS', 'fdivS', 'fminS', 'fmaxS', 'fsgnjxS', 'faddD', 'fsubD', 'fmulD', 'fdivD', 'fminD', 'fmaxD', 'fsgnjnD'] as const;
    const fmas = ['fmaddS', 'fnmsubS', 'fmaddD', 'fnmaddD'] as const;
    for (let n = 0; n < 300; n++) {
      for (const op of [...bins, ...fmas]) {
        const single = op.endsWith('S');
        const x = randFloat(rng, single ? KS : KD);
        const rm = rng.int(0, 4);
        const run = (alias: boolean): [bigint, number] => {
          const h = new FpuHarness();
          for (const i of [1, 2, 4]) (single ? h.setS(i, x) : h.setD(i, x));
          const rd = alias ? 1 : 3;
          const f = h.fpu as unknown as Record<string, (...a: number[]) => void>;
          if ((fmas as readonly string[]).includes(op)) f[op]!.call(h.fpu, rd, alias ? 1 : 1, alias ? 1 : 2, alias ? 1 : 4, rm);
          else f[op]!.call(h.fpu, rd, 1, alias ? 1 : 2, rm);
          return [single ? h.getS(rd) : h.getD(rd), h.fpu.fflags];
        };
        expect(run(true), `${op} ${x.toString(16)} rm ${rm}`).toEqual(run(false));
      }
    }
  });
});
