/**
 * F and D instructions compiled inline: native wasm f32/f64 arithmetic where it provably gives
 * the RISC-V result and leaves fflags as they are, a call into the TypeScript FPU
 * (src/cpu/fpu/fpu.ts, through Hart.jitFp) everywhere else. QEMU's "hardfloat" takes the same
 * approach (softfloat.c: host FPU when the inputs are normal and the inexact flag is already
 * set); here exactness is also tested, so exact arithmetic (integers held in doubles, the
 * common case of a freshly cleared fflags) stays native too.
 *
 * Why a native result is right (IEEE 754-2008 §4.3, §7; RISC-V Unpriv 20191213 §11.2-11.3):
 *  - wasm arithmetic rounds to nearest-even and is deterministic except for NaN bits; a NaN
 *    result (which RISC-V wants canonical, with NV for signalling inputs) always falls back.
 *  - a finite result whose magnitude is above the smallest normal raised no NV, DZ, OF or UF
 *    (UF needs a tiny result: tininess after rounding, so the smallest normal itself is
 *    excluded). Only NX can be raised: not at all when the result is exact (then the rounding
 *    mode did not matter either), and without changing fflags when NX is already set and the
 *    mode is RNE. Sums whose result is zero or subnormal are exact but their sign depends on
 *    the mode (§6.3): they fall back.
 *  - exactness: TwoSum for sums (Knuth), Dekker's product for products, quotients and square
 *    roots (q·b = a, r·r = a), within ranges where those are exact; single precision is
 *    checked in double, where products of singles are exact.
 *  - the emitted code never writes fflags: the FPU stays their only writer. It reads them
 *    (and frm) from a mirror of fcsr in the hart's state slot, which the JIT refreshes on
 *    every entry and after every call out of compiled code (jit.ts), the only places fcsr
 *    can change while compiled code runs.
 *
 * Shape per instruction: operands loaded, result computed into a local, then
 *   ok = class ok ∧ (inexact allowed ? 1 : exact ∧ rounding mode valid)
 *   if ok: write rd   else: call the FPU (which may decline: a STEP exit to the interpreter)
 * NaN-boxing (§12.2): a single operand whose upper 32 bits are not all ones reads as the
 * canonical NaN, so the fast path requires them set (else falls back); single results are
 * written boxed. Sign injection, moves and comparisons are bit operations or exact.
 */
import { SLOT_EXIT, SLOT_FREGS } from '../cpu/guest-ram.js';
import { Op } from '../cpu/opcodes.js';
import { F32, F64, FuncBody, I32, I64, type ModuleBuilder, W } from './wasm/emitter.js';

/**
 * Byte offset in the hart's state slot of the fcsr mirror (int32, frm << 5 | fflags) that
 * inline F/D code reads; jit.ts keeps it current. (In the exit record's spare room, after
 * the page pc at SLOT_EXIT + 48.)
 */
export const SLOT_FCSR_MIRROR = SLOT_EXIT + 64;

/** A value of the mirror that keeps every rounding-mode-dependent fast path off (frm invalid, no flags). */
export const FCSR_MIRROR_SAFE = 7 << 5;

/** What the compiler provides at one F/D instruction. */
export interface FpSite {
  /** Pushes x register r (i64); call only outside the conditional part (it caches the load). */
  getReg(r: number): void;
  /** Pops an i64 into x register r (X_DISCARD drops it). */
  setReg(r: number): void;
  /** Emits the call into the FPU for the instruction, and its STEP exit; inside one `if` arm. */
  fallback(): void;
}

const RM_RNE = 0;
const RM_RMM = 4;
const RM_DYN = 7;
const FFLAG_NX = 1;
const MIN_NORMAL_D = 2.2250738585072014e-308; // 2^-1022
const MIN_NORMAL_S = 1.1754943508222875e-38; // 2^-126
/** Dekker's splitting constant for doubles: 2^27 + 1. */
const SPLITTER = 134217729;
/** Operands of an exactly checked product stay below this (the split cannot overflow). */
const PROD_MAX_OPERAND = 2 ** 990;
/** ... and the product above this (the error term cannot underflow). */
const PROD_MIN_RESULT = 2 ** -967;

interface Locals { a: number; b: number; c: number; r: number; t: number; u: number; sa: number; sb: number; sc: number; rs: number; x: number }

