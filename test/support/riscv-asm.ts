/**
 * A small RV64GC assembler for tests, so instruction and differential tests need no cross
 * toolchain. Every function returns one instruction encoding as an unsigned number: 32-bit
 * words for the base ISA, 16-bit halves for RVC (a value whose low two bits are not 0b11).
 *
 * Names follow the spec's mnemonics with '.' written as '_' (`fcvt.w.s` → `fcvt_w_s`,
 * `c.addi` → `c_addi`). Operand order is the assembler's (`sd rs2, imm(rs1)` →
 * `sd(rs2, rs1, imm)`; `amoadd.w rd, rs2, (rs1)` → `amoadd_w(rd, rs2, rs1)`).
 *
 * An out-of-range immediate or register is a bug in the test, not a guest fault: it throws.
 *
 * References: The RISC-V Instruction Set Manual, Volume I (unprivileged, 20191213):
 * §2 (RV32I), §5 (RV64I), §7 (M), §8 (A), §9 (Zicsr), §11 (F), §12 (D), §16 (C), §24 (opcode
 * map, tables 24.1-24.2 and 16.5-16.7 for RVC); Volume II (privileged, 20211203) §3.3, §4.2.1.
 */
import { VisorError } from '../../src/base/errors.js';

// ---------------------------------------------------------------------------------------------
// Registers

export const X = {
  zero: 0, ra: 1, sp: 2, gp: 3, tp: 4, t0: 5, t1: 6, t2: 7, s0: 8, fp: 8, s1: 9,
  a0: 10, a1: 11, a2: 12, a3: 13, a4: 14, a5: 15, a6: 16, a7: 17,
  s2: 18, s3: 19, s4: 20, s5: 21, s6: 22, s7: 23, s8: 24, s9: 25, s10: 26, s11: 27,
  t3: 28, t4: 29, t5: 30, t6: 31,
} as const;
export const { zero, ra, sp, gp, tp, t0, t1, t2, s0, fp, s1, a0, a1, a2, a3, a4, a5, a6, a7,
  s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, t3, t4, t5, t6 } = X;

export const F = {
  ft0: 0, ft1: 1, ft2: 2, ft3: 3, ft4: 4, ft5: 5, ft6: 6, ft7: 7, fs0: 8, fs1: 9,
  fa0: 10, fa1: 11, fa2: 12, fa3: 13, fa4: 14, fa5: 15, fa6: 16, fa7: 17,
  fs2: 18, fs3: 19, fs4: 20, fs5: 21, fs6: 22, fs7: 23, fs8: 24, fs9: 25, fs10: 26, fs11: 27,
  ft8: 28, ft9: 29, ft10: 30, ft11: 31,
} as const;

/** ABI names by number (x8 prints as s0). */
export const X_NAMES = ['zero', 'ra', 'sp', 'gp', 'tp', 't0', 't1', 't2', 's0', 's1',
  'a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9',
  's10', 's11', 't3', 't4', 't5', 't6'] as const;
export const F_NAMES = ['ft0', 'ft1', 'ft2', 'ft3', 'ft4', 'ft5', 'ft6', 'ft7', 'fs0', 'fs1',
  'fa0', 'fa1', 'fa2', 'fa3', 'fa4', 'fa5', 'fa6', 'fa7', 'fs2', 'fs3', 'fs4', 'fs5', 'fs6', 'fs7',
  'fs8', 'fs9', 'fs10', 'fs11', 'ft8', 'ft9', 'ft10', 'ft11'] as const;

/** Rounding modes, unprivileged spec §11.2 table 11.1. DYN selects fcsr.frm. */
export const RM = { RNE: 0, RTZ: 1, RDN: 2, RUP: 3, RMM: 4, DYN: 7 } as const;
export type RoundingMode = number;

/** CSR addresses (privileged spec §2.2, tables 2.2-2.5) used by tests and the disassembler. */
export const CSR = {
  fflags: 0x001, frm: 0x002, fcsr: 0x003,
  cycle: 0xc00, time: 0xc01, instret: 0xc02,
  sstatus: 0x100, sie: 0x104, stvec: 0x105, scounteren: 0x106, senvcfg: 0x10a,
  sscratch: 0x140, sepc: 0x141, scause: 0x142, stval: 0x143, sip: 0x144, stimecmp: 0x14d,
  satp: 0x180,
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14, mconfigptr: 0xf15,
  mstatus: 0x300, misa: 0x301, medeleg: 0x302, mideleg: 0x303, mie: 0x304, mtvec: 0x305,
  mcounteren: 0x306, menvcfg: 0x30a, mcountinhibit: 0x320,
  mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344,
  pmpcfg0: 0x3a0, pmpcfg2: 0x3a2, pmpaddr0: 0x3b0, pmpaddr1: 0x3b1, pmpaddr2: 0x3b2,
  pmpaddr3: 0x3b3,
  mcycle: 0xb00, minstret: 0xb02,
  tselect: 0x7a0, tdata1: 0x7a1, tdata2: 0x7a2,
} as const;

// ---------------------------------------------------------------------------------------------
// Operand checks

function bad(msg: string): never {
  throw new VisorError('InvalidArgument', `riscv-asm: ${msg}`);
}

function reg(r: number, what = 'register'): number {
  if (!Number.isInteger(r) || r < 0 || r > 31) bad(`${what} ${r} is not 0..31`);
  return r;
}

/** A compressed-register operand (x8..x15 / f8..f15) → its 3-bit field. */
function creg(r: number, what = 'register'): number {
  if (!Number.isInteger(r) || r < 8 || r > 15) bad(`${what} ${r} is not one of x8..x15 (RVC rd'/rs')`);
  return r - 8;
}

