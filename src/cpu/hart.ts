/**
 * One RV64IMAFDC hart with M, S and U modes (Privileged spec v1.12), Sv39/Sv48, Sstc.
 *
 * Representation (chosen for V8, see docs/ARCHITECTURE.md "The hart"):
 * - integer registers are (lo, hi) int32 pairs in one Int32Array; x0 reads from slots 0/1,
 *   which are never written, and writes to x0 go to a discard slot (32) chosen at decode time;
 * - the pc is a Number holding the 64-bit value as a signed integer (canonical virtual
 *   addresses and physical addresses are exact); the rare target that is not representable
 *   (a jump to a wild 64-bit address) faults at the jump with the exact value;
 * - decoded instructions are cached per physical 4 KiB page, two int32 words per halfword;
 *   the cache is kept coherent on every write (CPU stores to a page holding decoded code go
 *   through a slow path that drops the page's decodings; device DMA calls invalidateCode), so
 *   fence.i has nothing left to invalidate, as in QEMU;
 * - loads and stores probe a direct-mapped software TLB (one set per privilege/SUM context,
 *   separate read and write arrays) inline in the interpreter loop; misses, MMIO and
 *   misaligned accesses take slow paths;
 * - a guest fault throws a preallocated marker (TRAP) caught by the loop: nothing allocates;
 * - tier 1 (src/jit/, HartOptions.accel 'jit'): x and f registers and the data
 *   TLB live in a WebAssembly.Memory with guest RAM (guest-ram.ts); in JIT mode `budget` is 0,
 *   so every taken branch, page crossing, slow path and trap is a block boundary where the loop
 *   enters compiled code for the pc if the page has some. Compiled code returns with the pc and
 *   count exact, having stopped before anything it cannot do (that instruction is then
 *   interpreted). Interrupts stay where the interpreter takes them (run() entry, after CSR
 *   writes, mret, sret), so compiled code never checks them.
 */
import type { PhysicalMemory } from './memory.js';
import { Fpu } from './fpu/fpu.js';
import { restoreHartState, saveHartState, type HartState } from './state.js';
import { decode, decoded } from './decoder.js';
import { Op } from './opcodes.js';
import {
  CAUSE_BREAKPOINT, CAUSE_FETCH_ACCESS, CAUSE_FETCH_PAGE_FAULT, CAUSE_ILLEGAL_INSTRUCTION,
  CAUSE_MACHINE_ECALL, CAUSE_SUPERVISOR_ECALL, CAUSE_USER_ECALL, MENVCFG_HI_STCE, MIP_MEIP,
  MIP_MSIP, MIP_MTIP, MIP_SEIP, MIP_SSIP, MIP_STIP, MSTATUS_FS, MSTATUS_MIE, MSTATUS_MPIE,
  MSTATUS_MPP, MSTATUS_MPP_SHIFT, MSTATUS_MPRV, MSTATUS_SIE, MSTATUS_SPIE, MSTATUS_SPP,
  MSTATUS_TSR, MSTATUS_TVM, MSTATUS_TW, PRV_M, PRV_S, PRV_U, SATP_MODE_BARE, type Privilege,
} from './constants.js';
import {
  csrNewValue, csrRead, csrValue, csrWrite, csrWrites, jitCsrAccess, JIT_CSR_CLEAR_SIE, JIT_CSR_FP, JIT_CSR_NONE, JIT_CSR_READ,
} from './csr.js';
import {
  div64, divu64, divuw, divw, mul64, mulh64, mulhsu64, mulhu64, r64, rem64, remu64, remuw, remw,
} from './int64.js';
import { allocateHartState, SLOT_FREGS, SLOT_REGS, TLB_NO_RAM, TLB_SIZE } from './guest-ram.js';
import { ACCESS_FETCH, Mmu } from './mmu.js';
import { Pmp } from './pmp.js';
import { EXIT_CHAIN, EXIT_STEP, FP_DIRTY, FP_ENABLED, type CompiledTier, type JitStats, type TierFactory } from './tier.js';

export interface HartOptions {
  hartId?: number;
  /** mtime in 10 MHz ticks; the `time` CSR and Sstc read it. */
  timeSource?: () => number;
  /**
   * 'jit' compiles hot guest pages to WebAssembly (src/jit/); it needs RAM made by
   * allocateGuestRam (src/cpu/guest-ram.ts) and falls back to the interpreter otherwise
   * (jitUnavailable says why). 'interp' (a bare hart's default, so CPU unit tests choose
   * their tier explicitly) runs the interpreter alone. Machines built by the SDK, `visor
   * run` and the SDK default to the JIT (src/host/accel.ts).
   */
  accel?: 'interp' | 'jit';
  /**
   * The compiled tier 'jit' runs (src/jit/jit.ts jitTier; src/vm/assembler.ts passes it).
   * The hart knows the tier only through this interface (cpu/tier.ts).
   */
  tier?: TierFactory;
  /** Entries into a page offset before the JIT compiles the page (0: at first execution). */
  jitThreshold?: number;
  /** Live compiled pages at most. */
  jitMaxModules?: number;
  /** Compile only the blocks the interpreter has run (JitOptions.compileRunOnly; default: when jitThreshold ≥ 2). */
  jitCompileRunOnly?: boolean;
}

/** Thrown (never allocated anew) to unwind from a faulting access to the interpreter loop. */
const TRAP = { trap: true };

const TLB_MASK = TLB_SIZE - 1;
const TWO32 = 4294967296;
/** Sentinel fetch-page base: makes the next fetch look the page up again. */
const NO_FETCH_PAGE = -1e300;

export interface HartStats {
  instructions: number;
  traps: number[];
  interrupts: number[];
  tlbMisses: number;
  decodedPages: number;
  codeInvalidations: number;
}

/** What an SBI implementation sees of the hart that called it (machine/sbi/sbi.ts). */
export interface SbiTarget {
  regs: Int32Array;
  readonly hartId?: number;
  readCsr(num: number): bigint;
  writeCsr(num: number, value: bigint): void;
  requestStop(): void;
  /** Optional TLB / instruction-cache flushes (RFENCE); a single hart flushes itself on sfence.vma. */
  flushTlb?(): void;
}

export class Hart {
  readonly hartId: number;
  readonly memory: PhysicalMemory;
  readonly timeSource: () => number;

  /**
   * x registers: x[i] = (regs[2i], regs[2i+1]); slots 64/65 are the x0 discard slot. They and
   * the data TLB live in a WebAssembly.Memory next to guest RAM (src/cpu/guest-ram.ts), where
   * compiled code reads them too.
   */
  readonly regs: Int32Array;
  /** f registers as raw bits, same pair layout; shared with the FPU (and the shared memory). */
  readonly fregs: Int32Array;
  readonly fpu: Fpu;

  pc = 0;
  priv: Privilege = PRV_M;

  // --- CSR state (csr.ts reads and writes these). 64-bit CSRs are lo/hi pairs. ---
  mstatus = 0; // low word; the high word (UXL, SXL, SD) is derived
  medeleg = 0;
  mideleg = 0;
  mie = 0;
  /** mip bits software wrote (SSIP, STIP when Sstc is off, SEIP). */
  mipSw = 0;
  /** mip bits devices drive (MSIP, MTIP, MEIP, and the PLIC's S-level SEIP). */
  mipHw = 0;
  /** STIP as Sstc computes it from stimecmp. */
  sstcStip = 0;
  mtvecLo = 0; mtvecHi = 0;
  stvecLo = 0; stvecHi = 0;
  mepcLo = 0; mepcHi = 0;
  sepcLo = 0; sepcHi = 0;
  mcauseLo = 0; mcauseHi = 0;
  scauseLo = 0; scauseHi = 0;
  mtvalLo = 0; mtvalHi = 0;
  stvalLo = 0; stvalHi = 0;
  mscratchLo = 0; mscratchHi = 0;
  sscratchLo = 0; sscratchHi = 0;
  satpLo = 0; satpHi = 0;
  menvcfgLo = 0; menvcfgHi = 0;
  senvcfg = 0;
  stimecmpLo = -1; stimecmpHi = -1;
  mcounteren = 0;
  scounteren = 0;
  mcountinhibit = 0;
  /** PMP: pmpcfg and pmpaddr, and the check translation makes (pmp.ts). */
  readonly pmp = new Pmp();

  /** Instructions retired before the current run() call. */
  instret = 0;
  /** Instructions executed so far in the current run() (valid during CSR accesses). */
  runCount = 0;

  // LR/SC reservation (physical address, or -1) and the value loaded, compared by SC as QEMU does.
  reservation = -1;
  reservedLo = 0;
  reservedHi = 0;

  waitingForInterrupt = false;
  /** Instructions that trapped in the last run() (they count toward the budget, not minstret). */
  private faults = 0;
  /**
   * The count at which the loop stops to look for compiled code (interpreter only: the
   * budget itself; JIT: 0, so every taken branch, page crossing and slow path is a block
   * boundary). requestStop() zeroes it.
   */
  private budget = 0;
  /** run() stops once the count reaches this; requestStop() zeroes it. */
  private limit = 0;
  /** Tier 1, or null when interpreting only. */
  readonly jit: CompiledTier | null = null;
  /** instret until which the JIT is left out (holdJit); 0: not held. */
  private jitHeldUntil = 0;
  /** Why the JIT is off when it was asked for (RAM not in a WebAssembly.Memory). */
  readonly jitUnavailable: string | undefined;
  /** Built-in SBI: called on an ecall from S-mode before it traps; true if handled. */
  sbiCall: ((hart: SbiTarget) => boolean) | null = null;

  // Pending trap, filled by raise() before throwing TRAP.
  private trapCause = 0;
  private trapTvalLo = 0;
  private trapTvalHi = 0;

