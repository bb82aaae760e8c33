/**
 * Instruction decoder: 32-bit encodings (RV64IMAFD, Zicsr, Zifencei, privileged) and the
 * RV64C compressed encodings, which are expanded here to the same internal ops
 * (Unprivileged spec ch. 16, "C" Standard Extension). The hart caches the result per
 * physical address, so this runs once per instruction location, not once per execution.
 *
 * Results are returned through `decoded` (no allocation per call).
 */
import { D_COMPRESSED, D_RD_SHIFT, D_RS1_SHIFT, D_RS2_SHIFT, Op, X_DISCARD } from './opcodes.js';

export const decoded = { w: 0, imm: 0 };

function emit(op: Op, rd: number, rs1: number, rs2: number, imm: number): void {
  decoded.w = op | (rd << D_RD_SHIFT) | (rs1 << D_RS1_SHIFT) | (rs2 << D_RS2_SHIFT);
  decoded.imm = imm | 0;
}

/** Integer destination: writes to x0 go to the discard slot. */
function xd(rd: number): number {
  return rd === 0 ? X_DISCARD : rd;
}

function illegal(inst: number): void {
  emit(Op.ILLEGAL, 0, 0, 0, inst);
}

/** An ALU op writing an integer register; a write to x0 has no effect at all, so it is a NOP. */
function alu(op: Op, rd: number, rs1: number, rs2: number, imm: number): void {
  if (rd === 0) emit(Op.NOP, 0, 0, 0, 0);
  else emit(op, rd, rs1, rs2, imm);
}

function addi(rd: number, rs1: number, imm: number): void {
  if (rd === 0) emit(Op.NOP, 0, 0, 0, 0);
  else if (rs1 === 0) emit(Op.LI, rd, 0, 0, imm);
  else if (imm === 0) emit(Op.MV, rd, rs1, 0, 0);
  else emit(Op.ADDI, rd, rs1, 0, imm);
}

const LOADS = [Op.LB, Op.LH, Op.LW, Op.LD, Op.LBU, Op.LHU, Op.LWU, 0];
const STORES = [Op.SB, Op.SH, Op.SW, Op.SD];
const BRANCHES = [Op.BEQ, Op.BNE, 0, 0, Op.BLT, Op.BGE, Op.BLTU, Op.BGEU];
const OP_IMM = [Op.ADDI, Op.SLLI, Op.SLTI, Op.SLTIU, Op.XORI, Op.SRLI, Op.ORI, Op.ANDI];
const OP_REG = [Op.ADD, Op.SLL, Op.SLT, Op.SLTU, Op.XOR, Op.SRL, Op.OR, Op.AND];
const OP_MUL = [Op.MUL, Op.MULH, Op.MULHSU, Op.MULHU, Op.DIV, Op.DIVU, Op.REM, Op.REMU];
const OP_MULW = [Op.MULW, 0, 0, 0, Op.DIVW, Op.DIVUW, Op.REMW, Op.REMUW];
const CSR_OPS = [0, Op.CSRRW, Op.CSRRS, Op.CSRRC, 0, Op.CSRRWI, Op.CSRRSI, Op.CSRRCI];
// AMO funct5 → op, for .W; the .D op is at a fixed distance (LR_D - LR_W).
const AMO_W: Record<number, Op> = {
  0x02: Op.LR_W, 0x03: Op.SC_W, 0x01: Op.AMOSWAP_W, 0x00: Op.AMOADD_W, 0x04: Op.AMOXOR_W,
  0x0c: Op.AMOAND_W, 0x08: Op.AMOOR_W, 0x10: Op.AMOMIN_W, 0x14: Op.AMOMAX_W, 0x18: Op.AMOMINU_W,
  0x1c: Op.AMOMAXU_W,
};
const D_MINUS_W = Op.LR_D - Op.LR_W;
const FP_D_MINUS_S = Op.FADD_D - Op.FADD_S;

/** Packs rm (3 bits) and rs3 into the immediate word of floating-point ops. */
function fp(op: Op, rd: number, rs1: number, rs2: number, rm: number, rs3 = 0): void {
  emit(op, rd, rs1, rs2, rm | (rs3 << 3));
}