function simm(v: number, bits: number, what: string, multiple = 1): number {
  const lo = -(2 ** (bits - 1));
  const hi = 2 ** (bits - 1) - 1;
  if (!Number.isInteger(v) || v < lo || v > hi) bad(`${what} ${v} does not fit ${bits}-bit signed [${lo}, ${hi}]`);
  if (v % multiple !== 0) bad(`${what} ${v} is not a multiple of ${multiple}`);
  return v;
}

function uimm(v: number, bits: number, what: string, multiple = 1): number {
  if (!Number.isInteger(v) || v < 0 || v > 2 ** bits - 1) bad(`${what} ${v} does not fit ${bits}-bit unsigned`);
  if (v % multiple !== 0) bad(`${what} ${v} is not a multiple of ${multiple}`);
  return v;
}

function nonzero(v: number, what: string): number {
  if (v === 0) bad(`${what} must not be zero (reserved encoding)`);
  return v;
}

/** Bit `i` of `v` (two's complement for negatives), moved to position `to`. */
function bit(v: number, i: number, to: number): number {
  return ((v >> i) & 1) << to;
}

/** Bits [hi:lo] of `v` moved so that bit lo lands at `to`. */
function bits(v: number, hi: number, lo: number, to: number): number {
  return ((v >> lo) & ((1 << (hi - lo + 1)) - 1)) << to;
}

// ---------------------------------------------------------------------------------------------
// Base formats, unprivileged spec §2.2 figure 2.3 and §2.3 figure 2.4

export const OP = {
  LOAD: 0x03, LOAD_FP: 0x07, MISC_MEM: 0x0f, OP_IMM: 0x13, AUIPC: 0x17, OP_IMM_32: 0x1b,
  STORE: 0x23, STORE_FP: 0x27, AMO: 0x2f, OP: 0x33, LUI: 0x37, OP_32: 0x3b,
  MADD: 0x43, MSUB: 0x47, NMSUB: 0x4b, NMADD: 0x4f, OP_FP: 0x53,
  BRANCH: 0x63, JALR: 0x67, JAL: 0x6f, SYSTEM: 0x73,
} as const;

export function rType(opcode: number, rd: number, f3: number, rs1: number, rs2: number, f7: number): number {
  return ((f7 << 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (f3 << 12) | (reg(rd) << 7) | opcode) >>> 0;
}

export function iType(opcode: number, rd: number, f3: number, rs1: number, imm: number): number {
  simm(imm, 12, 'I-immediate');
  return (((imm & 0xfff) << 20) | (reg(rs1) << 15) | (f3 << 12) | (reg(rd) << 7) | opcode) >>> 0;
}

export function sType(opcode: number, f3: number, rs1: number, rs2: number, imm: number): number {
  simm(imm, 12, 'S-immediate');
  return (bits(imm, 11, 5, 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (f3 << 12) | bits(imm, 4, 0, 7) | opcode) >>> 0;
}

export function bType(opcode: number, f3: number, rs1: number, rs2: number, off: number): number {
  simm(off, 13, 'branch offset', 2);
  return (bit(off, 12, 31) | bits(off, 10, 5, 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (f3 << 12) |
    bits(off, 4, 1, 8) | bit(off, 11, 7) | opcode) >>> 0;
}

/** `imm20` is the 20-bit field (what `lui rd, imm` takes), signed or unsigned spelling. */
export function uType(opcode: number, rd: number, imm20: number): number {
  if (!Number.isInteger(imm20) || imm20 < -0x80000 || imm20 > 0xfffff) bad(`U-immediate ${imm20} does not fit 20 bits`);
  return (((imm20 & 0xfffff) << 12) | (reg(rd) << 7) | opcode) >>> 0;
}

export function jType(opcode: number, rd: number, off: number): number {
  simm(off, 21, 'jump offset', 2);
  return (bit(off, 20, 31) | bits(off, 10, 1, 21) | bit(off, 11, 20) | bits(off, 19, 12, 12) | (reg(rd) << 7) | opcode) >>> 0;
}

/** R4-type (fused multiply-add), §11.6. */
export function r4Type(opcode: number, rd: number, rm: number, rs1: number, rs2: number, rs3: number, fmt: number): number {
  return ((reg(rs3) << 27) | (fmt << 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (rmField(rm) << 12) | (reg(rd) << 7) | opcode) >>> 0;
}

function rmField(rm: number): number {
  if (!Number.isInteger(rm) || rm < 0 || rm > 7) bad(`rounding mode ${rm} is not 0..7`);
  return rm;
}

// ---------------------------------------------------------------------------------------------
// RV64I, §2.4-2.9 and §5

export const lui = (rd: number, imm20: number) => uType(OP.LUI, rd, imm20);
export const auipc = (rd: number, imm20: number) => uType(OP.AUIPC, rd, imm20);
export const jal = (rd: number, off: number) => jType(OP.JAL, rd, off);
export const jalr = (rd: number, rs1: number, imm = 0) => iType(OP.JALR, rd, 0, rs1, imm);

export const beq = (rs1: number, rs2: number, off: number) => bType(OP.BRANCH, 0, rs1, rs2, off);
export const bne = (rs1: number, rs2: number, off: number) => bType(OP.BRANCH, 1, rs1, rs2, off);
export const blt = (rs1: number, rs2: number, off: number) => bType(OP.BRANCH, 4, rs1, rs2, off);
export const bge = (rs1: number, rs2: number, off: number) => bType(OP.BRANCH, 5, rs1, rs2, off);
export const bltu = (rs1: number, rs2: number, off: number) => bType(OP.BRANCH, 6, rs1, rs2, off);
export const bgeu = (rs1: number, rs2: number, off: number) => bType(OP.BRANCH, 7, rs1, rs2, off);

/** Loads: `lw rd, imm(rs1)` → `lw(rd, rs1, imm)`. */
export const lb = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD, rd, 0, rs1, imm);
export const lh = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD, rd, 1, rs1, imm);
export const lw = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD, rd, 2, rs1, imm);
export const ld = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD, rd, 3, rs1, imm);
export const lbu = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD, rd, 4, rs1, imm);
export const lhu = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD, rd, 5, rs1, imm);
export const lwu = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD, rd, 6, rs1, imm);
/** Stores: `sw rs2, imm(rs1)` → `sw(rs2, rs1, imm)`. */
export const sb = (rs2: number, rs1: number, imm = 0) => sType(OP.STORE, 0, rs1, rs2, imm);
export const sh = (rs2: number, rs1: number, imm = 0) => sType(OP.STORE, 1, rs1, rs2, imm);
export const sw = (rs2: number, rs1: number, imm = 0) => sType(OP.STORE, 2, rs1, rs2, imm);
export const sd = (rs2: number, rs1: number, imm = 0) => sType(OP.STORE, 3, rs1, rs2, imm);

