/**
 * The hart's memory management unit: address translation (Sv39/Sv48 walks with hardware A/D
 * updates, Priv §4.3), the PMP check (pmp.ts), the software TLBs and the slow paths of loads
 * and stores (TLB misses, MMIO, accesses that cross a page, LR/SC and AMO addresses).
 *
 * The fast path is not here: the interpreter (hart.ts) and compiled code (src/jit/) probe the
 * TLB arrays inline and come here only when the probe misses. The arrays live in the hart's
 * state slot of the shared WebAssembly.Memory (guest-ram.ts), which is why their layout and
 * the no-RAM marker are guest-ram.ts's.
 *
 * TLB entries: tags (vpn = lo >>> 12, hi of the virtual address); a RAM offset of the page as
 * int32 bits (read back `>>> 0`: RAM may be larger than 2 GiB) or TLB_NO_RAM (MMIO, or a page
 * whose stores must take the slow path because it holds decoded code).
 */
import type { PhysicalMemory } from './memory.js';
import {
  CAUSE_FETCH_ACCESS, CAUSE_FETCH_PAGE_FAULT, CAUSE_LOAD_ACCESS, CAUSE_LOAD_PAGE_FAULT, CAUSE_MISALIGNED_LOAD,
  CAUSE_MISALIGNED_STORE, CAUSE_STORE_ACCESS, CAUSE_STORE_PAGE_FAULT, MSTATUS_MPP, MSTATUS_MPP_SHIFT, MSTATUS_MPRV,
  MSTATUS_MXR, MSTATUS_SUM, PRV_M, PRV_S, PRV_U, PTE_A, PTE_D, PTE_G, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X, SATP_MODE_BARE,
  SATP_MODE_SV39, SATP_MODE_SV48,
} from './constants.js';
import { r64 } from './int64.js';
import {
  SLOT_R_OFF, SLOT_R_TAG_HI, SLOT_R_TAG_LO, SLOT_W_OFF, SLOT_W_TAG_HI, SLOT_W_TAG_LO, SLOT_X_OFF, SLOT_X_TAG_HI,
  SLOT_X_TAG_LO, TLB_NO_RAM, TLB_SETS, TLB_SIZE,
} from './guest-ram.js';
import { PMP_DENIED, PMP_PAGE, type Pmp } from './pmp.js';
import { ramPagerOf, writtenPages, type RamPager } from './ram-pager.js';

export const ACCESS_FETCH = 0;
export const ACCESS_LOAD = 1;
export const ACCESS_STORE = 2;

const TLB_MASK = TLB_SIZE - 1;
/** Non-global fills flushNonGlobal drops one by one; more make it scan every entry. */
const FILLED_LOG_SIZE = 4096;
/** TLB sets (TLB_SETS): one per translation context so that switching context costs nothing. */
const SET_U = 0, SET_S = 1, SET_S_SUM = 2, SET_M = 3;
/**
 * The low tag of an empty TLB entry: tags are (vpn = lo >>> 12, hi), and a vpn is never
 * negative, so no access matches it. (The high word cannot mark an entry empty: a
 * non-canonical address can have any high word, and one that matched a stale entry's would
 * have used that entry's page instead of raising its page fault.)
 */
const TAG_INVALID_LO = -1;

const TWO32 = 4294967296;
/** 2^(9·level): pages a PTE at that level spans (a variable `**` compiles to a slow pow call). */
const LEVEL_SPAN = [1, 512, 262144, 134217728];

/** What the MMU reads of its hart, and the one thing it asks of it. */
export interface MmuHart {
  readonly priv: number;
  readonly mstatus: number;
  readonly satpLo: number;
  readonly satpHi: number;
  readonly stats: { tlbMisses: number };
  /** Records a synchronous exception and unwinds to the interpreter loop. */
  raise(cause: number, tvalLo: number, tvalHi: number): never;
  /** A store (or an A/D update) wrote RAM page `pg`, which holds decoded code: drop it. */
  dropCode(pg: number): void;
}

export interface MmuOptions {
  hart: MmuHart;
  memory: PhysicalMemory;
  pmp: Pmp;
  /** 1 where a RAM page holds decoded code (the hart's decode cache): its stores stay slow. */
  codePage: Uint8Array;
  /** The hart's state slot: the buffer and byte offset the TLB arrays are views into. */
  buffer: ArrayBufferLike;
  slotBase: number;
}

