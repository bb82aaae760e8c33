/**
 * Physical memory protection (Priv §3.7): sixteen entries, their CSRs (pmpcfg0/2 and
 * pmpaddr0-15, WARL rules included) and the check every translated access goes through
 * (mmu.ts). The decoded ranges are kept beside the registers so that a check walks sixteen
 * [start, end) pairs instead of decoding the address-matching modes again.
 */
import { PRV_M } from './constants.js';

export const PMP_ENTRIES = 16;

/** Access kinds, as the MMU numbers them (mmu.ts ACCESS_*). */
const ACCESS_FETCH = 0;
const ACCESS_LOAD = 1;

const TWO32 = 4294967296;

/** What a check allows: nothing, this access alone, or the whole 4 KiB page (cacheable in the TLB). */
export const PMP_DENIED = 0, PMP_ACCESS = 1, PMP_PAGE = 2;

export class Pmp {
  /** pmpcfg bytes, one per entry. */
  readonly cfg = new Uint8Array(PMP_ENTRIES);
  /** pmpaddr registers (54 bits: address bits 55:2), as lo/hi pairs: 2^54 exceeds a double's exact range. */
  readonly addrLo = new Int32Array(PMP_ENTRIES);
  readonly addrHi = new Int32Array(PMP_ENTRIES);
  /** Decoded ranges [start, end) per entry; end 0 = entry off. */
  private readonly start = new Float64Array(PMP_ENTRIES);
  private readonly end = new Float64Array(PMP_ENTRIES);
  /** Entries that are on (A ≠ OFF); 0 lets M-mode through without a look. */
  private active = 0;

  reset(): void {
    this.cfg.fill(0);
    this.addrLo.fill(0);
    this.addrHi.fill(0);
    this.recompute();
  }

  /** pmpcfg0 (`reg` 0) or pmpcfg2 (`reg` 2) as a (lo, hi) pair through `out`. */
  readCfg(reg: number, out: { lo: number; hi: number }): void {
    const base = reg * 4; // pmpcfg0 holds entries 0-7, pmpcfg2 entries 8-15
    const c = this.cfg;
    out.lo = c[base]! | (c[base + 1]! << 8) | (c[base + 2]! << 16) | (c[base + 3]! << 24);
    out.hi = c[base + 4]! | (c[base + 5]! << 8) | (c[base + 6]! << 16) | (c[base + 7]! << 24);
  }

  /** Writes pmpcfg0 or pmpcfg2 (WARL: locked entries keep their byte; W without R means no access). */
  writeCfg(reg: number, lo: number, hi: number): void {
    const base = reg * 4;
    for (let i = 0; i < 8; i++) {
      const byte = (i < 4 ? lo >>> (8 * i) : hi >>> (8 * (i - 4))) & 0xff;
      if (this.cfg[base + i]! & 0x80) continue; // locked
      let cfg = byte & 0x9f; // bits 6:5 are reserved
      if ((cfg & 3) === 2) cfg &= ~3; // W without R is reserved: legalise to no access
      this.cfg[base + i] = cfg;
    }
    this.recompute();
  }

  /**
   * Writes pmpaddr`i` unless it is locked (its own L bit, or the next entry's when that one
   * is a locked TOR range whose bottom it is). Returns whether it changed anything.
   */
  writeAddr(i: number, lo: number, hi: number): boolean {
    const cfg = this.cfg;
    const locked = (cfg[i]! & 0x80) !== 0 ||
      (i + 1 < PMP_ENTRIES && (cfg[i + 1]! & 0x80) !== 0 && ((cfg[i + 1]! >> 3) & 3) === 1);
    if (locked) return false;
    this.addrLo[i] = lo;
    this.addrHi[i] = hi & 0x3fffff; // 54 bits: address bits 55:2
    this.recompute();
    return true;
  }

  /** Recomputes the ranges after a register changed (Priv §3.7.1). */
  recompute(): void {
    let active = 0;
    for (let i = 0; i < PMP_ENTRIES; i++) {
      const a = (this.cfg[i]! >> 3) & 3;
      const lo = this.addrLo[i]!, hi = this.addrHi[i]!;
      // Byte addresses (pmpaddr · 4) as Numbers: exact below 2^53, which covers all we map.
      const addr = ((hi >>> 0) * TWO32 + (lo >>> 0)) * 4;
      let start = 0, end = 0;
      if (a === 1) { // TOR
        start = i === 0 ? 0 : ((this.addrHi[i - 1]! >>> 0) * TWO32 + (this.addrLo[i - 1]! >>> 0)) * 4;
        end = addr;
        if (end <= start) end = start; // empty range
      } else if (a === 2) { // NA4
        start = addr;
        end = start + 4;
      } else if (a === 3) { // NAPOT: t trailing ones encode a 2^(t+3)-byte region
        const t = lo === -1 ? 32 + countTrailingOnes(hi) : countTrailingOnes(lo);
        const size = 2 ** (t + 3);
        start = addr - (addr % size);
        end = start + size;
      }
      if (a !== 0) active++;
      this.start[i] = start;
      this.end[i] = a === 0 ? 0 : end;
    }
    this.active = active;
  }

  /**
   * Whether privilege `priv` may make the `size`-byte access at physical address `pa`: the
   * whole access must fall in the first entry that matches any of it. PMP_PAGE when the
   * answer holds for every access to the page (no higher-priority entry splits it).
   */
  check(pa: number, size: number, access: number, priv: number): number {
    if (this.active === 0) return priv === PRV_M ? PMP_PAGE : PMP_DENIED;
    const perm = access === ACCESS_FETCH ? 4 : access === ACCESS_LOAD ? 1 : 2;
    const pageStart = pa - (pa % 4096);
    const pageEnd = pageStart + 4096;
    let pageClean = true; // no higher-priority entry overlaps the page partially
    for (let i = 0; i < PMP_ENTRIES; i++) {
      const end = this.end[i]!;
      if (end === 0) continue;
      const start = this.start[i]!;
      const overlapsPage = start < pageEnd && end > pageStart;
      if (pa >= start && pa < end) {
        if (pa + size > end) return PMP_DENIED; // straddles the entry's end
        const cfg = this.cfg[i]!;
        const locked = (cfg & 0x80) !== 0;
        const ok = priv === PRV_M && !locked ? true : (cfg & perm) !== 0;
        if (!ok) return PMP_DENIED;
        return pageClean && start <= pageStart && end >= pageEnd ? PMP_PAGE : PMP_ACCESS;
      }
      if (pa + size > start && pa < end) return PMP_DENIED; // partially overlaps from below
      if (overlapsPage) pageClean = false;
    }
    if (priv === PRV_M) return pageClean ? PMP_PAGE : PMP_ACCESS;
    return PMP_DENIED;
  }
}

function countTrailingOnes(v: number): number {
  return v === -1 ? 32 : 31 - Math.clz32(~v & (v + 1));
}