export const addi = (rd: number, rs1: number, imm: number) => iType(OP.OP_IMM, rd, 0, rs1, imm);
export const slti = (rd: number, rs1: number, imm: number) => iType(OP.OP_IMM, rd, 2, rs1, imm);
export const sltiu = (rd: number, rs1: number, imm: number) => iType(OP.OP_IMM, rd, 3, rs1, imm);
export const xori = (rd: number, rs1: number, imm: number) => iType(OP.OP_IMM, rd, 4, rs1, imm);
export const ori = (rd: number, rs1: number, imm: number) => iType(OP.OP_IMM, rd, 6, rs1, imm);
export const andi = (rd: number, rs1: number, imm: number) => iType(OP.OP_IMM, rd, 7, rs1, imm);

// §5.2: RV64 shifts take a 6-bit shamt; the *W forms a 5-bit one.
const shiftImm = (opcode: number, rd: number, f3: number, rs1: number, shamt: number, hi: number, width: number) =>
  (((hi << 26) | (uimm(shamt, width, 'shift amount') << 20) | (reg(rs1) << 15) | (f3 << 12) | (reg(rd) << 7) | opcode) >>> 0);
export const slli = (rd: number, rs1: number, shamt: number) => shiftImm(OP.OP_IMM, rd, 1, rs1, shamt, 0x00, 6);
export const srli = (rd: number, rs1: number, shamt: number) => shiftImm(OP.OP_IMM, rd, 5, rs1, shamt, 0x00, 6);
export const srai = (rd: number, rs1: number, shamt: number) => shiftImm(OP.OP_IMM, rd, 5, rs1, shamt, 0x10, 6);
export const addiw = (rd: number, rs1: number, imm: number) => iType(OP.OP_IMM_32, rd, 0, rs1, imm);
export const slliw = (rd: number, rs1: number, shamt: number) => shiftImm(OP.OP_IMM_32, rd, 1, rs1, shamt, 0x00, 5);
export const srliw = (rd: number, rs1: number, shamt: number) => shiftImm(OP.OP_IMM_32, rd, 5, rs1, shamt, 0x00, 5);
export const sraiw = (rd: number, rs1: number, shamt: number) => shiftImm(OP.OP_IMM_32, rd, 5, rs1, shamt, 0x10, 5);

export const add = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 0, rs1, rs2, 0x00);
export const sub = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 0, rs1, rs2, 0x20);
export const sll = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 1, rs1, rs2, 0x00);
export const slt = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 2, rs1, rs2, 0x00);
export const sltu = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 3, rs1, rs2, 0x00);
export const xor = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 4, rs1, rs2, 0x00);
export const srl = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 5, rs1, rs2, 0x00);
export const sra = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 5, rs1, rs2, 0x20);
export const or = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 6, rs1, rs2, 0x00);
export const and = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 7, rs1, rs2, 0x00);
export const addw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 0, rs1, rs2, 0x00);
export const subw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 0, rs1, rs2, 0x20);
export const sllw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 1, rs1, rs2, 0x00);
export const srlw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 5, rs1, rs2, 0x00);
export const sraw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 5, rs1, rs2, 0x20);

/** FENCE ordering set, §2.7: a string of i/o/r/w ('iorw', 'rw', 'w') or the 4-bit value. */
function fenceSet(s: string | number): number {
  if (typeof s === 'number') return uimm(s, 4, 'fence set');
  let v = 0;
  for (const ch of s) {
    const i = 'iorw'.indexOf(ch);
    if (i < 0) bad(`fence set '${s}' may only contain i, o, r, w`);
    v |= 8 >> i;
  }
  return v;
}
export const fence = (pred: string | number = 'iorw', succ: string | number = 'iorw', fm = 0) =>
  (((uimm(fm, 4, 'fence fm') << 28) | (fenceSet(pred) << 24) | (fenceSet(succ) << 20) | OP.MISC_MEM) >>> 0);
/** fence.tso = fm 1000, pred=succ=rw. */
export const fence_tso = () => fence('rw', 'rw', 0b1000);
export const fence_i = () => 0x0000100f; // Zifencei §3
export const ecall = () => 0x00000073;
export const ebreak = () => 0x00100073;

// ---------------------------------------------------------------------------------------------
// M, §7

export const mul = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 0, rs1, rs2, 1);
export const mulh = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 1, rs1, rs2, 1);
export const mulhsu = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 2, rs1, rs2, 1);
export const mulhu = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 3, rs1, rs2, 1);
export const div = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 4, rs1, rs2, 1);
export const divu = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 5, rs1, rs2, 1);
export const rem = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 6, rs1, rs2, 1);
export const remu = (rd: number, rs1: number, rs2: number) => rType(OP.OP, rd, 7, rs1, rs2, 1);
export const mulw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 0, rs1, rs2, 1);
export const divw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 4, rs1, rs2, 1);
export const divuw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 5, rs1, rs2, 1);
export const remw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 6, rs1, rs2, 1);
export const remuw = (rd: number, rs1: number, rs2: number) => rType(OP.OP_32, rd, 7, rs1, rs2, 1);