  /**
   * Translation, the TLBs (probed inline by execute() and by compiled code) and the slow
   * paths of loads and stores (mmu.ts).
   */
  readonly mmu: Mmu;
  private readonly ramBase: number;
  private readonly ramSize: number;
  private readonly ramPages: number;

  // --- Decode cache ---
  private readonly decodePages: (Int32Array | undefined)[];
  /** 1 where a RAM page holds cached decodings: stores there take the slow path. */
  private readonly codePage: Uint8Array;
  /** Decode target for code outside RAM (boot ROM): never written, so always re-decoded. */
  private readonly noCache = new Int32Array(4096);
  private fetchPageBase = NO_FETCH_PAGE;
  private fetchDc: Int32Array = this.noCache;
  /** RAM offset of the current fetch page, or -1 when it is not in RAM. */
  private fetchRamOff = -1;
  private fetchPa = 0;

  readonly stats: HartStats = {
    instructions: 0,
    traps: new Array(16).fill(0),
    interrupts: new Array(16).fill(0),
    tlbMisses: 0,
    decodedPages: 0,
    codeInvalidations: 0,
  };

  constructor(memory: PhysicalMemory, options: HartOptions = {}) {
    this.memory = memory;
    this.hartId = options.hartId ?? 0;
    this.timeSource = options.timeSource ?? (() => 0);
    const ram = memory.ram;
    if (ram.byteOffset % 4096 !== 0 || ram.length % 4096 !== 0) {
      throw new Error('Hart: guest RAM must be 4 KiB aligned and sized');
    }
    const slot = allocateHartState(ram);
    const buf = slot.memory.buffer;
    this.regs = new Int32Array(buf, slot.base + SLOT_REGS, 66);
    this.fregs = new Int32Array(buf, slot.base + SLOT_FREGS, 64);
    this.ramBase = memory.ramBase;
    this.ramSize = ram.length;
    this.ramPages = ram.length >>> 12;
    this.decodePages = new Array(this.ramPages);
    this.codePage = new Uint8Array(this.ramPages);
    this.mmu = new Mmu({ hart: this, memory, pmp: this.pmp, codePage: this.codePage, buffer: buf, slotBase: slot.base });
    this.fpu = new Fpu(this.fregs);
    this.flushTlb();
    if ((options.accel ?? 'interp') === 'jit') {
      if (slot.ramOffset < 0) {
        this.jitUnavailable = 'guest RAM is not in a WebAssembly.Memory (allocate it with allocateGuestRam)';
      } else if (options.tier === undefined) {
        this.jitUnavailable = 'no compiled tier was given (HartOptions.tier: jitTier from src/jit/jit.ts)';
      } else {
        const opts = { ...(options.jitThreshold !== undefined ? { threshold: options.jitThreshold } : {}),
          ...(options.jitMaxModules !== undefined ? { maxModules: options.jitMaxModules } : {}),
          ...(options.jitCompileRunOnly !== undefined ? { compileRunOnly: options.jitCompileRunOnly } : {}) };
        this.jit = options.tier({
          memory: slot.memory, slotBase: slot.base, ramOffset: slot.ramOffset, ramPages: this.ramPages, pageMapBase: slot.pageMapBase,
          entryMapBase: slot.entryMapBase,
          xTagLo: this.mmu.xTagLo, xTagHi: this.mmu.xTagHi, xOff: this.mmu.xOff,
          protectCodePage: (pg) => { if (!this.codePage[pg]) this.protectCode(pg); },
          decoded: (pg) => this.decodePages[pg],
          fp: (w, imm) => this.jitFp(w, imm),
          sys: (w, imm) => this.jitSys(w, imm),
          fcsr: () => (this.fpu.frm << 5) | this.fpu.fflags,
        }, opts);
      }
    }
  }

  /** The architectural state, for snapshots (cpu/state.ts). */
  saveState(): HartState {
    return saveHartState(this);
  }

  /** Puts the hart in a saved state; validates it first (a snapshot is untrusted). */
  restoreState(s: HartState): void {
    restoreHartState(this, s);
  }

  /** The JIT's counters (blocks compiled, compile time, cache hits, invalidations), if it is on. */
  get jitStats(): JitStats | undefined {
    return this.jit?.stats;
  }

  /** Resets to M-mode at `pc` with every register zero (Priv §3.4). */
  reset(pc: number): void {
    this.regs.fill(0);
    this.fregs.fill(0);
    this.fpu.fflags = 0;
    this.fpu.frm = 0;
    this.pc = pc;
    this.priv = PRV_M;
    this.mstatus = 0;
    this.medeleg = this.mideleg = this.mie = this.mipSw = this.sstcStip = 0;
    this.mtvecLo = this.mtvecHi = this.stvecLo = this.stvecHi = 0;
    this.mepcLo = this.mepcHi = this.sepcLo = this.sepcHi = 0;
    this.mcauseLo = this.mcauseHi = this.scauseLo = this.scauseHi = 0;
    this.mtvalLo = this.mtvalHi = this.stvalLo = this.stvalHi = 0;
    this.mscratchLo = this.mscratchHi = this.sscratchLo = this.sscratchHi = 0;
    this.satpLo = this.satpHi = 0;
    this.menvcfgLo = this.menvcfgHi = this.senvcfg = 0;
    this.stimecmpLo = this.stimecmpHi = -1;
    this.mcounteren = this.scounteren = this.mcountinhibit = 0;
    this.pmp.reset();
    this.reservation = -1;
    this.waitingForInterrupt = false;
    this.instret = 0;
    this.flushTlb();
  }

  // ---------------------------------------------------------------- debug accessors

  getX(i: number): bigint {
    return BigInt.asIntN(64, (BigInt(this.regs[2 * i + 1]!) << 32n) | BigInt(this.regs[2 * i]! >>> 0));
  }
  setX(i: number, v: bigint): void {
    if (i === 0) return;
    this.regs[2 * i] = Number(BigInt.asIntN(32, v));
    this.regs[2 * i + 1] = Number(BigInt.asIntN(32, v >> 32n));
  }
  getF(i: number): bigint {
    return BigInt.asUintN(64, (BigInt(this.fregs[2 * i + 1]!) << 32n) | BigInt(this.fregs[2 * i]! >>> 0));
  }
  setF(i: number, v: bigint): void {
    this.fregs[2 * i] = Number(BigInt.asIntN(32, v));
    this.fregs[2 * i + 1] = Number(BigInt.asIntN(32, v >> 32n));
  }
  /** Reads a CSR without privilege checks or side effects on the guest (debug, boot setup). */
  readCsr(num: number): bigint {
    if (!csrRead(this, num)) throw new Error(`readCsr: no CSR 0x${num.toString(16)}`);
    return BigInt.asUintN(64, (BigInt(csrValue.hi) << 32n) | BigInt(csrValue.lo >>> 0));
  }
  /** Writes a CSR without privilege checks (boot setup); WARL rules still apply. */
  writeCsr(num: number, value: bigint): void {
    const lo = Number(BigInt.asIntN(32, value));
    const hi = Number(BigInt.asIntN(32, value >> 32n));
    if (!csrWrite(this, num, lo, hi)) throw new Error(`writeCsr: no CSR 0x${num.toString(16)}`);
    this.afterContextChange();
  }

  // ---------------------------------------------------------------- external control

  /**
   * Interprets only for the next `instructions` (the JIT neither runs nor counts arrivals),
   * then goes on with the JIT as before. For a machine about to run a short stretch of code
   * it has not compiled (a restored boot snapshot's run): there, compiling costs more than it
   * saves (docs/benchmarks.md, session 10). A no-op without a JIT.
   */
  holdJit(instructions: number): void {
    if (this.jit !== null && instructions > 0) this.jitHeldUntil = this.instret + instructions;
  }

  /** Stops run() at the next taken branch, jump or page crossing. */
  requestStop(): void {
    this.budget = 0;
    this.limit = 0;
  }

  /** Drives the hardware mip bits (MSIP, MTIP, MEIP, SEIP) from devices. */
  setPending(mask: number, level: boolean): void {
    if (level) this.mipHw |= mask;
    else this.mipHw &= ~mask;
  }

  /** Effective mip as software reads it. */
  get mip(): number {
    const stip = (this.menvcfgHi & MENVCFG_HI_STCE) !== 0 ? this.sstcStip : this.mipSw & MIP_STIP;
    return (this.mipSw & (MIP_SSIP | MIP_SEIP)) | stip | this.mipHw;
  }

  /** stimecmp as a Number (2^64-ish when disabled), for idling until the next timer. */
  stimecmpTicks(): number {
    if ((this.menvcfgHi & MENVCFG_HI_STCE) === 0) return Infinity;
    return (this.stimecmpHi >>> 0) * TWO32 + (this.stimecmpLo >>> 0);
  }

  /** Device DMA wrote guest RAM: drop decodings of the pages it touched. */
  invalidateCode(physAddr: number, length: number): void {
    const first = Math.max(0, Math.floor((physAddr - this.ramBase) / 4096));
    const last = Math.min(this.ramPages - 1, Math.floor((physAddr - this.ramBase + length - 1) / 4096));
    for (let p = first; p <= last; p++) if (this.codePage[p]) this.dropCode(p);
  }

  /** Instructions retired so far (minstret). */
  get instructionsRetired(): number {
    return this.instret + this.runCount;
  }

  // ---------------------------------------------------------------- timers and interrupts

  /** Sstc (Priv §3.1 / Sstc spec): STIP = time >= stimecmp while menvcfg.STCE is set. */
  updateTimer(): void {
    if ((this.menvcfgHi & MENVCFG_HI_STCE) === 0) return;
    const t = this.timeSource();
    this.sstcStip = t >= this.stimecmpTicks() ? MIP_STIP : 0;
  }

