/**
 * Property tests: the FPU (fast paths, directed-mode fix-ups and BigInt slow paths alike)
 * against the exact rational reference, over seeded random operands in all five rounding
 * modes. Result bits and fflags must match exactly. Set FPU_SEED / FPU_CASES to vary.
 */
import { describe, expect, it } from 'vitest';
import * as ref from './reference.js';
import { FpuHarness, KD, KS, Rng, bitsOfD, bitsOfS, dOfBits, nearNeg, randFloat, sOfBits, type FloatKind } from './test-harness.js';

const SEED = Number(process.env.FPU_SEED ?? 0x5eed1234);
const CASES = Number(process.env.FPU_CASES ?? 2500);
const RMS = [0, 1, 2, 3, 4];

interface Failure {
  op: string;
  rm: number;
  inputs: string[];
  got: string;
  want: string;
}

const hex = (b: bigint) => '0x' + b.toString(16);

function check(fails: Failure[], op: string, rm: number, inputs: bigint[], got: bigint, gotFlags: number, want: ref.Result): void {
  if (got !== want.bits || gotFlags !== want.flags) {
    if (fails.length < 10) {
      fails.push({
        op,
        rm,
        inputs: inputs.map(hex),
        got: `${hex(got)} flags ${gotFlags.toString(2)}`,
        want: `${hex(want.bits)} flags ${want.flags.toString(2)}`,
      });
    }
  }
}

function fmtOf(k: FloatKind): ref.Fmt {
  return k === KS ? ref.F32 : ref.F64;
}

type Bin = 'add' | 'sub' | 'mul' | 'div';

function runBinary(k: FloatKind, op: Bin, seed: number): Failure[] {
  const h = new FpuHarness();
  const rng = new Rng(seed);
  const f = fmtOf(k);
  const fails: Failure[] = [];
  const S = k === KS;
  const set = (i: number, b: bigint) => (S ? h.setS(i, b) : h.setD(i, b));
  const get = (i: number) => (S ? h.getS(i) : h.getD(i));
  const fn = {
    add: S ? h.fpu.faddS : h.fpu.faddD,
    sub: S ? h.fpu.fsubS : h.fpu.fsubD,
    mul: S ? h.fpu.fmulS : h.fpu.fmulD,
    div: S ? h.fpu.fdivS : h.fpu.fdivD,
  }[op].bind(h.fpu);
  const rfn = { add: ref.refAdd, sub: ref.refSub, mul: ref.refMul, div: ref.refDiv }[op];
  for (let n = 0; n < CASES; n++) {
    const a = randFloat(rng, k);
    const b = (op === 'add' || op === 'sub') && rng.float() < 0.3 ? nearNeg(rng, k, op === 'sub' ? a ^ (1n << BigInt(k.width - 1)) : a) : randFloat(rng, k);
    for (const rm of RMS) {
      set(1, a);
      set(2, b);
      h.fpu.fflags = 0;
      fn(3, 1, 2, rm);
      check(fails, op, rm, [a, b], get(3), h.fpu.fflags, rfn(ref.decode(a, f), ref.decode(b, f), f, rm));
    }
  }
  return fails;
}

function runSqrt(k: FloatKind, seed: number): Failure[] {
  const h = new FpuHarness();
  const rng = new Rng(seed);
  const f = fmtOf(k);
  const fails: Failure[] = [];
  const S = k === KS;
  for (let n = 0; n < CASES; n++) {
    let a = randFloat(rng, k);
    if (rng.float() < 0.8) a &= ~(1n << BigInt(k.width - 1)); // mostly positive
    for (const rm of RMS) {
      if (S) h.setS(1, a);
      else h.setD(1, a);
      h.fpu.fflags = 0;
      if (S) h.fpu.fsqrtS(3, 1, rm);
      else h.fpu.fsqrtD(3, 1, rm);
      check(fails, 'sqrt', rm, [a], S ? h.getS(3) : h.getD(3), h.fpu.fflags, ref.refSqrt(ref.decode(a, f), f, rm));
    }
  }
  return fails;
}

const FMA_OPS = [
  ['fmadd', false, false],
  ['fmsub', false, true],
  ['fnmsub', true, false],
  ['fnmadd', true, true],
] as const;