// ---------------------------------------------------------------------------------------------
// A, §8: funct5 | aq | rl, width in funct3 (2 = .w, 3 = .d)

export const AMO_FUNCT5 = {
  lr: 0x02, sc: 0x03, amoswap: 0x01, amoadd: 0x00, amoxor: 0x04, amoand: 0x0c, amoor: 0x08,
  amomin: 0x10, amomax: 0x14, amominu: 0x18, amomaxu: 0x1c,
} as const;
export type AmoOp = keyof typeof AMO_FUNCT5;

/** Any A-extension instruction; lr takes rs2 = 0. */
export function amo(op: AmoOp, width: 'w' | 'd', rd: number, rs2: number, rs1: number, aq = false, rl = false): number {
  const f7 = (AMO_FUNCT5[op] << 2) | (aq ? 2 : 0) | (rl ? 1 : 0);
  return rType(OP.AMO, rd, width === 'w' ? 2 : 3, rs1, op === 'lr' ? 0 : rs2, f7);
}
export const lr_w = (rd: number, rs1: number, aq = false, rl = false) => amo('lr', 'w', rd, 0, rs1, aq, rl);
export const lr_d = (rd: number, rs1: number, aq = false, rl = false) => amo('lr', 'd', rd, 0, rs1, aq, rl);
type AmoFn = (rd: number, rs2: number, rs1: number, aq?: boolean, rl?: boolean) => number;
const amoFn = (op: AmoOp, w: 'w' | 'd'): AmoFn => (rd, rs2, rs1, aq = false, rl = false) => amo(op, w, rd, rs2, rs1, aq, rl);
export const sc_w = amoFn('sc', 'w');
export const sc_d = amoFn('sc', 'd');
export const amoswap_w = amoFn('amoswap', 'w');
export const amoswap_d = amoFn('amoswap', 'd');
export const amoadd_w = amoFn('amoadd', 'w');
export const amoadd_d = amoFn('amoadd', 'd');
export const amoxor_w = amoFn('amoxor', 'w');
export const amoxor_d = amoFn('amoxor', 'd');
export const amoand_w = amoFn('amoand', 'w');
export const amoand_d = amoFn('amoand', 'd');
export const amoor_w = amoFn('amoor', 'w');
export const amoor_d = amoFn('amoor', 'd');
export const amomin_w = amoFn('amomin', 'w');
export const amomin_d = amoFn('amomin', 'd');
export const amomax_w = amoFn('amomax', 'w');
export const amomax_d = amoFn('amomax', 'd');
export const amominu_w = amoFn('amominu', 'w');
export const amominu_d = amoFn('amominu', 'd');
export const amomaxu_w = amoFn('amomaxu', 'w');
export const amomaxu_d = amoFn('amomaxu', 'd');

// ---------------------------------------------------------------------------------------------
// F and D, §11-12. fmt: 0 = S, 1 = D. rm defaults to DYN as assemblers do, except for
// conversions that are always exact (fcvt.d.s, fcvt.d.w[u]) where binutils emits rm = 0.

const S = 0;
const D = 1;
const fop = (f5: number, fmt: number, rd: number, rs1: number, rs2: number, f3: number) =>
  rType(OP.OP_FP, rd, rmField(f3), rs1, rs2, (f5 << 2) | fmt);

export const flw = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD_FP, rd, 2, rs1, imm);
export const fld = (rd: number, rs1: number, imm = 0) => iType(OP.LOAD_FP, rd, 3, rs1, imm);
export const fsw = (rs2: number, rs1: number, imm = 0) => sType(OP.STORE_FP, 2, rs1, rs2, imm);
export const fsd = (rs2: number, rs1: number, imm = 0) => sType(OP.STORE_FP, 3, rs1, rs2, imm);

type Fma = (rd: number, rs1: number, rs2: number, rs3: number, rm?: number) => number;
const fma = (opcode: number, fmt: number): Fma => (rd, rs1, rs2, rs3, rm = RM.DYN) => r4Type(opcode, rd, rm, rs1, rs2, rs3, fmt);
export const fmadd_s = fma(OP.MADD, S);
export const fmsub_s = fma(OP.MSUB, S);
export const fnmsub_s = fma(OP.NMSUB, S);
export const fnmadd_s = fma(OP.NMADD, S);
export const fmadd_d = fma(OP.MADD, D);
export const fmsub_d = fma(OP.MSUB, D);
export const fnmsub_d = fma(OP.NMSUB, D);
export const fnmadd_d = fma(OP.NMADD, D);

type Fbin = (rd: number, rs1: number, rs2: number, rm?: number) => number;
const fbin = (f5: number, fmt: number): Fbin => (rd, rs1, rs2, rm = RM.DYN) => fop(f5, fmt, rd, rs1, rs2, rm);
export const fadd_s = fbin(0x00, S);
export const fsub_s = fbin(0x01, S);
export const fmul_s = fbin(0x02, S);
export const fdiv_s = fbin(0x03, S);
export const fadd_d = fbin(0x00, D);
export const fsub_d = fbin(0x01, D);
export const fmul_d = fbin(0x02, D);
export const fdiv_d = fbin(0x03, D);
export const fsqrt_s = (rd: number, rs1: number, rm: number = RM.DYN) => fop(0x0b, S, rd, rs1, 0, rm);
export const fsqrt_d = (rd: number, rs1: number, rm: number = RM.DYN) => fop(0x0b, D, rd, rs1, 0, rm);

