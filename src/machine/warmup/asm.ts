/**
 * A small RV64GC assembler for the built-in warm-up program (warmup.ts): one encoder per
 * instruction format of the Unprivileged spec (ch. 2.2-2.3 base formats, ch. 16 "C"
 * compressed formats), labels with forward references, and `li`/`la`. It knows only what
 * the warm-up needs; test programs use test/support/riscv-asm.ts, which an inner layer may
 * not import.
 */
import { VisorError } from '../../base/errors.js';

// Register numbers (Unpriv ch. 25, calling convention names).
export const ZERO = 0, RA = 1, SP = 2, GP = 3, TP = 4, T0 = 5, T1 = 6, T2 = 7, S0 = 8, S1 = 9;
export const A0 = 10, A1 = 11, A2 = 12, A3 = 13, A4 = 14, A5 = 15, A6 = 16, A7 = 17;
export const S2 = 18, S3 = 19, S4 = 20, S5 = 21, T3 = 28, T4 = 29, T5 = 30, T6 = 31;

// ---------------------------------------------------------------- 32-bit formats

function check(ok: boolean, what: string): void {
  if (!ok) throw new VisorError('Internal', `warm-up assembler: ${what}`);
}
function simm(v: number, bits: number, what: string): number {
  check(Number.isInteger(v) && v >= -(2 ** (bits - 1)) && v < 2 ** (bits - 1), `${what} ${v} does not fit in ${bits} bits`);
  return v;
}

/** R-type: funct7 | rs2 | rs1 | funct3 | rd | opcode. */
export const rType = (op: number, f3: number, f7: number, rd: number, rs1: number, rs2: number): number =>
  ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
