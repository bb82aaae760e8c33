/**
 * Guest RAM filled on demand from an image of another machine's RAM (issue 16: forks and
 * restores that copy only what the guest touches).
 *
 * A machine restored from a RamImage starts with zero RAM and a RamPager. Each page the image
 * holds stays `pending` until something reaches it; the first access copies it in. Everything
 * that reaches RAM by a guest-physical address asks the pager first:
 *   - the MMU, for every translation it makes (mmu.ts translate: TLB fills, the slow load and
 *     store paths and atomics all go through it) and for every page-table entry it reads;
 *   - devices doing DMA (virtio GuestMemory.offset validates every range they touch);
 *   - the SBI's debug console, which reads and writes guest buffers;
 *   - a snapshot of this machine (fetchAll first).
 * Compiled code and the interpreter's fast paths reach RAM only through TLB entries, which a
 * translation filled: their pages were fetched then. A TLB is not state (a restore flushes it),
 * so no entry can name a page before its translation has fetched it.
 *
 * The image is only read, never written: many machines (the children of one fork, the
 * sandboxes of one template) share one copy of it, in a SharedArrayBuffer across threads.
 */

export const PAGE_BYTES = 4096;

/** Guest RAM as of an instant: each page at its RAM offset, and which pages hold anything. */
export interface RamImage {
  /** RAM bytes, page `p` at byte `p * 4096` (pages not `present` are never read). */
  readonly bytes: Uint8Array;
  /** One byte per RAM page: non-zero when the page holds data; the others are all zero. */
  readonly present: Uint8Array;
}

export class RamPager {
  /** One byte per RAM page: 1 while the page is still the image's (not yet copied in). */
  readonly pending: Uint8Array;
  private image: RamImage | null;
  private left: number;
  private fetched = 0;

  /** `ram` must be all zero: pages the image does not hold are left as they are. */
  constructor(private readonly ram: Uint8Array, image: RamImage) {
    const pages = Math.floor(ram.length / PAGE_BYTES);
    if (ram.length % PAGE_BYTES !== 0 || image.present.length !== pages || image.bytes.length !== ram.length) {
      throw new RangeError(`a RAM image of ${image.bytes.length} bytes (${image.present.length} pages) does not fit ${ram.length} bytes of RAM`);
    }
    // A private copy of the page map (a plain buffer: the image's may be shared), counted a
    // word at a time: a restore's latency includes this, over every page of RAM.
    this.pending = image.present.slice();
    const words = new Uint32Array(this.pending.buffer, 0, pages >>> 2);
    let left = 0;
    for (let w = 0; w < words.length; w++) {
      const v = words[w]!;
      if (v !== 0) {
        // Normalise each byte to 0 or 1 (a present byte is any non-zero value) and count it.
        for (let b = 0; b < 4; b++) {
          const p = w * 4 + b;
          if (this.pending[p] !== 0) {
            this.pending[p] = 1;
            left++;
          }
        }
      }
    }
    for (let p = words.length * 4; p < pages; p++) {
      if (this.pending[p] !== 0) {
        this.pending[p] = 1;
        left++;
      }
    }
    this.left = left;
    this.image = left > 0 ? image : null;
  }

  /** Copies page `pg` in if it is still pending (callers test `pending[pg]` first on hot paths). */
  fetch(pg: number): void {
    if (this.pending[pg] === 0) return;
    const at = pg * PAGE_BYTES;
    this.ram.set(this.image!.bytes.subarray(at, at + PAGE_BYTES), at);
    this.pending[pg] = 0;
    this.fetched++;
    // The last page in: the image is not needed any more (its memory goes when no one holds it).
    if (--this.left === 0) this.image = null;
  }

  /** Fetches every pending page of RAM offsets [off, off + len). */
  fetchRange(off: number, len: number): void {
    if (this.left === 0 || len <= 0) return;
    const last = Math.floor((off + len - 1) / PAGE_BYTES);
    for (let pg = Math.floor(off / PAGE_BYTES); pg <= last; pg++) if (this.pending[pg] !== 0) this.fetch(pg);
  }

  /** Fetches every page still pending: RAM is then complete on its own. */
  fetchAll(): void {
    if (this.left === 0) return;
    for (let pg = 0; pg < this.pending.length; pg++) if (this.pending[pg] !== 0) this.fetch(pg);
  }

  /**
   * The image's copy of page `pg` while it is pending, else undefined: a snapshot of this
   * machine reads it from there instead of fetching it in.
   */
  pendingPage(pg: number): Uint8Array | undefined {
    if (this.pending[pg] === 0) return undefined;
    const at = pg * PAGE_BYTES;
    return this.image!.bytes.subarray(at, at + PAGE_BYTES);
  }

  /** Pages copied in so far, and pages still pending. */
  get stats(): { fetched: number; pending: number } {
    return { fetched: this.fetched, pending: this.left };
  }
}

/** Pagers by the RAM they fill (its buffer: RAM is at offset 0 of it, guest-ram.ts). */
const pagers = new WeakMap<ArrayBufferLike, RamPager>();

/**
 * Makes fresh (all-zero) `ram` fill itself from `image` on demand. Call it before the board
 * is built on this RAM: the MMU and the devices look their pager up when they are made.
 */
export function attachRamPager(ram: Uint8Array, image: RamImage): RamPager {
  if (ram.byteOffset !== 0) throw new RangeError('a RAM pager needs RAM at the start of its buffer');
  if (pagers.has(ram.buffer)) throw new Error('this RAM already has a pager');
  const pager = new RamPager(ram, image);
  pagers.set(ram.buffer, pager);
  return pager;
}

/** The pager filling `ram`, if it has one. */
export function ramPagerOf(ram: Uint8Array): RamPager | undefined {
  return ram.byteOffset === 0 ? pagers.get(ram.buffer) : undefined;
}
