/**
 * Control and status registers (Priv ch. 2-4): reads and WARL-legalised writes. Privilege
 * and read-only checks are the caller's (Hart.csrInstruction); these functions return false
 * for a CSR that does not exist here, which the caller turns into an illegal instruction.
 * Values travel as (lo, hi) int32 pairs through `csrValue`.
 */
import type { Hart } from './hart.js';
import { Op } from './opcodes.js';
import { PMP_ENTRIES } from './pmp.js';
import {
  CSR_CYCLE, CSR_FCSR, CSR_FFLAGS, CSR_FRM, CSR_HPMCOUNTER3, CSR_HPMCOUNTER31, CSR_INSTRET,
  CSR_MARCHID, CSR_MCAUSE, CSR_MCONFIGPTR, CSR_MCOUNTEREN, CSR_MCOUNTINHIBIT, CSR_MCYCLE,
  CSR_MEDELEG, CSR_MENVCFG, CSR_MEPC, CSR_MHARTID, CSR_MHPMCOUNTER3, CSR_MHPMCOUNTER31,
  CSR_MHPMEVENT3, CSR_MHPMEVENT31, CSR_MIDELEG, CSR_MIE, CSR_MIMPID, CSR_MINSTRET, CSR_MIP,
  CSR_MISA, CSR_MSCRATCH, CSR_MSTATUS, CSR_MTVAL, CSR_MTVEC, CSR_MVENDORID, CSR_PMPADDR0,
  CSR_PMPCFG0, CSR_SATP, CSR_SCAUSE, CSR_SCOUNTEREN, CSR_SENVCFG, CSR_SEPC, CSR_SIE, CSR_SIP,
  CSR_SSCRATCH, CSR_SSTATUS, CSR_STIMECMP, CSR_STVAL, CSR_STVEC, CSR_TIME, MENVCFG_HI_STCE,
  MENVCFG_LO_FIOM, MIP_SEIP, MIP_SSIP, MIP_STIP, MISA_EXTENSIONS, MISA_HI, MSTATUS_FS,
  MSTATUS_HI_XLEN, MSTATUS_MPP, MSTATUS_MXR, MSTATUS_WRITABLE, SATP_MODE_BARE, SATP_MODE_SV39,
  SATP_MODE_SV48, S_INTERRUPTS, ALL_INTERRUPTS, SSTATUS_HI_XLEN, SSTATUS_MASK, SSTATUS_WRITABLE,
} from './constants.js';

export const csrValue = { lo: 0, hi: 0 };

/**
 * What compiled code may do with an access to a CSR without leaving it (Hart.jitCsr runs the
 * access; the JIT's compiler starts a block after the ones handed back, src/jit/compiler.ts):
 * JIT_CSR_NONE: nothing, not even a read (the counters run ahead of compiled code);
 * JIT_CSR_READ: reads only; JIT_CSR_WRITE: reads and writes (no side effect: scratch, epc,
 * cause, tval, tvec); JIT_CSR_FP: writes while FS is Dirty (fflags, frm, fcsr);
 * JIT_CSR_CLEAR_SIE: writes that only clear SIE (sstatus, mstatus: masking interrupts;
 * setting SIE may let one in, other bits change translation).
 */
export const JIT_CSR_NONE = 0, JIT_CSR_READ = 1, JIT_CSR_WRITE = 2, JIT_CSR_FP = 3, JIT_CSR_CLEAR_SIE = 4;

export function jitCsrAccess(csr: number): number {
  if ((csr >= 0xc00 && csr <= 0xc9f) || (csr >= 0xb00 && csr <= 0xb9f)) return JIT_CSR_NONE;
  switch (csr) {
    case CSR_SSCRATCH: case CSR_SEPC: case CSR_SCAUSE: case CSR_STVAL: case CSR_STVEC:
    case CSR_MSCRATCH: case CSR_MEPC: case CSR_MCAUSE: case CSR_MTVAL: case CSR_MTVEC:
      return JIT_CSR_WRITE;
    case CSR_FFLAGS: case CSR_FRM: case CSR_FCSR:
      return JIT_CSR_FP;
    case CSR_SSTATUS: case CSR_MSTATUS:
      return JIT_CSR_CLEAR_SIE;
  }
  return JIT_CSR_READ;
}