/**
 * Emits F/D instructions for one page function. `prodIs`, a helper function added to the
 * module at first need, answers "x · y = z exactly" (in the ranges Dekker's product is exact).
 */
export class FpInline {
  private locals: Locals | undefined;
  private prodIsFn = -1;

  constructor(private readonly f: FuncBody, private readonly m: ModuleBuilder, private readonly slotBase: number) {}

  /**
   * Emits instruction (op, w, imm) inline; false if it has no inline form (the compiler then
   * emits the plain call). The caller has checked that FS is Dirty.
   */
  emit(op: number, w: number, imm: number, site: FpSite): boolean {
    const rd = (w >> 8) & 63, rs1 = (w >> 14) & 31, rs2 = (w >> 19) & 31, rs3 = (imm >> 3) & 31;
    const rm = imm & 7;
    const f = this.f;
    const L = this.l();
    switch (op) {
      case Op.FADD_D: case Op.FSUB_D: {
        this.ldD(rs1, L.a); this.ldD(rs2, L.b, op === Op.FSUB_D);
        f.get(L.a).get(L.b).op(W.f64_add).set(L.r);
        this.finish(rm, false, () => this.sumClassD(L.r), () => this.twoSumExact(L.a, L.b, L.r), () => this.stD(rd & 31, L.r), site);
        return true;
      }
      case Op.FMUL_D: case Op.FDIV_D: case Op.FSQRT_D: {
        this.ldD(rs1, L.a);
        if (op !== Op.FSQRT_D) this.ldD(rs2, L.b);
        f.get(L.a);
        if (op === Op.FSQRT_D) f.op(W.f64_sqrt); else f.get(L.b).op(op === Op.FMUL_D ? W.f64_mul : W.f64_div);
        f.set(L.r);
        const exact = op === Op.FMUL_D ? () => this.prodIs(L.a, L.b, L.r)
          : op === Op.FDIV_D ? () => this.prodIs(L.r, L.b, L.a) : () => this.prodIs(L.r, L.r, L.a);
        this.finish(rm, false, () => this.normalClass(L.r, false), exact, () => this.stD(rd & 31, L.r), site);
        return true;
      }
      case Op.FMADD_D: case Op.FMSUB_D: case Op.FNMSUB_D: case Op.FNMADD_D: {
        // Only when the product is exact: then fma(a, b, c) = fl(a·b + c), a plain sum.
        const negP = op === Op.FNMSUB_D || op === Op.FNMADD_D;
        const negC = op === Op.FMSUB_D || op === Op.FNMADD_D;
        this.ldD(rs1, L.a, negP); this.ldD(rs2, L.b); this.ldD(rs3, L.c, negC);
        f.get(L.a).get(L.b).op(W.f64_mul).set(L.u);
        f.get(L.u).get(L.c).op(W.f64_add).set(L.r);
        this.finish(rm, false, () => { this.prodIs(L.a, L.b, L.u); this.sumClassD(L.r); f.op(W.i32_and); },
          () => this.twoSumExact(L.u, L.c, L.r), () => this.stD(rd & 31, L.r), site);
        return true;
      }
      case Op.FADD_S: case Op.FSUB_S: {
        this.ldS(rs1, L.sa); this.ldS(rs2, L.sb, op === Op.FSUB_S);
        f.get(L.sa).get(L.sb).op(W.f32_add).set(L.rs);
        this.finish(rm, false, () => {
          this.boxed(rs1, rs2);
          f.get(L.rs).op(W.f32_abs).f32(Infinity).op(W.f32_lt).op(W.i32_and).get(L.rs).f32(0).op(W.f32_ne).op(W.i32_and);
        }, () => {
          // The sum of two singles in double, exact (TwoSum), and a single.
          f.get(L.sa).op(W.f64_promote_f32).set(L.a).get(L.sb).op(W.f64_promote_f32).set(L.b);
          f.get(L.a).get(L.b).op(W.f64_add).set(L.r);
          this.twoSumExact(L.a, L.b, L.r);
          f.get(L.rs).op(W.f64_promote_f32).get(L.r).op(W.f64_eq).op(W.i32_and);
        }, () => this.stS(rd & 31, L.rs), site);
        return true;
      }
      case Op.FMUL_S: case Op.FDIV_S: case Op.FSQRT_S: {
        this.ldS(rs1, L.sa);
        if (op !== Op.FSQRT_S) this.ldS(rs2, L.sb);
        f.get(L.sa);
        if (op === Op.FSQRT_S) f.op(W.f32_sqrt); else f.get(L.sb).op(op === Op.FMUL_S ? W.f32_mul : W.f32_div);
        f.set(L.rs);
        this.finish(rm, false, () => {
          if (op === Op.FSQRT_S) this.boxed(rs1); else this.boxed(rs1, rs2);
          this.normalClass(L.rs, true); f.op(W.i32_and);
        }, () => {
          // Products of singles are exact in double: r = a·b, a = r·b, a = r·r.
          const p = (x: number, y: number) => f.get(x).op(W.f64_promote_f32).get(y).op(W.f64_promote_f32).op(W.f64_mul);
          if (op === Op.FMUL_S) { f.get(L.rs).op(W.f64_promote_f32); p(L.sa, L.sb); }
          else { p(L.rs, op === Op.FDIV_S ? L.sb : L.rs); f.get(L.sa).op(W.f64_promote_f32); }
          f.op(W.f64_eq);
        }, () => this.stS(rd & 31, L.rs), site);
        return true;
      }
      case Op.FMADD_S: case Op.FMSUB_S: case Op.FNMSUB_S: case Op.FNMADD_S: {
        // In double: the product is exact, the sum is rounded once (TwoSum gives its error),
        // then to single: double rounding can only err when the double sum is inexact and
        // lands exactly halfway between two singles (its low 29 bits 1 followed by zeros).
        const negP = op === Op.FNMSUB_S || op === Op.FNMADD_S;
        const negC = op === Op.FMSUB_S || op === Op.FNMADD_S;
        this.ldS(rs1, L.sa); this.ldS(rs2, L.sb); this.ldS(rs3, L.sc);
        f.get(L.sa).op(W.f64_promote_f32); if (negP) f.op(W.f64_neg);
        f.get(L.sb).op(W.f64_promote_f32).op(W.f64_mul).set(L.u);
        f.get(L.sc).op(W.f64_promote_f32); if (negC) f.op(W.f64_neg); f.set(L.c);
        f.get(L.u).get(L.c).op(W.f64_add).tee(L.r).op(W.f32_demote_f64).set(L.rs);
        f.get(L.r).get(L.u).op(W.f64_sub).set(L.t); // TwoSum error of u + c, into t
        f.get(L.u).get(L.r).get(L.t).op(W.f64_sub).op(W.f64_sub).get(L.c).get(L.t).op(W.f64_sub).op(W.f64_add).set(L.t);
        this.finish(rm, false, () => {
          this.boxed(rs1, rs2, rs3);
          this.normalClass(L.rs, true); f.op(W.i32_and);
          f.get(L.t).f64(0).op(W.f64_ne);
          f.get(L.r).op(W.i64_reinterpret_f64).op(W.i32_wrap_i64).i32(0x1fffffff).op(W.i32_and).i32(0x10000000).op(W.i32_eq);
          f.op(W.i32_and).op(W.i32_eqz).op(W.i32_and);
        }, () => {
          f.get(L.t).f64(0).op(W.f64_eq).get(L.rs).op(W.f64_promote_f32).get(L.r).op(W.f64_eq).op(W.i32_and);
        }, () => this.stS(rd & 31, L.rs), site);
        return true;
      }
      case Op.FMIN_D: case Op.FMAX_D: {
        this.ldD(rs1, L.a); this.ldD(rs2, L.b);
        // wasm's min/max order -0 below +0 as RISC-V does; a NaN operand falls back.
        f.get(L.a).get(L.a).op(W.f64_eq).get(L.b).get(L.b).op(W.f64_eq).op(W.i32_and).if_();
        f.get(L.a).get(L.b).op(op === Op.FMIN_D ? W.f64_min : W.f64_max).set(L.r);
        this.stD(rd & 31, L.r);
        f.else_(); site.fallback(); f.end();
        return true;
      }
      case Op.FMIN_S: case Op.FMAX_S: {
        this.ldS(rs1, L.sa); this.ldS(rs2, L.sb);
        this.boxed(rs1, rs2);
        f.get(L.sa).get(L.sa).op(W.f32_eq).op(W.i32_and).get(L.sb).get(L.sb).op(W.f32_eq).op(W.i32_and).if_();
        f.get(L.sa).get(L.sb).op(op === Op.FMIN_S ? W.f32_min : W.f32_max).set(L.rs);
        this.stS(rd & 31, L.rs);
        f.else_(); site.fallback(); f.end();
        return true;
      }
      case Op.FSGNJ_D: case Op.FSGNJN_D: case Op.FSGNJX_D: {
        const at = this.fa(rd & 31);
        f.i32(0);
        if (op === Op.FSGNJX_D) {
          this.ldBits(rs1); this.ldBits(rs2); f.i64(0, 0x80000000 | 0).op(W.i64_and).op(W.i64_xor);
        } else {
          this.ldBits(rs1); f.i64(-1, 0x7fffffff).op(W.i64_and);
          this.ldBits(rs2); if (op === Op.FSGNJN_D) f.i64(-1, -1).op(W.i64_xor);
          f.i64(0, 0x80000000 | 0).op(W.i64_and).op(W.i64_or);
        }
        f.mem(W.i64_store, 3, at);
        return true;
      }
      case Op.FSGNJ_S: case Op.FSGNJN_S: case Op.FSGNJX_S: {
        const at = this.fa(rd & 31);
        f.i32(0);
        if (op === Op.FSGNJX_S) {
          this.unboxBits(rs1); this.unboxBits(rs2); f.i32(0x80000000 | 0).op(W.i32_and).op(W.i32_xor);
        } else {
          this.unboxBits(rs1); f.i32(0x7fffffff).op(W.i32_and);
          this.unboxBits(rs2); if (op === Op.FSGNJN_S) f.i32(-1).op(W.i32_xor);
          f.i32(0x80000000 | 0).op(W.i32_and).op(W.i32_or);
        }
        f.op(W.i64_extend_i32_u).i64(0, -1).op(W.i64_or).mem(W.i64_store, 3, at);
        return true;
      }
      case Op.FMV_X_W: // the low 32 bits as they are, sign-extended (§11.7: no unboxing)
        f.i32(0).mem(W.i64_load32_s, 2, this.fa(rs1)); site.setReg(rd);
        return true;
      case Op.FMV_X_D:
        this.ldBits(rs1); site.setReg(rd);
        return true;
      case Op.FMV_W_X:
        f.i32(0); site.getReg(rs1); f.i64(-1, 0).op(W.i64_and).i64(0, -1).op(W.i64_or).mem(W.i64_store, 3, this.fa(rd & 31));
        return true;
      case Op.FMV_D_X:
        f.i32(0); site.getReg(rs1); f.mem(W.i64_store, 3, this.fa(rd & 31));
        return true;
      case Op.FEQ_D: case Op.FLT_D: case Op.FLE_D: {
        // Ordered operands: the answer, no flags; a NaN operand (NV for flt/fle, or for a
        // signalling one in feq) falls back.
        this.ldD(rs1, L.a); this.ldD(rs2, L.b);
        f.get(L.a).get(L.a).op(W.f64_eq).get(L.b).get(L.b).op(W.f64_eq).op(W.i32_and).if_();
        f.get(L.a).get(L.b).op(op === Op.FEQ_D ? W.f64_eq : op === Op.FLT_D ? W.f64_lt : W.f64_le).op(W.i64_extend_i32_u);
        site.setReg(rd);
        f.else_(); site.fallback(); f.end();
        return true;
      }
      case Op.FEQ_S: case Op.FLT_S: case Op.FLE_S: {
        this.ldS(rs1, L.sa); this.ldS(rs2, L.sb);
        this.boxed(rs1, rs2);
        f.get(L.sa).get(L.sa).op(W.f32_eq).op(W.i32_and).get(L.sb).get(L.sb).op(W.f32_eq).op(W.i32_and).if_();
        f.get(L.sa).get(L.sb).op(op === Op.FEQ_S ? W.f32_eq : op === Op.FLT_S ? W.f32_lt : W.f32_le).op(W.i64_extend_i32_u);
        site.setReg(rd);
        f.else_(); site.fallback(); f.end();
        return true;
      }
      case Op.FCVT_D_S: {
        // Exact for every non-NaN single.
        this.ldS(rs1, L.sa);
        this.finish(rm, false, () => { this.boxed(rs1); f.get(L.sa).get(L.sa).op(W.f32_eq).op(W.i32_and); }, () => f.i32(1),
          () => { f.get(L.sa).op(W.f64_promote_f32).set(L.r); this.stD(rd & 31, L.r); }, site);
        return true;
      }
      case Op.FCVT_S_D: {
        this.ldD(rs1, L.a);
        f.get(L.a).op(W.f32_demote_f64).set(L.rs);
        this.finish(rm, false, () => this.normalClass(L.rs, true), () => f.get(L.rs).op(W.f64_promote_f32).get(L.a).op(W.f64_eq),
          () => this.stS(rd & 31, L.rs), site);
        return true;
      }
      case Op.FCVT_D_W: case Op.FCVT_D_WU: case Op.FCVT_D_L: case Op.FCVT_D_LU:
      case Op.FCVT_S_W: case Op.FCVT_S_WU: case Op.FCVT_S_L: case Op.FCVT_S_LU: {
        const toD = op >= Op.FCVT_D_W;
        const kind = op - (toD ? Op.FCVT_D_W : Op.FCVT_S_W); // 0 w, 1 wu, 2 l, 3 lu
        site.getReg(rs1);
        // x as the integer converted, in i64: w sign-extended, wu zero-extended from 32 bits.
        if (kind === 0) f.op(W.i32_wrap_i64).op(W.i64_extend_i32_s);
        else if (kind === 1) f.i64(-1, 0).op(W.i64_and);
        f.set(L.x);
        // Exact below 2^53 (double) or 2^24 (single) in magnitude; a 32-bit integer always fits a double.
        const limit = toD ? 2 ** 53 : 2 ** 24;
        const exact = () => {
          if (toD && kind < 2) { f.i32(1); return; }
          f.get(L.x);
          if (kind !== 1 && kind !== 3) f.i64(limit | 0, Math.floor(limit / 2 ** 32)).op(W.i64_add);
          const bound = kind !== 1 && kind !== 3 ? 2 * limit : limit;
          f.i64(bound % 2 ** 32 | 0, Math.floor(bound / 2 ** 32)).op(W.i64_le_u);
        };
        const conv = toD ? (kind === 3 ? W.f64_convert_i64_u : W.f64_convert_i64_s) : (kind === 3 ? W.f32_convert_i64_u : W.f32_convert_i64_s);
        this.finish(rm, false, () => f.i32(1), exact, () => {
          f.get(L.x).op(conv);
          if (toD) { f.set(L.r); this.stD(rd & 31, L.r); } else { f.set(L.rs); this.stS(rd & 31, L.rs); }
        }, site);
        return true;
      }
      case Op.FCVT_W_D: case Op.FCVT_WU_D: case Op.FCVT_L_D: case Op.FCVT_LU_D:
      case Op.FCVT_W_S: case Op.FCVT_WU_S: case Op.FCVT_L_S: case Op.FCVT_LU_S: {
        if (rm === RM_RMM) return false; // no wasm rounding to nearest, ties away
        const fromD = op >= Op.FCVT_W_D;
        const kind = op - (fromD ? Op.FCVT_W_D : Op.FCVT_W_S); // 0 w, 1 wu, 2 l, 3 lu
        if (fromD) this.ldD(rs1, L.a);
        else { this.ldS(rs1, L.sa); f.get(L.sa).op(W.f64_promote_f32).set(L.a); }
        // Rounded to an integer in the instruction's mode (DYN: RNE, and only when frm is RNE).
        const round = rm === RM_DYN || rm === RM_RNE ? W.f64_nearest : rm === 1 ? W.f64_trunc : rm === 2 ? W.f64_floor : W.f64_ceil;
        f.get(L.a).op(round).set(L.t);
        // In range of the destination (NaN is not): then no NV.
        const lo = kind === 0 ? -(2 ** 31) : kind === 2 ? -(2 ** 63) : 0;
        const hiOk = () => kind === 0 ? f.get(L.t).f64(2 ** 31 - 1).op(W.f64_le) : kind === 1 ? f.get(L.t).f64(2 ** 32 - 1).op(W.f64_le)
          : f.get(L.t).f64(kind === 2 ? 2 ** 63 : 2 ** 64).op(W.f64_lt);
        this.finish(rm, true, () => {
          f.get(L.t).f64(lo).op(W.f64_ge); hiOk(); f.op(W.i32_and);
          if (!fromD) { this.boxed(rs1); f.op(W.i32_and); }
        }, () => f.get(L.t).get(L.a).op(W.f64_eq), () => {
          f.get(L.t);
          // RV64 sign-extends 32-bit results, wu included (§12.7).
          if (kind === 0) f.op(W.i32_trunc_f64_s).op(W.i64_extend_i32_s);
          else if (kind === 1) f.op(W.i32_trunc_f64_u).op(W.i64_extend_i32_s);
          else f.op(kind === 2 ? W.i64_trunc_f64_s : W.i64_trunc_f64_u);
          site.setReg(rd);
        }, site);
        return true;
      }
    }
    return false; // fclass: the FPU
  }