type Ffix = (rd: number, rs1: number, rs2: number) => number;
const ffix = (f5: number, fmt: number, f3: number): Ffix => (rd, rs1, rs2) => fop(f5, fmt, rd, rs1, rs2, f3);
export const fsgnj_s = ffix(0x04, S, 0);
export const fsgnjn_s = ffix(0x04, S, 1);
export const fsgnjx_s = ffix(0x04, S, 2);
export const fsgnj_d = ffix(0x04, D, 0);
export const fsgnjn_d = ffix(0x04, D, 1);
export const fsgnjx_d = ffix(0x04, D, 2);
export const fmin_s = ffix(0x05, S, 0);
export const fmax_s = ffix(0x05, S, 1);
export const fmin_d = ffix(0x05, D, 0);
export const fmax_d = ffix(0x05, D, 1);
export const feq_s = ffix(0x14, S, 2);
export const flt_s = ffix(0x14, S, 1);
export const fle_s = ffix(0x14, S, 0);
export const feq_d = ffix(0x14, D, 2);
export const flt_d = ffix(0x14, D, 1);
export const fle_d = ffix(0x14, D, 0);

type Fun = (rd: number, rs1: number, rm?: number) => number;
/** One-source FP ops where rs2 selects the variant (conversions), §11.7, §12.5. */
const fcvt = (f5: number, fmt: number, sel: number, defRm: number): Fun => (rd, rs1, rm = defRm) => fop(f5, fmt, rd, rs1, sel, rm);
export const fcvt_w_s = fcvt(0x18, S, 0, RM.DYN);
export const fcvt_wu_s = fcvt(0x18, S, 1, RM.DYN);
export const fcvt_l_s = fcvt(0x18, S, 2, RM.DYN);
export const fcvt_lu_s = fcvt(0x18, S, 3, RM.DYN);
export const fcvt_s_w = fcvt(0x1a, S, 0, RM.DYN);
export const fcvt_s_wu = fcvt(0x1a, S, 1, RM.DYN);
export const fcvt_s_l = fcvt(0x1a, S, 2, RM.DYN);
export const fcvt_s_lu = fcvt(0x1a, S, 3, RM.DYN);
export const fcvt_w_d = fcvt(0x18, D, 0, RM.DYN);
export const fcvt_wu_d = fcvt(0x18, D, 1, RM.DYN);
export const fcvt_l_d = fcvt(0x18, D, 2, RM.DYN);
export const fcvt_lu_d = fcvt(0x18, D, 3, RM.DYN);
export const fcvt_d_w = fcvt(0x1a, D, 0, RM.RNE);
export const fcvt_d_wu = fcvt(0x1a, D, 1, RM.RNE);
export const fcvt_d_l = fcvt(0x1a, D, 2, RM.DYN);
export const fcvt_d_lu = fcvt(0x1a, D, 3, RM.DYN);
export const fcvt_s_d = fcvt(0x08, S, 1, RM.DYN);
export const fcvt_d_s = fcvt(0x08, D, 0, RM.RNE);
export const fmv_x_w = (rd: number, rs1: number) => fop(0x1c, S, rd, rs1, 0, 0);
export const fmv_x_d = (rd: number, rs1: number) => fop(0x1c, D, rd, rs1, 0, 0);
export const fclass_s = (rd: number, rs1: number) => fop(0x1c, S, rd, rs1, 0, 1);
export const fclass_d = (rd: number, rs1: number) => fop(0x1c, D, rd, rs1, 0, 1);
export const fmv_w_x = (rd: number, rs1: number) => fop(0x1e, S, rd, rs1, 0, 0);
export const fmv_d_x = (rd: number, rs1: number) => fop(0x1e, D, rd, rs1, 0, 0);

// ---------------------------------------------------------------------------------------------
// Zicsr §9 and privileged instructions (privileged spec §3.3, §4.2.1)

function csrNum(csr: number): number {
  return uimm(csr, 12, 'CSR number');
}
const csrOp = (f3: number) => (rd: number, csr: number, rs1: number) =>
  (((csrNum(csr) << 20) | (reg(rs1) << 15) | (f3 << 12) | (reg(rd) << 7) | OP.SYSTEM) >>> 0);
const csrImm = (f3: number) => (rd: number, csr: number, imm5: number) =>
  (((csrNum(csr) << 20) | (uimm(imm5, 5, 'CSR immediate') << 15) | (f3 << 12) | (reg(rd) << 7) | OP.SYSTEM) >>> 0);
export const csrrw = csrOp(1);
export const csrrs = csrOp(2);
export const csrrc = csrOp(3);
export const csrrwi = csrImm(5);
export const csrrsi = csrImm(6);
export const csrrci = csrImm(7);
export const csrr = (rd: number, csr: number) => csrrs(rd, csr, 0);
export const csrw = (csr: number, rs1: number) => csrrw(0, csr, rs1);
export const csrs = (csr: number, rs1: number) => csrrs(0, csr, rs1);
export const csrc = (csr: number, rs1: number) => csrrc(0, csr, rs1);
export const csrwi = (csr: number, imm5: number) => csrrwi(0, csr, imm5);
export const csrsi = (csr: number, imm5: number) => csrrsi(0, csr, imm5);
export const csrci = (csr: number, imm5: number) => csrrci(0, csr, imm5);

export const mret = () => 0x30200073;
export const sret = () => 0x10200073;
export const wfi = () => 0x10500073;
export const sfence_vma = (rs1 = 0, rs2 = 0) => rType(OP.SYSTEM, 0, 0, rs1, rs2, 0x09);