/**
 * The value a CSR instruction `w` (decoded) writes, given the CSR's old value: low word
 * returned, high word in csrValue.hi. Only for an instruction that writes (csrWrites).
 */
export function csrNewValue(hart: Hart, w: number, oldLo: number, oldHi: number): number {
  const op = w & 0xff;
  const rs1Num = (w >> 14) & 31;
  const immForm = op === Op.CSRRWI || op === Op.CSRRSI || op === Op.CSRRCI;
  const srcLo = immForm ? rs1Num : hart.regs[rs1Num * 2]!;
  const srcHi = immForm ? 0 : hart.regs[rs1Num * 2 + 1]!;
  if (op === Op.CSRRW || op === Op.CSRRWI) { csrValue.hi = srcHi; return srcLo; }
  if (op === Op.CSRRS || op === Op.CSRRSI) { csrValue.hi = oldHi | srcHi; return oldLo | srcLo; }
  csrValue.hi = oldHi & ~srcHi;
  return oldLo & ~srcLo;
}

/** A CSR instruction writes unless it is CSRRS/CSRRC(I) naming x0 or a zero immediate (Zicsr). */
export function csrWrites(w: number): boolean {
  const op = w & 0xff;
  return op === Op.CSRRW || op === Op.CSRRWI || ((w >> 14) & 31) !== 0;
}

const TWO32 = 4294967296;
/** medeleg: every exception but ecall from M (11) and the reserved codes 10 and 14. */
const MEDELEG_WRITABLE = 0xb3ff;

function set(lo: number, hi: number): true {
  csrValue.lo = lo | 0;
  csrValue.hi = hi | 0;
  return true;
}

function setNumber(v: number): true {
  return set(v % TWO32, Math.floor(v / TWO32));
}

/** mstatus/sstatus high word: UXL/SXL fixed at 64-bit, SD summarises FS (Priv §3.1.6.6). */
function statusHi(hart: Hart, xlen: number): number {
  const sd = (hart.mstatus & MSTATUS_FS) === MSTATUS_FS ? 0x80000000 : 0;
  return xlen | sd;
}