export class Mmu {
  // The read and write TLBs; compiled code probes them inline.
  readonly rTagLo: Int32Array;
  readonly rTagHi: Int32Array;
  readonly rOff: Int32Array;
  readonly wTagLo: Int32Array;
  readonly wTagHi: Int32Array;
  readonly wOff: Int32Array;
  /** The fetch TLB: the hart's fetch and the JIT's dispatcher probe it. */
  readonly xTagLo: Int32Array;
  readonly xTagHi: Int32Array;
  readonly xOff: Int32Array;
  /** Physical page address for every entry (used for MMIO pages, whose off is TLB_NO_RAM). */
  private readonly rPa = new Float64Array(TLB_SIZE * TLB_SETS);
  private readonly wPa = new Float64Array(TLB_SIZE * TLB_SETS);
  /**
   * Per entry, 1 when the translation holds in every address space: the leaf PTE was global
   * (G), or no translation was involved (M-mode's identity mapping). A satp write in the same
   * mode and an ASID-specific sfence.vma keep these (Priv §4.1.11, §4.2.1), so a context
   * switch does not make the kernel walk its own mappings again. Only fill() writes entries.
   */
  private readonly rGlobal = new Uint8Array(TLB_SIZE * TLB_SETS);
  private readonly wGlobal = new Uint8Array(TLB_SIZE * TLB_SETS);
  private readonly xGlobal = new Uint8Array(TLB_SIZE * TLB_SETS);
  /** Index of the first entry of the data and fetch TLB sets for the current context. */
  dBase = SET_M * TLB_SIZE;
  xBase = SET_M * TLB_SIZE;

  /** Guest RAM; 16- and 32-bit views of it (the interpreter's fast paths use them too). */
  readonly ram8: Uint8Array;
  readonly ram16: Int16Array;
  readonly ram32: Int32Array;
  readonly ramBase: number;
  readonly ramSize: number;

  private readonly hart: MmuHart;
  private readonly memory: PhysicalMemory;
  private readonly pmp: Pmp;
  private readonly codePage: Uint8Array;
  /**
   * Per RAM page: 1 once a write-TLB entry has mapped it straight to RAM, until unmapWrites
   * scans for it (an entry may since have been dropped: the flag is only "maybe").
   */
  private readonly writeMapped: Uint8Array;
  /** Fills RAM on demand from an image (ram-pager.ts), when this machine was restored from one. */
  private readonly pager: RamPager | undefined;
  /** Pages written since RAM last matched its image, or since boot (ram-pager.ts writtenPages): stores mark theirs. */
  private readonly written: Uint8Array;
  /** Set by walk(): the leaf allows stores and is dirty, so the page may be cached as writable. */
  private walkDirty = false;
  /** Set by walk(): the leaf PTE has G (a G only on a non-leaf level is not counted: conservative). */
  private walkGlobal = false;
  private readonly crossPas = new Float64Array(8);
  /**
   * Non-global entries filled since the last flush, as index * 4 + kind (0 read, 1 write, 2
   * fetch): flushNonGlobal (every satp write: each context switch) drops just these instead of
   * scanning every entry of every set. A log that overflowed is a full scan.
   */
  private readonly filledLog = new Int32Array(FILLED_LOG_SIZE);
  private filledCount = 0;

  constructor(o: MmuOptions) {
    this.hart = o.hart;
    this.memory = o.memory;
    this.pmp = o.pmp;
    this.codePage = o.codePage;
    const buf = o.buffer, base = o.slotBase;
    const n = TLB_SIZE * TLB_SETS;
    this.rTagLo = new Int32Array(buf, base + SLOT_R_TAG_LO, n);
    this.rTagHi = new Int32Array(buf, base + SLOT_R_TAG_HI, n);
    this.rOff = new Int32Array(buf, base + SLOT_R_OFF, n);
    this.wTagLo = new Int32Array(buf, base + SLOT_W_TAG_LO, n);
    this.wTagHi = new Int32Array(buf, base + SLOT_W_TAG_HI, n);
    this.wOff = new Int32Array(buf, base + SLOT_W_OFF, n);
    this.xTagLo = new Int32Array(buf, base + SLOT_X_TAG_LO, n);
    this.xTagHi = new Int32Array(buf, base + SLOT_X_TAG_HI, n);
    this.xOff = new Int32Array(buf, base + SLOT_X_OFF, n);
    const ram = o.memory.ram;
    this.ram8 = ram;
    // Unsigned shifts: RAM may be 2 GiB or more, whose length is negative as an int32.
    this.ram16 = new Int16Array(ram.buffer, ram.byteOffset, ram.length >>> 1);
    this.ram32 = new Int32Array(ram.buffer, ram.byteOffset, ram.length >>> 2);
    this.ramBase = o.memory.ramBase;
    this.ramSize = ram.length;
    this.pager = ramPagerOf(ram);
    this.written = writtenPages(ram);
    this.writeMapped = new Uint8Array(Math.ceil(ram.length / 4096));
    this.flush();
  }

