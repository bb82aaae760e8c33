/**
 * Guest RAM as a virtio device sees it for DMA. Every guest-physical address a driver hands
 * us is untrusted: each access goes through `offset()`, which maps [addr, addr+len) to an
 * offset into `ram` or returns -1 when any byte of it lies outside RAM. Nothing here throws
 * on a guest value.
 */
import type { PhysicalMemory } from '../cpu/memory.js';
import { ramPagerOf, writtenPages, type RamPager } from '../cpu/ram-pager.js';

export type GuestRam = Pick<PhysicalMemory, 'ram' | 'ramBase'> & {
  /**
   * Called with each RAM range a device wrote for the guest (when a chain is returned), so
   * the hart can drop instructions it decoded from those bytes: DMA bypasses the CPU's store
   * path, which is what normally keeps the decode cache coherent.
   */
  onDeviceWrite?: (ramOffset: number, length: number) => void;
};

export class GuestMemory {
  readonly ram: Uint8Array;
  readonly ramBase: number;
  readonly onDeviceWrite: ((ramOffset: number, length: number) => void) | undefined;
  private readonly view: DataView;
  /** Fills RAM on demand (src/cpu/ram-pager.ts): every range a device touches comes in first. */
  private readonly pager: RamPager | undefined;
  /**
   * RAM pages written (ram-pager.ts writtenPages): devices mark what they write where they
   * write it (DescriptorChain.write, setU16/setU32 here, the balloon's zeroing), not every
   * range offset() validates, most of which are only read.
   */
  readonly written: Uint8Array;

  constructor(mem: GuestRam) {
    this.ram = mem.ram;
    this.pager = ramPagerOf(mem.ram);
    this.written = writtenPages(mem.ram);
    this.ramBase = mem.ramBase;
    this.onDeviceWrite = mem.onDeviceWrite;
    this.view = new DataView(mem.ram.buffer, mem.ram.byteOffset, mem.ram.byteLength);
  }

  /**
   * Offset into `ram` of the guest range [addr, addr+len), or -1 if any of it is outside RAM.
   * `addr` may be any Number a guest produced (up to 2^64 rounded); non-integers and
   * negatives are rejected too, so callers need no further checks.
   */
  offset(addr: number, len: number): number {
    const off = addr - this.ramBase;
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len)) return -1;
    if (off < 0 || len < 0 || off + len > this.ram.length) return -1;
    this.pager?.fetchRange(off, len);
    return off;
  }

  // Little-endian accessors at ram offsets the caller has already validated with offset().
  u8(off: number): number {
    return this.ram[off]!;
  }
  u16(off: number): number {
    return this.view.getUint16(off, true);
  }
  u32(off: number): number {
    return this.view.getUint32(off, true);
  }
  /** A 64-bit guest value as a Number; values above 2^53 lose precision but stay > any RAM. */
  u64(off: number): number {
    return this.view.getUint32(off, true) + this.view.getUint32(off + 4, true) * 0x1_0000_0000;
  }
  // The used ring's offsets are validated once, when the queue is enabled: each write marks its page.
  setU16(off: number, v: number): void {
    this.view.setUint16(off, v, true);
    this.written[Math.floor(off / 4096)] = 1;
  }
  setU32(off: number, v: number): void {
    this.view.setUint32(off, v >>> 0, true);
    this.written[Math.floor(off / 4096)] = 1;
  }
}

/** Reads a 64-bit little-endian field (from a config or header buffer) as a Number. */
export function readU64(view: DataView, off: number): number {
  return view.getUint32(off, true) + view.getUint32(off + 4, true) * 0x1_0000_0000;
}

export function writeU64(view: DataView, off: number, v: number): void {
  view.setUint32(off, v % 0x1_0000_0000 >>> 0, true);
  view.setUint32(off + 4, Math.floor(v / 0x1_0000_0000) >>> 0, true);
}