export function csrRead(hart: Hart, csr: number): boolean {
  switch (csr) {
    case CSR_FFLAGS: return set(hart.fpu.fflags, 0);
    case CSR_FRM: return set(hart.fpu.frm, 0);
    case CSR_FCSR: return set((hart.fpu.frm << 5) | hart.fpu.fflags, 0);
    case CSR_CYCLE: case CSR_INSTRET: case CSR_MCYCLE: case CSR_MINSTRET:
      return setNumber(hart.instructionsRetired);
    case CSR_TIME: return setNumber(hart.timeSource());
    case CSR_SSTATUS: return set(hart.mstatus & SSTATUS_MASK, statusHi(hart, SSTATUS_HI_XLEN));
    case CSR_SIE: return set(hart.mie & hart.mideleg, 0);
    case CSR_STVEC: return set(hart.stvecLo, hart.stvecHi);
    case CSR_SCOUNTEREN: return set(hart.scounteren, 0);
    case CSR_SENVCFG: return set(hart.senvcfg, 0);
    case CSR_SSCRATCH: return set(hart.sscratchLo, hart.sscratchHi);
    case CSR_SEPC: return set(hart.sepcLo, hart.sepcHi);
    case CSR_SCAUSE: return set(hart.scauseLo, hart.scauseHi);
    case CSR_STVAL: return set(hart.stvalLo, hart.stvalHi);
    case CSR_SIP: return set(hart.mip & hart.mideleg, 0);
    case CSR_STIMECMP: return set(hart.stimecmpLo, hart.stimecmpHi);
    case CSR_SATP: return set(hart.satpLo, hart.satpHi);
    case CSR_MVENDORID: case CSR_MARCHID: case CSR_MIMPID: case CSR_MCONFIGPTR: return set(0, 0);
    case CSR_MHARTID: return set(hart.hartId, 0);
    case CSR_MSTATUS: return set(hart.mstatus, statusHi(hart, MSTATUS_HI_XLEN));
    case CSR_MISA: return set(MISA_EXTENSIONS, MISA_HI);
    case CSR_MEDELEG: return set(hart.medeleg, 0);
    case CSR_MIDELEG: return set(hart.mideleg, 0);
    case CSR_MIE: return set(hart.mie, 0);
    case CSR_MTVEC: return set(hart.mtvecLo, hart.mtvecHi);
    case CSR_MCOUNTEREN: return set(hart.mcounteren, 0);
    case CSR_MENVCFG: return set(hart.menvcfgLo, hart.menvcfgHi);
    case CSR_MCOUNTINHIBIT: return set(hart.mcountinhibit, 0);
    case CSR_MSCRATCH: return set(hart.mscratchLo, hart.mscratchHi);
    case CSR_MEPC: return set(hart.mepcLo, hart.mepcHi);
    case CSR_MCAUSE: return set(hart.mcauseLo, hart.mcauseHi);
    case CSR_MTVAL: return set(hart.mtvalLo, hart.mtvalHi);
    case CSR_MIP: return set(hart.mip, 0);
  }
  if ((csr >= CSR_HPMCOUNTER3 && csr <= CSR_HPMCOUNTER31) || (csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) ||
      (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31)) {
    return set(0, 0); // no hardware performance counters: read as zero
  }
  if (csr === CSR_PMPCFG0 || csr === CSR_PMPCFG0 + 2) {
    hart.pmp.readCfg(csr - CSR_PMPCFG0, csrValue);
    return true;
  }
  if (csr >= CSR_PMPADDR0 && csr < CSR_PMPADDR0 + PMP_ENTRIES) {
    return set(hart.pmp.addrLo[csr - CSR_PMPADDR0]!, hart.pmp.addrHi[csr - CSR_PMPADDR0]!);
  }
  return false;
}

