import { describe, expect, it } from 'vitest';
import * as I from '../../test/support/riscv-asm.js';
import { Asm } from '../../test/support/riscv-asm.js';
import { FINISHER, RAM_BASE, runProgram } from './testing/run-program.js';

const { a0, a1, a2, a3, t0, t1, t2 } = I;

/** Appends the finisher write that stops the test machine. */
function finish(a: Asm): Uint8Array {
  a.li(t2, FINISHER).emit(I.sw(t2, t2, 0));
  a.label('__spin').j('__spin');
  return a.bytes();
}

function run(build: (a: Asm) => void) {
  const a = new Asm(RAM_BASE);
  build(a);
  const r = runProgram(finish(a));
  expect(r.finished).toBe(true);
  return r.hart;
}

describe('hart: RV64I', () => {
  it('adds, subtracts and sign-extends', () => {
    const h = run((a) => {
      a.li(a0, 0x7fffffffffffffffn).emit(I.addi(a0, a0, 1)); // wraps to INT64_MIN
      a.li(a1, -5).emit(I.addi(a1, a1, 3)); // -2
      a.li(a2, 0xffffffffn).emit(I.addiw(a2, a2, 1)); // 0 (addiw sign-extends the low word)
      a.li(a3, 0x7fffffffn).emit(I.addiw(a3, a3, 1)); // -2^31
    });
    expect(h.getX(10)).toBe(-(1n << 63n));
    expect(h.getX(11)).toBe(-2n);
    expect(h.getX(12)).toBe(0n);
    expect(h.getX(13)).toBe(-(1n << 31n));
  });

  it('shifts by amounts up to 63 and masks register shift amounts', () => {
    const h = run((a) => {
      a.li(t0, 0x8000000000000001n);
      a.emit(I.srai(a0, t0, 63), I.srli(a1, t0, 63), I.slli(a2, t0, 63));
      a.li(t1, 65).emit(I.sll(a3, t0, t1)); // 65 & 63 = 1
    });
    expect(h.getX(10)).toBe(-1n);
    expect(h.getX(11)).toBe(1n);
    expect(h.getX(12)).toBe(-(1n << 63n));
    expect(h.getX(13)).toBe(2n);
  });

  it('keeps x0 zero', () => {
    const h = run((a) => { a.emit(I.addi(0, 0, 5), I.add(a0, 0, 0)); a.li(t0, RAM_BASE + 0x8000).emit(I.ld(0, t0, 0)); });
    expect(h.getX(0)).toBe(0n);
    expect(h.getX(10)).toBe(0n);
  });

  it('loads and stores every width with sign and zero extension, aligned or not', () => {
    const h = run((a) => {
      a.li(t0, RAM_BASE + 0x8000).li(t1, 0x8877665544332211n);
      a.emit(I.sd(t1, t0, 0), I.lb(a0, t0, 7), I.lbu(a1, t0, 7), I.lh(a2, t0, 6), I.lwu(a3, t0, 4));
      a.emit(I.ld(4, t0, 1)); // misaligned load into tp
      a.emit(I.sw(t1, t0, 13), I.ld(5, t0, 8)); // misaligned store, t0 is then overwritten: read into t0 last
    });
    expect(h.getX(10)).toBe(-0x78n);
    expect(h.getX(11)).toBe(0x88n);
    expect(h.getX(12)).toBe(-0x7789n);
    expect(h.getX(13)).toBe(0x88776655n);
    expect(h.getX(4)).toBe(0x0088776655443322n);
    expect(h.getX(5)).toBe(0x3322110000000000n); // bytes 13-15 of the word stored at offset 13
  });

  it('branches on signed and unsigned comparisons', () => {
    const h = run((a) => {
      a.li(a0, 0).li(t0, -1).li(t1, 1);
      a.blt(t0, t1, 'l1').emit(I.addi(a0, a0, 100)).label('l1'); // taken
      a.bltu(t0, t1, 'l2').emit(I.addi(a0, a0, 1)).label('l2'); // not taken
      a.bgeu(t0, t1, 'l3').emit(I.addi(a0, a0, 100)).label('l3'); // taken
      a.bge(t0, t1, 'l4').emit(I.addi(a0, a0, 2)).label('l4'); // not taken
    });
    expect(h.getX(10)).toBe(3n);
  });

  it('jal/jalr link and clear bit 0 of the target', () => {
    const h = run((a) => {
      a.la(t0, 'target').emit(I.addi(t0, t0, 1), I.jalr(I.ra, t0, 0));
      a.label('back').j('end');
      a.label('target').li(a0, 42).emit(I.jalr(0, I.ra, 0));
      a.label('end');
    });
    expect(h.getX(10)).toBe(42n);
  });
});

