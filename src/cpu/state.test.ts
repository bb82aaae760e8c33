import { describe, expect, it } from 'vitest';
import * as I from '../../test/support/riscv-asm.js';
import { Asm } from '../../test/support/riscv-asm.js';
import { restoreHartState, saveHartState } from './state.js';
import { makeHart, RAM_BASE } from './testing/run-program.js';

/** A program that keeps mixing registers, memory and CSRs: any lost state shows in the end value. */
function program(): Uint8Array {
  const a = new Asm(RAM_BASE);
  a.li(I.t0, 1 << 13).emit(I.csrs(I.CSR.mstatus, I.t0));
  a.li(I.a0, 0x12345).li(I.a1, RAM_BASE + 0x4000).li(I.t3, 0);
  a.label('loop');
  a.emit(I.addi(I.a0, I.a0, 7), I.slli(I.t1, I.a0, 13), I.xor(I.a0, I.a0, I.t1), I.srli(I.t1, I.a0, 7));
  a.emit(I.xor(I.a0, I.a0, I.t1), I.sd(I.a0, I.a1, 0), I.ld(I.a2, I.a1, 0), I.csrw(I.CSR.mscratch, I.a2));
  a.emit(I.fcvt_d_l(1, I.a0), I.fadd_d(2, 2, 1), I.addi(I.t3, I.t3, 1));
  a.j('loop');
  return a.bytes();
}

describe('hart state', () => {
  it('round-trips and the restored hart continues exactly like the original', () => {
    const code = program();
    const one = makeHart();
    one.ram.set(code);
    one.hart.reset(RAM_BASE);
    one.hart.run(12_345);
    const saved = JSON.parse(JSON.stringify(saveHartState(one.hart)));
    const two = makeHart();
    two.ram.set(one.ram);
    restoreHartState(two.hart, saved);
    expect(saveHartState(two.hart)).toEqual(saved);
    one.hart.run(50_000);
    two.hart.run(50_000);
    expect(saveHartState(two.hart)).toEqual(saveHartState(one.hart));
    expect(two.hart.getX(10)).toBe(one.hart.getX(10));
  });

  it('rejects a corrupt state without touching the hart', () => {
    const { hart } = makeHart();
    hart.reset(RAM_BASE);
    const good = saveHartState(hart);
    const before = JSON.stringify(good);
    expect(() => restoreHartState(hart, { ...good, version: 2 as 1 })).toThrow(/version/);
    expect(() => restoreHartState(hart, { ...good, priv: 2 as 1 })).toThrow(/priv/);
    expect(() => restoreHartState(hart, { ...good, x: good.x.slice(1) })).toThrow(/x registers/);
    expect(() => restoreHartState(hart, { ...good, csr: { ...good.csr, satp: [0, 0x50000000] } })).toThrow(/satp/);
    expect(JSON.stringify(saveHartState(hart))).toBe(before);
  });
});