export function decode32(inst: number): void {
  const opcode = inst & 0x7f;
  const rd = (inst >> 7) & 31;
  const f3 = (inst >> 12) & 7;
  const rs1 = (inst >> 15) & 31;
  const rs2 = (inst >> 20) & 31;
  const f7 = inst >>> 25;
  const immI = inst >> 20;
  switch (opcode) {
    case 0x37: return alu(Op.LUI, rd, 0, 0, inst & ~0xfff);
    case 0x17: return alu(Op.AUIPC, rd, 0, 0, inst & ~0xfff);
    case 0x6f: {
      const imm = ((inst >> 31) << 20) | (((inst >> 12) & 0xff) << 12) | (((inst >> 20) & 1) << 11) |
        (((inst >> 21) & 0x3ff) << 1);
      return emit(Op.JAL, xd(rd), 0, 0, imm);
    }
    case 0x67:
      if (f3 !== 0) return illegal(inst);
      return emit(Op.JALR, xd(rd), rs1, 0, immI);
    case 0x63: {
      const op = BRANCHES[f3]!;
      if (op === 0) return illegal(inst);
      const imm = ((inst >> 31) << 12) | (((inst >> 7) & 1) << 11) | (((inst >> 25) & 0x3f) << 5) |
        (((inst >> 8) & 0xf) << 1);
      return emit(op, 0, rs1, rs2, imm);
    }
    case 0x03: {
      const op = LOADS[f3]!;
      if (op === 0) return illegal(inst);
      return emit(op, xd(rd), rs1, 0, immI);
    }
    case 0x23: {
      if (f3 > 3) return illegal(inst);
      return emit(STORES[f3]!, 0, rs1, rs2, ((inst >> 25) << 5) | ((inst >> 7) & 31));
    }
    case 0x13: {
      if (f3 === 1) {
        if (inst >>> 26 !== 0) return illegal(inst);
        return alu(Op.SLLI, rd, rs1, 0, (inst >> 20) & 63);
      }
      if (f3 === 5) {
        const f6 = inst >>> 26;
        if (f6 === 0) return alu(Op.SRLI, rd, rs1, 0, (inst >> 20) & 63);
        if (f6 === 0x10) return alu(Op.SRAI, rd, rs1, 0, (inst >> 20) & 63);
        return illegal(inst);
      }
      if (f3 === 0) return addi(rd, rs1, immI);
      return alu(OP_IMM[f3]!, rd, rs1, 0, immI);
    }
    case 0x33: {
      if (f7 === 0) return alu(OP_REG[f3]!, rd, rs1, rs2, 0);
      if (f7 === 1) return alu(OP_MUL[f3]!, rd, rs1, rs2, 0);
      if (f7 === 0x20) {
        if (f3 === 0) return alu(Op.SUB, rd, rs1, rs2, 0);
        if (f3 === 5) return alu(Op.SRA, rd, rs1, rs2, 0);
      }
      return illegal(inst);
    }
    case 0x1b: {
      if (f3 === 0) return alu(Op.ADDIW, rd, rs1, 0, immI);
      if (f3 === 1 && f7 === 0) return alu(Op.SLLIW, rd, rs1, 0, rs2);
      if (f3 === 5 && f7 === 0) return alu(Op.SRLIW, rd, rs1, 0, rs2);
      if (f3 === 5 && f7 === 0x20) return alu(Op.SRAIW, rd, rs1, 0, rs2);
      return illegal(inst);
    }
    case 0x3b: {
      if (f7 === 0) {
        if (f3 === 0) return alu(Op.ADDW, rd, rs1, rs2, 0);
        if (f3 === 1) return alu(Op.SLLW, rd, rs1, rs2, 0);
        if (f3 === 5) return alu(Op.SRLW, rd, rs1, rs2, 0);
      } else if (f7 === 0x20) {
        if (f3 === 0) return alu(Op.SUBW, rd, rs1, rs2, 0);
        if (f3 === 5) return alu(Op.SRAW, rd, rs1, rs2, 0);
      } else if (f7 === 1) {
        const op = OP_MULW[f3]!;
        if (op !== 0) return alu(op, rd, rs1, rs2, 0);
      }
      return illegal(inst);
    }
    case 0x0f:
      if (f3 === 0) return emit(Op.FENCE, 0, 0, 0, 0);
      if (f3 === 1) return emit(Op.FENCE_I, 0, 0, 0, 0);
      return illegal(inst);
    case 0x73: {
      if (f3 === 0) {
        switch (inst) {
          case 0x00000073: return emit(Op.ECALL, 0, 0, 0, 0);
          case 0x00100073: return emit(Op.EBREAK, 0, 0, 0, 0);
          case 0x30200073: return emit(Op.MRET, 0, 0, 0, 0);
          case 0x10200073: return emit(Op.SRET, 0, 0, 0, 0);
          case 0x10500073: return emit(Op.WFI, 0, 0, 0, 0);
        }
        if (f7 === 0x09 && rd === 0) return emit(Op.SFENCE_VMA, 0, rs1, rs2, 0);
        return illegal(inst);
      }
      const op = CSR_OPS[f3]!;
      if (op === 0) return illegal(inst);
      // The CSR number is the unsigned 12-bit field; rd keeps 0 distinct (rd = x0 suppresses the read).
      return emit(op, rd, rs1, 0, inst >>> 20);
    }
    case 0x2f: {
      if (f3 !== 2 && f3 !== 3) return illegal(inst);
      const op = AMO_W[inst >>> 27];
      if (op === undefined || (op === Op.LR_W && rs2 !== 0)) return illegal(inst);
      return emit(f3 === 3 ? op + D_MINUS_W : op, xd(rd), rs1, rs2, 0);
    }
    case 0x07:
      if (f3 === 2) return emit(Op.FLW, rd, rs1, 0, immI);
      if (f3 === 3) return emit(Op.FLD, rd, rs1, 0, immI);
      return illegal(inst);
    case 0x27: {
      const imm = ((inst >> 25) << 5) | ((inst >> 7) & 31);
      if (f3 === 2) return emit(Op.FSW, 0, rs1, rs2, imm);
      if (f3 === 3) return emit(Op.FSD, 0, rs1, rs2, imm);
      return illegal(inst);
    }
    case 0x43: case 0x47: case 0x4b: case 0x4f: {
      const fmt = (inst >> 25) & 3;
      if (fmt > 1 || f3 === 5 || f3 === 6) return illegal(inst);
      const base = fmt === 0 ? Op.FMADD_S : Op.FMADD_D;
      return fp(base + ((opcode - 0x43) >> 2), rd, rs1, rs2, f3, inst >>> 27);
    }
    case 0x53: return decodeOpFp(inst, rd, f3, rs1, rs2, f7);
  }
  return illegal(inst);
}

