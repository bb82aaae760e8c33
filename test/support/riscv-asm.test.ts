import { describe, expect, it } from 'vitest';
import * as A from './riscv-asm.js';
import { a0, a1, a2, a4, a5, ra, s0, sp, t0, zero, CSR, RM, F } from './riscv-asm.js';
import { isVisorError } from '../../src/base/errors.js';

const hex = (v: number) => '0x' + (v >>> 0).toString(16).padStart(8, '0');

// Encodings as GNU objdump prints them for the same source line (spec examples and words
// that every riscv64 disassembly listing shows).
const KNOWN: [string, number, number][] = [
  ['addi a0, a0, 1', A.addi(a0, a0, 1), 0x00150513],
  ['li a0, -1 (addi)', A.addi(a0, zero, -1), 0xfff00513],
  ['lui a0, 0x12345', A.lui(a0, 0x12345), 0x12345537],
  ['auipc t0, 0', A.auipc(t0, 0), 0x00000297],
  ['jal ra, 0', A.jal(ra, 0), 0x000000ef],
  ['ret', A.ret(), 0x00008067],
  ['sd ra, 8(sp)', A.sd(ra, sp, 8), 0x00113423],
  ['ld ra, 8(sp)', A.ld(ra, sp, 8), 0x00813083],
  ['sw a5, -20(s0)', A.sw(a5, s0, -20), 0xfef42623],
  ['beq a0, a1, 8', A.beq(a0, a1, 8), 0x00b50463],
  ['bnez a0, -4', A.bne(a0, zero, -4), 0xfe051ee3],
  ['slli a0, a0, 32', A.slli(a0, a0, 32), 0x02051513],
  ['srai a0, a0, 63', A.srai(a0, a0, 63), 0x43f55513],
  ['sraiw a0, a0, 31', A.sraiw(a0, a0, 31), 0x41f5551b],
  ['addw a0, a0, a1', A.addw(a0, a0, a1), 0x00b5053b],
  ['sub a0, a0, a1', A.sub(a0, a0, a1), 0x40b50533],
  ['mul a0, a0, a1', A.mul(a0, a0, a1), 0x02b50533],
  ['divuw a0, a0, a1', A.divuw(a0, a0, a1), 0x02b5553b],
  ['fence', A.fence(), 0x0ff0000f],
  ['fence rw, w', A.fence('rw', 'w'), 0x0310000f],
  ['fence.tso', A.fence_tso(), 0x8330000f],
  ['fence.i', A.fence_i(), 0x0000100f],
  ['ecall', A.ecall(), 0x00000073],
  ['ebreak', A.ebreak(), 0x00100073],
  ['csrr a0, mhartid', A.csrr(a0, CSR.mhartid), 0xf1402573],
  ['csrw mtvec, t0', A.csrw(CSR.mtvec, t0), 0x30529073],
  ['csrrsi zero, mstatus, 8', A.csrsi(CSR.mstatus, 8), 0x30046073],
  ['mret', A.mret(), 0x30200073],
  ['sret', A.sret(), 0x10200073],
  ['wfi', A.wfi(), 0x10500073],
  ['sfence.vma', A.sfence_vma(), 0x12000073],
  ['lr.w a0, (a1)', A.lr_w(a0, a1), 0x1005a52f],
  ['sc.w a0, a2, (a1)', A.sc_w(a0, a2, a1), 0x18c5a52f],
  ['amoadd.w zero, a1, (a0)', A.amoadd_w(zero, a1, a0), 0x00b5202f],
  ['amoswap.d.aqrl a0, a1, (a2)', A.amoswap_d(a0, a1, a2, true, true), 0x0eb6352f],
  ['fadd.d fa0, fa0, fa1', A.fadd_d(F.fa0, F.fa0, F.fa1), 0x02b57553],
  ['fmv.x.d a0, fa0', A.fmv_x_d(a0, F.fa0), 0xe2050553],
  ['fmv.d.x fa0, a0', A.fmv_d_x(F.fa0, a0), 0xf2050553],
  ['fcvt.d.w fa0, a0', A.fcvt_d_w(F.fa0, a0), 0xd2050553],
  ['fcvt.w.d a0, fa0, rtz', A.fcvt_w_d(a0, F.fa0, RM.RTZ), 0xc2051553],
  ['fld fa0, 0(a0)', A.fld(F.fa0, a0, 0), 0x00053507],
  ['fsw fa0, 4(sp)', A.fsw(F.fa0, sp, 4), 0x00a12227],
  ['fmadd.s fa0, fa1, fa2, fa3', A.fmadd_s(F.fa0, F.fa1, F.fa2, F.fa3), 0x68c5f543],
  ['feq.s a0, fa0, fa1', A.feq_s(a0, F.fa0, F.fa1), 0xa0b52553],
  ['fclass.d a0, fa0', A.fclass_d(a0, F.fa0), 0xe2051553],
  ['fcvt.s.d fa0, fa0', A.fcvt_s_d(F.fa0, F.fa0), 0x40157553],
  ['fcvt.d.s fa0, fa0', A.fcvt_d_s(F.fa0, F.fa0), 0x42050553],
  ['fsqrt.d fa0, fa0', A.fsqrt_d(F.fa0, F.fa0), 0x5a057553],
  // RVC
  ['c.li a0, 1', A.c_li(a0, 1), 0x4505],
  ['c.li a0, -1', A.c_li(a0, -1), 0x557d],
  ['c.nop', A.c_nop(), 0x0001],
  ['c.ebreak', A.c_ebreak(), 0x9002],
  ['c.jr ra (ret)', A.c_jr(ra), 0x8082],
  ['c.jalr a0', A.c_jalr(a0), 0x9502],
  ['c.mv a0, a1', A.c_mv(a0, a1), 0x852e],
  ['c.add a0, a1', A.c_add(a0, a1), 0x952e],
  ['c.addi sp, -16', A.c_addi(sp, -16), 0x1141],
  ['c.addiw a0, 1', A.c_addiw(a0, 1), 0x2505],
  ['c.addi sp, -32', A.c_addi(sp, -32), 0x1101],
  ['c.addi16sp -64', A.c_addi16sp(-64), 0x7139],
  ['c.addi16sp 496', A.c_addi16sp(496), 0x617d],
  ['c.addi4spn s0, sp, 32', A.c_addi4spn(s0, 32), 0x1000],
  ['c.addi4spn a0, sp, 1020', A.c_addi4spn(a0, 1020), 0x1fe8],
  ['c.sdsp ra, 8(sp)', A.c_sdsp(ra, 8), 0xe406],
  ['c.ldsp ra, 8(sp)', A.c_ldsp(ra, 8), 0x60a2],
  ['c.lwsp a0, 12(sp)', A.c_lwsp(a0, 12), 0x4532],
  ['c.swsp a0, 12(sp)', A.c_swsp(a0, 12), 0xc62a],
  ['c.fldsp fa0, 8(sp)', A.c_fldsp(F.fa0, 8), 0x2522],
  ['c.fsdsp fa0, 8(sp)', A.c_fsdsp(F.fa0, 8), 0xa42a],
  ['c.ld a0, 8(a0)', A.c_ld(a0, a0, 8), 0x6508],
  ['c.sd a0, 0(a1)', A.c_sd(a0, a1, 0), 0xe188],
  ['c.lw a0, 0(a0)', A.c_lw(a0, a0, 0), 0x4108],
  ['c.sw a0, 68(a1)', A.c_sw(a0, a1, 68), 0xc1e8],
  ['c.fld fa0, 8(a0)', A.c_fld(F.fa0, a0, 8), 0x2508],
  ['c.fsd fa0, 8(a0)', A.c_fsd(F.fa0, a0, 8), 0xa508],
  ['c.j 0', A.c_j(0), 0xa001],
  ['c.j -2', A.c_j(-2), 0xbffd],
  ['c.beqz a0, 0', A.c_beqz(a0, 0), 0xc101],
  ['c.bnez a5, -6', A.c_bnez(a5, -6), 0xffed],
  ['c.beqz a5, 16', A.c_beqz(a5, 16), 0xcb81],
  ['c.slli a0, 1', A.c_slli(a0, 1), 0x0506],
  ['c.slli a0, 32', A.c_slli(a0, 32), 0x1502],
  ['c.lui a0, 1', A.c_lui(a0, 1), 0x6505],
  ['c.lui a5, 0xfffff', A.c_lui(a5, 0xfffff), 0x77fd],
  ['c.andi a0, 1', A.c_andi(a0, 1), 0x8905],
  ['c.srli a0, 1', A.c_srli(a0, 1), 0x8105],
  ['c.srai a4, 63', A.c_srai(a4, 63), 0x977d],
  ['c.sub a0, a1', A.c_sub(a0, a1), 0x8d0d],
  ['c.xor a0, a1', A.c_xor(a0, a1), 0x8d2d],
  ['c.or a0, a1', A.c_or(a0, a1), 0x8d4d],
  ['c.and a0, a1', A.c_and(a0, a1), 0x8d6d],
  ['c.subw a0, a1', A.c_subw(a0, a1), 0x9d0d],
  ['c.addw a0, a1', A.c_addw(a0, a1), 0x9d2d],
];

