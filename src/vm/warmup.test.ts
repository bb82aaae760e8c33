import { describe, expect, it } from 'vitest';
import * as ref from '../../test/support/riscv-asm.js';
import { decode, decoded } from '../cpu/decoder.js';
import { Op } from '../cpu/opcodes.js';
import { warmUp } from '../host/warmup.js';
import { A0, A1, A2, Asm, C, S0, SP, T0, T1, T2, ZERO } from '../machine/warmup/asm.js';
import { buildWarmUpImage } from '../machine/warmup/program.js';
import { runWarmUp, warmUpHart } from './warmup.js';

const CAUSES = {
  fetchAccess: 1, illegal: 2, breakpoint: 3, misalignedLoad: 4, loadAccess: 5, misalignedStore: 6, storeAccess: 7,
  userEcall: 8, machineEcall: 11, fetchPageFault: 12, loadPageFault: 13, storePageFault: 15,
};
const IRQS = { sSoft: 1, mSoft: 3, sTimer: 5, mTimer: 7, sExternal: 9 };

describe('warm-up assembler', () => {
  it('encodes every compressed instruction as the reference assembler does (Unpriv ch. 16)', () => {
    const pairs: [number, number][] = [
      [C.addi4spn(A0, 16), ref.c_addi4spn(A0, 16)], [C.addi4spn(A1, 1020), ref.c_addi4spn(A1, 1020)],
      [C.fld(S0, A0, 248), ref.c_fld(S0, A0, 248)], [C.lw(A1, A0, 124), ref.c_lw(A1, A0, 124)], [C.ld(A2, A0, 8), ref.c_ld(A2, A0, 8)],
      [C.fsd(S0, A0, 16), ref.c_fsd(S0, A0, 16)], [C.sw(A1, A0, 68), ref.c_sw(A1, A0, 68)], [C.sd(A1, A0, 200), ref.c_sd(A1, A0, 200)],
      [C.nop(), ref.c_nop()], [C.addi(A1, -32), ref.c_addi(A1, -32)], [C.addiw(A1, 31), ref.c_addiw(A1, 31)], [C.li(A1, -3), ref.c_li(A1, -3)],
      [C.addi16sp(-512), ref.c_addi16sp(-512)], [C.addi16sp(496), ref.c_addi16sp(496)], [C.lui(A2, -1), ref.c_lui(A2, -1)], [C.lui(A2, 5), ref.c_lui(A2, 5)],
      [C.srli(A1, 63), ref.c_srli(A1, 63)], [C.srai(A1, 33), ref.c_srai(A1, 33)], [C.andi(A1, -17), ref.c_andi(A1, -17)],
      [C.sub(A0, A1), ref.c_sub(A0, A1)], [C.xor(A0, A1), ref.c_xor(A0, A1)], [C.or(A0, A1), ref.c_or(A0, A1)], [C.and(A0, A1), ref.c_and(A0, A1)],
      [C.subw(A0, A1), ref.c_subw(A0, A1)], [C.addw(A0, A1), ref.c_addw(A0, A1)],
      [C.j(-2048), ref.c_j(-2048)], [C.j(1366), ref.c_j(1366)], [C.beqz(A0, -256), ref.c_beqz(A0, -256)], [C.bnez(A1, 170), ref.c_bnez(A1, 170)],
      [C.slli(A1, 63), ref.c_slli(A1, 63)], [C.fldsp(S0, 504), ref.c_fldsp(S0, 504)], [C.lwsp(A1, 252), ref.c_lwsp(A1, 252)], [C.ldsp(A2, 488), ref.c_ldsp(A2, 488)],
      [C.jr(T0), ref.c_jr(T0)], [C.mv(A1, T0), ref.c_mv(A1, T0)], [C.ebreak(), ref.c_ebreak()], [C.jalr(T0), ref.c_jalr(T0)], [C.add(A1, T0), ref.c_add(A1, T0)],
      [C.fsdsp(S0, 504), ref.c_fsdsp(S0, 504)], [C.swsp(A1, 252), ref.c_swsp(A1, 252)], [C.sdsp(A1, 488), ref.c_sdsp(A1, 488)],
    ];
    for (const [ours, theirs] of pairs) expect(ours.toString(16)).toBe(theirs.toString(16));
  });

  it('encodes the 32-bit formats as the reference assembler does', () => {
    const words = (f: (a: Asm) => void) => {
      const a = new Asm(0x8000_0000);
      f(a);
      const b = a.assemble();
      return Array.from({ length: b.length / 4 }, (_, i) => (b[4 * i]! | (b[4 * i + 1]! << 8) | (b[4 * i + 2]! << 16) | (b[4 * i + 3]! << 24)) >>> 0);
    };
    expect(words((a) => a.r('add', A0, A1, A2).r('mulhsu', A0, A1, A2).addi(A0, A1, -2048).shift('sra', A0, A1, 63).shift('sra', A0, A1, 31, true)
      .load('ld', A0, SP, 2040).store('sd', A1, SP, -8).lui(A0, 0xfffff).csr('csrrw', A0, 0x340, A1).csr('csrrs', A0, 0x340, A1)
      .amo('lr', true, A0, ZERO, A1).amo('sc', false, A0, A2, A1).amo('amoadd', false, A0, A2, A1)
      .fma(0x43, true, 1, 2, 3, 4).fp('fadd', true, 1, 2, 3).fp('fsgnj', false, 1, 2, 3).fp('fcvt.l', true, A0, 1).fp('fsqrt', true, 1, 2)
      .fp('feq', true, A0, 1, 2).fp('fcvt.from.lu', true, 1, A0).fp('fmv.x', true, A0, 1).fp('fclass', false, A0, 1).fp('fmv.from.x', false, 1, A0)
      .fload(true, 1, A0, 8).fstore(true, 1, A0, -8)))
      .toEqual([ref.add(A0, A1, A2), ref.rType(0x33, A0, 2, A1, A2, 1), ref.addi(A0, A1, -2048), ref.srai(A0, A1, 63), ref.sraiw(A0, A1, 31),
        ref.ld(A0, SP, 2040), ref.sd(A1, SP, -8), ref.lui(A0, 0xfffff), ref.csrrw(A0, 0x340, A1), ref.csrrs(A0, 0x340, A1),
        ref.lr_d(A0, A1), ref.sc_w(A0, A2, A1), ref.amoadd_w(A0, A2, A1),
        ref.fmadd_d(1, 2, 3, 4), ref.fadd_d(1, 2, 3), ref.fsgnj_s(1, 2, 3), ref.fcvt_l_d(A0, 1), ref.fsqrt_d(1, 2),
        ref.feq_d(A0, 1, 2), ref.fcvt_d_lu(1, A0), ref.fmv_x_d(A0, 1), ref.fclass_s(A0, 1), ref.fmv_w_x(1, A0),
        ref.fld(1, A0, 8), ref.fsd(1, A0, -8)].map((w) => w >>> 0));
    // Branches and jal to labels, backwards and forwards; la and li.
    const a = new Asm(0x8000_0000);
    a.label('top').branch('bne', T0, T1, 'end').jal(T2, 'top').label('end');
    const b = a.assemble();
    const w = (i: number) => (b[4 * i]! | (b[4 * i + 1]! << 8) | (b[4 * i + 2]! << 16) | (b[4 * i + 3]! << 24)) >>> 0;
    expect([w(0), w(1)]).toEqual([ref.bne(T0, T1, 8) >>> 0, ref.jal(T2, -4) >>> 0]);
  });
});

