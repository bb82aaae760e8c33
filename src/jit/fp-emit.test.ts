/**
 * Inline F/D (fp-emit.ts) against the interpreter's FPU, which is checked against QEMU and a
 * BigInt reference (src/cpu/fpu): thousands of single operations on values at the edges of
 * the fast path (exact and inexact, products at the smallest normal, overflow, subnormals,
 * NaN-boxing, signalling NaNs), every rounding mode with frm valid and invalid, fflags clear
 * and set. Each case writes its result, fcsr and integer result to memory; both tiers must
 * write the same bytes. Counting the calls into the FPU shows the fast path really ran.
 */
import { describe, expect, it } from 'vitest';
import * as A from '../../test/support/riscv-asm.js';
import { disasm } from '../../test/support/riscv-disasm.js';
import { Hart } from '../cpu/hart.js';
import { jitTier } from './jit.js';
import { FINISHER, makeHart, RAM_BASE, testHartOptions } from '../cpu/testing/run-program.js';

const { CSR } = A;
const F64 = new Float64Array(1);
const U64 = new BigUint64Array(F64.buffer);
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
const d = (v: number): bigint => { F64[0] = v; return U64[0]!; };
const s = (v: number): bigint => { F32[0] = v; return 0xffffffff00000000n | BigInt(U32[0]!); };

const DOUBLES = [0, -0, 1, -1, 1.5, 3, 0.1, 1 / 3, -2.75, 2 ** -1022, 1.5 * 2 ** -1022, 2 ** -1074, 2 ** -511,
  2 ** -511 * (1 + 2 ** -52), 2 ** -537, 2 ** 511, 2 ** 512, 2 ** 1023, 1.7976931348623157e308, Infinity, -Infinity,
  2 ** 53 + 2, 1e300, 1e-300, 2 ** 990, 2 ** -967, 123456789.123, -(2 ** 31), 2 ** 31 - 0.5, 2 ** 31, 2 ** 63, 2 ** 64,
  -(2 ** 63), 4294967295.5, -0.5, 0.5, 2.5, 1e10, 7, 49, 2 ** -1000].map(d)
  .concat([0x7ff8000000000000n, 0x7ff4000000000000n, 0xfff0000000000001n, 0x000fffffffffffffn]);
const SINGLES = [0, -0, 1, -1, 1.5, 3, 0.1, 1 / 3, 2 ** -126, 1.5 * 2 ** -126, 2 ** -149, 2 ** -63, 2 ** -64, 2 ** 63, 2 ** 64,
  2 ** 127, 3.4028234663852886e38, Infinity, -Infinity, 16777216, 16777215, 0.5, -2.5, 7, 49, 2 ** 31, -(2 ** 31), 2 ** 24 + 2,
  1e-40, 65536.5].map(s)
  .concat([0xffffffff7fc00000n, 0xffffffff7fa00000n, 0xffffffffff800001n, 0x000000003f800000n, 0x7fffffff3f800000n]);
const INTS = [0n, 1n, -1n, 7n, 2n ** 24n + 1n, 2n ** 53n + 1n, -(2n ** 63n), 2n ** 63n - 1n, 2n ** 31n, -(2n ** 31n), 0xffffffffn,
  123456789n, 2n ** 24n, 2n ** 53n, -(2n ** 53n) - 3n, 0xffffffff80000000n];

type Case = { enc: number; f: bigint[]; x: bigint; fcsr: number };
const RMS = [0, 0, 1, 2, 3, 4, 7, 7, 7, 7];

/** A small deterministic generator (the test must not change from run to run). */
function rng(seed: number): (n: number) => number {
  let v = seed >>> 0;
  return (n) => { v = (Math.imul(v, 1664525) + 1013904223) >>> 0; return Math.floor((v / 2 ** 32) * n); };
}