describe('riscv-asm encodings', () => {
  for (const [text, got, want] of KNOWN) {
    it(text, () => expect(hex(got)).toBe(hex(want)));
  }

  it('throws a typed error on out-of-range operands', () => {
    const cases: (() => number)[] = [
      () => A.addi(a0, a0, 2048),
      () => A.addi(a0, a0, -2049),
      () => A.addi(32, a0, 0),
      () => A.beq(a0, a1, 3),
      () => A.beq(a0, a1, 4096),
      () => A.jal(ra, 1 << 20),
      () => A.slli(a0, a0, 64),
      () => A.slliw(a0, a0, 32),
      () => A.lui(a0, 0x100000),
      () => A.c_addi4spn(a0, 0),
      () => A.c_addi4spn(a5, 2),
      () => A.c_lw(a0, a1, 128),
      () => A.c_ld(a0, a1, 4),
      () => A.c_addi(a0, 32),
      () => A.c_addiw(zero, 1),
      () => A.c_addi16sp(0),
      () => A.c_addi16sp(8),
      () => A.c_lui(sp, 1),
      () => A.c_lui(a0, 0),
      () => A.c_j(2048),
      () => A.c_beqz(a0, 256),
      () => A.c_beqz(ra, 0),
      () => A.c_jr(zero),
      () => A.c_mv(a0, zero),
      () => A.c_ldsp(zero, 0),
      () => A.csrr(a0, 0x1000),
      () => A.fadd_s(0, 0, 0, 8),
      () => A.fence('x', 'rw'),
    ];
    for (const c of cases) {
      let err: unknown;
      try {
        c();
      } catch (e) {
        err = e;
      }
      expect(isVisorError(err, 'InvalidArgument'), String(c)).toBe(true);
    }
  });
});

