/**
 * Cross-check against QEMU (`qemu-system-riscv64`, whose softfloat is the reference the
 * differential tests use): a bare-metal program runs every F and D computational instruction
 * on seeded random operands in random static rounding modes, records the destination
 * register and fflags after each, and streams them out of the UART. The same vectors then
 * run on Fpu; every result bit and flag must match. This checks our reading of the spec
 * (NaN boxing, canonical NaNs, fmin/fmax, saturation, tininess) against an independent
 * implementation, which the rational reference cannot do.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { QemuRunner, qemuVersion } from '../../../test/diff/qemu.js';
import * as A from '../../../test/support/riscv-asm.js';
import { FpuHarness, KD, KS, Rng, nearNeg, randFloat, type FloatKind } from './test-harness.js';

const SEED = Number(process.env.FPU_SEED ?? 0x0fe11a);
const VECTORS = Number(process.env.FPU_QEMU_VECTORS ?? 20000);

const version = qemuVersion();
if (!version) {
  if (process.env.CI) throw new Error('qemu-system-riscv64 is required in CI (apt-get install qemu-system-misc)');
  console.log('fpu.qemu.test: skipped, qemu-system-riscv64 is not installed');
}

// Registers the generated code uses: operands f1..f3 and t1, results f4 or t3.
const FA = 1;
const FB = 2;
const FC = 3;
const FD = 4;

interface OpSpec {
  name: string;
  kind: FloatKind; // format of the floating-point operands
  nf: 0 | 1 | 2 | 3;
  intIn?: boolean;
  intOut?: boolean;
  rm?: boolean;
  /** Exponent window for operands (conversions to integers, fcvt.s.d). */
  centre?: { lo: number; hi: number };
  enc: (rm: number) => number;
  run: (h: FpuHarness, rm: number, lo: number, hi: number) => void;
}

const bin = (name: string, kind: FloatKind, enc: (rd: number, a: number, b: number, rm?: number) => number, m: string): OpSpec => ({
  name, kind, nf: 2, rm: true, enc: (rm) => enc(FD, FA, FB, rm),
  run: (h, rm) => (h.fpu as unknown as Record<string, (...a: number[]) => void>)[m]!(FD, FA, FB, rm),
});
const fix = (name: string, kind: FloatKind, enc: (rd: number, a: number, b: number) => number, m: string): OpSpec => ({
  name, kind, nf: 2, enc: () => enc(FD, FA, FB),
  run: (h) => (h.fpu as unknown as Record<string, (...a: number[]) => void>)[m]!(FD, FA, FB),
});
const fma = (name: string, kind: FloatKind, enc: (rd: number, a: number, b: number, c: number, rm?: number) => number, m: string): OpSpec => ({
  name, kind, nf: 3, rm: true, enc: (rm) => enc(FD, FA, FB, FC, rm),
  run: (h, rm) => (h.fpu as unknown as Record<string, (...a: number[]) => void>)[m]!(FD, FA, FB, FC, rm),
});
const cmp = (name: string, kind: FloatKind, enc: (rd: number, a: number, b: number) => number, m: string): OpSpec => ({
  name, kind, nf: 2, intOut: true, enc: () => enc(A.t3, FA, FB),
  run: (h) => {
    h.fpu.resLo = (h.fpu as unknown as Record<string, (...a: number[]) => number>)[m]!(FA, FB);
    h.fpu.resHi = 0;
  },
});
const toInt = (name: string, kind: FloatKind, enc: (rd: number, a: number, rm?: number) => number, m: string): OpSpec => ({
  name, kind, nf: 1, intOut: true, rm: true, centre: { lo: -3, hi: 66 }, enc: (rm) => enc(A.t3, FA, rm),
  run: (h, rm) => (h.fpu as unknown as Record<string, (...a: number[]) => void>)[m]!(FA, rm),
});
const fromInt = (name: string, kind: FloatKind, enc: (rd: number, a: number, rm?: number) => number, m: string): OpSpec => ({
  name, kind, nf: 0, intIn: true, rm: true, enc: (rm) => enc(FD, A.t1, rm),
  run: (h, rm, lo, hi) => (h.fpu as unknown as Record<string, (...a: number[]) => void>)[m]!(FD, lo, hi, rm),
});