function cases(count: number, seed: number): Case[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[r(xs.length)]!;
  const F = 4, X = A.a4;
  const ops: ((rm: number) => [number, boolean])[] = [
    (rm) => [pick([A.fadd_d, A.fsub_d, A.fmul_d, A.fdiv_d])(F, 1, 2, rm), true],
    (rm) => [A.fsqrt_d(F, 1, rm), true],
    (rm) => [pick([A.fmadd_d, A.fmsub_d, A.fnmsub_d, A.fnmadd_d])(F, 1, 2, 3, rm), true],
    (rm) => [pick([A.fadd_s, A.fsub_s, A.fmul_s, A.fdiv_s])(F, 1, 2, rm), false],
    (rm) => [A.fsqrt_s(F, 1, rm), false],
    (rm) => [pick([A.fmadd_s, A.fmsub_s, A.fnmsub_s, A.fnmadd_s])(F, 1, 2, 3, rm), false],
    () => [pick([A.fmin_d, A.fmax_d, A.fsgnj_d, A.fsgnjn_d, A.fsgnjx_d])(F, 1, 2), true],
    () => [pick([A.fmin_s, A.fmax_s, A.fsgnj_s, A.fsgnjn_s, A.fsgnjx_s])(F, 1, 2), false],
    () => [pick([A.feq_d, A.flt_d, A.fle_d])(X, 1, 2), true],
    () => [pick([A.feq_s, A.flt_s, A.fle_s])(X, 1, 2), false],
    (rm) => [pick([A.fcvt_w_d, A.fcvt_wu_d, A.fcvt_l_d, A.fcvt_lu_d])(X, 1, rm), true],
    (rm) => [pick([A.fcvt_w_s, A.fcvt_wu_s, A.fcvt_l_s, A.fcvt_lu_s])(X, 1, rm), false],
    (rm) => [pick([A.fcvt_d_w, A.fcvt_d_wu, A.fcvt_d_l, A.fcvt_d_lu, A.fcvt_s_w, A.fcvt_s_wu, A.fcvt_s_l, A.fcvt_s_lu])(F, A.a2, rm), true],
    (rm) => [A.fcvt_s_d(F, 1, rm), true],
    (rm) => [A.fcvt_d_s(F, 1, rm), false],
    () => [pick([A.fmv_x_w, A.fmv_x_d, A.fclass_d, A.fclass_s])(X, 1), r(2) === 0],
    () => [pick([A.fmv_w_x, A.fmv_d_x])(F, A.a2), true],
  ];
  const out: Case[] = [];
  for (let k = 0; k < count; k++) {
    const rm = pick(RMS);
    const [enc, dbl] = pick(ops)(rm);
    const val = () => (r(10) === 0 ? pick(dbl ? SINGLES : DOUBLES) : pick(dbl ? DOUBLES : SINGLES));
    const frm = r(8) === 0 ? 5 + r(3) : pick([0, 0, 0, 1, 2, 3, 4]);
    out.push({ enc, f: [val(), val(), val()], x: pick(INTS), fcsr: (frm << 5) | (r(2) === 0 ? 0 : r(32)) });
  }
  return out;
}

/**
 * One program for all cases. Per case (64 bytes at a0): f1-f3, fcsr and an integer operand
 * in; the f result, fcsr and the integer result out. An illegal instruction (frm invalid)
 * traps to a handler that skips it.
 */
function program(list: Case[]): Uint8Array {
  const a = new A.Asm(RAM_BASE);
  const { t0, a0, a1, a2, a3, a4 } = A;
  a.la(t0, 'trap').emit(A.csrw(CSR.mtvec, t0));
  a.li(t0, 3 << 13).emit(A.csrs(CSR.mstatus, t0)); // FS = Dirty
  a.la(a0, 'table');
  for (const c of list) {
    a.emit(A.fld(1, a0, 0), A.fld(2, a0, 8), A.fld(3, a0, 16), A.ld(a1, a0, 24), A.ld(a2, a0, 32), A.fmv_d_x(4, 0), A.addi(a4, 0, 0));
    a.emit(A.csrw(CSR.fcsr, a1), c.enc, A.csrr(a3, CSR.fcsr), A.fsd(4, a0, 40), A.sd(a3, a0, 48), A.sd(a4, a0, 56), A.addi(a0, a0, 64));
  }
  a.li(t0, FINISHER).emit(A.sw(0, t0, 0));
  a.label('trap').emit(A.csrr(t0, CSR.mepc), A.addi(t0, t0, 4), A.csrw(CSR.mepc, t0), A.mret());
  a.align(8);
  a.label('table');
  for (const c of list) a.dword(c.f[0]!, c.f[1]!, c.f[2]!, BigInt(c.fcsr), BigInt.asUintN(64, c.x), 0n, 0n, 0n);
  return a.bytes();
}