  /**
   * The common tail: `classOk` pushes an i32 (the result lies where only NX can be raised),
   * `exact` an i32 (the result is exact), evaluated only when needed; then rd is written or
   * the FPU called. `directed`: the result was rounded in the instruction's static mode (the
   * float-to-integer conversions), so a static mode other than RNE allows inexact results too.
   */
  private finish(rm: number, directed: boolean, classOk: () => void, exact: () => void, store: () => void, site: FpSite): void {
    const f = this.f;
    classOk();
    const inexactOk = rm === RM_DYN || rm === RM_RNE || (directed && rm < RM_RMM);
    const rmValid = () => { // DYN with frm a valid mode (5-7 raise illegal instruction)
      if (rm === RM_DYN) { this.fcsr(); f.i32(0xe0).op(W.i32_and).i32(0xa0).op(W.i32_lt_u).op(W.i32_and); }
    };
    if (inexactOk) {
      // Inexact allowed when NX is already set and (DYN) frm is RNE.
      this.fcsr();
      if (rm === RM_DYN) f.i32(0xe0 | FFLAG_NX).op(W.i32_and).i32(FFLAG_NX).op(W.i32_eq);
      else f.i32(FFLAG_NX).op(W.i32_and);
      f.if_(I32).i32(1).else_();
      exact(); rmValid();
      f.end();
    } else {
      exact(); rmValid();
    }
    f.op(W.i32_and);
    f.if_(); store(); f.else_(); site.fallback(); f.end();
  }