/** Enough of RV64I to run li sequences: lui, addi, addiw, slli. */
function runLi(seq: number[]): bigint {
  const x = new Array<bigint>(32).fill(0n);
  for (const w of seq) {
    const rd = (w >> 7) & 31;
    const rs1 = (w >> 15) & 31;
    const immI = BigInt(w >> 20);
    const op = w & 0x7f;
    const f3 = (w >> 12) & 7;
    if (op === 0x37) x[rd] = BigInt.asIntN(64, BigInt((w & 0xfffff000) | 0));
    else if (op === 0x13 && f3 === 0) x[rd] = BigInt.asIntN(64, x[rs1]! + immI);
    else if (op === 0x13 && f3 === 1) x[rd] = BigInt.asIntN(64, x[rs1]! << BigInt((w >> 20) & 63));
    else if (op === 0x1b && f3 === 0) x[rd] = BigInt.asIntN(32, x[rs1]! + immI);
    else throw new Error(`unexpected ${hex(w)}`);
    x[0] = 0n;
  }
  return x[a0]!;
}

describe('li', () => {
  it('materialises any 64-bit constant', () => {
    const values: bigint[] = [0n, 1n, -1n, 2047n, -2048n, 2048n, 0x7ffff800n, 0x7fffffffn, -0x80000000n, 0x80000000n,
      0xffffffffn, 0x100000000n, 0x123456789abcdef0n, -0x8000000000000000n, 0x7fffffffffffffffn, 0xffffffffffffffffn,
      0x8000000000000000n, 0xdeadbeefcafebaben, 0x0000000100000001n, 0x7ff0000000000001n];
    let s = 12345n;
    for (let i = 0; i < 2000; i++) {
      s = (s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
      const shift = BigInt(i % 64);
      values.push(BigInt.asIntN(64, s >> shift));
    }
    for (const v of values) {
      const seq = A.liSeq(a0, v);
      expect(seq.length).toBeLessThanOrEqual(8);
      expect(runLi(seq), `li ${v}`).toBe(BigInt.asIntN(64, v));
    }
    expect(A.liSeq(a0, 5)).toEqual([A.addi(a0, zero, 5)]);
    expect(A.liSeq(a0, 0x12345678)).toEqual([A.lui(a0, 0x12345), A.addiw(a0, a0, 0x678)]);
  });
});

describe('Asm builder', () => {
  it('resolves forward and backward labels, la and data', () => {
    const a = new A.Asm(0x8000_0000);
    a.label('top');
    a.emit(A.addi(a0, a0, 1), A.c_li(a1, 3)); // 4 + 2 bytes
    a.beq(a0, a1, 'end'); // at 6
    a.c_j('top'); // at 10
    a.j('end'); // at 12
    a.la(a2, 'data'); // at 16
    a.label('end'); // 24
    a.emit(A.ecall());
    a.align(8);
    a.label('data'); // 32
    a.dword(0x1122334455667788n, 'end').word(0xdeadbeef).byte(1, 2).half(0xabcd);
    const b = a.bytes();
    const dv = new DataView(b.buffer);
    expect(b.length).toBe(32 + 16 + 4 + 2 + 2);
    expect(dv.getUint32(6, true)).toBe(A.beq(a0, a1, 18));
    expect(dv.getUint16(10, true)).toBe(A.c_j(-10));
    expect(dv.getUint32(12, true)).toBe(A.jal(0, 12));
    expect(dv.getUint32(16, true)).toBe(A.auipc(a2, 0));
    expect(dv.getUint32(20, true)).toBe(A.addi(a2, a2, 16));
    expect(dv.getBigUint64(32, true)).toBe(0x1122334455667788n);
    expect(dv.getBigUint64(40, true)).toBe(0x8000_0018n);
    expect(dv.getUint32(48, true)).toBe(0xdeadbeef);
    expect(b[52]).toBe(1);
    expect(dv.getUint16(54, true)).toBe(0xabcd);
    expect(a.addr('data')).toBe(0x8000_0020);
  });

  it('la reaches far labels with a carry into the auipc part', () => {
    const a = new A.Asm(0);
    a.la(a0, 'far');
    a.space(0x800 - 8 + 0x1000);
    a.label('far');
    const dv = new DataView(a.bytes().buffer);
    // offset 0x1800: lo = -0x800, hi = 2
    expect(dv.getUint32(0, true)).toBe(A.auipc(a0, 2));
    expect(dv.getUint32(4, true)).toBe(A.addi(a0, a0, -0x800));
  });

  it('rejects undefined, duplicate and out-of-range labels', () => {
    const a = new A.Asm();
    a.j('nowhere');
    expect(() => a.bytes()).toThrow(/never defined/);
    const b = new A.Asm();
    b.label('x');
    expect(() => b.label('x')).toThrow(/twice/);
    const c = new A.Asm();
    c.beqz(a0, 'far');
    c.space(4096);
    c.label('far');
    expect(() => c.bytes()).toThrow(/branch offset/);
  });

  it('grows past its initial buffer', () => {
    const a = new A.Asm();
    for (let i = 0; i < 10_000; i++) a.emit(A.addi(a0, a0, 1));
    expect(a.bytes().length).toBe(40_000);
  });
});