/** Writes a CSR with WARL legalisation. Returns false if the CSR does not exist. */
export function csrWrite(hart: Hart, csr: number, lo: number, hi: number): boolean {
  switch (csr) {
    case CSR_FFLAGS: hart.fpu.fflags = lo & 31; hart.mstatus |= MSTATUS_FS; return true;
    case CSR_FRM: hart.fpu.frm = lo & 7; hart.mstatus |= MSTATUS_FS; return true;
    case CSR_FCSR: hart.fpu.fflags = lo & 31; hart.fpu.frm = (lo >> 5) & 7; hart.mstatus |= MSTATUS_FS; return true;
    case CSR_MCYCLE: case CSR_MINSTRET:
      hart.instret = (hi >>> 0) * TWO32 + (lo >>> 0) - hart.runCount;
      return true;
    case CSR_SSTATUS: {
      const old = hart.mstatus;
      hart.mstatus = (old & ~SSTATUS_WRITABLE) | (lo & SSTATUS_WRITABLE);
      if ((old ^ hart.mstatus) & MSTATUS_MXR) hart.flushDataTlb();
      return true;
    }
    case CSR_SIE: {
      const m = hart.mideleg & S_INTERRUPTS;
      hart.mie = (hart.mie & ~m) | (lo & m);
      return true;
    }
    case CSR_STVEC: if ((lo & 3) < 2) { hart.stvecLo = lo; hart.stvecHi = hi; } return true;
    case CSR_SCOUNTEREN: hart.scounteren = lo; return true;
    case CSR_SENVCFG: hart.senvcfg = lo & MENVCFG_LO_FIOM; return true;
    case CSR_SSCRATCH: hart.sscratchLo = lo; hart.sscratchHi = hi; return true;
    case CSR_SEPC: hart.sepcLo = lo & ~1; hart.sepcHi = hi; return true;
    case CSR_SCAUSE: hart.scauseLo = lo; hart.scauseHi = hi; return true;
    case CSR_STVAL: hart.stvalLo = lo; hart.stvalHi = hi; return true;
    case CSR_SIP: {
      const m = hart.mideleg & MIP_SSIP;
      hart.mipSw = (hart.mipSw & ~m) | (lo & m);
      return true;
    }
    case CSR_STIMECMP:
      hart.stimecmpLo = lo; hart.stimecmpHi = hi;
      hart.updateTimer();
      return true;
    case CSR_SATP: {
      const mode = hi >>> 28;
      // Priv §4.1.11: a write with an unsupported MODE has no effect at all.
      if (mode !== SATP_MODE_BARE && mode !== SATP_MODE_SV39 && mode !== SATP_MODE_SV48) return true;
      // Without ASID tags every other entry may belong to the old address space; global ones
      // are the same in all (Priv §4.3.1) while the translation mode stays.
      const sameMode = (hart.satpHi >>> 28) === mode;
      hart.satpLo = lo; hart.satpHi = hi;
      if (sameMode) hart.flushTlbNonGlobal();
      else hart.flushTlb();
      return true;
    }
    case CSR_MSTATUS: {
      const old = hart.mstatus;
      let v = (old & ~MSTATUS_WRITABLE) | (lo & MSTATUS_WRITABLE);
      // MPP is WARL over the implemented modes: the reserved value 2 keeps the old mode.
      if ((v & MSTATUS_MPP) === 2 << 11) v = (v & ~MSTATUS_MPP) | (old & MSTATUS_MPP);
      hart.mstatus = v;
      if ((old ^ v) & MSTATUS_MXR) hart.flushDataTlb();
      return true;
    }
    case CSR_MISA: return true; // read-only: the extension set is fixed
    case CSR_MEDELEG: hart.medeleg = lo & MEDELEG_WRITABLE; return true;
    case CSR_MIDELEG: hart.mideleg = lo & S_INTERRUPTS; return true;
    case CSR_MIE: hart.mie = lo & ALL_INTERRUPTS; return true;
    case CSR_MTVEC: if ((lo & 3) < 2) { hart.mtvecLo = lo; hart.mtvecHi = hi; } return true;
    case CSR_MCOUNTEREN: hart.mcounteren = lo; return true;
    case CSR_MENVCFG:
      hart.menvcfgLo = lo & MENVCFG_LO_FIOM;
      hart.menvcfgHi = hi & MENVCFG_HI_STCE;
      hart.updateTimer();
      return true;
    case CSR_MCOUNTINHIBIT: hart.mcountinhibit = lo & ~2; return true;
    case CSR_MSCRATCH: hart.mscratchLo = lo; hart.mscratchHi = hi; return true;
    case CSR_MEPC: hart.mepcLo = lo & ~1; hart.mepcHi = hi; return true;
    case CSR_MCAUSE: hart.mcauseLo = lo; hart.mcauseHi = hi; return true;
    case CSR_MTVAL: hart.mtvalLo = lo; hart.mtvalHi = hi; return true;
    case CSR_MIP: {
      // SSIP and SEIP are writable; STIP too unless Sstc drives it (Priv §3.1.9, Sstc).
      let m = MIP_SSIP | MIP_SEIP;
      if ((hart.menvcfgHi & MENVCFG_HI_STCE) === 0) m |= MIP_STIP;
      hart.mipSw = (hart.mipSw & ~m) | (lo & m);
      return true;
    }
  }
  if ((csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) || (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31)) {
    return true; // read-only zero counters: writes are ignored
  }
  if (csr === CSR_PMPCFG0 || csr === CSR_PMPCFG0 + 2) {
    hart.pmp.writeCfg(csr - CSR_PMPCFG0, lo, hi);
    hart.flushTlb();
    return true;
  }
  if (csr >= CSR_PMPADDR0 && csr < CSR_PMPADDR0 + PMP_ENTRIES) {
    if (hart.pmp.writeAddr(csr - CSR_PMPADDR0, lo, hi)) hart.flushTlb();
    return true;
  }
  return false;
}