/** I-type: imm[11:0] | rs1 | funct3 | rd | opcode. */
export const iType = (op: number, f3: number, rd: number, rs1: number, imm: number): number =>
  (((simm(imm, 12, 'I-immediate') & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
/** S-type: imm[11:5] | rs2 | rs1 | funct3 | imm[4:0] | opcode. */
export const sType = (op: number, f3: number, rs1: number, rs2: number, imm: number): number =>
  ((((simm(imm, 12, 'S-immediate') >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op) >>> 0;
/** B-type: imm[12|10:5] | rs2 | rs1 | funct3 | imm[4:1|11] | 0x63. */
export const bType = (f3: number, rs1: number, rs2: number, off: number): number => {
  simm(off, 13, 'branch offset');
  return ((((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) |
    (((off >> 1) & 0xf) << 8) | (((off >> 11) & 1) << 7) | 0x63) >>> 0;
};
/** U-type: imm[31:12] | rd | opcode (imm20 is the upper 20 bits). */
export const uType = (op: number, rd: number, imm20: number): number => (((imm20 & 0xfffff) << 12) | (rd << 7) | op) >>> 0;
/** J-type: imm[20|10:1|11|19:12] | rd | 0x6f. */
export const jType = (rd: number, off: number): number => {
  simm(off, 21, 'jump offset');
  return ((((off >> 20) & 1) << 31) | (((off >> 1) & 0x3ff) << 21) | (((off >> 11) & 1) << 20) | (((off >> 12) & 0xff) << 12) |
    (rd << 7) | 0x6f) >>> 0;
};
/** R4-type (fused multiply-add): rs3 | fmt | rs2 | rs1 | rm | rd | opcode. */
export const r4Type = (op: number, fmt: number, rd: number, rs1: number, rs2: number, rs3: number, rm: number): number =>
  ((rs3 << 27) | (fmt << 25) | (rs2 << 20) | (rs1 << 15) | (rm << 12) | (rd << 7) | op) >>> 0;

// ---------------------------------------------------------------- 16-bit formats (ch. 16)

/**
 * Scatters immediate bits into an instruction: `order` lists the immediate's bit numbers as
 * they appear from instruction bit `top` downwards (the spec's tables, e.g. CJ's
 * [11|4|9:8|10|6|7|3:1|5] from bit 12).
 */
function scatter(imm: number, top: number, order: number[]): number {
  let w = 0;
  order.forEach((b, i) => { w |= ((imm >> b) & 1) << (top - i); });
  return w;
}
const creg = (r: number): number => {
  check(r >= 8 && r <= 15, `x${r} is not a compressed register (x8-x15)`);
  return r - 8;
};

/** CIW/CL/CS layouts of the quadrant-0 loads and stores: funct3 | imm | rs1' | imm | rd'/rs2' | 00. */
const cMem = (f3: number, rdOrRs2: number, rs1: number, imm: number, lowBits: number[]): number =>
  (f3 << 13) | scatter(imm, 12, [5, 4, 3]) | (creg(rs1) << 7) | scatter(imm, 6, lowBits) | (creg(rdOrRs2) << 2);
const IMM_W = [2, 6], IMM_D = [7, 6];
/** CI: funct3 | imm[5] | rd | imm[4:0] | op. */
const cI = (f3: number, rd: number, imm: number, op: number): number =>
  (f3 << 13) | (((imm >> 5) & 1) << 12) | (rd << 7) | ((imm & 31) << 2) | op;
/** CB arithmetic (c.srli, c.srai, c.andi): 100 | imm[5] | funct2 | rd' | imm[4:0] | 01. */
const cBAlu = (f2: number, rd: number, imm: number): number => (4 << 13) | (((imm >> 5) & 1) << 12) | (f2 << 10) | (creg(rd) << 7) | ((imm & 31) << 2) | 1;
/** CA: 100 | funct6 low bit | 11 | rd' | funct2 | rs2' | 01. */
const cA = (w: number, f2: number, rd: number, rs2: number): number => (4 << 13) | (w << 12) | (3 << 10) | (creg(rd) << 7) | (f2 << 5) | (creg(rs2) << 2) | 1;
/** CR: funct4 | rd/rs1 | rs2 | 10. */
const cR = (f4: number, rd: number, rs2: number): number => (f4 << 12) | (rd << 7) | (rs2 << 2) | 2;

export const C = {
  addi4spn: (rd: number, imm: number) => scatter(imm, 12, [5, 4, 9, 8, 7, 6, 2, 3]) | (creg(rd) << 2),
  fld: (rd: number, rs1: number, imm: number) => cMem(1, rd, rs1, imm, IMM_D),
  lw: (rd: number, rs1: number, imm: number) => cMem(2, rd, rs1, imm, IMM_W),
  ld: (rd: number, rs1: number, imm: number) => cMem(3, rd, rs1, imm, IMM_D),
  fsd: (rs2: number, rs1: number, imm: number) => cMem(5, rs2, rs1, imm, IMM_D),
  sw: (rs2: number, rs1: number, imm: number) => cMem(6, rs2, rs1, imm, IMM_W),
  sd: (rs2: number, rs1: number, imm: number) => cMem(7, rs2, rs1, imm, IMM_D),
  nop: () => 0x0001,
  addi: (rd: number, imm: number) => cI(0, rd, imm, 1),
  addiw: (rd: number, imm: number) => cI(1, rd, imm, 1),
  li: (rd: number, imm: number) => cI(2, rd, imm, 1),
  addi16sp: (imm: number) => (3 << 13) | scatter(imm, 12, [9]) | (SP << 7) | scatter(imm, 6, [4, 6, 8, 7, 5]) | 1,
  lui: (rd: number, imm6: number) => cI(3, rd, imm6, 1),
  srli: (rd: number, sh: number) => cBAlu(0, rd, sh),
  srai: (rd: number, sh: number) => cBAlu(1, rd, sh),
  andi: (rd: number, imm: number) => cBAlu(2, rd, imm),
  sub: (rd: number, rs2: number) => cA(0, 0, rd, rs2),
  xor: (rd: number, rs2: number) => cA(0, 1, rd, rs2),
  or: (rd: number, rs2: number) => cA(0, 2, rd, rs2),
  and: (rd: number, rs2: number) => cA(0, 3, rd, rs2),
  subw: (rd: number, rs2: number) => cA(1, 0, rd, rs2),
  addw: (rd: number, rs2: number) => cA(1, 1, rd, rs2),
  /** CJ: 101 | imm[11|4|9:8|10|6|7|3:1|5] | 01. */
  j: (off: number) => (5 << 13) | scatter(off, 12, [11, 4, 9, 8, 10, 6, 7, 3, 2, 1, 5]) | 1,
  /** CB: funct3 | imm[8|4:3] | rs1' | imm[7:6|2:1|5] | 01. */
  beqz: (rs1: number, off: number) => (6 << 13) | scatter(off, 12, [8, 4, 3]) | (creg(rs1) << 7) | scatter(off, 6, [7, 6, 2, 1, 5]) | 1,
  bnez: (rs1: number, off: number) => (7 << 13) | scatter(off, 12, [8, 4, 3]) | (creg(rs1) << 7) | scatter(off, 6, [7, 6, 2, 1, 5]) | 1,
  slli: (rd: number, sh: number) => cI(0, rd, sh, 2),
  fldsp: (rd: number, imm: number) => (1 << 13) | scatter(imm, 12, [5]) | (rd << 7) | scatter(imm, 6, [4, 3, 8, 7, 6]) | 2,
  lwsp: (rd: number, imm: number) => (2 << 13) | scatter(imm, 12, [5]) | (rd << 7) | scatter(imm, 6, [4, 3, 2, 7, 6]) | 2,
  ldsp: (rd: number, imm: number) => (3 << 13) | scatter(imm, 12, [5]) | (rd << 7) | scatter(imm, 6, [4, 3, 8, 7, 6]) | 2,
  jr: (rs1: number) => cR(8, rs1, 0),
  mv: (rd: number, rs2: number) => cR(8, rd, rs2),
  ebreak: () => cR(9, 0, 0),
  jalr: (rs1: number) => cR(9, rs1, 0),
  add: (rd: number, rs2: number) => cR(9, rd, rs2),
  fsdsp: (rs2: number, imm: number) => (5 << 13) | scatter(imm, 12, [5, 4, 3, 8, 7, 6]) | (rs2 << 2) | 2,
  swsp: (rs2: number, imm: number) => (6 << 13) | scatter(imm, 12, [5, 4, 3, 2, 7, 6]) | (rs2 << 2) | 2,
  sdsp: (rs2: number, imm: number) => (7 << 13) | scatter(imm, 12, [5, 4, 3, 8, 7, 6]) | (rs2 << 2) | 2,
};

// ---------------------------------------------------------------- instruction tables

const OP_IMM = 0x13, OP = 0x33, OP_IMM_32 = 0x1b, OP_32 = 0x3b, LOAD = 0x03, STORE = 0x23, SYSTEM = 0x73;
const LOAD_FP = 0x07, STORE_FP = 0x27, OP_FP = 0x53, AMO = 0x2f;

/** funct3 of OP/OP-IMM (and funct7 where it is not 0). */
export const ALU = {
  add: [0, 0], sub: [0, 0x20], sll: [1, 0], slt: [2, 0], sltu: [3, 0], xor: [4, 0], srl: [5, 0], sra: [5, 0x20], or: [6, 0], and: [7, 0],
  mul: [0, 1], mulh: [1, 1], mulhsu: [2, 1], mulhu: [3, 1], div: [4, 1], divu: [5, 1], rem: [6, 1], remu: [7, 1],
} as const;
export type AluOp = keyof typeof ALU;
export const ALU_W = { addw: [0, 0], subw: [0, 0x20], sllw: [1, 0], srlw: [5, 0], sraw: [5, 0x20], mulw: [0, 1], divw: [4, 1], divuw: [5, 1], remw: [6, 1], remuw: [7, 1] } as const;
export type AluWOp = keyof typeof ALU_W;
export const ALU_I = { addi: 0, slti: 2, sltiu: 3, xori: 4, ori: 6, andi: 7 } as const;
export const LOADS = { lb: 0, lh: 1, lw: 2, ld: 3, lbu: 4, lhu: 5, lwu: 6 } as const;
export const STORES = { sb: 0, sh: 1, sw: 2, sd: 3 } as const;
export const BRANCHES = { beq: 0, bne: 1, blt: 4, bge: 5, bltu: 6, bgeu: 7 } as const;
/** AMO funct5 (Unpriv ch. 8.4). */
export const AMOS = { lr: 2, sc: 3, amoswap: 1, amoadd: 0, amoxor: 4, amoand: 0xc, amoor: 8, amomin: 0x10, amomax: 0x14, amominu: 0x18, amomaxu: 0x1c } as const;
export const CSR_F3 = { csrrw: 1, csrrs: 2, csrrc: 3, csrrwi: 5, csrrsi: 6, csrrci: 7 } as const;
/** OP-FP funct5 and the rs2 / funct3 fields that select the operation (fmt is added by the caller). */
export const FP_OPS = {
  fadd: [0x00, -1, -1], fsub: [0x01, -1, -1], fmul: [0x02, -1, -1], fdiv: [0x03, -1, -1], fsqrt: [0x0b, 0, -1],
  fsgnj: [0x04, -1, 0], fsgnjn: [0x04, -1, 1], fsgnjx: [0x04, -1, 2], fmin: [0x05, -1, 0], fmax: [0x05, -1, 1],
  fle: [0x14, -1, 0], flt: [0x14, -1, 1], feq: [0x14, -1, 2],
  'fcvt.w': [0x18, 0, -1], 'fcvt.wu': [0x18, 1, -1], 'fcvt.l': [0x18, 2, -1], 'fcvt.lu': [0x18, 3, -1],
  'fcvt.from.w': [0x1a, 0, -1], 'fcvt.from.wu': [0x1a, 1, -1], 'fcvt.from.l': [0x1a, 2, -1], 'fcvt.from.lu': [0x1a, 3, -1],
  'fmv.x': [0x1c, 0, 0], fclass: [0x1c, 0, 1], 'fmv.from.x': [0x1e, 0, 0],
} as const;
export type FpOp = keyof typeof FP_OPS;
/** Rounding mode field value for "use frm" (Unpriv §11.2). */
export const RM_DYN = 7;

// ---------------------------------------------------------------- the assembler

/**
 * Assembles into a byte image placed at physical address `base`. Code is position
 * independent (branches, jal and `la` are pc-relative), so one image runs at its physical
 * address and through any virtual mapping of it.
 */
export class Asm {
  private readonly out: number[] = []; // halfwords
  private readonly labels = new Map<string, number>();
  private readonly fixups: { at: number; label: string; patch: (off: number) => number[] }[] = [];

  constructor(readonly base: number) {}

  /** Byte offset of the next instruction from `base`. */
  get here(): number {
    return this.out.length * 2;
  }

  label(name: string): this {
    check(!this.labels.has(name), `label ${name} defined twice`);
    this.labels.set(name, this.here);
    return this;
  }

  /** Byte offset of a label from `base` (after assemble()). */
  offsetOf(name: string): number {
    const o = this.labels.get(name);
    check(o !== undefined, `no label ${name}`);
    return o!;
  }

  inst(w: number): this {
    this.out.push(w & 0xffff, (w >>> 16) & 0xffff);
    return this;
  }

  half(h: number): this {
    this.out.push(h & 0xffff);
    return this;
  }

  /** Pads with zero halfwords (not executed) up to byte offset `off`. */
  padTo(off: number): this {
    check(off >= this.here && off % 2 === 0, `cannot pad back to 0x${off.toString(16)}`);
    while (this.here < off) this.out.push(0);
    return this;
  }

  dword(v: bigint): this {
    for (let i = 0n; i < 4n; i++) this.out.push(Number((v >> (16n * i)) & 0xffffn));
    return this;
  }

  private later(halves: number, label: string, patch: (off: number) => number[]): this {
    this.fixups.push({ at: this.out.length, label, patch });
    for (let i = 0; i < halves; i++) this.out.push(0);
    return this;
  }

  // Integer.
  r(op: AluOp, rd: number, rs1: number, rs2: number): this { const [f3, f7] = ALU[op]; return this.inst(rType(OP, f3, f7, rd, rs1, rs2)); }
  rw(op: AluWOp, rd: number, rs1: number, rs2: number): this { const [f3, f7] = ALU_W[op]; return this.inst(rType(OP_32, f3, f7, rd, rs1, rs2)); }
  i(op: keyof typeof ALU_I, rd: number, rs1: number, imm: number): this { return this.inst(iType(OP_IMM, ALU_I[op], rd, rs1, imm)); }
  addi(rd: number, rs1: number, imm: number): this { return this.i('addi', rd, rs1, imm); }
  addiw(rd: number, rs1: number, imm: number): this { return this.inst(iType(OP_IMM_32, 0, rd, rs1, imm)); }
  /** slli/srli/srai (6-bit shamt) and the W forms (5-bit). */
  shift(kind: 'sll' | 'srl' | 'sra', rd: number, rs1: number, sh: number, w = false): this {
    const f3 = kind === 'sll' ? 1 : 5;
    const hi = kind === 'sra' ? 0x400 : 0;
    return this.inst(iType(w ? OP_IMM_32 : OP_IMM, f3, rd, rs1, 0) | ((hi | sh) << 20));
  }
  lui(rd: number, imm20: number): this { return this.inst(uType(0x37, rd, imm20)); }
  auipc(rd: number, imm20: number): this { return this.inst(uType(0x17, rd, imm20)); }
  jalr(rd: number, rs1: number, imm = 0): this { return this.inst(iType(0x67, 0, rd, rs1, imm)); }
  ret(): this { return this.jalr(ZERO, RA); }
  load(op: keyof typeof LOADS, rd: number, rs1: number, imm = 0): this { return this.inst(iType(LOAD, LOADS[op], rd, rs1, imm)); }
  store(op: keyof typeof STORES, rs2: number, rs1: number, imm = 0): this { return this.inst(sType(STORE, STORES[op], rs1, rs2, imm)); }

  /** Any 64-bit constant: lui/addiw for 32-bit values, else the upper part, a shift and an addi. */
  li(rd: number, v: bigint | number): this {
    const x = BigInt.asIntN(64, BigInt(v));
    if (x >= -2048n && x < 2048n) return this.addi(rd, ZERO, Number(x));
    if (x >= -(2n ** 31n) && x < 2n ** 31n) {
      const lo = Number(BigInt.asIntN(12, x));
      const hi = Number(((x - BigInt(lo)) >> 12n) & 0xfffffn);
      this.lui(rd, hi);
      return lo !== 0 ? this.addiw(rd, rd, lo) : this;
    }
    const lo = Number(BigInt.asIntN(12, x));
    const upper = (x - BigInt(lo)) >> 12n;
    this.li(rd, upper).shift('sll', rd, rd, 12);
    return lo !== 0 ? this.addi(rd, rd, lo) : this;
  }

  // Control flow to labels.
  branch(op: keyof typeof BRANCHES, rs1: number, rs2: number, label: string): this {
    const at = this.here;
    return this.later(2, label, (t) => split(bType(BRANCHES[op], rs1, rs2, t - at)));
  }
  jal(rd: number, label: string): this {
    const at = this.here;
    return this.later(2, label, (t) => split(jType(rd, t - at)));
  }
  j(label: string): this { return this.jal(ZERO, label); }
  call(label: string): this { return this.jal(RA, label); }
  /** rd = address of label (auipc + addi: the address it has where the code runs). */
  la(rd: number, label: string): this {
    const at = this.here;
    return this.later(4, label, (t) => {
      const d = t - at;
      const lo = (d << 20) >> 20;
      return [...split(uType(0x17, rd, (d - lo) >>> 12)), ...split(iType(OP_IMM, 0, rd, rd, lo))];
    });
  }
  cj(label: string): this { const at = this.here; return this.later(1, label, (t) => [C.j(t - at)]); }
  cbeqz(rs1: number, label: string): this { const at = this.here; return this.later(1, label, (t) => [C.beqz(rs1, t - at)]); }
  cbnez(rs1: number, label: string): this { const at = this.here; return this.later(1, label, (t) => [C.bnez(rs1, t - at)]); }

  // System.
  csr(op: keyof typeof CSR_F3, rd: number, csr: number, rs1OrImm: number): this {
    return this.inst(((csr << 20) | (rs1OrImm << 15) | (CSR_F3[op] << 12) | (rd << 7) | SYSTEM) >>> 0);
  }
  csrr(rd: number, csr: number): this { return this.csr('csrrs', rd, csr, ZERO); }
  csrw(csr: number, rs1: number): this { return this.csr('csrrw', ZERO, csr, rs1); }
  csrs(csr: number, rs1: number): this { return this.csr('csrrs', ZERO, csr, rs1); }
  csrc(csr: number, rs1: number): this { return this.csr('csrrc', ZERO, csr, rs1); }
  ecall(): this { return this.inst(0x00000073); }
  ebreak(): this { return this.inst(0x00100073); }
  mret(): this { return this.inst(0x30200073); }
  sret(): this { return this.inst(0x10200073); }
  wfi(): this { return this.inst(0x10500073); }
  sfenceVma(rs1 = ZERO, rs2 = ZERO): this { return this.inst(rType(SYSTEM, 0, 0x09, 0, rs1, rs2)); }
  fence(): this { return this.inst(0x0ff0000f); }
  fenceI(): this { return this.inst(0x0000100f); }

  // A.
  amo(op: keyof typeof AMOS, d: boolean, rd: number, rs2: number, rs1: number, aqrl = 0): this {
    return this.inst(rType(AMO, d ? 3 : 2, (AMOS[op] << 2) | aqrl, rd, rs1, op === 'lr' ? 0 : rs2));
  }

  // F and D.
  fload(d: boolean, rd: number, rs1: number, imm = 0): this { return this.inst(iType(LOAD_FP, d ? 3 : 2, rd, rs1, imm)); }
  fstore(d: boolean, rs2: number, rs1: number, imm = 0): this { return this.inst(sType(STORE_FP, d ? 3 : 2, rs1, rs2, imm)); }
  /** OP-FP: `d` picks fmt D; fcvt.s.d / fcvt.d.s have their own method. */
  fp(op: FpOp, d: boolean, rd: number, rs1: number, rs2 = 0, rm = RM_DYN): this {
    const [f5, fixedRs2, fixedF3] = FP_OPS[op];
    return this.inst(rType(OP_FP, fixedF3 >= 0 ? fixedF3 : rm, (f5 << 2) | (d ? 1 : 0), rd, rs1, fixedRs2 >= 0 ? fixedRs2 : rs2));
  }
  fcvtSD(rd: number, rs1: number): this { return this.inst(rType(OP_FP, RM_DYN, 0x20, rd, rs1, 1)); }
  fcvtDS(rd: number, rs1: number): this { return this.inst(rType(OP_FP, RM_DYN, 0x21, rd, rs1, 0)); }
  /** fmadd (0x43), fmsub (0x47), fnmsub (0x4b), fnmadd (0x4f). */
  fma(opcode: 0x43 | 0x47 | 0x4b | 0x4f, d: boolean, rd: number, rs1: number, rs2: number, rs3: number): this {
    return this.inst(r4Type(opcode, d ? 1 : 0, rd, rs1, rs2, rs3, RM_DYN));
  }

  /** Resolves labels; returns the image (little-endian halfwords). */
  assemble(): Uint8Array {
    for (const f of this.fixups) {
      const t = this.labels.get(f.label);
      check(t !== undefined, `undefined label ${f.label}`);
      f.patch(t!).forEach((h, k) => { this.out[f.at + k] = h; });
    }
    const bytes = new Uint8Array(this.out.length * 2);
    this.out.forEach((h, k) => { bytes[2 * k] = h & 0xff; bytes[2 * k + 1] = h >>> 8; });
    return bytes;
  }
}

function split(w: number): number[] {
  return [w & 0xffff, (w >>> 16) & 0xffff];
}