function runFma(k: FloatKind, seed: number): Failure[] {
  const h = new FpuHarness();
  const rng = new Rng(seed);
  const f = fmtOf(k);
  const fails: Failure[] = [];
  const S = k === KS;
  const set = (i: number, b: bigint) => (S ? h.setS(i, b) : h.setD(i, b));
  for (let n = 0; n < CASES; n++) {
    const [name, negP, negC] = FMA_OPS[n & 3]!;
    const a = randFloat(rng, k);
    const b = randFloat(rng, k);
    let c = randFloat(rng, k);
    if (rng.float() < 0.4) {
      // Make c cancel most of a*b: the hard case for a fused operation.
      const pa = ref.decode(a, f);
      const pb = ref.decode(b, f);
      if (pa.kind === 'fin' && pb.kind === 'fin') {
        const prod = ref.roundRational(pa.neg !== pb.neg, pa.n * pb.n, pa.d * pb.d, f, rng.int(0, 4));
        let p = prod.bits;
        if (negP !== negC) p ^= 1n << BigInt(k.width - 1);
        c = nearNeg(rng, k, p);
      }
    }
    const fn = (S
      ? { fmadd: h.fpu.fmaddS, fmsub: h.fpu.fmsubS, fnmsub: h.fpu.fnmsubS, fnmadd: h.fpu.fnmaddS }
      : { fmadd: h.fpu.fmaddD, fmsub: h.fpu.fmsubD, fnmsub: h.fpu.fnmsubD, fnmadd: h.fpu.fnmaddD })[name].bind(h.fpu);
    for (const rm of RMS) {
      set(1, a);
      set(2, b);
      set(4, c);
      h.fpu.fflags = 0;
      fn(3, 1, 2, 4, rm);
      const want = ref.refFma(ref.decode(a, f), ref.decode(b, f), ref.decode(c, f), negP, negC, f, rm);
      check(fails, name, rm, [a, b, c], S ? h.getS(3) : h.getD(3), h.fpu.fflags, want);
    }
  }
  return fails;
}

function runCvtFF(seed: number): Failure[] {
  const h = new FpuHarness();
  const rng = new Rng(seed);
  const fails: Failure[] = [];
  for (let n = 0; n < CASES; n++) {
    // Doubles around the single range, including its subnormals and overflow threshold.
    const d = randFloat(rng, KD, { lo: -155, hi: 130 });
    const s = randFloat(rng, KS);
    for (const rm of RMS) {
      h.setD(1, d);
      h.fpu.fflags = 0;
      h.fpu.fcvtSD(3, 1, rm);
      check(fails, 'fcvt.s.d', rm, [d], h.getS(3), h.fpu.fflags, ref.refCvtFF(ref.decode(d, ref.F64), ref.F32, rm));
      h.setS(1, s);
      h.fpu.fflags = 0;
      h.fpu.fcvtDS(3, 1, rm);
      check(fails, 'fcvt.d.s', rm, [s], h.getD(3), h.fpu.fflags, ref.refCvtFF(ref.decode(s, ref.F32), ref.F64, rm));
    }
  }
  return fails;
}

function runCvtFI(k: FloatKind, seed: number): Failure[] {
  const h = new FpuHarness();
  const rng = new Rng(seed);
  const f = fmtOf(k);
  const fails: Failure[] = [];
  const S = k === KS;
  const ops = [
    ['w', 32, true, S ? h.fpu.fcvtWS : h.fpu.fcvtWD],
    ['wu', 32, false, S ? h.fpu.fcvtWUS : h.fpu.fcvtWUD],
    ['l', 64, true, S ? h.fpu.fcvtLS : h.fpu.fcvtLD],
    ['lu', 64, false, S ? h.fpu.fcvtLUS : h.fpu.fcvtLUD],
  ] as const;
  for (let n = 0; n < CASES; n++) {
    const a = randFloat(rng, k, { lo: -3, hi: 66 });
    for (const [name, width, signed, fn] of ops) {
      for (const rm of RMS) {
        if (S) h.setS(1, a);
        else h.setD(1, a);
        h.fpu.fflags = 0;
        fn.call(h.fpu, 1, rm);
        const want = ref.refCvtFI(ref.decode(a, f), width, signed, rm);
        // 32-bit results are sign-extended to 64 bits, unsigned ones too (§11.7).
        const wantBits = BigInt.asIntN(64, width === 32 ? BigInt.asIntN(32, want.value) : want.value);
        const got = h.res();
        if (got !== wantBits || h.fpu.fflags !== want.flags) {
          if (fails.length < 10) fails.push({ op: `fcvt.${name}`, rm, inputs: [hex(a)], got: `${got} flags ${h.fpu.fflags}`, want: `${wantBits} flags ${want.flags}` });
        }
      }
    }
  }
  return fails;
}