const OPS: OpSpec[] = [
  bin('fadd.s', KS, A.fadd_s, 'faddS'), bin('fsub.s', KS, A.fsub_s, 'fsubS'),
  bin('fmul.s', KS, A.fmul_s, 'fmulS'), bin('fdiv.s', KS, A.fdiv_s, 'fdivS'),
  bin('fadd.d', KD, A.fadd_d, 'faddD'), bin('fsub.d', KD, A.fsub_d, 'fsubD'),
  bin('fmul.d', KD, A.fmul_d, 'fmulD'), bin('fdiv.d', KD, A.fdiv_d, 'fdivD'),
  { name: 'fsqrt.s', kind: KS, nf: 1, rm: true, enc: (rm) => A.fsqrt_s(FD, FA, rm), run: (h, rm) => h.fpu.fsqrtS(FD, FA, rm) },
  { name: 'fsqrt.d', kind: KD, nf: 1, rm: true, enc: (rm) => A.fsqrt_d(FD, FA, rm), run: (h, rm) => h.fpu.fsqrtD(FD, FA, rm) },
  fix('fmin.s', KS, A.fmin_s, 'fminS'), fix('fmax.s', KS, A.fmax_s, 'fmaxS'),
  fix('fmin.d', KD, A.fmin_d, 'fminD'), fix('fmax.d', KD, A.fmax_d, 'fmaxD'),
  fix('fsgnj.s', KS, A.fsgnj_s, 'fsgnjS'), fix('fsgnjn.s', KS, A.fsgnjn_s, 'fsgnjnS'), fix('fsgnjx.s', KS, A.fsgnjx_s, 'fsgnjxS'),
  fix('fsgnj.d', KD, A.fsgnj_d, 'fsgnjD'), fix('fsgnjn.d', KD, A.fsgnjn_d, 'fsgnjnD'), fix('fsgnjx.d', KD, A.fsgnjx_d, 'fsgnjxD'),
  fma('fmadd.s', KS, A.fmadd_s, 'fmaddS'), fma('fmsub.s', KS, A.fmsub_s, 'fmsubS'),
  fma('fnmsub.s', KS, A.fnmsub_s, 'fnmsubS'), fma('fnmadd.s', KS, A.fnmadd_s, 'fnmaddS'),
  fma('fmadd.d', KD, A.fmadd_d, 'fmaddD'), fma('fmsub.d', KD, A.fmsub_d, 'fmsubD'),
  fma('fnmsub.d', KD, A.fnmsub_d, 'fnmsubD'), fma('fnmadd.d', KD, A.fnmadd_d, 'fnmaddD'),
  cmp('feq.s', KS, A.feq_s, 'feqS'), cmp('flt.s', KS, A.flt_s, 'fltS'), cmp('fle.s', KS, A.fle_s, 'fleS'),
  cmp('feq.d', KD, A.feq_d, 'feqD'), cmp('flt.d', KD, A.flt_d, 'fltD'), cmp('fle.d', KD, A.fle_d, 'fleD'),
  {
    name: 'fclass.s', kind: KS, nf: 1, intOut: true, enc: () => A.fclass_s(A.t3, FA),
    run: (h) => { h.fpu.resLo = h.fpu.fclassS(FA); h.fpu.resHi = 0; },
  },
  {
    name: 'fclass.d', kind: KD, nf: 1, intOut: true, enc: () => A.fclass_d(A.t3, FA),
    run: (h) => { h.fpu.resLo = h.fpu.fclassD(FA); h.fpu.resHi = 0; },
  },
  { name: 'fcvt.s.d', kind: KD, nf: 1, rm: true, centre: { lo: -155, hi: 130 }, enc: (rm) => A.fcvt_s_d(FD, FA, rm), run: (h, rm) => h.fpu.fcvtSD(FD, FA, rm) },
  { name: 'fcvt.d.s', kind: KS, nf: 1, rm: true, enc: (rm) => A.fcvt_d_s(FD, FA, rm), run: (h, rm) => h.fpu.fcvtDS(FD, FA, rm) },
  toInt('fcvt.w.s', KS, A.fcvt_w_s, 'fcvtWS'), toInt('fcvt.wu.s', KS, A.fcvt_wu_s, 'fcvtWUS'),
  toInt('fcvt.l.s', KS, A.fcvt_l_s, 'fcvtLS'), toInt('fcvt.lu.s', KS, A.fcvt_lu_s, 'fcvtLUS'),
  toInt('fcvt.w.d', KD, A.fcvt_w_d, 'fcvtWD'), toInt('fcvt.wu.d', KD, A.fcvt_wu_d, 'fcvtWUD'),
  toInt('fcvt.l.d', KD, A.fcvt_l_d, 'fcvtLD'), toInt('fcvt.lu.d', KD, A.fcvt_lu_d, 'fcvtLUD'),
  fromInt('fcvt.s.w', KS, A.fcvt_s_w, 'fcvtSW'), fromInt('fcvt.s.wu', KS, A.fcvt_s_wu, 'fcvtSWU'),
  fromInt('fcvt.s.l', KS, A.fcvt_s_l, 'fcvtSL'), fromInt('fcvt.s.lu', KS, A.fcvt_s_lu, 'fcvtSLU'),
  fromInt('fcvt.d.w', KD, A.fcvt_d_w, 'fcvtDW'), fromInt('fcvt.d.wu', KD, A.fcvt_d_wu, 'fcvtDWU'),
  fromInt('fcvt.d.l', KD, A.fcvt_d_l, 'fcvtDL'), fromInt('fcvt.d.lu', KD, A.fcvt_d_lu, 'fcvtDLU'),
  {
    name: 'fmv.x.w', kind: KS, nf: 1, intOut: true, enc: () => A.fmv_x_w(A.t3, FA), run: (h) => h.fpu.fmvXW(FA),
  },
  { name: 'fmv.x.d', kind: KD, nf: 1, intOut: true, enc: () => A.fmv_x_d(A.t3, FA), run: (h) => h.fpu.fmvXD(FA) },
  { name: 'fmv.w.x', kind: KS, nf: 0, intIn: true, enc: () => A.fmv_w_x(FD, A.t1), run: (h, _rm, lo) => h.fpu.fmvWX(FD, lo) },
  { name: 'fmv.d.x', kind: KD, nf: 0, intIn: true, enc: () => A.fmv_d_x(FD, A.t1), run: (h, _rm, lo, hi) => h.fpu.fmvDX(FD, lo, hi) },
];