  // ---------------------------------------------------------------- contexts and flushes

  /** Selects the TLB sets for privilege `priv` (fetch) and the data accesses mstatus gives it (MPRV, SUM). */
  selectContext(priv: number, mstatus: number): void {
    this.xBase = (priv === PRV_U ? SET_U : priv === PRV_S ? SET_S : SET_M) * TLB_SIZE;
    let dp = priv;
    if (priv === PRV_M && (mstatus & MSTATUS_MPRV) !== 0) dp = (mstatus & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
    this.dBase = (dp === PRV_U ? SET_U : dp === PRV_S ? ((mstatus & MSTATUS_SUM) !== 0 ? SET_S_SUM : SET_S) : SET_M) * TLB_SIZE;
  }

  flush(): void {
    this.filledCount = 0;
    this.rTagLo.fill(TAG_INVALID_LO);
    this.wTagLo.fill(TAG_INVALID_LO);
    this.xTagLo.fill(TAG_INVALID_LO);
  }

  /**
   * Drops every entry but the global ones: a satp write in the same translation mode, or
   * sfence.vma with rs1 = x0 and rs2 != x0, which need not order global mappings (Priv §4.2.1).
   */
  flushNonGlobal(): void {
    const { rTagLo, wTagLo, xTagLo, rGlobal, wGlobal, xGlobal } = this;
    const n = this.filledCount;
    this.filledCount = 0;
    if (n <= FILLED_LOG_SIZE) {
      // Each logged slot: dropped unless a global entry has taken it since.
      const log = this.filledLog;
      for (let k = 0; k < n; k++) {
        const code = log[k]!;
        const i = code >>> 2;
        const kind = code & 3;
        if (kind === 0) { if (rGlobal[i] === 0) rTagLo[i] = TAG_INVALID_LO; }
        else if (kind === 1) { if (wGlobal[i] === 0) wTagLo[i] = TAG_INVALID_LO; }
        else if (xGlobal[i] === 0) xTagLo[i] = TAG_INVALID_LO;
      }
      return;
    }
    for (let i = 0; i < rTagLo.length; i++) {
      if (rGlobal[i] === 0) rTagLo[i] = TAG_INVALID_LO;
      if (wGlobal[i] === 0) wTagLo[i] = TAG_INVALID_LO;
      if (xGlobal[i] === 0) xTagLo[i] = TAG_INVALID_LO;
    }
  }

  /**
   * Drops the write TLB: the next store to each page translates again (and marks the page
   * written: ram-pager.ts writtenPages, after the runner cleared that map).
   */
  flushWrites(): void {
    this.wTagLo.fill(TAG_INVALID_LO);
  }

  /** Drops data-TLB entries (MXR changed: read permissions differ). */
  flushData(): void {
    this.rTagLo.fill(TAG_INVALID_LO);
    this.wTagLo.fill(TAG_INVALID_LO);
  }

  /** sfence.vma with an address: drop that page from every set. */
  flushPage(lo: number, hi: number): void {
    const vpn = lo >>> 12;
    for (let set = 0; set < TLB_SETS; set++) {
      const i = set * TLB_SIZE + (vpn & TLB_MASK);
      if (this.rTagLo[i] === vpn && this.rTagHi[i] === hi) this.rTagLo[i] = TAG_INVALID_LO;
      if (this.wTagLo[i] === vpn && this.wTagHi[i] === hi) this.wTagLo[i] = TAG_INVALID_LO;
      if (this.xTagLo[i] === vpn && this.xTagHi[i] === hi) this.xTagLo[i] = TAG_INVALID_LO;
    }
  }

  /**
   * RAM page `pg` now holds decoded code: write-TLB entries that map it go to the slow path.
   * Only a page some write-TLB entry has mapped since its last scan is scanned for (writeMapped):
   * a scan reads all TLB_SETS × TLB_SIZE entries, and most pages that get code (a restored
   * machine's first minutes, or a fresh boot's) were never written through the TLB.
   */
  unmapWrites(pg: number): void {
    if (this.writeMapped[pg] === 0) return;
    this.writeMapped[pg] = 0;
    const off = (pg * 4096) | 0; // as the int32 the entries hold
    const wOff = this.wOff;
    for (let i = 0; i < wOff.length; i++) if (wOff[i] === off) wOff[i] = TLB_NO_RAM;
  }

  // ---------------------------------------------------------------- translation

  /**
   * Translates a virtual address for an access of `size` bytes and checks PMP. Returns the
   * physical address; raises the guest fault otherwise. Fills the TLB when the whole page
   * has one outcome.
   */
  translate(lo: number, hi: number, access: number, size: number): number {
    const h: MmuHart = this.hart;
    let priv = h.priv;
    if (access !== ACCESS_FETCH && priv === PRV_M && (h.mstatus & MSTATUS_MPRV) !== 0) {
      priv = (h.mstatus & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
    }
    h.stats.tlbMisses++;
    let pagePa: number;
    let writable = true;
    // M-mode's identity mapping does not depend on satp; bare S/U mode's ends with it.
    let global = priv === PRV_M;
    const mode = h.satpHi >>> 28;
    if (priv === PRV_M || mode === SATP_MODE_BARE) {
      pagePa = (hi >>> 0) * TWO32 + ((lo >>> 12) << 12 >>> 0);
    } else {
      pagePa = this.walk(lo, hi, access, priv, mode);
      writable = this.walkDirty;
      global = this.walkGlobal;
    }
    const pa = pagePa + (lo & 0xfff);
    // PMP (Priv §3.7.1): the whole access must fall in one entry that allows it.
    const pmp = this.pmp.check(pa, size, access, priv);
    if (pmp === PMP_DENIED) h.raise(accessFault(access), lo, hi);
    const ramOff = pagePa - this.ramBase;
    if (ramOff >= 0 && ramOff < this.ramSize) {
      const pg = ramOff / 4096; // pagePa is page-aligned
      // A page still in the image this RAM fills from comes in before anything maps or reads it.
      const pager = this.pager;
      if (pager !== undefined && pager.pending[pg]! !== 0) pager.fetch(pg);
      // Every store to RAM translates (or hits an entry a store's translation filled).
      if (access === ACCESS_STORE) this.written[pg] = 1;
    }
    if (pmp === PMP_PAGE) this.fill(lo, hi, access, pagePa, writable, global);
    return pa;
  }

  /** Sv39/Sv48 page walk (Priv §4.3.2) with hardware A/D updates, as QEMU does. */
  private walk(lo: number, hi: number, access: number, priv: number, mode: number): number {
    const h: MmuHart = this.hart;
    const pageFault = access === ACCESS_FETCH ? CAUSE_FETCH_PAGE_FAULT : access === ACCESS_LOAD ? CAUSE_LOAD_PAGE_FAULT : CAUSE_STORE_PAGE_FAULT;
    let levels: number;
    if (mode === SATP_MODE_SV39) {
      levels = 3;
      const top = hi >> 6; // bits 63:38 must all equal bit 38
      if (top !== 0 && top !== -1) h.raise(pageFault, lo, hi);
    } else if (mode === SATP_MODE_SV48) {
      levels = 4;
      const top = hi >> 15;
      if (top !== 0 && top !== -1) h.raise(pageFault, lo, hi);
    } else {
      h.raise(pageFault, lo, hi); // unreachable: satp accepts only bare, Sv39, Sv48
    }
    const mstatus = h.mstatus;
    let base = ((h.satpHi & 0xfff) * TWO32 + (h.satpLo >>> 0)) * 4096;
    for (let level = levels - 1; level >= 0; level--) {
      // VPN[i] = va bits 12+9i .. 20+9i, in int32 arithmetic (a walk is on every TLB miss).
      const vpn = level === 0 ? (lo >>> 12) & 511 : level === 1 ? (lo >>> 21) & 511
        : level === 2 ? ((lo >>> 30) | (hi << 2)) & 511 : (hi >>> 7) & 511;
      const pteAddr = base + vpn * 8;
      const off = pteAddr - this.ramBase;
      if (off < 0 || off + 8 > this.ramSize || this.pmp.check(pteAddr, 8, ACCESS_LOAD, PRV_S) === PMP_DENIED) {
        h.raise(accessFault(access), lo, hi);
      }
      if (this.pager !== undefined && this.pager.pending[off >>> 12]! !== 0) this.pager.fetch(off >>> 12);
      const pteLo = this.ram32[off >>> 2]!;
      const pteHi = this.ram32[(off >>> 2) + 1]!;
      if ((pteLo & PTE_V) === 0 || (pteLo & (PTE_R | PTE_W)) === PTE_W) h.raise(pageFault, lo, hi);
      // Bits 63 (N, Svnapot) and 62:61 (PBMT, Svpbmt) are reserved here: not implemented.
      if ((pteHi & 0xe0000000) !== 0) h.raise(pageFault, lo, hi);
      const ppn = (pteHi & 0x3fffff) * 4194304 + (pteLo >>> 10);
      if ((pteLo & (PTE_R | PTE_X)) === 0) {
        if (level === 0) h.raise(pageFault, lo, hi);
        base = ppn * 4096;
        continue;
      }
      // Leaf: permission checks.
      if (priv === PRV_U) {
        if ((pteLo & PTE_U) === 0) h.raise(pageFault, lo, hi);
      } else if ((pteLo & PTE_U) !== 0) {
        if (access === ACCESS_FETCH || (mstatus & MSTATUS_SUM) === 0) h.raise(pageFault, lo, hi);
      }
      if (access === ACCESS_FETCH) {
        if ((pteLo & PTE_X) === 0) h.raise(pageFault, lo, hi);
      } else if (access === ACCESS_LOAD) {
        if ((pteLo & PTE_R) === 0 && !((mstatus & MSTATUS_MXR) !== 0 && (pteLo & PTE_X) !== 0)) {
          h.raise(pageFault, lo, hi);
        }
      } else if ((pteLo & PTE_W) === 0) {
        h.raise(pageFault, lo, hi);
      }
      // A superpage's low PPN bits must be zero; the page inside it comes from the va (both
      // masks are below 2^27: the lowest 27 bits of the PPN and va bits 38:12).
      const spanMask = LEVEL_SPAN[level]! - 1;
      if ((((pteLo >>> 10) | ((pteHi & 0x1f) << 22)) & spanMask) !== 0) h.raise(pageFault, lo, hi); // misaligned superpage
      let newLo = pteLo | PTE_A;
      if (access === ACCESS_STORE) newLo |= PTE_D;
      if (newLo !== pteLo) {
        this.ram32[off >>> 2] = newLo;
        const pg = off >>> 12;
        this.written[pg] = 1;
        if (this.codePage[pg]) h.dropCode(pg);
      }
      // A page is cached as writable only once D is set, so the first store still walks.
      this.walkDirty = (newLo & PTE_D) !== 0 && (newLo & PTE_W) !== 0;
      this.walkGlobal = (newLo & PTE_G) !== 0;
      return (ppn + (((lo >>> 12) | ((hi & 0x7f) << 20)) & spanMask)) * 4096;
    }
    return h.raise(pageFault, lo, hi);
  }

  /** Notes a non-global entry (index * 4 + kind) for flushNonGlobal; past the log's size, a full scan will do. */
  private logFill(code: number): void {
    const k = this.filledCount++;
    if (k < FILLED_LOG_SIZE) this.filledLog[k] = code;
  }

  private fill(lo: number, hi: number, access: number, pagePa: number, writable: boolean, global: boolean): void {
    const g = global ? 1 : 0;
    const vpn = lo >>> 12;
    const ramOff = pagePa - this.ramBase;
    const inRam = ramOff >= 0 && ramOff < this.ramSize;
    // Offsets of 2 GiB and more are stored as their int32 bits (the typed array wraps them).
    if (access === ACCESS_FETCH) {
      const i = this.xBase + (vpn & TLB_MASK);
      this.xTagLo[i] = vpn; this.xTagHi[i] = hi; this.xOff[i] = inRam ? ramOff : TLB_NO_RAM; this.xGlobal[i] = g;
      if (!global) this.logFill((i << 2) | 2);
      return;
    }
    const i = this.dBase + (vpn & TLB_MASK);
    if (access === ACCESS_LOAD) {
      this.rTagLo[i] = vpn; this.rTagHi[i] = hi; this.rOff[i] = inRam ? ramOff : TLB_NO_RAM; this.rPa[i] = pagePa; this.rGlobal[i] = g;
      if (!global) this.logFill(i << 2);
    } else if (writable) {
      this.wTagLo[i] = vpn; this.wTagHi[i] = hi; this.wGlobal[i] = g;
      // Pages holding decoded code stay on the slow path so stores can drop the decodings.
      if (inRam && !this.codePage[ramOff >>> 12]) {
        this.wOff[i] = ramOff;
        this.writeMapped[ramOff >>> 12] = 1;
      } else {
        this.wOff[i] = TLB_NO_RAM;
      }
      this.wPa[i] = pagePa;
      if (!global) this.logFill((i << 2) | 1);
    }
  }

  // ---------------------------------------------------------------- slow memory paths

  /** Physical address of a data access (TLB hit or full translation). */
  private dataPa(lo: number, hi: number, access: number, size: number): number {
    const vpn = lo >>> 12;
    const i = this.dBase + (vpn & TLB_MASK);
    if (access === ACCESS_LOAD) {
      if (this.rTagLo[i] === vpn && this.rTagHi[i] === hi) return this.rPa[i]! + (lo & 0xfff);
    } else if (this.wTagLo[i] === vpn && this.wTagHi[i] === hi) {
      return this.wPa[i]! + (lo & 0xfff);
    }
    return this.translate(lo, hi, access, size);
  }

  private physRead(pa: number, size: 1 | 2 | 4, lo: number, hi: number): number {
    const off = pa - this.ramBase;
    if (off >= 0 && off + size <= this.ramSize) {
      const ram8 = this.ram8;
      if (size === 1) return ram8[off]!;
      if (size === 2) return ram8[off]! | (ram8[off + 1]! << 8);
      return ram8[off]! | (ram8[off + 1]! << 8) | (ram8[off + 2]! << 16) | (ram8[off + 3]! << 24);
    }
    const v = this.memory.mmioRead(pa, size);
    if (v === undefined) this.hart.raise(CAUSE_LOAD_ACCESS, lo, hi);
    return v;
  }

  private physWrite(pa: number, size: 1 | 2 | 4, value: number, lo: number, hi: number): void {
    const off = pa - this.ramBase;
    if (off >= 0 && off + size <= this.ramSize) {
      const pg = off >>> 12;
      if (this.codePage[pg]) this.hart.dropCode(pg);
      const ram8 = this.ram8;
      ram8[off] = value;
      if (size >= 2) ram8[off + 1] = value >>> 8;
      if (size === 4) { ram8[off + 2] = value >>> 16; ram8[off + 3] = value >>> 24; }
      return;
    }
    if (!this.memory.mmioWrite(pa, size, value)) this.hart.raise(CAUSE_STORE_ACCESS, lo, hi);
  }

  /** Load slow path: returns the low 32 bits (zero-extended for size < 4); high word in r64.hi. */
  loadSlow(lo: number, hi: number, size: number): number {
    const pageOff = lo & 0xfff;
    if (pageOff + size > 4096) {
      // Misaligned across a page: byte by byte, each byte translated.
      let vlo = 0, vhi = 0;
      for (let k = 0; k < size; k++) {
        const alo = (lo + k) | 0;
        const ahi = (hi + ((alo >>> 0) < (lo >>> 0) ? 1 : 0)) | 0;
        const pa = this.dataPa(alo, ahi, ACCESS_LOAD, 1);
        const b = this.physRead(pa, 1, alo, ahi);
        if (k < 4) vlo |= b << (8 * k); else vhi |= b << (8 * (k - 4));
      }
      r64.hi = vhi;
      return vlo;
    }
    const pa = this.dataPa(lo, hi, ACCESS_LOAD, size);
    const off = pa - this.ramBase;
    const inRam = off >= 0 && off + size <= this.ramSize;
    // MMIO takes naturally aligned accesses only; 8 bytes go as two 4-byte accesses, low word
    // first (src/base/mmio.ts).
    if (!inRam && (pa & (size - 1)) !== 0) this.hart.raise(CAUSE_LOAD_ACCESS, lo, hi);
    if (size === 8) {
      const v = this.physRead(pa, 4, lo, hi);
      r64.hi = this.physRead(pa + 4, 4, lo, hi);
      return v;
    }
    r64.hi = 0;
    return this.physRead(pa, size as 1 | 2 | 4, lo, hi);
  }

  /** Store slow path: value is (vlo, vhi) of which `size` bytes are written. */
  storeSlow(lo: number, hi: number, size: number, vlo: number, vhi: number): void {
    const pageOff = lo & 0xfff;
    if (pageOff + size > 4096) {
      // Translate every byte first so a fault on the second page writes nothing.
      const pas = this.crossPas;
      for (let k = 0; k < size; k++) {
        const alo = (lo + k) | 0;
        const ahi = (hi + ((alo >>> 0) < (lo >>> 0) ? 1 : 0)) | 0;
        pas[k] = this.dataPa(alo, ahi, ACCESS_STORE, 1);
      }
      for (let k = 0; k < size; k++) {
        const b = k < 4 ? vlo >>> (8 * k) : vhi >>> (8 * (k - 4));
        this.physWrite(pas[k]!, 1, b & 0xff, lo, hi);
      }
      return;
    }
    const pa = this.dataPa(lo, hi, ACCESS_STORE, size);
    const off = pa - this.ramBase;
    const inRam = off >= 0 && off + size <= this.ramSize;
    if (!inRam && (pa & (size - 1)) !== 0) this.hart.raise(CAUSE_STORE_ACCESS, lo, hi);
    if (size === 8) {
      this.physWrite(pa, 4, vlo, lo, hi);
      this.physWrite(pa + 4, 4, vhi, lo, hi);
    } else {
      this.physWrite(pa, size as 1 | 2 | 4, vlo, lo, hi);
    }
    // A page that held code keeps its write-TLB entry on this slow path (fill, unmapWrites);
    // once a store has dropped the code, put the entry back on the fast path, or every later
    // store to the page would come here (and leave compiled code) until the entry is evicted.
    if (inRam) {
      const vpn = lo >>> 12;
      const i = this.dBase + (vpn & TLB_MASK);
      const pageRamOff = off - (off & 0xfff);
      if (this.wOff[i] === TLB_NO_RAM && this.wTagLo[i] === vpn && this.wTagHi[i] === hi && this.wPa[i] === pa - (pa & 0xfff)
        && !this.codePage[pageRamOff >>> 12]) {
        this.wOff[i] = pageRamOff;
        this.writeMapped[pageRamOff >>> 12] = 1;
      }
    }
  }

  /** RAM offset for an AMO/LR/SC (aligned, in RAM, with store permission for all but LR); raises otherwise. */
  atomicOffset(lo: number, hi: number, size: number, isLoad: boolean): number {
    if ((lo & (size - 1)) !== 0) this.hart.raise(isLoad ? CAUSE_MISALIGNED_LOAD : CAUSE_MISALIGNED_STORE, lo, hi);
    const pa = this.dataPa(lo, hi, isLoad ? ACCESS_LOAD : ACCESS_STORE, size);
    const off = pa - this.ramBase;
    if (off < 0 || off + size > this.ramSize) this.hart.raise(isLoad ? CAUSE_LOAD_ACCESS : CAUSE_STORE_ACCESS, lo, hi);
    if (!isLoad) {
      const pg = off >>> 12;
      if (this.codePage[pg]) this.hart.dropCode(pg);
    }
    return off;
  }

  /**
   * RAM offset for an LR/SC at (lo, hi) from the data TLB alone, or -1 (misaligned, a miss,
   * not RAM): compiled code's way, which must not raise. The write TLB maps no page holding
   * code (unmapWrites), so a store there has no code to drop.
   */
  atomicTlbOffset(lo: number, hi: number, size: number, store: boolean): number {
    if ((lo & (size - 1)) !== 0) return -1;
    const vpn = lo >>> 12;
    const i = this.dBase + (vpn & TLB_MASK);
    const tagLo = store ? this.wTagLo : this.rTagLo;
    const tagHi = store ? this.wTagHi : this.rTagHi;
    if (tagLo[i] !== vpn || tagHi[i] !== hi) return -1;
    const off = (store ? this.wOff : this.rOff)[i]!;
    return off === TLB_NO_RAM ? -1 : (off >>> 0) + (lo & 0xfff);
  }
}

function accessFault(access: number): number {
  return access === ACCESS_FETCH ? CAUSE_FETCH_ACCESS : access === ACCESS_LOAD ? CAUSE_LOAD_ACCESS : CAUSE_STORE_ACCESS;
}