  private l(): Locals {
    if (this.locals === undefined) {
      const f = this.f;
      this.locals = {
        a: f.local(F64), b: f.local(F64), c: f.local(F64), r: f.local(F64), t: f.local(F64), u: f.local(F64),
        sa: f.local(F32), sb: f.local(F32), sc: f.local(F32), rs: f.local(F32), x: f.local(I64),
      };
    }
    return this.locals;
  }

  private fa(r: number): number { return this.slotBase + SLOT_FREGS + 8 * r; }
  private fcsr(): void { this.f.i32(0).mem(W.i32_load, 2, this.slotBase + SLOT_FCSR_MIRROR); }
  private ldD(r: number, to: number, neg = false): void {
    this.f.i32(0).mem(W.f64_load, 3, this.fa(r));
    if (neg) this.f.op(W.f64_neg);
    this.f.set(to);
  }
  private ldS(r: number, to: number, neg = false): void {
    this.f.i32(0).mem(W.f32_load, 2, this.fa(r));
    if (neg) this.f.op(W.f32_neg);
    this.f.set(to);
  }
  private ldBits(r: number): void { this.f.i32(0).mem(W.i64_load, 3, this.fa(r)); }
  /** Pushes i32 1 if every single operand is NaN-boxed. */
  private boxed(...rs: number[]): void {
    const f = this.f;
    rs.forEach((r, k) => { f.i32(0).mem(W.i32_load, 2, this.fa(r) + 4); if (k > 0) f.op(W.i32_and); });
    f.i32(-1).op(W.i32_eq);
  }
  /** Pushes the bits of the single in register r, unboxed (the canonical NaN if not boxed). */
  private unboxBits(r: number): void {
    const f = this.f;
    f.i32(0).mem(W.i32_load, 2, this.fa(r)).i32(0x7fc00000).i32(0).mem(W.i32_load, 2, this.fa(r) + 4).i32(-1).op(W.i32_eq).op(W.select);
  }
  private stD(r: number, from: number): void { this.f.i32(0).get(from).mem(W.f64_store, 3, this.fa(r)); }
  private stS(r: number, from: number): void {
    this.f.i32(0).get(from).mem(W.f32_store, 2, this.fa(r)).i32(0).i32(-1).mem(W.i32_store, 2, this.fa(r) + 4);
  }