function decodeOpFp(inst: number, rd: number, f3: number, rs1: number, rs2: number, f7: number): void {
  const isD = f7 & 1;
  const dOff = isD ? FP_D_MINUS_S : 0;
  const rmOk = f3 !== 5 && f3 !== 6;
  switch (f7 >> 1) {
    case 0x00: case 0x02: case 0x04: case 0x06: // fadd, fsub, fmul, fdiv
      if (!rmOk) return illegal(inst);
      return fp(Op.FADD_S + (f7 >> 2) + dOff, rd, rs1, rs2, f3);
    case 0x16: // fsqrt
      if (!rmOk || rs2 !== 0) return illegal(inst);
      return fp(Op.FSQRT_S + dOff, rd, rs1, 0, f3);
    case 0x08: // fsgnj, fsgnjn, fsgnjx
      if (f3 > 2) return illegal(inst);
      return fp(Op.FSGNJ_S + f3 + dOff, rd, rs1, rs2, 0);
    case 0x0a: // fmin, fmax
      if (f3 > 1) return illegal(inst);
      return fp(Op.FMIN_S + f3 + dOff, rd, rs1, rs2, 0);
    case 0x10: // fcvt.s.d (f7 0x20, rs2 1), fcvt.d.s (f7 0x21, rs2 0)
      if (!rmOk) return illegal(inst);
      if (f7 === 0x20 && rs2 === 1) return fp(Op.FCVT_S_D, rd, rs1, 0, f3);
      if (f7 === 0x21 && rs2 === 0) return fp(Op.FCVT_D_S, rd, rs1, 0, f3);
      return illegal(inst);
    case 0x30: // fcvt.{w,wu,l,lu}.{s,d}: integer destination
      if (!rmOk || rs2 > 3) return illegal(inst);
      return fp(Op.FCVT_W_S + rs2 + dOff, xd(rd), rs1, 0, f3);
    case 0x34: // fcvt.{s,d}.{w,wu,l,lu}: integer source
      if (!rmOk || rs2 > 3) return illegal(inst);
      return fp(Op.FCVT_S_W + rs2 + dOff, rd, rs1, 0, f3);
    case 0x38: // fmv.x.{w,d} / fclass
      if (rs2 !== 0) return illegal(inst);
      if (f3 === 0) return fp(Op.FMV_X_W + dOff, xd(rd), rs1, 0, 0);
      if (f3 === 1) return fp(Op.FCLASS_S + dOff, xd(rd), rs1, 0, 0);
      return illegal(inst);
    case 0x28: // feq (f3 2), flt (1), fle (0)
      if (f3 === 2) return fp(Op.FEQ_S + dOff, xd(rd), rs1, rs2, 0);
      if (f3 === 1) return fp(Op.FLT_S + dOff, xd(rd), rs1, rs2, 0);
      if (f3 === 0) return fp(Op.FLE_S + dOff, xd(rd), rs1, rs2, 0);
      return illegal(inst);
    case 0x3c: // fmv.{w,d}.x
      if (rs2 !== 0 || f3 !== 0) return illegal(inst);
      return fp(Op.FMV_W_X + dOff, rd, rs1, 0, 0);
  }
  return illegal(inst);
}