describe('hart: M', () => {
  it('multiplies and divides with the spec corner cases', () => {
    const h = run((a) => {
      a.li(t0, -(1n << 63n)).li(t1, -1);
      a.emit(I.div(a0, t0, t1), I.rem(a1, t0, t1)); // overflow: MIN, 0
      a.emit(I.div(a2, t0, 0), I.remu(a3, t0, 0)); // by zero: -1, dividend
      a.li(4, 0xffffffffffffffffn).li(5, 0xffffffffffffffffn).emit(I.mulhu(6, 4, 5)); // 2^64-2
      a.li(7, -3).li(8, 5).emit(I.mulh(9, 7, 8), I.mul(18, 7, 8), I.mulhsu(19, 7, 8));
      a.li(20, 0x80000000n).li(21, -1).emit(I.divw(22, 20, 21), I.divuw(23, 20, 0), I.remw(24, 20, 21));
      a.li(25, 123456789123456789n).li(26, 987654321n).emit(I.divu(27, 25, 26), I.remu(28, 25, 26));
    });
    expect(h.getX(10)).toBe(-(1n << 63n));
    expect(h.getX(11)).toBe(0n);
    expect(h.getX(12)).toBe(-1n);
    expect(h.getX(13)).toBe(-(1n << 63n));
    expect(h.getX(6)).toBe(-2n); // 0xffff_ffff_ffff_fffe
    expect(h.getX(9)).toBe(-1n);
    expect(h.getX(18)).toBe(-15n);
    expect(h.getX(19)).toBe(-1n);
    expect(h.getX(22)).toBe(-(1n << 31n));
    expect(h.getX(23)).toBe(-1n);
    expect(h.getX(24)).toBe(0n);
    expect(h.getX(27)).toBe(123456789123456789n / 987654321n);
    expect(h.getX(28)).toBe(123456789123456789n % 987654321n);
  });
});

describe('hart: traps and CSRs', () => {
  it('takes an illegal instruction trap with cause, epc and tval', () => {
    const h = run((a) => {
      a.la(t0, 'handler').emit(I.csrw(I.CSR.mtvec, t0));
      a.label('bad').word(0xffffffff);
      a.label('handler');
      a.emit(I.csrr(a0, I.CSR.mcause), I.csrr(a1, I.CSR.mepc), I.csrr(a2, I.CSR.mtval));
    });
    expect(h.getX(10)).toBe(2n);
    expect(h.getX(11)).toBe(BigInt(RAM_BASE + 12));
    expect(h.getX(12)).toBe(0xffffffffn);
  });

  it('ecall from U-mode after mret, with MPP and MPIE updates', () => {
    const h = run((a) => {
      a.la(t0, 'handler').emit(I.csrw(I.CSR.mtvec, t0));
      // PMP: allow everything for U (NAPOT over the whole space).
      a.li(t0, -1).emit(I.csrw(I.CSR.pmpaddr0, t0)).li(t0, 0x1f).emit(I.csrw(I.CSR.pmpcfg0, t0));
      a.la(t0, 'user').emit(I.csrw(I.CSR.mepc, t0));
      a.emit(I.mret());
      a.label('user').emit(I.ecall());
      a.label('handler').emit(I.csrr(a0, I.CSR.mcause), I.csrr(a1, I.CSR.mstatus));
    });
    expect(h.getX(10)).toBe(8n);
    // MPP = U (0), MPIE = 0 (MIE was 0), UXL/SXL = 2.
    expect(h.getX(11) & 0x1888n).toBe(0n);
    expect((h.getX(11) >> 32n) & 0xfn).toBe(0xan);
  });

  it('runs compressed code', () => {
    const h = run((a) => {
      a.emit(I.c_li(a0, 5), I.c_addi(a0, 3), I.c_slli(a0, 2), I.c_mv(a1, a0), I.c_add(a1, a0));
      a.align(4, true);
    });
    expect(h.getX(10)).toBe(32n);
    expect(h.getX(11)).toBe(64n);
  });
});