function runCvtIF(k: FloatKind, seed: number): Failure[] {
  const h = new FpuHarness();
  const rng = new Rng(seed);
  const f = fmtOf(k);
  const fails: Failure[] = [];
  const S = k === KS;
  const ops = [
    ['w', 32, true, S ? h.fpu.fcvtSW : h.fpu.fcvtDW],
    ['wu', 32, false, S ? h.fpu.fcvtSWU : h.fpu.fcvtDWU],
    ['l', 64, true, S ? h.fpu.fcvtSL : h.fpu.fcvtDL],
    ['lu', 64, false, S ? h.fpu.fcvtSLU : h.fpu.fcvtDLU],
  ] as const;
  for (let n = 0; n < CASES; n++) {
    // Integers of every bit length, some with short significands (exact or tie cases).
    const len = rng.int(0, 64);
    let x = rng.bits(64) & ((1n << BigInt(len)) - 1n);
    if (rng.float() < 0.4 && len > 2) x = (x >> BigInt(len - rng.int(1, 26))) << BigInt(len - rng.int(1, 26));
    x &= (1n << 64n) - 1n;
    if (rng.float() < 0.5) x = BigInt.asUintN(64, -x);
    const lo = Number(x & 0xffffffffn) | 0;
    const hi = Number(x >> 32n) | 0;
    for (const [name, width, signed, fn] of ops) {
      const v = width === 32 ? (signed ? BigInt.asIntN(32, x) : BigInt.asUintN(32, x)) : signed ? BigInt.asIntN(64, x) : x;
      for (const rm of RMS) {
        h.fpu.fflags = 0;
        fn.call(h.fpu, 3, lo, hi, rm);
        check(fails, `fcvt.${k === KS ? 's' : 'd'}.${name}`, rm, [x], S ? h.getS(3) : h.getD(3), h.fpu.fflags, ref.refCvtIF(v, f, rm));
      }
    }
  }
  return fails;
}

describe(`FPU against the exact reference (seed ${SEED}, ${CASES} operand sets x 5 modes)`, () => {
  for (const k of [KS, KD]) {
    const P = k === KS ? 'S' : 'D';
    for (const op of ['add', 'sub', 'mul', 'div'] as const) {
      it(`f${op}.${P}`, () => expect(runBinary(k, op, SEED + op.length * 7 + k.width)).toEqual([]));
    }
    it(`fsqrt.${P}`, () => expect(runSqrt(k, SEED + 11 + k.width)).toEqual([]));
    it(`fmadd/fmsub/fnmsub/fnmadd.${P}`, () => expect(runFma(k, SEED + 13 + k.width)).toEqual([]));
    it(`fcvt.{w,wu,l,lu}.${P}`, () => expect(runCvtFI(k, SEED + 17 + k.width)).toEqual([]));
    it(`fcvt.${P}.{w,wu,l,lu}`, () => expect(runCvtIF(k, SEED + 19 + k.width)).toEqual([]));
  }
  it('fcvt.s.d and fcvt.d.s', () => expect(runCvtFF(SEED + 23)).toEqual([]));
});

describe('the reference itself agrees with the host in round-to-nearest-even', () => {
  // JavaScript's + - * / sqrt and Math.fround are correctly rounded to nearest-even, so on
  // every case the reference must give their bits: this checks the checker independently of
  // fpu.ts. (Flags and other modes have no host oracle; the hand-written cases cover them.)
  it('double add, mul, div, sqrt and double-to-single rounding', () => {
    const rng = new Rng(SEED ^ 0xabcdef);
    const bad: string[] = [];
    for (let n = 0; n < CASES; n++) {
      const a = randFloat(rng, KD);
      const b = rng.float() < 0.3 ? nearNeg(rng, KD, a) : randFloat(rng, KD);
      const x = dOfBits(a);
      const y = dOfBits(b);
      const da = ref.decode(a, ref.F64);
      const db = ref.decode(b, ref.F64);
      const cases: [string, number, bigint][] = [
        ['add', x + y, ref.refAdd(da, db, ref.F64, 0).bits],
        ['mul', x * y, ref.refMul(da, db, ref.F64, 0).bits],
        ['div', x / y, ref.refDiv(da, db, ref.F64, 0).bits],
        ['sqrt', Math.sqrt(x), ref.refSqrt(da, ref.F64, 0).bits],
      ];
      for (const [op, host, want] of cases) {
        const hb = host !== host ? ref.canonicalNaN(ref.F64) : bitsOfD(host);
        if (hb !== want && bad.length < 10) bad.push(`${op} ${a.toString(16)} ${b.toString(16)}`);
      }
      const s = Math.fround(x);
      const sb = s !== s ? ref.canonicalNaN(ref.F32) : bitsOfS(s);
      if (sb !== ref.refCvtFF(da, ref.F32, 0).bits && bad.length < 10) bad.push(`fround ${a.toString(16)}`);
      const fs = sOfBits(ref.refCvtFF(da, ref.F32, 0).bits);
      if (!(fs !== fs && s !== s) && !Object.is(fs, s) && bad.length < 10) bad.push(`fround value ${a.toString(16)}`);
    }
    expect(bad).toEqual([]);
  });
});
