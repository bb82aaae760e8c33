/**
 * Internal operation numbers produced by the decoder and executed by the hart's switch.
 * A `const enum` so that tsc inlines every case label as a literal: V8 then compiles the
 * interpreter's switch to a jump table. Numbering starts at 1 so a decoded word is never 0
 * (0 marks "not decoded yet" in the decode cache).
 */
export const enum Op {
  ILLEGAL = 1,
  LUI, AUIPC, JAL, JALR,
  BEQ, BNE, BLT, BGE, BLTU, BGEU,
  LB, LH, LW, LD, LBU, LHU, LWU,
  SB, SH, SW, SD,
  ADDI, SLTI, SLTIU, XORI, ORI, ANDI, SLLI, SRLI, SRAI,
  ADD, SUB, SLL, SLT, SLTU, XOR, SRL, SRA, OR, AND,
  ADDIW, SLLIW, SRLIW, SRAIW, ADDW, SUBW, SLLW, SRLW, SRAW,
  FENCE, FENCE_I, ECALL, EBREAK, MRET, SRET, WFI, SFENCE_VMA,
  CSRRW, CSRRS, CSRRC, CSRRWI, CSRRSI, CSRRCI,
  MUL, MULH, MULHSU, MULHU, DIV, DIVU, REM, REMU, MULW, DIVW, DIVUW, REMW, REMUW,
  LR_W, SC_W, AMOSWAP_W, AMOADD_W, AMOXOR_W, AMOAND_W, AMOOR_W, AMOMIN_W, AMOMAX_W, AMOMINU_W, AMOMAXU_W,
  LR_D, SC_D, AMOSWAP_D, AMOADD_D, AMOXOR_D, AMOAND_D, AMOOR_D, AMOMIN_D, AMOMAX_D, AMOMINU_D, AMOMAXU_D,
  FLW, FLD, FSW, FSD,
  FMADD_S, FMSUB_S, FNMSUB_S, FNMADD_S,
  FMADD_D, FMSUB_D, FNMSUB_D, FNMADD_D,
  FADD_S, FSUB_S, FMUL_S, FDIV_S, FSQRT_S, FSGNJ_S, FSGNJN_S, FSGNJX_S, FMIN_S, FMAX_S,
  FCVT_W_S, FCVT_WU_S, FCVT_L_S, FCVT_LU_S, FMV_X_W, FCLASS_S, FEQ_S, FLT_S, FLE_S,
  FCVT_S_W, FCVT_S_WU, FCVT_S_L, FCVT_S_LU, FMV_W_X,
  FADD_D, FSUB_D, FMUL_D, FDIV_D, FSQRT_D, FSGNJ_D, FSGNJN_D, FSGNJX_D, FMIN_D, FMAX_D,
  FCVT_W_D, FCVT_WU_D, FCVT_L_D, FCVT_LU_D, FMV_X_D, FCLASS_D, FEQ_D, FLT_D, FLE_D,
  FCVT_D_W, FCVT_D_WU, FCVT_D_L, FCVT_D_LU, FMV_D_X,
  FCVT_S_D, FCVT_D_S,
  // Specialisations the decoder picks for common idioms (same semantics, less work).
  LI, MV, NOP,
  COUNT,
}

/**
 * Decoded instruction word layout (the second word of a decode-cache slot holds the
 * immediate; for floating-point ops it holds rm | rs3 << 3):
 *   bits 0-7 op, 8-13 rd (32 = the discard slot standing for x0), 14-18 rs1, 19-23 rs2,
 *   bit 29 set for a 16-bit (compressed) instruction.
 */
export const D_RD_SHIFT = 8;
export const D_RS1_SHIFT = 14;
export const D_RS2_SHIFT = 19;
export const D_COMPRESSED = 1 << 29;
/** Register slot that writes to x0 go to; it is never read. */
export const X_DISCARD = 32;
