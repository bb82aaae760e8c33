/**
 * A small RV64GC disassembler for printing test programs on a mismatch, plus `assemble`, which
 * parses its output back (one line → one encoding) so the two can be checked against each other.
 *
 * Output uses the spec's mnemonics with an explicit `c.` prefix for RVC and no pseudo-
 * instructions (so every line names exactly one encoding): `addi a0, a0, 1`, `lw a0, -4(sp)`,
 * `amoadd.w.aqrl a0, a1, (a2)`, `fadd.s fa0, fa1, fa2, rtz` (the rounding mode is printed only
 * when it differs from the assembler's default), `csrrs a0, mstatus, zero`, `beq a0, a1, -8`
 * (offsets are relative). Anything not a valid encoding prints as `.word 0x…` / `.half 0x…`.
 */
import * as E from './riscv-asm.js';

const X = E.X_NAMES;
const FN = E.F_NAMES;
const RM_NAMES = ['rne', 'rtz', 'rdn', 'rup', 'rmm', '', '', 'dyn'];
const CSR_NAMES = new Map<number, string>(Object.entries(E.CSR).map(([k, v]) => [v, k]));

const word = (w: number) => `.word 0x${(w >>> 0).toString(16).padStart(8, '0')}`;
const half = (h: number) => `.half 0x${h.toString(16).padStart(4, '0')}`;
const csrName = (c: number) => CSR_NAMES.get(c) ?? `0x${c.toString(16).padStart(3, '0')}`;
const fenceSet = (v: number) => ['i', 'o', 'r', 'w'].filter((_, i) => v & (8 >> i)).join('') || '0';

/** Disassembles one instruction (`enc` is a 32-bit word, or a 16-bit parcel when its low bits ≠ 0b11). */
export function disasm(enc: number): string {
  return E.isCompressed(enc) ? disasm16(enc & 0xffff) : disasm32(enc >>> 0);
}