// Common pseudo-instructions (unprivileged spec §25 table 25.2).
export const nop = () => addi(0, 0, 0);
export const mv = (rd: number, rs: number) => addi(rd, rs, 0);
export const not = (rd: number, rs: number) => xori(rd, rs, -1);
export const neg = (rd: number, rs: number) => sub(rd, 0, rs);
export const negw = (rd: number, rs: number) => subw(rd, 0, rs);
export const sext_w = (rd: number, rs: number) => addiw(rd, rs, 0);
export const seqz = (rd: number, rs: number) => sltiu(rd, rs, 1);
export const snez = (rd: number, rs: number) => sltu(rd, 0, rs);
export const ret = () => jalr(0, 1, 0);
export const jr = (rs: number) => jalr(0, rs, 0);
export const fmv_s = (rd: number, rs: number) => fsgnj_s(rd, rs, rs);
export const fmv_d = (rd: number, rs: number) => fsgnj_d(rd, rs, rs);
export const fneg_s = (rd: number, rs: number) => fsgnjn_s(rd, rs, rs);
export const fneg_d = (rd: number, rs: number) => fsgnjn_d(rd, rs, rs);
export const fabs_s = (rd: number, rs: number) => fsgnjx_s(rd, rs, rs);
export const fabs_d = (rd: number, rs: number) => fsgnjx_d(rd, rs, rs);

// ---------------------------------------------------------------------------------------------
// RV64C, §16 (tables 16.5-16.7). Register operands written rd'/rs1'/rs2' must be x8..x15.

// Quadrant 0
export function c_addi4spn(rd: number, nzuimm: number): number {
  nonzero(uimm(nzuimm, 10, 'c.addi4spn immediate', 4), 'c.addi4spn immediate');
  return (bits(nzuimm, 5, 4, 11) | bits(nzuimm, 9, 6, 7) | bit(nzuimm, 2, 6) | bit(nzuimm, 3, 5) | (creg(rd) << 2)) >>> 0;
}
/** c.fld/c.ld/c.fsd/c.sd: uimm[5:3] at 12:10, uimm[7:6] at 6:5. */
const cMem8 = (f3: number) => (r: number, rs1: number, off = 0) => {
  uimm(off, 8, 'offset', 8);
  return (f3 << 13) | bits(off, 5, 3, 10) | (creg(rs1) << 7) | bits(off, 7, 6, 5) | (creg(r) << 2);
};
/** c.lw/c.sw: uimm[5:3] at 12:10, uimm[2] at 6, uimm[6] at 5. */
const cMem4 = (f3: number) => (r: number, rs1: number, off = 0) => {
  uimm(off, 7, 'offset', 4);
  return (f3 << 13) | bits(off, 5, 3, 10) | (creg(rs1) << 7) | bit(off, 2, 6) | bit(off, 6, 5) | (creg(r) << 2);
};
export const c_fld = cMem8(1);
export const c_lw = cMem4(2);
export const c_ld = cMem8(3);
export const c_fsd = cMem8(5);
export const c_sw = cMem4(6);
export const c_sd = cMem8(7);

// Quadrant 1. CI format: imm[5] at 12, imm[4:0] at 6:2.
const ci = (f3: number, op: number, rd: number, imm: number) =>
  (f3 << 13) | bit(imm, 5, 12) | (reg(rd) << 7) | bits(imm, 4, 0, 2) | op;
export const c_nop = () => 0x0001;
/** rd = 0 or imm = 0 are HINTs (§16.7), still valid encodings, so they are allowed. */
export const c_addi = (rd: number, imm: number) => ci(0, 1, rd, simm(imm, 6, 'c.addi immediate'));
export const c_addiw = (rd: number, imm: number) => ci(1, 1, nonzero(reg(rd), 'c.addiw rd'), simm(imm, 6, 'c.addiw immediate'));
export const c_li = (rd: number, imm: number) => ci(2, 1, rd, simm(imm, 6, 'c.li immediate'));
export function c_addi16sp(nzimm: number): number {
  nonzero(simm(nzimm, 10, 'c.addi16sp immediate', 16), 'c.addi16sp immediate');
  return (3 << 13) | bit(nzimm, 9, 12) | (2 << 7) | bit(nzimm, 4, 6) | bit(nzimm, 6, 5) | bits(nzimm, 8, 7, 3) | bit(nzimm, 5, 2) | 1;
}
/** `imm` is the 6-bit signed value of imm[17:12] (or the 20-bit field spelling 0xfffe0..0xfffff). */
export function c_lui(rd: number, imm: number): number {
  if (rd === 0 || rd === 2) bad('c.lui rd must not be x0 or x2');
  const v = imm >= 0xfffe0 && imm <= 0xfffff ? imm - 0x100000 : imm;
  nonzero(simm(v, 6, 'c.lui immediate'), 'c.lui immediate');
  return ci(3, 1, rd, v);
}
const cShift = (f2: number) => (rd: number, shamt: number) => {
  uimm(shamt, 6, 'shift amount');
  return (4 << 13) | bit(shamt, 5, 12) | (f2 << 10) | (creg(rd) << 7) | bits(shamt, 4, 0, 2) | 1;
};
export const c_srli = cShift(0);
export const c_srai = cShift(1);
export const c_andi = (rd: number, imm: number) => {
  simm(imm, 6, 'c.andi immediate');
  return (4 << 13) | bit(imm, 5, 12) | (2 << 10) | (creg(rd) << 7) | bits(imm, 4, 0, 2) | 1;
};
const cArith = (b12: number, f2: number) => (rd: number, rs2: number) =>
  (4 << 13) | (b12 << 12) | (3 << 10) | (creg(rd) << 7) | (f2 << 5) | (creg(rs2) << 2) | 1;
export const c_sub = cArith(0, 0);
export const c_xor = cArith(0, 1);
export const c_or = cArith(0, 2);
export const c_and = cArith(0, 3);
export const c_subw = cArith(1, 0);
export const c_addw = cArith(1, 1);
export function c_j(off: number): number {
  simm(off, 12, 'c.j offset', 2);
  return (5 << 13) | bit(off, 11, 12) | bit(off, 4, 11) | bits(off, 9, 8, 9) | bit(off, 10, 8) | bit(off, 6, 7) |
    bit(off, 7, 6) | bits(off, 3, 1, 3) | bit(off, 5, 2) | 1;
}
const cBranch = (f3: number) => (rs1: number, off: number) => {
  simm(off, 9, 'c.beqz/c.bnez offset', 2);
  return (f3 << 13) | bit(off, 8, 12) | bits(off, 4, 3, 10) | (creg(rs1) << 7) | bits(off, 7, 6, 5) | bits(off, 2, 1, 3) |
    bit(off, 5, 2) | 1;
};
export const c_beqz = cBranch(6);
export const c_bnez = cBranch(7);