describe('warm-up program', () => {
  it('holds every operation of the interpreter and every compressed form', () => {
    const seen = new Set<number>();
    let compressed = 0;
    for (const s of buildWarmUpImage().segments.slice(0, 5)) {
      const b = s.bytes;
      for (let i = 0; i + 1 < b.length;) {
        const lo = b[i]! | (b[i + 1]! << 8);
        if ((lo & 3) !== 3) {
          if (lo !== 0) compressed++;
          decode(lo);
          i += 2;
        } else {
          decode((lo | ((b[i + 2]! | (b[i + 3]! << 8)) << 16)) >>> 0);
          i += 4;
        }
        seen.add(decoded.w & 0xff);
      }
    }
    const missing: number[] = [];
    for (let op = Op.ILLEGAL; op < Op.COUNT; op++) if (!seen.has(op)) missing.push(op);
    expect(missing).toEqual([]);
    expect(compressed).toBeGreaterThanOrEqual(40);
  });

  it.each(['interp', 'jit'] as const)('runs to its poweroff on the %s tier, through every trap and interrupt it means to take', (accel) => {
    const r = runWarmUp(accel);
    expect(r.finished).toBe(true);
    for (const [name, cause] of Object.entries(CAUSES)) expect(r.traps[cause], name).toBeGreaterThan(0);
    for (const [name, irq] of Object.entries(IRQS)) expect(r.interrupts[irq], name).toBeGreaterThan(0);
    expect(r.tlbMisses).toBeGreaterThan(50);
    if (accel === 'jit') {
      const j = r.jit!;
      expect(j.failures).toBe(0);
      // The catalog page and the page the hot loop calls, and pages entered that often in all
      // (a page compiles after `threshold` entries summed over its offsets: the trap handlers').
      expect(j.modulesCompiled).toBeGreaterThanOrEqual(2);
      expect(j.modulesCompiled).toBeLessThanOrEqual(8);
      expect(j.instructions).toBeGreaterThan(100);
      expect(j.stepExits).toBeGreaterThan(10);
      expect(j.cacheHits).toBeGreaterThan(0);
      expect(j.invalidations).toBe(1);
    } else {
      expect(r.jit).toBeUndefined();
    }
  });

  it('is architecturally the same on both tiers and carries nothing from one machine to the next', () => {
    const strip = (r: ReturnType<typeof runWarmUp>) => ({ finished: r.finished, instructions: r.instructions, traps: r.traps, interrupts: r.interrupts });
    const a = strip(runWarmUp('interp'));
    expect(strip(runWarmUp('jit'))).toEqual(a);
    expect(strip(runWarmUp('interp'))).toEqual(a);
  });

  it('runs once per process and tier; the JIT tier counts for the interpreter too; VISOR_NO_WARMUP skips it', () => {
    expect(warmUp('jit', { VISOR_NO_WARMUP: '1' })).toBeUndefined();
    const first = warmUpHart('jit');
    expect(first?.finished).toBe(true);
    expect(warmUpHart('jit')).toBeUndefined();
    expect(warmUpHart('interp')).toBeUndefined();
    expect(warmUp('jit', {})).toBeUndefined();
  });
});