function disasm32(w: number): string {
  const op = w & 0x7f;
  const rd = (w >> 7) & 31;
  const f3 = (w >> 12) & 7;
  const rs1 = (w >> 15) & 31;
  const rs2 = (w >> 20) & 31;
  const f7 = w >>> 25;
  const immI = w >> 20;
  const immS = ((w >> 25) << 5) | ((w >> 7) & 31);
  const immB = ((w >> 31) << 12) | (((w >> 7) & 1) << 11) | (((w >> 25) & 0x3f) << 5) | (((w >> 8) & 0xf) << 1);
  const immJ = ((w >> 31) << 20) | (((w >> 12) & 0xff) << 12) | (((w >> 20) & 1) << 11) | (((w >> 21) & 0x3ff) << 1);
  const r3 = (m: string) => `${m} ${X[rd]}, ${X[rs1]}, ${X[rs2]}`;
  switch (op) {
    case E.OP.LUI: return `lui ${X[rd]}, 0x${(w >>> 12).toString(16)}`;
    case E.OP.AUIPC: return `auipc ${X[rd]}, 0x${(w >>> 12).toString(16)}`;
    case E.OP.JAL: return `jal ${X[rd]}, ${immJ}`;
    case E.OP.JALR: return f3 === 0 ? `jalr ${X[rd]}, ${immI}(${X[rs1]})` : word(w);
    case E.OP.BRANCH: {
      const m = ['beq', 'bne', '', '', 'blt', 'bge', 'bltu', 'bgeu'][f3];
      return m ? `${m} ${X[rs1]}, ${X[rs2]}, ${immB}` : word(w);
    }
    case E.OP.LOAD: {
      const m = ['lb', 'lh', 'lw', 'ld', 'lbu', 'lhu', 'lwu', ''][f3];
      return m ? `${m} ${X[rd]}, ${immI}(${X[rs1]})` : word(w);
    }
    case E.OP.STORE: {
      const m = ['sb', 'sh', 'sw', 'sd'][f3];
      return m ? `${m} ${X[rs2]}, ${immS}(${X[rs1]})` : word(w);
    }
    case E.OP.OP_IMM: {
      const sh = (w >>> 20) & 63;
      const hi6 = w >>> 26;
      if (f3 === 1) return hi6 === 0 ? `slli ${X[rd]}, ${X[rs1]}, ${sh}` : word(w);
      if (f3 === 5) {
        if (hi6 === 0) return `srli ${X[rd]}, ${X[rs1]}, ${sh}`;
        if (hi6 === 0x10) return `srai ${X[rd]}, ${X[rs1]}, ${sh}`;
        return word(w);
      }
      const m = ['addi', '', 'slti', 'sltiu', 'xori', '', 'ori', 'andi'][f3]!;
      return `${m} ${X[rd]}, ${X[rs1]}, ${immI}`;
    }
    case E.OP.OP_IMM_32: {
      if (f3 === 0) return `addiw ${X[rd]}, ${X[rs1]}, ${immI}`;
      if (f3 === 1 && f7 === 0) return `slliw ${X[rd]}, ${X[rs1]}, ${rs2}`;
      if (f3 === 5 && f7 === 0) return `srliw ${X[rd]}, ${X[rs1]}, ${rs2}`;
      if (f3 === 5 && f7 === 0x20) return `sraiw ${X[rd]}, ${X[rs1]}, ${rs2}`;
      return word(w);
    }
    case E.OP.OP: {
      if (f7 === 0) return r3(['add', 'sll', 'slt', 'sltu', 'xor', 'srl', 'or', 'and'][f3]!);
      if (f7 === 1) return r3(['mul', 'mulh', 'mulhsu', 'mulhu', 'div', 'divu', 'rem', 'remu'][f3]!);
      if (f7 === 0x20 && f3 === 0) return r3('sub');
      if (f7 === 0x20 && f3 === 5) return r3('sra');
      return word(w);
    }
    case E.OP.OP_32: {
      const m = f7 === 0 ? ['addw', 'sllw', '', '', '', 'srlw', '', ''][f3]
        : f7 === 0x20 ? ['subw', '', '', '', '', 'sraw', '', ''][f3]
          : f7 === 1 ? ['mulw', '', '', '', 'divw', 'divuw', 'remw', 'remuw'][f3] : '';
      return m ? r3(m) : word(w);
    }
    case E.OP.MISC_MEM: {
      if (w === 0x0000100f) return 'fence.i';
      const fm = w >>> 28;
      if (f3 === 0 && rd === 0 && rs1 === 0) {
        if (fm === 0) return `fence ${fenceSet((w >> 24) & 15)}, ${fenceSet((w >> 20) & 15)}`;
        if (w === E.fence_tso()) return 'fence.tso';
      }
      return word(w);
    }
    case E.OP.SYSTEM: {
      if (f3 === 0) {
        switch (w) {
          case 0x00000073: return 'ecall';
          case 0x00100073: return 'ebreak';
          case 0x30200073: return 'mret';
          case 0x10200073: return 'sret';
          case 0x10500073: return 'wfi';
        }
        if (f7 === 0x09 && rd === 0) return `sfence.vma ${X[rs1]}, ${X[rs2]}`;
        return word(w);
      }
      const m = ['', 'csrrw', 'csrrs', 'csrrc', '', 'csrrwi', 'csrrsi', 'csrrci'][f3];
      if (!m) return word(w);
      return `${m} ${X[rd]}, ${csrName(w >>> 20)}, ${f3 >= 5 ? rs1 : X[rs1]}`;
    }
    case E.OP.AMO: {
      if (f3 !== 2 && f3 !== 3) return word(w);
      const f5 = w >>> 27;
      const name = (Object.keys(E.AMO_FUNCT5) as E.AmoOp[]).find((k) => E.AMO_FUNCT5[k] === f5);
      if (!name || (name === 'lr' && rs2 !== 0)) return word(w);
      const ord = ['', '.rl', '.aq', '.aqrl'][(w >> 25) & 3];
      const m = `${name}.${f3 === 2 ? 'w' : 'd'}${ord}`;
      return name === 'lr' ? `${m} ${X[rd]}, (${X[rs1]})` : `${m} ${X[rd]}, ${X[rs2]}, (${X[rs1]})`;
    }
    case E.OP.LOAD_FP: {
      const m = f3 === 2 ? 'flw' : f3 === 3 ? 'fld' : '';
      return m ? `${m} ${FN[rd]}, ${immI}(${X[rs1]})` : word(w);
    }
    case E.OP.STORE_FP: {
      const m = f3 === 2 ? 'fsw' : f3 === 3 ? 'fsd' : '';
      return m ? `${m} ${FN[rs2]}, ${immS}(${X[rs1]})` : word(w);
    }
    case E.OP.MADD: case E.OP.MSUB: case E.OP.NMSUB: case E.OP.NMADD: {
      const fmt = (w >> 25) & 3;
      if (fmt > 1 || !RM_NAMES[f3]) return word(w);
      const m = { [E.OP.MADD]: 'fmadd', [E.OP.MSUB]: 'fmsub', [E.OP.NMSUB]: 'fnmsub', [E.OP.NMADD]: 'fnmadd' }[op];
      return `${m}.${fmt ? 'd' : 's'} ${FN[rd]}, ${FN[rs1]}, ${FN[rs2]}, ${FN[w >>> 27]}${rmSuffix(f3, E.RM.DYN)}`;
    }
    case E.OP.OP_FP: return disasmFp(w, rd, f3, rs1, rs2, f7);
  }
  return word(w);
}