function run(image: Uint8Array, jit: boolean): { out: Uint8Array; fpuCalls: number } {
  const saved = { ...testHartOptions };
  Object.assign(testHartOptions, jit ? { accel: 'jit', tier: jitTier, jitThreshold: 0 } : { accel: 'interp' });
  let fpuCalls = 0;
  const orig = Hart.prototype.jitFp;
  Hart.prototype.jitFp = function (this: Hart, w: number, imm: number): number { fpuCalls++; return orig.call(this, w, imm); };
  try {
    const { hart, ram, run: state } = makeHart(4 << 20);
    ram.set(image, 0);
    hart.reset(RAM_BASE);
    for (let n = 0; !state.finished && n < 10_000_000;) {
      const k = hart.run(100_000);
      if (k === 0) break;
      n += k;
    }
    expect(state.finished).toBe(true);
    if (jit) expect(hart.jitStats!.instructions).toBeGreaterThan(0);
    return { out: ram.slice(0, image.length), fpuCalls };
  } finally {
    Hart.prototype.jitFp = orig;
    Object.keys(testHartOptions).forEach((k) => delete (testHartOptions as Record<string, unknown>)[k]);
    Object.assign(testHartOptions, saved);
  }
}

const decode = (list: Case[], image: Uint8Array, k: number): string => {
  const tableAt = image.length - list.length * 64;
  const v = new BigUint64Array(image.slice(tableAt + 64 * k, tableAt + 64 * k + 64).buffer);
  return `f=${v[5]!.toString(16)} fcsr=${v[6]!.toString(16)} x=${v[7]!.toString(16)}`;
};

describe('inline F/D against the FPU', () => {
  for (const seed of [1, 2, 3]) {
    it(`gives the interpreter's results and flags on 1500 edge cases (seed ${seed})`, () => {
      const list = cases(1500, seed);
      const image = program(list);
      const interp = run(image, false);
      const jit = run(image, true);
      for (let k = 0; k < list.length; k++) {
        const i = decode(list, interp.out, k), j = decode(list, jit.out, k);
        if (i !== j) {
          const c = list[k]!;
          expect(j, `case ${k}: ${disasm(c.enc)} f=${c.f.map((x) => x.toString(16))} x=${c.x} fcsr=${c.fcsr.toString(16)}`).toBe(i);
        }
      }
      expect(Buffer.compare(jit.out, interp.out)).toBe(0);
      // The fast path ran: most cases did not call the FPU.
      expect(jit.fpuCalls).toBeLessThan(list.length * 0.6);
    });
  }

  it('keeps exact arithmetic and inexact RNE arithmetic with NX set out of the FPU', () => {
    const one = (enc: number, f: bigint[], fcsr: number): Case => ({ enc, f, x: 0n, fcsr });
    const list = [
      one(A.fadd_d(4, 1, 2), [d(1), d(2), 0n], 0), one(A.fmul_d(4, 1, 2), [d(3), d(1.5), 0n], 0),
      one(A.fdiv_d(4, 1, 2), [d(3), d(1.5), 0n], 0), one(A.fsqrt_d(4, 1), [d(49), 0n, 0n], 0),
      one(A.fmadd_d(4, 1, 2, 3), [d(3), d(1.5), d(0.25)], 0), one(A.fadd_s(4, 1, 2), [s(1), s(2), 0n], 0),
      one(A.fmul_s(4, 1, 2), [s(3), s(1.5), 0n], 0), one(A.fmadd_s(4, 1, 2, 3), [s(3), s(1.5), s(0.25)], 0),
      one(A.fadd_d(4, 1, 2), [d(1), d(0.1), 0n], 1), one(A.fdiv_d(4, 1, 2), [d(1), d(3), 0n], 1),
      one(A.fdiv_s(4, 1, 2), [s(1), s(3), 0n], 1), one(A.fmadd_s(4, 1, 2, 3), [s(0.1), s(3), s(1)], 1),
      one(A.fcvt_w_d(4, 1, 1), [d(2.5), 0n, 0n], 1), one(A.feq_d(A.a4, 1, 2), [d(1), d(2), 0n], 0),
    ];
    const image = program(list);
    const interp = run(image, false);
    const jit = run(image, true);
    expect(Buffer.compare(jit.out, interp.out)).toBe(0);
    expect(interp.fpuCalls).toBe(0); // (the interpreter never calls jitFp)
    expect(jit.fpuCalls).toBe(0);
  });
});
