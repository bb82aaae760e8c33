import { describe, expect, it } from 'vitest';
import * as A from './riscv-asm.js';
import { a0, a1, a2, ra, sp, zero, CSR, F, RM } from './riscv-asm.js';
import { assemble, disasm, disasmProgram } from './riscv-disasm.js';

describe('riscv-disasm', () => {
  it('prints standard mnemonics', () => {
    const cases: [number, string][] = [
      [0x00150513, 'addi a0, a0, 1'],
      [0x4505, 'c.li a0, 1'],
      [0x00113423, 'sd ra, 8(sp)'],
      [0xfe051ee3, 'bne a0, zero, -4'],
      [0xf1402573, 'csrrs a0, mhartid, zero'],
      [A.csrrwi(a0, 0x7c0, 31), 'csrrwi a0, 0x7c0, 31'],
      [0x0ff0000f, 'fence iorw, iorw'],
      [0x8330000f, 'fence.tso'],
      [0x30200073, 'mret'],
      [A.amoswap_d(a0, a1, a2, true, true), 'amoswap.d.aqrl a0, a1, (a2)'],
      [A.lr_w(a0, a1, true), 'lr.w.aq a0, (a1)'],
      [A.fadd_d(F.fa0, F.fa1, F.fa2), 'fadd.d fa0, fa1, fa2'],
      [A.fadd_d(F.fa0, F.fa1, F.fa2, RM.RTZ), 'fadd.d fa0, fa1, fa2, rtz'],
      [A.fcvt_d_w(F.fa0, a0), 'fcvt.d.w fa0, a0'],
      [A.fcvt_w_s(a0, F.ft0, RM.RMM), 'fcvt.w.s a0, ft0, rmm'],
      [A.fmv_x_w(a0, F.fs11), 'fmv.x.w a0, fs11'],
      [A.fld(F.fa0, sp, -8), 'fld fa0, -8(sp)'],
      [A.lui(a0, 0xfffff), 'lui a0, 0xfffff'],
      [0x8082, 'c.jr ra'],
      [0x7139, 'c.addi16sp sp, -64'],
      [0x1000, 'c.addi4spn s0, sp, 32'],
      [0x60a2, 'c.ldsp ra, 8(sp)'],
      [0xffed, 'c.bnez a5, -6'],
      [0x9002, 'c.ebreak'],
      [0x0000, '.half 0x0000'],
      [0xffffffff, '.word 0xffffffff'],
      [0x00000000 | 0x7f, '.word 0x0000007f'],
      [A.fadd_s(0, 0, 0, 5), '.word 0x00005053'],
    ];
    for (const [enc, text] of cases) expect(disasm(enc), text).toBe(text);
  });

  it('round-trips every encoder function through text', () => {
    const encs = [
      A.jalr(ra, a0, -2048), A.sraiw(a0, a1, 31), A.remuw(a0, a1, a2), A.fence('r', 'ow'),
      A.sfence_vma(a0, a1), A.csrrc(a0, CSR.satp, a1), A.csrrci(zero, CSR.sstatus, 2),
      A.sc_d(a0, a1, a2, false, true), A.amomaxu_w(a0, a1, a2), A.fnmsub_d(1, 2, 3, 4, RM.RUP),
      A.fsqrt_s(3, 4, RM.RDN), A.fcvt_s_d(1, 2), A.fcvt_d_s(1, 2), A.fcvt_d_lu(1, a0), A.fclass_s(a0, 5),
      A.fsgnjx_d(1, 2, 3), A.fle_s(a0, 1, 2), A.fmv_w_x(1, a0), A.fsw(31, a0, 2047),
      A.c_fsd(8, 15, 248), A.c_sw(9, 10, 124), A.c_srai(8, 0), A.c_andi(8, -32), A.c_j(-2048), A.c_j(2046),
      A.c_beqz(15, -256), A.c_bnez(8, 254), A.c_lwsp(a0, 252), A.c_swsp(a0, 252), A.c_sdsp(a0, 504),
      A.c_fldsp(1, 504), A.c_lui(a0, -32), A.c_addi16sp(-512), A.c_addiw(a0, -32), A.c_slli(zero, 0),
    ];
    for (const e of encs) {
      const t = disasm(e);
      expect(t.startsWith('.'), t).toBe(false);
      expect(assemble(t), t).toBe(e >>> 0);
    }
  });

  it('decodes then re-encodes random words and parcels bit for bit', () => {
    let s = 0x9e3779b9;
    const next = () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return s >>> 0;
    };
    let valid32 = 0;
    for (let i = 0; i < 25_000; i++) {
      // Force the low bits to 0b11 and pick a real major opcode most of the time.
      const w = ((next() & ~0x7f) | [0x03, 0x07, 0x0f, 0x13, 0x17, 0x1b, 0x23, 0x27, 0x2f, 0x33, 0x37, 0x3b, 0x43,
        0x47, 0x4b, 0x4f, 0x53, 0x63, 0x67, 0x6f, 0x73][i % 21]!) >>> 0;
      const t = disasm(w);
      if (t.startsWith('.word')) continue;
      valid32++;
      expect(assemble(t), t).toBe(w);
    }
    let valid16 = 0;
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 3) === 3) continue;
      const t = disasm(h);
      if (t.startsWith('.half')) continue;
      valid16++;
      expect(assemble(t), t).toBe(h);
    }
    expect(valid32).toBeGreaterThan(8_000);
    // Reserved RVC space (RV64): c.addi4spn 0, q0 f3=4, c.addiw x0, c.addi16sp 0, c.lui 0/x0,
    // c.subw/addw-reserved, c.lwsp/ldsp x0, c.jr x0.
    expect(valid16).toBeGreaterThan(45_000);
  });

  it('lists a program with addresses and labels', () => {
    const a = new A.Asm(0x8000_0000);
    a.emit(A.addi(a0, a0, 1), A.c_nop(), A.ecall());
    const text = disasmProgram(a.bytes(), 0x8000_0000, new Map([[0x8000_0004, 'here']]));
    expect(text.split('\n')).toEqual([
      '  80000000: 00150513  addi a0, a0, 1',
      'here:',
      '  80000004: 0001      c.nop',
      '  80000006: 00000073  ecall',
    ]);
  });
});