function rmSuffix(rm: number, def: number): string {
  return rm === def ? '' : `, ${RM_NAMES[rm]}`;
}

function disasmFp(w: number, rd: number, f3: number, rs1: number, rs2: number, f7: number): string {
  const f5 = f7 >> 2;
  const fmt = f7 & 3;
  if (fmt > 1) return word(w);
  const t = fmt ? 'd' : 's';
  const rmOk = RM_NAMES[f3] !== '';
  switch (f5) {
    case 0x00: case 0x01: case 0x02: case 0x03:
      if (!rmOk) return word(w);
      return `${['fadd', 'fsub', 'fmul', 'fdiv'][f5]}.${t} ${FN[rd]}, ${FN[rs1]}, ${FN[rs2]}${rmSuffix(f3, E.RM.DYN)}`;
    case 0x0b:
      return rmOk && rs2 === 0 ? `fsqrt.${t} ${FN[rd]}, ${FN[rs1]}${rmSuffix(f3, E.RM.DYN)}` : word(w);
    case 0x04: {
      const m = ['fsgnj', 'fsgnjn', 'fsgnjx'][f3];
      return m ? `${m}.${t} ${FN[rd]}, ${FN[rs1]}, ${FN[rs2]}` : word(w);
    }
    case 0x05: {
      const m = ['fmin', 'fmax'][f3];
      return m ? `${m}.${t} ${FN[rd]}, ${FN[rs1]}, ${FN[rs2]}` : word(w);
    }
    case 0x08:
      if (!rmOk) return word(w);
      if (fmt === 0 && rs2 === 1) return `fcvt.s.d ${FN[rd]}, ${FN[rs1]}${rmSuffix(f3, E.RM.DYN)}`;
      if (fmt === 1 && rs2 === 0) return `fcvt.d.s ${FN[rd]}, ${FN[rs1]}${rmSuffix(f3, E.RM.RNE)}`;
      return word(w);
    case 0x14: {
      const m = ['fle', 'flt', 'feq'][f3];
      return m ? `${m}.${t} ${X[rd]}, ${FN[rs1]}, ${FN[rs2]}` : word(w);
    }
    case 0x18: {
      const it = ['w', 'wu', 'l', 'lu'][rs2];
      return it && rmOk ? `fcvt.${it}.${t} ${X[rd]}, ${FN[rs1]}${rmSuffix(f3, E.RM.DYN)}` : word(w);
    }
    case 0x1a: {
      const it = ['w', 'wu', 'l', 'lu'][rs2];
      const def = fmt === 1 && rs2 < 2 ? E.RM.RNE : E.RM.DYN;
      return it && rmOk ? `fcvt.${t}.${it} ${FN[rd]}, ${X[rs1]}${rmSuffix(f3, def)}` : word(w);
    }
    case 0x1c:
      if (rs2 !== 0) return word(w);
      if (f3 === 0) return `fmv.x.${fmt ? 'd' : 'w'} ${X[rd]}, ${FN[rs1]}`;
      if (f3 === 1) return `fclass.${t} ${X[rd]}, ${FN[rs1]}`;
      return word(w);
    case 0x1e:
      return rs2 === 0 && f3 === 0 ? `fmv.${fmt ? 'd' : 'w'}.x ${FN[rd]}, ${X[rs1]}` : word(w);
  }
  return word(w);
}