  /** i32: a sum's result is finite and not zero (sums landing below the normal range are exact). */
  private sumClassD(r: number): void {
    this.f.get(r).op(W.f64_abs).f64(Infinity).op(W.f64_lt).get(r).f64(0).op(W.f64_ne).op(W.i32_and);
  }

  /** i32: |r| is finite and above the smallest normal (single or double local). */
  private normalClass(r: number, single: boolean): void {
    const f = this.f;
    if (single) {
      f.get(r).op(W.f32_abs).f32(MIN_NORMAL_S).op(W.f32_gt).get(r).op(W.f32_abs).f32(Infinity).op(W.f32_lt).op(W.i32_and);
    } else {
      f.get(r).op(W.f64_abs).f64(MIN_NORMAL_D).op(W.f64_gt).get(r).op(W.f64_abs).f64(Infinity).op(W.f64_lt).op(W.i32_and);
    }
  }

  /** i32: r = fl(a + b) is exact (Knuth's TwoSum error is zero; an overflowing step reads as inexact). */
  private twoSumExact(a: number, b: number, r: number): void {
    const f = this.f;
    const t = this.l().t;
    f.get(r).get(a).op(W.f64_sub).set(t);
    f.get(a).get(r).get(t).op(W.f64_sub).op(W.f64_sub).get(b).get(t).op(W.f64_sub).op(W.f64_add).f64(0).op(W.f64_eq);
  }