// Quadrant 2
export const c_slli = (rd: number, shamt: number) => ci(0, 2, rd, uimm(shamt, 6, 'shift amount'));
/** c.fldsp/c.ldsp: uimm[5] at 12, uimm[4:3] at 6:5, uimm[8:6] at 4:2. */
const cLoadSp8 = (f3: number) => (rd: number, off = 0) => {
  uimm(off, 9, 'offset', 8);
  return (f3 << 13) | bit(off, 5, 12) | (reg(rd) << 7) | bits(off, 4, 3, 5) | bits(off, 8, 6, 2) | 2;
};
export const c_fldsp = cLoadSp8(1);
export const c_ldsp = (rd: number, off = 0) => cLoadSp8(3)(nonzero(reg(rd), 'c.ldsp rd'), off);
/** c.lwsp: uimm[5] at 12, uimm[4:2] at 6:4, uimm[7:6] at 3:2. */
export const c_lwsp = (rd: number, off = 0) => {
  nonzero(reg(rd), 'c.lwsp rd');
  uimm(off, 8, 'offset', 4);
  return (2 << 13) | bit(off, 5, 12) | (rd << 7) | bits(off, 4, 2, 4) | bits(off, 7, 6, 2) | 2;
};
export const c_jr = (rs1: number) => (4 << 13) | (nonzero(reg(rs1), 'c.jr rs1') << 7) | 2;
export const c_mv = (rd: number, rs2: number) => (4 << 13) | (reg(rd) << 7) | (nonzero(reg(rs2), 'c.mv rs2') << 2) | 2;
export const c_ebreak = () => 0x9002;
export const c_jalr = (rs1: number) => (4 << 13) | (1 << 12) | (nonzero(reg(rs1), 'c.jalr rs1') << 7) | 2;
export const c_add = (rd: number, rs2: number) => (4 << 13) | (1 << 12) | (reg(rd) << 7) | (nonzero(reg(rs2), 'c.add rs2') << 2) | 2;
/** c.fsdsp/c.sdsp: uimm[5:3] at 12:10, uimm[8:6] at 9:7. */
const cStoreSp8 = (f3: number) => (rs2: number, off = 0) => {
  uimm(off, 9, 'offset', 8);
  return (f3 << 13) | bits(off, 5, 3, 10) | bits(off, 8, 6, 7) | (reg(rs2) << 2) | 2;
};
export const c_fsdsp = cStoreSp8(5);
export const c_sdsp = cStoreSp8(7);
/** c.swsp: uimm[5:2] at 12:9, uimm[7:6] at 8:7. */
export const c_swsp = (rs2: number, off = 0) => {
  uimm(off, 8, 'offset', 4);
  return (6 << 13) | bits(off, 5, 2, 9) | bits(off, 7, 6, 7) | (reg(rs2) << 2) | 2;
};

/** True when an encoding is a 16-bit RVC parcel (low bits ≠ 0b11), §1.5. */
export const isCompressed = (enc: number) => (enc & 3) !== 3;

// ---------------------------------------------------------------------------------------------
// li: materialise any 64-bit constant (the same shape as the GNU/LLVM expansion: lui/addiw
// for 32-bit values, otherwise the upper part recursively, a shift, and an addi).

function sext12(v: bigint): bigint {
  return BigInt.asIntN(12, v);
}

export function liSeq(rd: number, value: bigint | number): number[] {
  let v: bigint;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) bad(`li value ${value} is not a safe integer (pass a bigint)`);
    v = BigInt(value);
  } else v = value;
  if (v < -(1n << 63n) || v >= 1n << 64n) bad(`li value ${v} does not fit 64 bits`);
  v = BigInt.asIntN(64, v);
  reg(rd);
  const out: number[] = [];
  const gen = (x: bigint): void => {
    if (x >= -(1n << 31n) && x < 1n << 31n) {
      const lo = sext12(x);
      const hi = Number(BigInt.asIntN(20, (x - lo) >> 12n));
      if (hi !== 0) {
        out.push(lui(rd, hi));
        if (lo !== 0n) out.push(addiw(rd, rd, Number(lo)));
      } else out.push(addi(rd, 0, Number(lo)));
      return;
    }
    const lo = sext12(x);
    let hi = (x - lo) >> 12n;
    let shift = 12;
    while ((hi & 1n) === 0n) {
      hi >>= 1n;
      shift++;
    }
    gen(BigInt.asIntN(64, hi));
    out.push(slli(rd, rd, shift));
    if (lo !== 0n) out.push(addi(rd, rd, Number(lo)));
  };
  gen(v);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The builder

type Fixup = { at: number; label: string; patch: (target: number, at: number) => void };

/**
 * Emits instructions and data into a growable buffer that will be loaded at `origin`.
 * Labels may be referenced before they are defined; references are patched by `bytes()`.
 */
export class Asm {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  private len = 0;
  private readonly labels = new Map<string, number>();
  private readonly fixups: Fixup[] = [];

  constructor(readonly origin = 0x8000_0000) {}

  /** Bytes emitted so far. */
  get size(): number {
    return this.len;
  }

  /** Absolute address of the next byte. */
  get pc(): number {
    return this.origin + this.len;
  }