function disasm16(h: number): string {
  const q = h & 3;
  const f3 = h >> 13;
  const rd = (h >> 7) & 31;
  const rs2 = (h >> 2) & 31;
  const rdp = ((h >> 7) & 7) + 8;
  const rs2p = ((h >> 2) & 7) + 8;
  const b = (i: number) => (h >> i) & 1;
  const ciImm = ((-b(12)) << 5) | ((h >> 2) & 31); // sign-extended imm[5:0]
  const uimm8 = (((h >> 10) & 7) << 3) | (((h >> 5) & 3) << 6); // c.ld/c.sd/c.fld/c.fsd
  const uimm4 = (((h >> 10) & 7) << 3) | (b(6) << 2) | (b(5) << 6); // c.lw/c.sw
  if (q === 0) {
    switch (f3) {
      case 0: {
        const nz = (((h >> 11) & 3) << 4) | (((h >> 7) & 15) << 6) | (b(6) << 2) | (b(5) << 3);
        return nz ? `c.addi4spn ${X[rs2p]}, sp, ${nz}` : half(h);
      }
      case 1: return `c.fld ${FN[rs2p]}, ${uimm8}(${X[rdp]})`;
      case 2: return `c.lw ${X[rs2p]}, ${uimm4}(${X[rdp]})`;
      case 3: return `c.ld ${X[rs2p]}, ${uimm8}(${X[rdp]})`;
      case 5: return `c.fsd ${FN[rs2p]}, ${uimm8}(${X[rdp]})`;
      case 6: return `c.sw ${X[rs2p]}, ${uimm4}(${X[rdp]})`;
      case 7: return `c.sd ${X[rs2p]}, ${uimm8}(${X[rdp]})`;
    }
    return half(h);
  }
  if (q === 1) {
    switch (f3) {
      case 0: return h === 0x0001 ? 'c.nop' : `c.addi ${X[rd]}, ${ciImm}`;
      case 1: return rd ? `c.addiw ${X[rd]}, ${ciImm}` : half(h);
      case 2: return `c.li ${X[rd]}, ${ciImm}`;
      case 3: {
        if (rd === 2) {
          const nz = ((-b(12)) << 9) | (b(6) << 4) | (b(5) << 6) | (((h >> 3) & 3) << 7) | (b(2) << 5);
          return nz ? `c.addi16sp sp, ${nz}` : half(h);
        }
        return rd && ciImm ? `c.lui ${X[rd]}, ${ciImm}` : half(h);
      }
      case 4: {
        const sh = (b(12) << 5) | ((h >> 2) & 31);
        switch ((h >> 10) & 3) {
          case 0: return `c.srli ${X[rdp]}, ${sh}`;
          case 1: return `c.srai ${X[rdp]}, ${sh}`;
          case 2: return `c.andi ${X[rdp]}, ${ciImm}`;
        }
        const m = ['c.sub', 'c.xor', 'c.or', 'c.and', 'c.subw', 'c.addw', '', ''][(b(12) << 2) | ((h >> 5) & 3)];
        return m ? `${m} ${X[rdp]}, ${X[rs2p]}` : half(h);
      }
      case 5: {
        const off = ((-b(12)) << 11) | (b(11) << 4) | (((h >> 9) & 3) << 8) | (b(8) << 10) | (b(7) << 6) | (b(6) << 7) |
          (((h >> 3) & 7) << 1) | (b(2) << 5);
        return `c.j ${off}`;
      }
      default: {
        const off = ((-b(12)) << 8) | (((h >> 10) & 3) << 3) | (((h >> 5) & 3) << 6) | (((h >> 3) & 3) << 1) | (b(2) << 5);
        return `${f3 === 6 ? 'c.beqz' : 'c.bnez'} ${X[rdp]}, ${off}`;
      }
    }
  }
  if (q === 2) {
    const sp8 = (b(12) << 5) | (((h >> 5) & 3) << 3) | (((h >> 2) & 7) << 6);
    const ss8 = (((h >> 10) & 7) << 3) | (((h >> 7) & 7) << 6);
    switch (f3) {
      case 0: return `c.slli ${X[rd]}, ${(b(12) << 5) | rs2}`;
      case 1: return `c.fldsp ${FN[rd]}, ${sp8}(sp)`;
      case 2: return rd ? `c.lwsp ${X[rd]}, ${(b(12) << 5) | (((h >> 4) & 7) << 2) | (((h >> 2) & 3) << 6)}(sp)` : half(h);
      case 3: return rd ? `c.ldsp ${X[rd]}, ${sp8}(sp)` : half(h);
      case 4:
        if (!b(12)) {
          if (rs2 === 0) return rd ? `c.jr ${X[rd]}` : half(h);
          return `c.mv ${X[rd]}, ${X[rs2]}`;
        }
        if (rs2 === 0) return rd ? `c.jalr ${X[rd]}` : 'c.ebreak';
        return `c.add ${X[rd]}, ${X[rs2]}`;
      case 5: return `c.fsdsp ${FN[rs2]}, ${ss8}(sp)`;
      case 6: return `c.swsp ${X[rs2]}, ${(((h >> 9) & 15) << 2) | (((h >> 7) & 3) << 6)}(sp)`;
      case 7: return `c.sdsp ${X[rs2]}, ${ss8}(sp)`;
    }
  }
  return half(h);
}