  /** The interrupt to take now, or -1 (Priv §3.1.9: priority MEI, MSI, MTI, SEI, SSI, STI). */
  private pendingInterrupt(): number {
    const pending = this.mip & this.mie;
    if (pending === 0) return -1;
    const m = pending & ~this.mideleg;
    const mEnabled = this.priv < PRV_M || (this.mstatus & MSTATUS_MIE) !== 0;
    if (m !== 0 && mEnabled) return pickInterrupt(m);
    const s = pending & this.mideleg;
    const sEnabled = this.priv < PRV_S || (this.priv === PRV_S && (this.mstatus & MSTATUS_SIE) !== 0);
    if (s !== 0 && sEnabled) return pickInterrupt(s);
    return -1;
  }

  /** Takes a pending, enabled interrupt if there is one; returns true if it did. */
  private checkInterrupts(): boolean {
    const irq = this.pendingInterrupt();
    if (irq < 0) return false;
    this.stats.interrupts[irq]!++;
    this.takeTrap(irq, true, 0, 0, this.pc);
    return true;
  }

  // ---------------------------------------------------------------- traps

  /** Records a synchronous exception and unwinds to the interpreter loop. */
  raise(cause: number, tvalLo: number, tvalHi: number): never {
    this.trapCause = cause;
    this.trapTvalLo = tvalLo;
    this.trapTvalHi = tvalHi;
    throw TRAP;
  }

  private raiseAt(cause: number, addr: number): never {
    return this.raise(cause, addr | 0, Math.floor(addr / TWO32) | 0);
  }

  /** Trap entry (Priv §3.1.6.1, §3.3.1, §4.1.1): sets pc to the handler. */
  private takeTrap(cause: number, interrupt: boolean, tvalLo: number, tvalHi: number, epc: number): void {
    const epcLo = epc | 0;
    const epcHi = Math.floor(epc / TWO32) | 0;
    this.takeTrapExact(cause, interrupt, tvalLo, tvalHi, epcLo, epcHi);
  }

  private takeTrapExact(cause: number, interrupt: boolean, tvalLo: number, tvalHi: number, epcLo: number, epcHi: number): void {
    const deleg = interrupt ? this.mideleg : this.medeleg;
    const prev = this.priv;
    this.reservation = -1;
    if (prev <= PRV_S && cause < 32 && ((deleg >>> cause) & 1) !== 0) {
      this.scauseLo = cause;
      this.scauseHi = interrupt ? 0x80000000 | 0 : 0;
      this.sepcLo = epcLo;
      this.sepcHi = epcHi;
      this.stvalLo = tvalLo;
      this.stvalHi = tvalHi;
      let s = this.mstatus;
      s = (s & ~MSTATUS_SPIE) | ((s & MSTATUS_SIE) << 4);
      s = (s & ~(MSTATUS_SIE | MSTATUS_SPP)) | (prev << 8);
      this.mstatus = s;
      this.priv = PRV_S;
      this.pc = vectorTarget(this.stvecLo, this.stvecHi, cause, interrupt);
    } else {
      this.mcauseLo = cause;
      this.mcauseHi = interrupt ? 0x80000000 | 0 : 0;
      this.mepcLo = epcLo;
      this.mepcHi = epcHi;
      this.mtvalLo = tvalLo;
      this.mtvalHi = tvalHi;
      let s = this.mstatus;
      s = (s & ~MSTATUS_MPIE) | ((s & MSTATUS_MIE) << 4);
      s = (s & ~(MSTATUS_MIE | MSTATUS_MPP)) | (prev << MSTATUS_MPP_SHIFT);
      this.mstatus = s;
      this.priv = PRV_M;
      this.pc = vectorTarget(this.mtvecLo, this.mtvecHi, cause, interrupt);
    }
    this.waitingForInterrupt = false;
    this.afterContextChange();
  }

  /** Recomputes which TLB sets the current privilege and mstatus select. */
  afterContextChange(): void {
    this.mmu.selectContext(this.priv, this.mstatus);
    this.fetchPageBase = NO_FETCH_PAGE;
  }

  // ---------------------------------------------------------------- TLB flushes (mmu.ts)

  flushTlb(): void {
    this.mmu.flush();
    this.fetchPageBase = NO_FETCH_PAGE;
  }

  /** Drops the write TLB alone (Mmu.flushWrites): every page's next store translates again. */
  flushWriteTlb(): void {
    this.mmu.flushWrites();
  }

  /**
   * Drops every entry but the global ones: a satp write (same translation mode) or
   * sfence.vma with rs1 = x0 and rs2 != x0, which need not order global mappings (Priv §4.2.1).
   */
  flushTlbNonGlobal(): void {
    this.mmu.flushNonGlobal();
    this.fetchPageBase = NO_FETCH_PAGE;
  }

  /** Drops data-TLB entries (MXR changed: read permissions differ). */
  flushDataTlb(): void {
    this.mmu.flushData();
  }

  /** sfence.vma with an address: drop that page from every set. */
  private flushTlbPage(lo: number, hi: number): void {
    this.mmu.flushPage(lo, hi);
    this.fetchPageBase = NO_FETCH_PAGE;
  }

  // ---------------------------------------------------------------- decode cache

  /** Drops the decodings (and compiled code) of RAM page `pg`: a store or DMA wrote it. */
  dropCode(pg: number): void {
    const dc = this.decodePages[pg];
    if (dc) dc.fill(0);
    this.codePage[pg] = 0;
    this.stats.codeInvalidations++;
    if (this.jit !== null) this.jit.invalidatePage(pg);
  }

  /** Marks a RAM page as holding decoded code: drop write-TLB entries that point at it. */
  private protectCode(pg: number): void {
    this.codePage[pg] = 1;
    this.mmu.unmapWrites(pg);
  }

  /** Looks up the fetch page for `pc`; may raise a fetch fault. */
  private enterFetchPage(pc: number): void {
    const lo = pc | 0;
    const hi = Math.floor(pc / TWO32) | 0;
    const vpn = lo >>> 12;
    const mmu = this.mmu;
    const i = mmu.xBase + (vpn & TLB_MASK);
    let ramOff: number;
    let pagePa: number;
    const e = mmu.xOff[i]!;
    if (mmu.xTagLo[i] === vpn && mmu.xTagHi[i] === hi && e !== TLB_NO_RAM) {
      ramOff = e >>> 0;
      pagePa = ramOff + this.ramBase;
    } else {
      pagePa = mmu.translate(lo, hi, ACCESS_FETCH, 2) - (lo & 0xfff);
      ramOff = pagePa - this.ramBase;
      if (ramOff < 0 || ramOff >= this.ramSize) ramOff = -1;
    }
    this.fetchPageBase = pc - (lo & 0xfff);
    this.fetchPa = pagePa;
    this.fetchRamOff = ramOff;
    if (ramOff >= 0) {
      const pg = ramOff >>> 12;
      let dc = this.decodePages[pg];
      if (dc === undefined) {
        dc = new Int32Array(4096);
        this.decodePages[pg] = dc;
        this.stats.decodedPages++;
      }
      if (!this.codePage[pg]) this.protectCode(pg);
      this.fetchDc = dc;
    } else {
      this.fetchDc = this.noCache;
    }
  }

  /** Fetches and decodes the instruction at pc (page offset `pageOff`) into decoded.{w,imm}. */
  private decodeAt(pc: number, pageOff: number): void {
    let inst: number;
    const ramOff = this.fetchRamOff;
    if (ramOff >= 0) {
      inst = this.mmu.ram16[(ramOff + pageOff) >>> 1]! & 0xffff;
    } else {
      const v = this.memory.mmioRead(this.fetchPa + pageOff, 2);
      if (v === undefined) this.raiseAt(CAUSE_FETCH_ACCESS, pc);
      inst = v & 0xffff;
    }
    let cacheable = ramOff >= 0;
    if ((inst & 3) === 3) {
      let upper: number;
      if (pageOff === 4094) {
        // The instruction straddles two pages: fetch its upper half through a translation
        // of the next page; such an instruction is decoded afresh every time.
        cacheable = false;
        const next = pc + 2;
        const nlo = next | 0;
        const nhi = Math.floor(next / TWO32) | 0;
        const pa = this.mmu.translate(nlo, nhi, ACCESS_FETCH, 2);
        const off = pa - this.ramBase;
        if (off >= 0 && off < this.ramSize) upper = this.mmu.ram16[off >>> 1]! & 0xffff;
        else {
          const v = this.memory.mmioRead(pa, 2);
          if (v === undefined) this.raise(CAUSE_FETCH_ACCESS, nlo, nhi);
          upper = v & 0xffff;
        }
      } else if (ramOff >= 0) {
        upper = this.mmu.ram16[(ramOff + pageOff + 2) >>> 1]! & 0xffff;
      } else {
        const v = this.memory.mmioRead(this.fetchPa + pageOff + 2, 2);
        if (v === undefined) this.raiseAt(CAUSE_FETCH_ACCESS, pc + 2);
        upper = v & 0xffff;
      }
      inst = inst | (upper << 16);
    }
    decode(inst);
    if (cacheable) {
      this.fetchDc[pageOff] = decoded.w;
      this.fetchDc[pageOff + 1] = decoded.imm;
      // A store may have dropped this page's decodings (and its write protection) while the
      // loop kept fetching from it: protect it again before caching anything.
      const pg = ramOff >>> 12;
      if (!this.codePage[pg]) this.protectCode(pg);
    }
  }

  // ---------------------------------------------------------------- the interpreter