/** Expands a 16-bit instruction (low 16 bits of `inst`; quadrant != 3). */
export function decode16(inst: number): void {
  decode16Inner(inst);
  decoded.w |= D_COMPRESSED;
}

function decode16Inner(inst: number): void {
  const f3 = (inst >> 13) & 7;
  const rdp = ((inst >> 2) & 7) + 8; // rd' / rs2'
  const rs1p = ((inst >> 7) & 7) + 8;
  const rd = (inst >> 7) & 31;
  const rs2 = (inst >> 2) & 31;
  const imm6 = (((inst << 19) >> 26) & ~31) | ((inst >> 2) & 31); // sext(bit12 : bits 6:2)
  const uimmD = ((inst >> 7) & 0x38) | ((inst << 1) & 0xc0); // c.fld / c.ld / c.fsd / c.sd
  const uimmW = ((inst >> 7) & 0x38) | ((inst >> 4) & 4) | ((inst << 1) & 0x40); // c.lw / c.sw
  switch (((inst & 3) << 3) | f3) {
    // Quadrant 0
    case 0: {
      const imm = ((inst >> 7) & 0x30) | ((inst >> 1) & 0x3c0) | ((inst >> 4) & 4) | ((inst >> 2) & 8);
      if (imm === 0) return illegal(inst); // includes the all-zero illegal instruction
      return emit(Op.ADDI, rdp, 2, 0, imm);
    }
    case 1: return emit(Op.FLD, rdp, rs1p, 0, uimmD);
    case 2: return emit(Op.LW, rdp, rs1p, 0, uimmW);
    case 3: return emit(Op.LD, rdp, rs1p, 0, uimmD);
    case 5: return emit(Op.FSD, 0, rs1p, rdp, uimmD);
    case 6: return emit(Op.SW, 0, rs1p, rdp, uimmW);
    case 7: return emit(Op.SD, 0, rs1p, rdp, uimmD);
    // Quadrant 1
    case 8: return addi(rd, rd, imm6); // c.addi / c.nop (hints when rd = 0 or imm = 0)
    case 9:
      if (rd === 0) return illegal(inst);
      return emit(Op.ADDIW, rd, rd, 0, imm6);
    case 10: return addi(rd, 0, imm6); // c.li
    case 11: {
      if (rd === 2) {
        const imm = (((inst << 19) >> 31) << 9) | ((inst >> 2) & 0x10) | ((inst << 1) & 0x40) |
          ((inst << 4) & 0x180) | ((inst << 3) & 0x20);
        if (imm === 0) return illegal(inst);
        return emit(Op.ADDI, 2, 2, 0, imm);
      }
      if (imm6 === 0) return illegal(inst);
      return alu(Op.LUI, rd, 0, 0, imm6 << 12);
    }
    case 12: {
      const f2 = (inst >> 10) & 3;
      const shamt = ((inst >> 7) & 0x20) | ((inst >> 2) & 31);
      if (f2 === 0) return emit(Op.SRLI, rs1p, rs1p, 0, shamt);
      if (f2 === 1) return emit(Op.SRAI, rs1p, rs1p, 0, shamt);
      if (f2 === 2) return emit(Op.ANDI, rs1p, rs1p, 0, imm6);
      const f = (inst >> 5) & 3;
      if ((inst & 0x1000) === 0) {
        return emit([Op.SUB, Op.XOR, Op.OR, Op.AND][f]!, rs1p, rs1p, rdp, 0);
      }
      if (f === 0) return emit(Op.SUBW, rs1p, rs1p, rdp, 0);
      if (f === 1) return emit(Op.ADDW, rs1p, rs1p, rdp, 0);
      return illegal(inst);
    }
    case 13: {
      const imm = (((inst << 19) >> 31) << 11) | ((inst >> 7) & 0x10) | ((inst >> 1) & 0x300) |
        ((inst << 2) & 0x400) | ((inst >> 1) & 0x40) | ((inst << 1) & 0x80) | ((inst >> 2) & 0xe) |
        ((inst << 3) & 0x20);
      return emit(Op.JAL, X_DISCARD, 0, 0, imm);
    }
    case 14: case 15: {
      const imm = (((inst << 19) >> 31) << 8) | ((inst >> 7) & 0x18) | ((inst << 1) & 0xc0) |
        ((inst >> 2) & 6) | ((inst << 3) & 0x20);
      return emit(f3 === 6 ? Op.BEQ : Op.BNE, 0, rs1p, 0, imm);
    }
    // Quadrant 2
    case 16: {
      const shamt = ((inst >> 7) & 0x20) | ((inst >> 2) & 31);
      return alu(Op.SLLI, rd, rd, 0, shamt);
    }
    case 17: {
      const imm = ((inst >> 7) & 0x20) | ((inst >> 2) & 0x18) | ((inst << 4) & 0x1c0);
      return emit(Op.FLD, rd, 2, 0, imm);
    }
    case 18: {
      if (rd === 0) return illegal(inst);
      const imm = ((inst >> 7) & 0x20) | ((inst >> 2) & 0x1c) | ((inst << 4) & 0xc0);
      return emit(Op.LW, rd, 2, 0, imm);
    }
    case 19: {
      if (rd === 0) return illegal(inst);
      const imm = ((inst >> 7) & 0x20) | ((inst >> 2) & 0x18) | ((inst << 4) & 0x1c0);
      return emit(Op.LD, rd, 2, 0, imm);
    }
    case 20: {
      if ((inst & 0x1000) === 0) {
        if (rs2 === 0) {
          if (rd === 0) return illegal(inst);
          return emit(Op.JALR, X_DISCARD, rd, 0, 0); // c.jr
        }
        return rd === 0 ? emit(Op.NOP, 0, 0, 0, 0) : emit(Op.MV, rd, rs2, 0, 0); // c.mv
      }
      if (rs2 === 0) {
        if (rd === 0) return emit(Op.EBREAK, 0, 0, 0, 0);
        return emit(Op.JALR, 1, rd, 0, 0); // c.jalr
      }
      return alu(Op.ADD, rd, rd, rs2, 0); // c.add
    }
    case 21: {
      const imm = ((inst >> 7) & 0x38) | ((inst >> 1) & 0x1c0);
      return emit(Op.FSD, 0, 2, rs2, imm);
    }
    case 22: {
      const imm = ((inst >> 7) & 0x3c) | ((inst >> 1) & 0xc0);
      return emit(Op.SW, 0, 2, rs2, imm);
    }
    case 23: {
      const imm = ((inst >> 7) & 0x38) | ((inst >> 1) & 0x1c0);
      return emit(Op.SD, 0, 2, rs2, imm);
    }
  }
  return illegal(inst);
}

/** Decodes the instruction whose low bits are in `inst` (16 or 32 bits). */
export function decode(inst: number): void {
  if ((inst & 3) === 3) decode32(inst);
  else decode16(inst & 0xffff);
}