  private reserve(n: number): number {
    if (this.len + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.len + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.len;
    this.len += n;
    return at;
  }

  /** Emits encodings; each is 16 or 32 bits wide according to its low two bits. */
  emit(...encs: number[]): this {
    for (const e of encs) {
      if (isCompressed(e)) this.half(e);
      else this.word(e);
    }
    return this;
  }

  // Data directives (little-endian).
  byte(...vs: number[]): this {
    for (const v of vs) {
      const at = this.reserve(1); // reserve first: it may replace this.view
      this.view.setUint8(at, v & 0xff);
    }
    return this;
  }
  half(...vs: number[]): this {
    for (const v of vs) {
      const at = this.reserve(2);
      this.view.setUint16(at, v & 0xffff, true);
    }
    return this;
  }
  word(...vs: number[]): this {
    for (const v of vs) {
      const at = this.reserve(4);
      this.view.setUint32(at, v >>> 0, true);
    }
    return this;
  }
  /** A 64-bit value, or the absolute address of a label. */
  dword(...vs: (bigint | number | string)[]): this {
    for (const v of vs) {
      const at = this.reserve(8);
      if (typeof v === 'string') {
        this.fixups.push({ at, label: v, patch: (target) => this.view.setBigUint64(at, BigInt(target), true) });
      } else this.view.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true);
    }
    return this;
  }
  data(bytes: ArrayLike<number>): this {
    const at = this.reserve(bytes.length);
    this.buf.set(bytes, at);
    return this;
  }
  ascii(s: string): this {
    return this.data(new TextEncoder().encode(s));
  }
  space(n: number, fill = 0): this {
    const at = this.reserve(n);
    this.buf.fill(fill, at, at + n);
    return this;
  }
  /** Pads with zero bytes (or `c.nop`/`nop` when `code`) to a multiple of `n` bytes. */
  align(n: number, code = false): this {
    if (n <= 0 || (n & (n - 1)) !== 0) bad(`align ${n} is not a power of two`);
    while ((this.pc & (n - 1)) !== 0) {
      const gap = n - (this.pc & (n - 1));
      if (code && gap % 4 === 0) this.word(nop());
      else if (code && gap % 2 === 0) this.half(c_nop());
      else this.byte(0);
    }
    return this;
  }

  // Labels.
  label(name: string): this {
    if (this.labels.has(name)) bad(`label '${name}' defined twice`);
    this.labels.set(name, this.pc);
    return this;
  }
  has(name: string): boolean {
    return this.labels.has(name);
  }
  /** Absolute address of a defined label. */
  addr(name: string): number {
    const a = this.labels.get(name);
    if (a === undefined) bad(`label '${name}' is not defined (yet)`);
    return a;
  }

  /** Emits a 32-bit (or 16-bit when `width` is 2) placeholder patched once `label` is known. */
  private ref(label: string, width: 2 | 4, make: (off: number) => number): this {
    const at = this.reserve(width);
    const pc = this.origin + at;
    this.fixups.push({
      at, label, patch: (target) => {
        const e = make(target - pc);
        if (width === 2) this.view.setUint16(at, e, true);
        else this.view.setUint32(at, e >>> 0, true);
      },
    });
    return this;
  }

  beq(rs1: number, rs2: number, l: string) { return this.ref(l, 4, (o) => beq(rs1, rs2, o)); }
  bne(rs1: number, rs2: number, l: string) { return this.ref(l, 4, (o) => bne(rs1, rs2, o)); }
  blt(rs1: number, rs2: number, l: string) { return this.ref(l, 4, (o) => blt(rs1, rs2, o)); }
  bge(rs1: number, rs2: number, l: string) { return this.ref(l, 4, (o) => bge(rs1, rs2, o)); }
  bltu(rs1: number, rs2: number, l: string) { return this.ref(l, 4, (o) => bltu(rs1, rs2, o)); }
  bgeu(rs1: number, rs2: number, l: string) { return this.ref(l, 4, (o) => bgeu(rs1, rs2, o)); }
  beqz(rs: number, l: string) { return this.beq(rs, 0, l); }
  bnez(rs: number, l: string) { return this.bne(rs, 0, l); }
  bltz(rs: number, l: string) { return this.blt(rs, 0, l); }
  bgez(rs: number, l: string) { return this.bge(rs, 0, l); }
  bgtz(rs: number, l: string) { return this.blt(0, rs, l); }
  blez(rs: number, l: string) { return this.bge(0, rs, l); }
  jal(rd: number, l: string) { return this.ref(l, 4, (o) => jal(rd, o)); }
  j(l: string) { return this.jal(0, l); }
  call(l: string) { return this.jal(1, l); }
  c_j(l: string) { return this.ref(l, 2, (o) => c_j(o)); }
  c_beqz(rs1: number, l: string) { return this.ref(l, 2, (o) => c_beqz(rs1, o)); }
  c_bnez(rs1: number, l: string) { return this.ref(l, 2, (o) => c_bnez(rs1, o)); }

  /** rd = address of label (auipc + addi, pc-relative, so position-independent). */
  la(rd: number, l: string): this {
    const at = this.reserve(8);
    const pc = this.origin + at;
    this.fixups.push({
      at, label: l, patch: (target) => {
        const off = target - pc;
        const lo = Number(sext12(BigInt(off)));
        const hi = (off - lo) / 4096;
        if (hi < -0x80000 || hi > 0x7ffff) bad(`la: label '${l}' is out of ±2 GiB range`);
        this.view.setUint32(at, auipc(rd, hi), true);
        this.view.setUint32(at + 4, addi(rd, rd, lo), true);
      },
    });
    return this;
  }

  /** rd = any 64-bit constant (1 to 8 instructions). */
  li(rd: number, value: bigint | number): this {
    return this.emit(...liSeq(rd, value));
  }

  /** The assembled image; throws on an undefined label or an out-of-range reference. */
  bytes(): Uint8Array {
    for (const f of this.fixups) {
      const target = this.labels.get(f.label);
      if (target === undefined) bad(`label '${f.label}' is referenced but never defined`);
      f.patch(target, f.at);
    }
    return this.buf.slice(0, this.len);
  }
}