interface Vector {
  op: OpSpec;
  rm: number;
  f: [bigint, bigint, bigint]; // raw 64-bit register images (singles usually NaN-boxed)
  x: bigint;
}

function operand(rng: Rng, op: OpSpec): bigint {
  const v = randFloat(rng, op.kind, op.centre && rng.float() < 0.8 ? op.centre : undefined);
  if (op.kind !== KS) return v;
  // Mostly properly boxed; sometimes not, which must read as the canonical NaN.
  return rng.float() < 0.04 ? (rng.bits(32) << 32n) | v : (0xffffffffn << 32n) | v;
}

function randInt(rng: Rng): bigint {
  const len = rng.int(0, 64);
  let x = rng.bits(64) & ((1n << BigInt(len)) - 1n);
  if (rng.float() < 0.4 && len > 2) x = (x >> BigInt(len - rng.int(1, 26))) << BigInt(len - rng.int(1, 26));
  x &= (1n << 64n) - 1n;
  return rng.float() < 0.5 ? BigInt.asUintN(64, -x) : x;
}

function makeVectors(n: number, seed: number): Vector[] {
  const rng = new Rng(seed);
  const out: Vector[] = [];
  for (let k = 0; k < n; k++) {
    const op = OPS[k % OPS.length]!;
    const f: [bigint, bigint, bigint] = [operand(rng, op), operand(rng, op), operand(rng, op)];
    const mask = (1n << BigInt(op.kind.width)) - 1n;
    const box = op.kind === KS ? 0xffffffffn << 32n : 0n;
    if ((op.name.startsWith('fadd') || op.name.startsWith('fsub')) && rng.float() < 0.3) {
      f[1] = box | nearNeg(rng, op.kind, f[0] & mask);
    }
    if (op.nf === 3 && rng.float() < 0.3) f[2] = box | nearNeg(rng, op.kind, f[0] & mask);
    if (op.name.startsWith('fm') && op.nf === 2 && rng.float() < 0.3) {
      if (rng.float() < 0.3) f[0] = box | (rng.float() < 0.5 ? 1n << BigInt(op.kind.width - 1) : 0n); // ±0
      f[1] = f[0] ^ (1n << BigInt(op.kind.width - 1)); // x and -x
    }
    out.push({ op, rm: op.rm ? rng.int(0, 4) : 0, f, x: randInt(rng) });
  }
  return out;
}