/** Disassembles a flat program: one line per instruction, `address: encoding  text`. */
export function disasmProgram(code: Uint8Array, origin = 0x8000_0000, marks: ReadonlyMap<number, string> = new Map()): string {
  const lines: string[] = [];
  const dv = new DataView(code.buffer, code.byteOffset, code.byteLength);
  for (let at = 0; at + 2 <= code.length;) {
    const addr = origin + at;
    const mark = marks.get(addr);
    if (mark) lines.push(`${mark}:`);
    const lo = dv.getUint16(at, true);
    const pre = `  ${addr.toString(16).padStart(8, '0')}: `;
    if ((lo & 3) !== 3 || at + 4 > code.length) {
      lines.push(`${pre}${lo.toString(16).padStart(4, '0')}      ${disasm(lo)}`);
      at += 2;
    } else {
      const w = dv.getUint32(at, true);
      lines.push(`${pre}${w.toString(16).padStart(8, '0')}  ${disasm(w)}`);
      at += 4;
    }
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// assemble: the inverse of disasm, one line of its syntax → one encoding.

const REGS = new Map<string, number>([
  ...Object.entries(E.X), ...Object.entries(E.F),
  ...Array.from({ length: 32 }, (_, i) => [`x${i}`, i] as [string, number]),
  ...Array.from({ length: 32 }, (_, i) => [`f${i}`, i] as [string, number]),
]);
const RMS = new Map<string, number>(RM_NAMES.map((n, i) => [n, i] as [string, number]).filter(([n]) => n));
const CSRS = new Map<string, number>(Object.entries(E.CSR));
// RVC stack-pointer forms name sp in the text but not in the encoder's arguments.
const SP_IMPLICIT = new Set(['c_addi4spn', 'c_addi16sp', 'c_fldsp', 'c_lwsp', 'c_ldsp', 'c_fsdsp', 'c_swsp', 'c_sdsp']);
const FENCE_SETS = /^[iorw]+$/;

function num(s: string): number {
  const neg = s.startsWith('-');
  const body = neg ? s.slice(1) : s;
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(body)) throw new Error(`assemble: bad operand '${s}'`);
  const v = Number(body);
  return neg ? -v : v;
}

/** Parses one line of `disasm` syntax (plus ABI or xN/fN register names) into its encoding. */
export function assemble(line: string): number {
  const text = line.trim();
  const sp = text.indexOf(' ');
  let mnem = sp < 0 ? text : text.slice(0, sp);
  const rest = sp < 0 ? '' : text.slice(sp + 1);
  if (mnem === '.word' || mnem === '.half') return num(rest.trim()) >>> 0;
  let aq = false;
  let rl = false;
  const ord = /\.(aq|rl|aqrl)$/.exec(mnem);
  if (ord && /^(lr|sc|amo)/.test(mnem)) {
    aq = ord[1] !== 'rl';
    rl = ord[1] !== 'aq';
    mnem = mnem.slice(0, ord.index);
  }
  const name = mnem.replace(/\./g, '_');
  const fn = (E as unknown as Record<string, unknown>)[name];
  if (typeof fn !== 'function') throw new Error(`assemble: unknown mnemonic '${mnem}'`);
  const args: (number | string | boolean)[] = [];
  const ops = rest ? rest.split(',').map((s) => s.trim()) : [];
  // `c.addi4spn rd, sp, imm` and `c.addi16sp sp, imm` spell out an operand the encoding implies.
  if (name === 'c_addi4spn' && ops[1] === 'sp') ops.splice(1, 1);
  if (name === 'c_addi16sp' && ops[0] === 'sp') ops.splice(0, 1);
  for (const raw of ops) {
    const mem = /^(-?[0-9a-fx]*)\((\w+)\)$/i.exec(raw);
    if (mem) {
      const r = REGS.get(mem[2]!);
      if (r === undefined) throw new Error(`assemble: bad register in '${raw}'`);
      if (SP_IMPLICIT.has(name)) args.push(num(mem[1]!));
      else if (mem[1] === '') args.push(r);
      else args.push(r, num(mem[1]!));
    } else if (REGS.has(raw)) args.push(REGS.get(raw)!);
    else if (CSRS.has(raw) && name.startsWith('csr')) args.push(CSRS.get(raw)!);
    else if (RMS.has(raw)) args.push(RMS.get(raw)!);
    else if (name === 'fence' && FENCE_SETS.test(raw)) args.push(raw);
    else args.push(num(raw));
  }
  if (/^(lr|sc|amo)/.test(name)) args.push(aq, rl);
  return (fn as (...a: unknown[]) => number)(...args) >>> 0;
}