  /**
   * Runs at most `budget` instructions. Returns the number executed (traps count as one).
   * Returns early after wfi or requestStop().
   */
  run(budget: number): number {
    this.limit = budget;
    if (this.jitHeldUntil !== 0 && this.instret >= this.jitHeldUntil) this.jitHeldUntil = 0;
    this.budget = this.jit !== null && this.jitHeldUntil === 0 ? 0 : budget;
    this.runCount = 0;
    this.updateTimer();
    if (this.waitingForInterrupt) {
      if ((this.mip & this.mie) === 0) return 0;
      this.waitingForInterrupt = false;
    }
    this.checkInterrupts();
    this.faults = 0;
    const n = this.execute();
    // Instructions that trapped did not retire (minstret counts retired instructions only).
    this.instret += n - this.faults;
    this.stats.instructions += n;
    this.runCount = 0;
    return n;
  }

  private execute(): number {
    const regs = this.regs;
    const mmu = this.mmu;
    const ram8 = mmu.ram8;
    const ram16 = mmu.ram16;
    const ram32 = mmu.ram32;
    const rTagLo = mmu.rTagLo, rTagHi = mmu.rTagHi, rOff = mmu.rOff;
    const wTagLo = mmu.wTagLo, wTagHi = mmu.wTagHi, wOff = mmu.wOff;
    let pc = this.pc;
    let n = 0;
    let faults = 0;
    let budget = this.budget;
    let fpBase = NO_FETCH_PAGE;
    let dc: Int32Array = this.noCache;

    for (;;) {
      try {
        for (;;) {
          if (n >= budget) {
            if (n >= this.limit) {
              this.pc = pc;
              this.faults = faults;
              return n;
            }
            // A block boundary in JIT mode: run compiled code for pc if there is some.
            budget = this.limit;
            const jit = this.jit;
            if (jit !== null) {
              const fs = this.mstatus & MSTATUS_FS;
              n += jit.enter(pc, this.limit - n, mmu.dBase, mmu.xBase, fs === MSTATUS_FS ? FP_DIRTY | FP_ENABLED : fs !== 0 ? FP_ENABLED : 0);
              pc = jit.exitPc;
              const reason = jit.exitReason;
              // CHAIN: look again at once; STEP: interpret exactly the exiting instruction;
              // inside a compiled block: the rest of it; otherwise up to the next block boundary.
              if (reason === EXIT_CHAIN) budget = n;
              else if (reason === EXIT_STEP) budget = n + 1;
              else if (jit.exitSteps !== 0) budget = Math.min(this.limit, n + jit.exitSteps);
            }
            continue;
          }
          n++;
          let pageOff = pc - fpBase;
          if (pageOff < 0 || pageOff >= 4096) {
            this.pc = pc;
            this.enterFetchPage(pc);
            fpBase = this.fetchPageBase;
            dc = this.fetchDc;
            budget = this.budget;
            pageOff = pc - fpBase;
          }
          let w = dc[pageOff]!;
          let imm: number;
          if (w === 0) {
            this.decodeAt(pc, pageOff);
            w = decoded.w;
            imm = decoded.imm;
          } else {
            imm = dc[pageOff + 1]!;
          }
          const rd = (w >> 7) & 126; // rd * 2
          const rs1 = (w >> 13) & 62;
          const rs2 = (w >> 18) & 62;
          const len = 4 - ((w >> 28) & 2);
          switch (w & 0xff) {
            case Op.NOP:
              break;
            case Op.LI:
              regs[rd] = imm; regs[rd + 1] = imm >> 31;
              break;
            case Op.MV:
              regs[rd] = regs[rs1]!; regs[rd + 1] = regs[rs1 + 1]!;
              break;
            case Op.LUI:
              regs[rd] = imm; regs[rd + 1] = imm >> 31;
              break;
            case Op.AUIPC: {
              const t = pc + imm;
              regs[rd] = t | 0; regs[rd + 1] = Math.floor(t / TWO32) | 0;
              break;
            }
            case Op.JAL: {
              const ret = pc + len;
              regs[rd] = ret | 0; regs[rd + 1] = Math.floor(ret / TWO32) | 0;
              pc += imm;
              budget = this.budget;
              continue;
            }
            case Op.JALR: {
              const alo = regs[rs1]!;
              const tlo = ((alo + imm) | 0) & ~1;
              const thi = (regs[rs1 + 1]! + (imm >> 31) + (((alo + imm) >>> 0) < (alo >>> 0) ? 1 : 0)) | 0;
              const ret = pc + len;
              regs[rd] = ret | 0; regs[rd + 1] = Math.floor(ret / TWO32) | 0;
              if (thi > 0x1fffff || thi < -0x200000) {
                // Not representable as our pc: every such address faults on fetch.
                this.pc = pc;
                const bare = this.priv === PRV_M || (this.satpHi >>> 28) === SATP_MODE_BARE;
                this.takeTrapExact(bare ? CAUSE_FETCH_ACCESS : CAUSE_FETCH_PAGE_FAULT, false, tlo, thi, tlo, thi);
                this.stats.traps[bare ? CAUSE_FETCH_ACCESS : CAUSE_FETCH_PAGE_FAULT]!++;
                faults++;
                pc = this.pc;
                fpBase = NO_FETCH_PAGE;
                continue;
              }
              pc = thi * TWO32 + (tlo >>> 0);
              budget = this.budget;
              continue;
            }
            case Op.BEQ:
              if (regs[rs1] === regs[rs2] && regs[rs1 + 1] === regs[rs2 + 1]) { pc += imm; budget = this.budget; continue; }
              break;
            case Op.BNE:
              if (regs[rs1] !== regs[rs2] || regs[rs1 + 1] !== regs[rs2 + 1]) { pc += imm; budget = this.budget; continue; }
              break;
            case Op.BLT: {
              const ah = regs[rs1 + 1]!, bh = regs[rs2 + 1]!;
              if (ah < bh || (ah === bh && (regs[rs1]! >>> 0) < (regs[rs2]! >>> 0))) { pc += imm; budget = this.budget; continue; }
              break;
            }
            case Op.BGE: {
              const ah = regs[rs1 + 1]!, bh = regs[rs2 + 1]!;
              if (ah > bh || (ah === bh && (regs[rs1]! >>> 0) >= (regs[rs2]! >>> 0))) { pc += imm; budget = this.budget; continue; }
              break;
            }
            case Op.BLTU: {
              const ah = regs[rs1 + 1]! >>> 0, bh = regs[rs2 + 1]! >>> 0;
              if (ah < bh || (ah === bh && (regs[rs1]! >>> 0) < (regs[rs2]! >>> 0))) { pc += imm; budget = this.budget; continue; }
              break;
            }
            case Op.BGEU: {
              const ah = regs[rs1 + 1]! >>> 0, bh = regs[rs2 + 1]! >>> 0;
              if (ah > bh || (ah === bh && (regs[rs1]! >>> 0) >= (regs[rs2]! >>> 0))) { pc += imm; budget = this.budget; continue; }
              break;
            }

            // ---- loads: TLB probe inline, slow path on miss, MMIO, misalignment
            case Op.LB: case Op.LBU: case Op.LH: case Op.LHU: case Op.LW: case Op.LWU: case Op.LD: {
              const alo = regs[rs1]!;
              const lo = (alo + imm) | 0;
              const hi = (regs[rs1 + 1]! + (imm >> 31) + ((lo >>> 0) < (alo >>> 0) ? 1 : 0)) | 0;
              const vpn = lo >>> 12;
              const t = mmu.dBase + (vpn & TLB_MASK);
              const op = w & 0xff;
              let off: number;
              // RAM offsets are int32 bits (RAM may be 2 GiB or more): unsigned from here on.
              if (rTagLo[t] === vpn && rTagHi[t] === hi && (off = rOff[t]!) !== TLB_NO_RAM) {
                off = (off + (lo & 0xfff)) >>> 0;
                switch (op) {
                  case Op.LB: { const v = (ram8[off]! << 24) >> 24; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
                  case Op.LBU: regs[rd] = ram8[off]!; regs[rd + 1] = 0; break;
                  case Op.LH: case Op.LHU: {
                    let v: number;
                    if ((off & 1) === 0) v = ram16[off >>> 1]!;
                    else if ((off & 0xfff) !== 0xfff) v = ((ram8[off]! | (ram8[off + 1]! << 8)) << 16) >> 16;
                    else { v = (mmu.loadSlow(lo, hi, 2) << 16) >> 16; }
                    if (op === Op.LHU) { regs[rd] = v & 0xffff; regs[rd + 1] = 0; } else { regs[rd] = v; regs[rd + 1] = v >> 31; }
                    break;
                  }
                  case Op.LW: case Op.LWU: {
                    let v: number;
                    if ((off & 3) === 0) v = ram32[off >>> 2]!;
                    else if ((off & 0xfff) <= 0xffc) v = ram8[off]! | (ram8[off + 1]! << 8) | (ram8[off + 2]! << 16) | (ram8[off + 3]! << 24);
                    else v = mmu.loadSlow(lo, hi, 4);
                    regs[rd] = v; regs[rd + 1] = op === Op.LWU ? 0 : v >> 31;
                    break;
                  }
                  default: { // LD
                    if ((off & 7) === 0) { const k = off >>> 2; regs[rd] = ram32[k]!; regs[rd + 1] = ram32[k + 1]!; }
                    else if ((off & 0xfff) <= 0xff8) {
                      regs[rd] = ram8[off]! | (ram8[off + 1]! << 8) | (ram8[off + 2]! << 16) | (ram8[off + 3]! << 24);
                      regs[rd + 1] = ram8[off + 4]! | (ram8[off + 5]! << 8) | (ram8[off + 6]! << 16) | (ram8[off + 7]! << 24);
                    } else { const v = mmu.loadSlow(lo, hi, 8); regs[rd] = v; regs[rd + 1] = r64.hi; }
                  }
                }
                break;
              }
              this.pc = pc;
              switch (op) {
                case Op.LB: { const v = (mmu.loadSlow(lo, hi, 1) << 24) >> 24; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
                case Op.LBU: { const v = mmu.loadSlow(lo, hi, 1) & 0xff; regs[rd] = v; regs[rd + 1] = 0; break; }
                case Op.LH: { const v = (mmu.loadSlow(lo, hi, 2) << 16) >> 16; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
                case Op.LHU: { const v = mmu.loadSlow(lo, hi, 2) & 0xffff; regs[rd] = v; regs[rd + 1] = 0; break; }
                case Op.LW: { const v = mmu.loadSlow(lo, hi, 4) | 0; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
                case Op.LWU: { const v = mmu.loadSlow(lo, hi, 4) | 0; regs[rd] = v; regs[rd + 1] = 0; break; }
                default: { const v = mmu.loadSlow(lo, hi, 8) | 0; regs[rd] = v; regs[rd + 1] = r64.hi; }
              }
              budget = this.budget;
              break;
            }

            // ---- stores
            case Op.SB: case Op.SH: case Op.SW: case Op.SD: {
              const alo = regs[rs1]!;
              const lo = (alo + imm) | 0;
              const hi = (regs[rs1 + 1]! + (imm >> 31) + ((lo >>> 0) < (alo >>> 0) ? 1 : 0)) | 0;
              const vpn = lo >>> 12;
              const t = mmu.dBase + (vpn & TLB_MASK);
              const op = w & 0xff;
              const size = op === Op.SB ? 1 : op === Op.SH ? 2 : op === Op.SW ? 4 : 8;
              let off: number;
              if (wTagLo[t] === vpn && wTagHi[t] === hi && (off = wOff[t]!) !== TLB_NO_RAM && ((off = (off + (lo & 0xfff)) >>> 0) & (size - 1)) === 0) {
                const v = regs[rs2]!;
                if (size === 1) ram8[off] = v;
                else if (size === 2) ram16[off >>> 1] = v;
                else if (size === 4) ram32[off >>> 2] = v;
                else { ram32[off >>> 2] = v; ram32[(off >>> 2) + 1] = regs[rs2 + 1]!; }
                break;
              }
              this.pc = pc;
              mmu.storeSlow(lo, hi, size, regs[rs2]!, regs[rs2 + 1]!);
              budget = this.budget;
              break;
            }

            // ---- integer ALU
            case Op.ADDI: {
              const a = regs[rs1]!;
              const lo = (a + imm) | 0;
              regs[rd + 1] = (regs[rs1 + 1]! + (imm >> 31) + ((lo >>> 0) < (a >>> 0) ? 1 : 0)) | 0;
              regs[rd] = lo;
              break;
            }
            case Op.SLTI: {
              const ah = regs[rs1 + 1]!, bh = imm >> 31;
              regs[rd] = ah < bh || (ah === bh && (regs[rs1]! >>> 0) < (imm >>> 0)) ? 1 : 0; regs[rd + 1] = 0;
              break;
            }
            case Op.SLTIU: {
              const ah = regs[rs1 + 1]! >>> 0, bh = (imm >> 31) >>> 0;
              regs[rd] = ah < bh || (ah === bh && (regs[rs1]! >>> 0) < (imm >>> 0)) ? 1 : 0; regs[rd + 1] = 0;
              break;
            }
            case Op.XORI: regs[rd] = regs[rs1]! ^ imm; regs[rd + 1] = regs[rs1 + 1]! ^ (imm >> 31); break;
            case Op.ORI: regs[rd] = regs[rs1]! | imm; regs[rd + 1] = regs[rs1 + 1]! | (imm >> 31); break;
            case Op.ANDI: regs[rd] = regs[rs1]! & imm; regs[rd + 1] = regs[rs1 + 1]! & (imm >> 31); break;
            case Op.SLLI: shl(regs, rd, regs[rs1]!, regs[rs1 + 1]!, imm); break;
            case Op.SRLI: shr(regs, rd, regs[rs1]!, regs[rs1 + 1]!, imm); break;
            case Op.SRAI: sar(regs, rd, regs[rs1]!, regs[rs1 + 1]!, imm); break;
            case Op.ADD: {
              const a = regs[rs1]!;
              const lo = (a + regs[rs2]!) | 0;
              regs[rd + 1] = (regs[rs1 + 1]! + regs[rs2 + 1]! + ((lo >>> 0) < (a >>> 0) ? 1 : 0)) | 0;
              regs[rd] = lo;
              break;
            }
            case Op.SUB: {
              const a = regs[rs1]!, b = regs[rs2]!;
              regs[rd + 1] = (regs[rs1 + 1]! - regs[rs2 + 1]! - ((a >>> 0) < (b >>> 0) ? 1 : 0)) | 0;
              regs[rd] = (a - b) | 0;
              break;
            }
            case Op.SLL: shl(regs, rd, regs[rs1]!, regs[rs1 + 1]!, regs[rs2]! & 63); break;
            case Op.SRL: shr(regs, rd, regs[rs1]!, regs[rs1 + 1]!, regs[rs2]! & 63); break;
            case Op.SRA: sar(regs, rd, regs[rs1]!, regs[rs1 + 1]!, regs[rs2]! & 63); break;
            case Op.SLT: {
              const ah = regs[rs1 + 1]!, bh = regs[rs2 + 1]!;
              regs[rd] = ah < bh || (ah === bh && (regs[rs1]! >>> 0) < (regs[rs2]! >>> 0)) ? 1 : 0; regs[rd + 1] = 0;
              break;
            }
            case Op.SLTU: {
              const ah = regs[rs1 + 1]! >>> 0, bh = regs[rs2 + 1]! >>> 0;
              regs[rd] = ah < bh || (ah === bh && (regs[rs1]! >>> 0) < (regs[rs2]! >>> 0)) ? 1 : 0; regs[rd + 1] = 0;
              break;
            }
            case Op.XOR: regs[rd] = regs[rs1]! ^ regs[rs2]!; regs[rd + 1] = regs[rs1 + 1]! ^ regs[rs2 + 1]!; break;
            case Op.OR: regs[rd] = regs[rs1]! | regs[rs2]!; regs[rd + 1] = regs[rs1 + 1]! | regs[rs2 + 1]!; break;
            case Op.AND: regs[rd] = regs[rs1]! & regs[rs2]!; regs[rd + 1] = regs[rs1 + 1]! & regs[rs2 + 1]!; break;
            case Op.ADDIW: { const v = (regs[rs1]! + imm) | 0; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.SLLIW: { const v = regs[rs1]! << imm; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.SRLIW: { const v = (regs[rs1]! >>> imm) | 0; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.SRAIW: { const v = regs[rs1]! >> imm; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.ADDW: { const v = (regs[rs1]! + regs[rs2]!) | 0; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.SUBW: { const v = (regs[rs1]! - regs[rs2]!) | 0; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.SLLW: { const v = regs[rs1]! << (regs[rs2]! & 31); regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.SRLW: { const v = (regs[rs1]! >>> (regs[rs2]! & 31)) | 0; regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.SRAW: { const v = regs[rs1]! >> (regs[rs2]! & 31); regs[rd] = v; regs[rd + 1] = v >> 31; break; }

            // ---- M
            case Op.MUL: mul64(regs[rs1]!, regs[rs1 + 1]!, regs[rs2]!, regs[rs2 + 1]!); regs[rd] = r64.lo; regs[rd + 1] = r64.hi; break;
            case Op.MULH: mulh64(regs[rs1]!, regs[rs1 + 1]!, regs[rs2]!, regs[rs2 + 1]!); regs[rd] = r64.lo; regs[rd + 1] = r64.hi; break;
            case Op.MULHSU: mulhsu64(regs[rs1]!, regs[rs1 + 1]!, regs[rs2]!, regs[rs2 + 1]!); regs[rd] = r64.lo; regs[rd + 1] = r64.hi; break;
            case Op.MULHU: mulhu64(regs[rs1]!, regs[rs1 + 1]!, regs[rs2]!, regs[rs2 + 1]!); regs[rd] = r64.lo; regs[rd + 1] = r64.hi; break;
            case Op.DIV: div64(regs[rs1]!, regs[rs1 + 1]!, regs[rs2]!, regs[rs2 + 1]!); regs[rd] = r64.lo; regs[rd + 1] = r64.hi; break;
            case Op.DIVU: divu64(regs[rs1]!, regs[rs1 + 1]!, regs[rs2]!, regs[rs2 + 1]!); regs[rd] = r64.lo; regs[rd + 1] = r64.hi; break;
            case Op.REM: rem64(regs[rs1]!, regs[rs1 + 1]!, regs[rs2]!, regs[rs2 + 1]!); regs[rd] = r64.lo; regs[rd + 1] = r64.hi; break;
            case Op.REMU: remu64(regs[rs1]!, regs[rs1 + 1]!, regs[rs2]!, regs[rs2 + 1]!); regs[rd] = r64.lo; regs[rd + 1] = r64.hi; break;
            case Op.MULW: { const v = Math.imul(regs[rs1]!, regs[rs2]!); regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.DIVW: { const v = divw(regs[rs1]!, regs[rs2]!); regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.DIVUW: { const v = divuw(regs[rs1]!, regs[rs2]!); regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.REMW: { const v = remw(regs[rs1]!, regs[rs2]!); regs[rd] = v; regs[rd + 1] = v >> 31; break; }
            case Op.REMUW: { const v = remuw(regs[rs1]!, regs[rs2]!); regs[rd] = v; regs[rd + 1] = v >> 31; break; }

            // ---- A
            case Op.LR_W: case Op.LR_D: {
              const lo = regs[rs1]!, hi = regs[rs1 + 1]!;
              const size = (w & 0xff) === Op.LR_W ? 4 : 8;
              this.pc = pc;
              this.loadReserved(mmu.atomicOffset(lo, hi, size, true), size, rd);
              break;
            }
            case Op.SC_W: case Op.SC_D: {
              const lo = regs[rs1]!, hi = regs[rs1 + 1]!;
              const size = (w & 0xff) === Op.SC_W ? 4 : 8;
              this.pc = pc;
              this.storeConditional(mmu.atomicOffset(lo, hi, size, false), size, rd, rs2);
              break;
            }
            case Op.AMOSWAP_W: case Op.AMOADD_W: case Op.AMOXOR_W: case Op.AMOAND_W: case Op.AMOOR_W:
            case Op.AMOMIN_W: case Op.AMOMAX_W: case Op.AMOMINU_W: case Op.AMOMAXU_W: {
              this.pc = pc;
              const off = mmu.atomicOffset(regs[rs1]!, regs[rs1 + 1]!, 4, false);
              const k = off >>> 2;
              const old = ram32[k]!;
              const b = regs[rs2]!;
              let v: number;
              switch (w & 0xff) {
                case Op.AMOSWAP_W: v = b; break;
                case Op.AMOADD_W: v = (old + b) | 0; break;
                case Op.AMOXOR_W: v = old ^ b; break;
                case Op.AMOAND_W: v = old & b; break;
                case Op.AMOOR_W: v = old | b; break;
                case Op.AMOMIN_W: v = old < b ? old : b; break;
                case Op.AMOMAX_W: v = old > b ? old : b; break;
                case Op.AMOMINU_W: v = (old >>> 0) < (b >>> 0) ? old : b; break;
                default: v = (old >>> 0) > (b >>> 0) ? old : b;
              }
              ram32[k] = v;
              regs[rd] = old; regs[rd + 1] = old >> 31;
              break;
            }
            case Op.AMOSWAP_D: case Op.AMOADD_D: case Op.AMOXOR_D: case Op.AMOAND_D: case Op.AMOOR_D:
            case Op.AMOMIN_D: case Op.AMOMAX_D: case Op.AMOMINU_D: case Op.AMOMAXU_D: {
              this.pc = pc;
              const off = mmu.atomicOffset(regs[rs1]!, regs[rs1 + 1]!, 8, false);
              const k = off >>> 2;
              const olo = ram32[k]!, ohi = ram32[k + 1]!;
              const blo = regs[rs2]!, bhi = regs[rs2 + 1]!;
              let vlo: number, vhi: number;
              switch (w & 0xff) {
                case Op.AMOSWAP_D: vlo = blo; vhi = bhi; break;
                case Op.AMOADD_D: vlo = (olo + blo) | 0; vhi = (ohi + bhi + ((vlo >>> 0) < (olo >>> 0) ? 1 : 0)) | 0; break;
                case Op.AMOXOR_D: vlo = olo ^ blo; vhi = ohi ^ bhi; break;
                case Op.AMOAND_D: vlo = olo & blo; vhi = ohi & bhi; break;
                case Op.AMOOR_D: vlo = olo | blo; vhi = ohi | bhi; break;
                default: {
                  const op = w & 0xff;
                  const signed = op === Op.AMOMIN_D || op === Op.AMOMAX_D;
                  const oh = signed ? ohi : ohi >>> 0, bh = signed ? bhi : bhi >>> 0;
                  const less = oh < bh || (oh === bh && (olo >>> 0) < (blo >>> 0));
                  const takeOld = op === Op.AMOMIN_D || op === Op.AMOMINU_D ? less : !less;
                  vlo = takeOld ? olo : blo; vhi = takeOld ? ohi : bhi;
                }
              }
              ram32[k] = vlo; ram32[k + 1] = vhi;
              regs[rd] = olo; regs[rd + 1] = ohi;
              break;
            }

            // ---- fences and system
            case Op.FENCE:
              break;
            case Op.FENCE_I:
              // The decode cache is coherent with every write already (see the file comment).
              break;
            case Op.ECALL: {
              this.pc = pc;
              if (this.priv === PRV_S && this.sbiCall !== null && this.sbiCall(this)) break;
              this.raise(this.priv === PRV_U ? CAUSE_USER_ECALL : this.priv === PRV_S ? CAUSE_SUPERVISOR_ECALL : CAUSE_MACHINE_ECALL, 0, 0);
              break;
            }
            case Op.EBREAK:
              // tval may be 0 or the pc (Priv §3.1.16); 0 matches QEMU, our reference.
              this.raise(CAUSE_BREAKPOINT, 0, 0);
              break;
            case Op.MRET: case Op.SRET:
              pc = this.trapReturn((w & 0xff) === Op.MRET);
              fpBase = NO_FETCH_PAGE;
              this.pc = pc;
              if (this.checkInterrupts()) pc = this.pc;
              budget = this.budget;
              continue;
            case Op.WFI: {
              if (this.priv === PRV_U || (this.priv === PRV_S && (this.mstatus & MSTATUS_TW) !== 0)) {
                this.raise(CAUSE_ILLEGAL_INSTRUCTION, 0x10500073, 0);
              }
              pc += len;
              this.pc = pc;
              if ((this.mip & this.mie) === 0) {
                this.waitingForInterrupt = true;
                this.faults = faults;
                return n;
              }
              continue;
            }
            case Op.SFENCE_VMA: {
              if (this.priv === PRV_U || (this.priv === PRV_S && (this.mstatus & MSTATUS_TVM) !== 0)) {
                this.raise(CAUSE_ILLEGAL_INSTRUCTION, 0x12000073 | (((w >> 14) & 31) << 15) | (((w >> 19) & 31) << 20), 0);
              }
              if (rs1 !== 0) this.flushTlbPage(regs[rs1]!, regs[rs1 + 1]!);
              else if (rs2 !== 0) this.flushTlbNonGlobal(); // one address space: globals stay
              else this.flushTlb();
              fpBase = NO_FETCH_PAGE;
              break;
            }
            case Op.CSRRW: case Op.CSRRS: case Op.CSRRC: case Op.CSRRWI: case Op.CSRRSI: case Op.CSRRCI: {
              this.pc = pc;
              this.runCount = n - 1 - faults;
              this.csrInstruction(w, imm);
              pc += len;
              fpBase = NO_FETCH_PAGE;
              this.pc = pc;
              if (this.checkInterrupts()) pc = this.pc;
              budget = this.budget;
              continue;
            }
            case Op.ILLEGAL:
              this.raise(CAUSE_ILLEGAL_INSTRUCTION, imm, 0);
              break;

            // ---- F and D
            default:
              this.pc = pc;
              this.executeFp(w, imm, rd, rs1, rs2, pc);
              break;
          }
          pc += len;
        }
      } catch (e) {
        if (e !== TRAP) {
          this.pc = pc;
          throw e;
        }
        faults++;
        this.stats.traps[this.trapCause]!++;
        this.takeTrap(this.trapCause, false, this.trapTvalLo, this.trapTvalHi, pc);
        pc = this.pc;
        fpBase = NO_FETCH_PAGE;
        budget = this.budget;
      }
    }
  }

  /** mret (`m`) or sret (Priv §3.3.2): back to the privilege and pc trap entry saved. Returns that pc. */
  private trapReturn(m: boolean): number {
    const p = this.priv;
    if (m ? p !== PRV_M : p === PRV_U || (p === PRV_S && (this.mstatus & MSTATUS_TSR) !== 0)) {
      this.raise(CAUSE_ILLEGAL_INSTRUCTION, m ? 0x30200073 : 0x10200073, 0);
    }
    let s = this.mstatus;
    let prev: number;
    if (m) {
      prev = (s & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
      s = (s & ~(MSTATUS_MIE | MSTATUS_MPP)) | ((s & MSTATUS_MPIE) >>> 4) | MSTATUS_MPIE;
    } else {
      prev = (s & MSTATUS_SPP) >>> 8;
      s = (s & ~(MSTATUS_SIE | MSTATUS_SPP)) | ((s & MSTATUS_SPIE) >>> 4) | MSTATUS_SPIE;
    }
    if (prev !== PRV_M) s &= ~MSTATUS_MPRV; // returning to S or U (Priv §3.1.6.1)
    this.mstatus = s;
    this.priv = prev as Privilege;
    this.afterContextChange();
    return m ? this.mepcHi * TWO32 + (this.mepcLo >>> 0) : this.sepcHi * TWO32 + (this.sepcLo >>> 0);
  }

  /** Zicsr (Unpriv ch. 9) with the access rules of Priv §2.1. */
  private csrInstruction(w: number, csr: number): void {
    const rdNum = (w >> 8) & 63;
    const writes = csrWrites(w);
    const inst = this.rawCsrInstruction(w, csr);
    // Privilege: bits 9:8 give the lowest privilege that may access; 11:10 = 3 is read-only.
    if (((csr >> 8) & 3) > this.priv) this.raise(CAUSE_ILLEGAL_INSTRUCTION, inst, 0);
    if (writes && (csr >> 10) === 3) this.raise(CAUSE_ILLEGAL_INSTRUCTION, inst, 0);
    if (!this.csrAccessible(csr)) this.raise(CAUSE_ILLEGAL_INSTRUCTION, inst, 0);
    // Our CSR reads have no side effects, so reading even when rd = x0 is harmless and
    // tells us whether the CSR exists.
    if (!csrRead(this, csr)) this.raise(CAUSE_ILLEGAL_INSTRUCTION, inst, 0);
    const oldLo = csrValue.lo, oldHi = csrValue.hi;
    if (writes) {
      const nlo = csrNewValue(this, w, oldLo, oldHi);
      if (!csrWrite(this, csr, nlo, csrValue.hi)) this.raise(CAUSE_ILLEGAL_INSTRUCTION, inst, 0);
      this.afterContextChange();
    }
    if (rdNum !== 0) {
      this.regs[rdNum * 2] = oldLo;
      this.regs[rdNum * 2 + 1] = oldHi;
    }
  }

  /** Re-encodes a CSR instruction for mtval (the decoder keeps the fields, not the word). */
  private rawCsrInstruction(w: number, csr: number): number {
    const op = w & 0xff;
    const f3 = op === Op.CSRRW ? 1 : op === Op.CSRRS ? 2 : op === Op.CSRRC ? 3 : op === Op.CSRRWI ? 5 : op === Op.CSRRSI ? 6 : 7;
    return ((csr << 20) | (((w >> 14) & 31) << 15) | (f3 << 12) | (((w >> 8) & 31) << 7) | 0x73) | 0;
  }

  /** Extra access rules beyond the number's privilege bits: counters, FP state, satp, stimecmp. */
  private csrAccessible(csr: number): boolean {
    const p = this.priv;
    if (csr <= 3) return (this.mstatus & MSTATUS_FS) !== 0; // fflags, frm, fcsr
    if (csr >= 0xc00 && csr <= 0xc1f) {
      const bit = 1 << (csr - 0xc00);
      if (p < PRV_M && (this.mcounteren & bit) === 0) return false;
      if (p === PRV_U && (this.scounteren & bit) === 0) return false;
      return true;
    }
    if (csr === 0x180 && p === PRV_S && (this.mstatus & MSTATUS_TVM) !== 0) return false;
    if (csr === 0x14d && p === PRV_S) {
      return (this.menvcfgHi & MENVCFG_HI_STCE) !== 0 && (this.mcounteren & 2) !== 0;
    }
    return true;
  }

  /**
   * Compiled code calls this for an instruction it does not run itself but that need not
   * leave it: LR/SC on a TLB hit, CSR accesses that change nothing the compiled code relies
   * on, sfence.vma. Returns 0 when done (rd is written to the registers in memory), 1 when it
   * changed nothing and the instruction must go through the interpreter (it may trap, may
   * change translation, FP state or interrupts, or reads a counter that runs ahead of
   * compiled code), 2 when done and compiled code must leave the page (sfence.vma: the
   * translation of the next fetch may have changed).
   */
  jitSys(w: number, imm: number): number {
    const regs = this.regs;
    const rd = (w >> 7) & 126, rs1 = (w >> 13) & 62, rs2 = (w >> 18) & 62;
    const op = w & 0xff;
    switch (op) {
      case Op.LR_W: case Op.LR_D: {
        const size = op === Op.LR_W ? 4 : 8;
        const off = this.mmu.atomicTlbOffset(regs[rs1]!, regs[rs1 + 1]!, size, false);
        if (off < 0) return 1;
        this.loadReserved(off, size, rd);
        return 0;
      }
      case Op.SC_W: case Op.SC_D: {
        const size = op === Op.SC_W ? 4 : 8;
        // The write TLB maps no page holding code (protectCode), so no code to drop here.
        const off = this.mmu.atomicTlbOffset(regs[rs1]!, regs[rs1 + 1]!, size, true);
        if (off < 0) return 1;
        this.storeConditional(off, size, rd, rs2);
        return 0;
      }
      case Op.SFENCE_VMA:
        if (this.priv === PRV_U || (this.priv === PRV_S && (this.mstatus & MSTATUS_TVM) !== 0)) return 1;
        if (rs1 !== 0) this.flushTlbPage(regs[rs1]!, regs[rs1 + 1]!);
        else if (rs2 !== 0) this.flushTlbNonGlobal(); // one address space: globals stay
        else this.flushTlb();
        return 2;
      case Op.CSRRW: case Op.CSRRS: case Op.CSRRC: case Op.CSRRWI: case Op.CSRRSI: case Op.CSRRCI:
        return this.jitCsr(w, imm);
    }
    return 1;
  }

  /** LR.W/LR.D at RAM offset `off` (checked): rd (a pair index) gets the value, the hart the reservation. */
  private loadReserved(off: number, size: number, rd: number): void {
    const ram32 = this.mmu.ram32, regs = this.regs;
    const vlo = ram32[off >>> 2]!;
    const vhi = size === 4 ? vlo >> 31 : ram32[(off >>> 2) + 1]!;
    this.reservation = off + this.ramBase;
    this.reservedLo = vlo;
    this.reservedHi = size === 4 ? 0 : vhi;
    regs[rd] = vlo; regs[rd + 1] = vhi;
  }

  /**
   * SC.W/SC.D at RAM offset `off` (checked): stores rs2 if the reservation is at this address
   * and memory still holds the value LR loaded; rd gets 0 on success, 1 otherwise; the
   * reservation ends either way.
   */
  private storeConditional(off: number, size: number, rd: number, rs2: number): void {
    const ram32 = this.mmu.ram32, regs = this.regs;
    const k = off >>> 2;
    const ok = this.reservation === off + this.ramBase && ram32[k] === this.reservedLo &&
      (size === 4 || ram32[k + 1] === this.reservedHi);
    this.reservation = -1;
    if (ok) {
      ram32[k] = regs[rs2]!;
      if (size === 8) ram32[k + 1] = regs[rs2 + 1]!;
    }
    regs[rd] = ok ? 0 : 1; regs[rd + 1] = 0;
  }

  /**
   * The CSR instructions compiled code may have done for it (jitSys), as csr.ts's
   * jitCsrAccess allows them. Anything else, and anything that would trap: 1.
   */
  private jitCsr(w: number, csr: number): number {
    const rdNum = (w >> 8) & 63;
    const writes = csrWrites(w);
    const access = jitCsrAccess(csr);
    if (access === JIT_CSR_NONE || (writes && access === JIT_CSR_READ)) return 1;
    if (((csr >> 8) & 3) > this.priv || (writes && (csr >> 10) === 3) || !this.csrAccessible(csr)) return 1;
    if (!csrRead(this, csr)) return 1;
    const oldLo = csrValue.lo, oldHi = csrValue.hi;
    if (writes) {
      const nlo = csrNewValue(this, w, oldLo, oldHi);
      const nhi = csrValue.hi;
      if (access === JIT_CSR_FP && (this.mstatus & MSTATUS_FS) !== MSTATUS_FS) return 1;
      if (access === JIT_CSR_CLEAR_SIE && (nhi !== oldHi || ((nlo ^ oldLo) & ~MSTATUS_SIE) !== 0 || (nlo & MSTATUS_SIE) !== 0)) return 1;
      if (!csrWrite(this, csr, nlo, nhi)) return 1; // not reached: each accepts any value
    }
    if (rdNum !== 0) {
      this.regs[rdNum * 2] = oldLo;
      this.regs[rdNum * 2 + 1] = oldHi;
    }
    return 0;
  }

  /**
   * An F/D computational instruction for compiled code (src/jit/), which has stored any
   * integer source in regs and reloads an integer result from there. Returns 1, having
   * changed nothing, when the instruction must go through the interpreter instead (FS not
   * Dirty, so mstatus would change; a dynamic rounding mode with an invalid frm traps).
   */
  jitFp(w: number, imm: number): number {
    if ((this.mstatus & MSTATUS_FS) !== MSTATUS_FS) return 1;
    if ((imm & 7) === 7 && this.fpu.frm > 4) return 1;
    this.executeFp(w, imm, (w >> 7) & 126, (w >> 13) & 62, (w >> 18) & 62, this.pc);
    return 0;
  }

  /** F and D instructions (Unpriv ch. 11, 12), executed by the Fpu. */
  private executeFp(w: number, imm: number, rd: number, rs1: number, rs2: number, pc: number): void {
    const op = w & 0xff;
    if ((this.mstatus & MSTATUS_FS) === 0) this.raise(CAUSE_ILLEGAL_INSTRUCTION, this.fpRaw(w, imm, pc), 0);
    const fpu = this.fpu;
    const frd = rd >> 1, f1 = rs1 >> 1, f2 = rs2 >> 1;
    const regs = this.regs;
    let rm = imm & 7;
    if (rm === 7 && op !== Op.FLW && op !== Op.FLD && op !== Op.FSW && op !== Op.FSD) {
      rm = fpu.frm;
      if (rm > 4) this.raise(CAUSE_ILLEGAL_INSTRUCTION, this.fpRaw(w, imm, pc), 0);
    }
    const rs3 = (imm >> 3) & 31;
    let dirty = true;
    switch (op) {
      case Op.FLW: case Op.FLD: {
        const alo = regs[rs1]!;
        const lo = (alo + imm) | 0;
        const hi = (regs[rs1 + 1]! + (imm >> 31) + ((lo >>> 0) < (alo >>> 0) ? 1 : 0)) | 0;
        if (op === Op.FLW) {
          const v = this.mmu.loadSlow(lo, hi, 4);
          this.fregs[2 * frd] = v; this.fregs[2 * frd + 1] = -1;
        } else {
          const v = this.mmu.loadSlow(lo, hi, 8);
          this.fregs[2 * frd] = v; this.fregs[2 * frd + 1] = r64.hi;
        }
        break;
      }
      case Op.FSW: case Op.FSD: {
        const alo = regs[rs1]!;
        const lo = (alo + imm) | 0;
        const hi = (regs[rs1 + 1]! + (imm >> 31) + ((lo >>> 0) < (alo >>> 0) ? 1 : 0)) | 0;
        this.mmu.storeSlow(lo, hi, op === Op.FSW ? 4 : 8, this.fregs[2 * f2]!, this.fregs[2 * f2 + 1]!);
        dirty = false;
        break;
      }
      case Op.FMADD_S: fpu.fmaddS(frd, f1, f2, rs3, rm); break;
      case Op.FMSUB_S: fpu.fmsubS(frd, f1, f2, rs3, rm); break;
      case Op.FNMSUB_S: fpu.fnmsubS(frd, f1, f2, rs3, rm); break;
      case Op.FNMADD_S: fpu.fnmaddS(frd, f1, f2, rs3, rm); break;
      case Op.FMADD_D: fpu.fmaddD(frd, f1, f2, rs3, rm); break;
      case Op.FMSUB_D: fpu.fmsubD(frd, f1, f2, rs3, rm); break;
      case Op.FNMSUB_D: fpu.fnmsubD(frd, f1, f2, rs3, rm); break;
      case Op.FNMADD_D: fpu.fnmaddD(frd, f1, f2, rs3, rm); break;
      case Op.FADD_S: fpu.faddS(frd, f1, f2, rm); break;
      case Op.FSUB_S: fpu.fsubS(frd, f1, f2, rm); break;
      case Op.FMUL_S: fpu.fmulS(frd, f1, f2, rm); break;
      case Op.FDIV_S: fpu.fdivS(frd, f1, f2, rm); break;
      case Op.FSQRT_S: fpu.fsqrtS(frd, f1, rm); break;
      case Op.FSGNJ_S: fpu.fsgnjS(frd, f1, f2); break;
      case Op.FSGNJN_S: fpu.fsgnjnS(frd, f1, f2); break;
      case Op.FSGNJX_S: fpu.fsgnjxS(frd, f1, f2); break;
      case Op.FMIN_S: fpu.fminS(frd, f1, f2); break;
      case Op.FMAX_S: fpu.fmaxS(frd, f1, f2); break;
      case Op.FADD_D: fpu.faddD(frd, f1, f2, rm); break;
      case Op.FSUB_D: fpu.fsubD(frd, f1, f2, rm); break;
      case Op.FMUL_D: fpu.fmulD(frd, f1, f2, rm); break;
      case Op.FDIV_D: fpu.fdivD(frd, f1, f2, rm); break;
      case Op.FSQRT_D: fpu.fsqrtD(frd, f1, rm); break;
      case Op.FSGNJ_D: fpu.fsgnjD(frd, f1, f2); break;
      case Op.FSGNJN_D: fpu.fsgnjnD(frd, f1, f2); break;
      case Op.FSGNJX_D: fpu.fsgnjxD(frd, f1, f2); break;
      case Op.FMIN_D: fpu.fminD(frd, f1, f2); break;
      case Op.FMAX_D: fpu.fmaxD(frd, f1, f2); break;
      case Op.FCVT_S_D: fpu.fcvtSD(frd, f1, rm); break;
      case Op.FCVT_D_S: fpu.fcvtDS(frd, f1, rm); break;
      case Op.FCVT_S_W: fpu.fcvtSW(frd, regs[rs1]!, regs[rs1 + 1]!, rm); break;
      case Op.FCVT_S_WU: fpu.fcvtSWU(frd, regs[rs1]!, regs[rs1 + 1]!, rm); break;
      case Op.FCVT_S_L: fpu.fcvtSL(frd, regs[rs1]!, regs[rs1 + 1]!, rm); break;
      case Op.FCVT_S_LU: fpu.fcvtSLU(frd, regs[rs1]!, regs[rs1 + 1]!, rm); break;
      case Op.FCVT_D_W: fpu.fcvtDW(frd, regs[rs1]!, regs[rs1 + 1]!, rm); break;
      case Op.FCVT_D_WU: fpu.fcvtDWU(frd, regs[rs1]!, regs[rs1 + 1]!, rm); break;
      case Op.FCVT_D_L: fpu.fcvtDL(frd, regs[rs1]!, regs[rs1 + 1]!, rm); break;
      case Op.FCVT_D_LU: fpu.fcvtDLU(frd, regs[rs1]!, regs[rs1 + 1]!, rm); break;
      case Op.FMV_W_X: fpu.fmvWX(frd, regs[rs1]!); break;
      case Op.FMV_D_X: fpu.fmvDX(frd, regs[rs1]!, regs[rs1 + 1]!); break;
      default: {
        // Integer destinations: the f state changes only through fflags.
        dirty = false;
        let v = 0;
        switch (op) {
          case Op.FCVT_W_S: fpu.fcvtWS(f1, rm); break;
          case Op.FCVT_WU_S: fpu.fcvtWUS(f1, rm); break;
          case Op.FCVT_L_S: fpu.fcvtLS(f1, rm); break;
          case Op.FCVT_LU_S: fpu.fcvtLUS(f1, rm); break;
          case Op.FCVT_W_D: fpu.fcvtWD(f1, rm); break;
          case Op.FCVT_WU_D: fpu.fcvtWUD(f1, rm); break;
          case Op.FCVT_L_D: fpu.fcvtLD(f1, rm); break;
          case Op.FCVT_LU_D: fpu.fcvtLUD(f1, rm); break;
          case Op.FMV_X_W: fpu.fmvXW(f1); break;
          case Op.FMV_X_D: fpu.fmvXD(f1); break;
          case Op.FCLASS_S: v = fpu.fclassS(f1); fpu.resLo = v; fpu.resHi = 0; break;
          case Op.FCLASS_D: v = fpu.fclassD(f1); fpu.resLo = v; fpu.resHi = 0; break;
          case Op.FEQ_S: v = fpu.feqS(f1, f2); fpu.resLo = v; fpu.resHi = 0; break;
          case Op.FLT_S: v = fpu.fltS(f1, f2); fpu.resLo = v; fpu.resHi = 0; break;
          case Op.FLE_S: v = fpu.fleS(f1, f2); fpu.resLo = v; fpu.resHi = 0; break;
          case Op.FEQ_D: v = fpu.feqD(f1, f2); fpu.resLo = v; fpu.resHi = 0; break;
          case Op.FLT_D: v = fpu.fltD(f1, f2); fpu.resLo = v; fpu.resHi = 0; break;
          case Op.FLE_D: v = fpu.fleD(f1, f2); fpu.resLo = v; fpu.resHi = 0; break;
          default:
            this.raise(CAUSE_ILLEGAL_INSTRUCTION, this.fpRaw(w, imm, pc), 0);
        }
        regs[rd] = fpu.resLo;
        regs[rd + 1] = fpu.resHi;
      }
    }
    if (dirty) this.mstatus |= MSTATUS_FS;
  }

  /** The raw instruction word for mtval of an illegal FP instruction: re-read from memory. */
  private fpRaw(_w: number, _imm: number, pc: number): number {
    try {
      const lo = pc | 0, hi = Math.floor(pc / TWO32) | 0;
      const pa = this.mmu.translate(lo, hi, ACCESS_FETCH, 2);
      const off = pa - this.ramBase;
      if (off < 0 || off + 2 > this.ramSize) return 0;
      const ram16 = this.mmu.ram16;
      const low = ram16[off >>> 1]! & 0xffff;
      if ((low & 3) !== 3) return low;
      if ((off & 0xfff) === 0xffe) return low; // straddling: keep the low half only
      return low | (ram16[(off >>> 1) + 1]! << 16);
    } catch {
      return 0;
    }
  }
}

/** Highest-priority interrupt in a pending set: MEI, MSI, MTI, SEI, SSI, STI. */
function pickInterrupt(set: number): number {
  if (set & MIP_MEIP) return 11;
  if (set & MIP_MSIP) return 3;
  if (set & MIP_MTIP) return 7;
  if (set & MIP_SEIP) return 9;
  if (set & MIP_SSIP) return 1;
  if (set & MIP_STIP) return 5;
  return 31 - Math.clz32(set);
}

/** xtvec: direct mode jumps to BASE; vectored mode sends interrupts to BASE + 4·cause. */
function vectorTarget(lo: number, hi: number, cause: number, interrupt: boolean): number {
  const base = hi * TWO32 + ((lo & ~3) >>> 0);
  return interrupt && (lo & 3) === 1 ? base + 4 * cause : base;
}

function shl(regs: Int32Array, rd: number, lo: number, hi: number, s: number): void {
  if (s === 0) { regs[rd] = lo; regs[rd + 1] = hi; }
  else if (s < 32) { regs[rd + 1] = (hi << s) | (lo >>> (32 - s)); regs[rd] = lo << s; }
  else { regs[rd + 1] = lo << (s - 32); regs[rd] = 0; }
}
function shr(regs: Int32Array, rd: number, lo: number, hi: number, s: number): void {
  if (s === 0) { regs[rd] = lo; regs[rd + 1] = hi; }
  else if (s < 32) { regs[rd] = (lo >>> s) | (hi << (32 - s)); regs[rd + 1] = hi >>> s; }
  else { regs[rd] = hi >>> (s - 32); regs[rd + 1] = 0; }
}
function sar(regs: Int32Array, rd: number, lo: number, hi: number, s: number): void {
  if (s === 0) { regs[rd] = lo; regs[rd + 1] = hi; }
  else if (s < 32) { regs[rd] = (lo >>> s) | (hi << (32 - s)); regs[rd + 1] = hi >> s; }
  else { regs[rd] = hi >> (s - 32); regs[rd + 1] = hi >> 31; }
}