  /** i32: x · y = z exactly (and the operands are where Dekker's product is exact). */
  private prodIs(x: number, y: number, z: number): void {
    if (this.prodIsFn < 0) this.prodIsFn = this.m.addFunction(prodIsBody());
    this.f.get(x).get(y).get(z).call(this.prodIsFn);
  }
}

let prodIsShared: FuncBody | undefined;

/**
 * (x, y, z: f64) -> i32: 1 iff x · y = z exactly; 0 also when an operand is not normal or
 * not below 2^990, or the product not above 2^-967 (where Dekker's error term could
 * overflow or underflow: then the caller falls back). Dekker/Veltkamp: with p = fl(x · y),
 * x · y - p = ((xh·yh - p) + xh·yl + xl·yh) + xl·yl exactly.
 */
function prodIsBody(): FuncBody {
  if (prodIsShared !== undefined) return prodIsShared;
  const f = new FuncBody([F64, F64, F64], [I32]);
  const X = 0, Y = 1, Z = 2;
  const p = f.local(F64), t = f.local(F64), xh = f.local(F64), xl = f.local(F64), yh = f.local(F64), yl = f.local(F64);
  f.get(X).get(Y).op(W.f64_mul).set(p);
  const inRange = (v: number) => {
    f.get(v).op(W.f64_abs).tee(t).f64(MIN_NORMAL_D).op(W.f64_ge).get(t).f64(PROD_MAX_OPERAND).op(W.f64_lt).op(W.i32_and);
  };
  inRange(X); inRange(Y); f.op(W.i32_and);
  f.get(p).op(W.f64_abs).tee(t).f64(PROD_MIN_RESULT).op(W.f64_ge).op(W.i32_and);
  f.get(t).f64(Infinity).op(W.f64_lt).op(W.i32_and);
  f.get(p).get(Z).op(W.f64_eq).op(W.i32_and);
  f.op(W.i32_eqz).if_().i32(0).op(W.return_).end();
  f.f64(SPLITTER).get(X).op(W.f64_mul).tee(t).get(t).get(X).op(W.f64_sub).op(W.f64_sub).set(xh);
  f.get(X).get(xh).op(W.f64_sub).set(xl);
  f.f64(SPLITTER).get(Y).op(W.f64_mul).tee(t).get(t).get(Y).op(W.f64_sub).op(W.f64_sub).set(yh);
  f.get(Y).get(yh).op(W.f64_sub).set(yl);
  f.get(xh).get(yh).op(W.f64_mul).get(p).op(W.f64_sub);
  f.get(xh).get(yl).op(W.f64_mul).op(W.f64_add);
  f.get(xl).get(yh).op(W.f64_mul).op(W.f64_add);
  f.get(xl).get(yl).op(W.f64_mul).op(W.f64_add);
  f.f64(0).op(W.f64_eq);
  prodIsShared = f;
  return f;
}