/** One straight-line block per vector: load operands, clear fflags, run, store result and fflags. */
function buildProgram(vs: Vector[]): Uint8Array {
  const a = new A.Asm();
  a.li(A.t0, 0x6000).emit(A.csrs(0x300, A.t0)); // mstatus.FS = Dirty: enable the FPU
  a.la(A.a0, 'vectors').la(A.a1, 'results');
  for (const v of vs) {
    a.emit(A.fld(FA, A.a0, 0), A.fld(FB, A.a0, 8), A.fld(FC, A.a0, 16), A.ld(A.t1, A.a0, 24));
    a.emit(A.csrwi(A.CSR.fflags, 0), v.op.enc(v.rm), A.csrr(A.t2, A.CSR.fflags));
    a.emit(v.op.intOut ? A.sd(A.t3, A.a1, 0) : A.fsd(FD, A.a1, 0), A.sd(A.t2, A.a1, 8));
    a.emit(A.addi(A.a0, A.a0, 32), A.addi(A.a1, A.a1, 16));
  }
  // Stream the results out of the UART byte by byte, then power off (sifive,test0).
  a.la(A.t0, 'results').li(A.t1, vs.length * 16).li(A.t2, 0x1000_0000);
  a.label('send').emit(A.lbu(A.t3, A.t0, 0), A.sb(A.t3, A.t2, 0), A.addi(A.t0, A.t0, 1), A.addi(A.t1, A.t1, -1));
  a.bnez(A.t1, 'send');
  a.li(A.t0, 0x0010_0000).li(A.t1, 0x5555).emit(A.sw(A.t1, A.t0, 0));
  a.label('hang').j('hang');
  a.align(8).label('vectors');
  for (const v of vs) a.dword(v.f[0], v.f[1], v.f[2], v.x);
  a.label('results').space(vs.length * 16);
  return a.bytes();
}

describe.skipIf(!version)(`Fpu matches ${version ?? 'QEMU'} (seed ${SEED}, ${VECTORS} vectors)`, () => {
  const runner = version ? new QemuRunner() : undefined;
  afterAll(() => runner?.dispose());

  it('every F and D computational instruction, bit for bit with fflags', async () => {
    const vs = makeVectors(VECTORS, SEED);
    const r = await runner!.run(buildProgram(vs), 60_000);
    expect(r.error).toBeUndefined();
    const bytes = Uint8Array.from(r.output, (c) => c.charCodeAt(0));
    expect(bytes.length).toBe(vs.length * 16);
    const dv = new DataView(bytes.buffer);
    const h = new FpuHarness();
    const bad: string[] = [];
    for (let k = 0; k < vs.length; k++) {
      const v = vs[k]!;
      const want = dv.getBigUint64(k * 16, true);
      const wantFlags = Number(dv.getBigUint64(k * 16 + 8, true));
      h.setD(FA, v.f[0]);
      h.setD(FB, v.f[1]);
      h.setD(FC, v.f[2]);
      h.setD(FD, 0n);
      h.fpu.fflags = 0;
      v.op.run(h, v.rm, Number(v.x & 0xffffffffn) | 0, Number(v.x >> 32n) | 0);
      const got = v.op.intOut ? BigInt.asUintN(64, h.res()) : h.getD(FD);
      if ((got !== want || h.fpu.fflags !== wantFlags) && bad.length < 20) {
        const hex = (b: bigint) => '0x' + b.toString(16);
        bad.push(
          `${v.op.name} rm=${v.rm} f=[${v.f.slice(0, v.op.nf).map(hex).join(', ')}]${v.op.intIn ? ` x=${hex(v.x)}` : ''}: ` +
            `qemu ${hex(want)} flags ${wantFlags.toString(2)}, visor ${hex(got)} flags ${h.fpu.fflags.toString(2)}`,
        );
      }
    }
    expect(bad).toEqual([]);
  });
});
