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

/**
 * Guest RAM as of an instant: each page at its RAM offset, and which pages this image holds.
 * An image may lie on a `base`: a page it does not hold is the base's (and so on down); a page
 * no layer holds is zero. A fork of a machine restored from an image only copies the pages
 * written since, on top of that image (host/snapshot/memory.ts imageOfRam).
 */
export interface RamImage {
  /** RAM bytes, page `p` at byte `p * 4096` (pages not `present` are never read). */
  readonly bytes: Uint8Array;
  /** One byte per RAM page: non-zero when this layer holds the page (its bytes may be zero). */
  readonly present: Uint8Array;
  readonly base?: RamImage | undefined;
}

/** Layers an image may have (a deeper chain is flattened by the next snapshot). */
export const MAX_IMAGE_LAYERS = 16;

/**
 * The layers of `image`, top first. Throws a RangeError saying which layer is wrong for one
 * that is not a page map and bytes fitting `pages` pages, or for a chain deeper than
 * MAX_IMAGE_LAYERS (which also ends a chain that loops back on itself).
 */
export function imageLayers(image: RamImage, pages: number): RamImage[] {
  const layers: RamImage[] = [];
  for (let img: RamImage | undefined = image; img !== undefined; img = img.base) {
    if (layers.length === MAX_IMAGE_LAYERS) throw new RangeError(`more than ${MAX_IMAGE_LAYERS} layers of RAM`);
    if (!(img.bytes instanceof Uint8Array) || !(img.present instanceof Uint8Array) || img.present.length !== pages || img.bytes.length !== pages * PAGE_BYTES) {
      throw new RangeError(`layer ${layers.length} of the RAM image does not fit ${pages * PAGE_BYTES} bytes of RAM (${pages} pages)`);
    }
    layers.push(img);
  }
  return layers;
}

export class RamPager {
  /** One byte per RAM page: non-zero while the page is still the image's (not yet copied in). */
  readonly pending: Uint8Array;
  /** The image's layers, top first (empty once every page is in). */
  private layers: RamImage[];
  private left: number;
  private fetched = 0;

  /** `ram` must be all zero: pages the image does not hold are left as they are. */
  constructor(private readonly ram: Uint8Array, image: RamImage) {
    if (ram.length % PAGE_BYTES !== 0) throw new RangeError(`RAM of ${ram.length} bytes is not whole pages`);
    const pages = ram.length / PAGE_BYTES;
    const layers = imageLayers(image, pages);
    // Pending: the pages any layer holds (a plain buffer: the images' maps may be shared;
    // any non-zero byte counts). A restore's latency includes this pass over every page of
    // RAM, so it goes a word (four pages) at a time.
    this.pending = layers[0]!.present.slice();
    const words = pages >>> 2;
    const pend32 = new Uint32Array(this.pending.buffer, 0, words);
    for (let k = 1; k < layers.length; k++) {
      const p = layers[k]!.present;
      const p32 = p.byteOffset % 4 === 0 ? new Uint32Array(p.buffer, p.byteOffset, words) : new Uint32Array(p.slice(0, words * 4).buffer);
      for (let w = 0; w < words; w++) pend32[w]! |= p32[w]!;
      for (let i = words * 4; i < pages; i++) this.pending[i]! |= p[i]!;
    }
    let left = 0;
    for (let w = 0; w < words; w++) {
      const v = pend32[w]!;
      if (v !== 0) left += ((v & 0xff) !== 0 ? 1 : 0) + ((v & 0xff00) !== 0 ? 1 : 0) + ((v & 0xff0000) !== 0 ? 1 : 0) + ((v >>> 24) !== 0 ? 1 : 0);
    }
    for (let i = words * 4; i < pages; i++) if (this.pending[i] !== 0) left++;
    this.left = left;
    this.layers = left > 0 ? layers : [];
  }

  /** Copies page `pg` in if it is still pending (callers test `pending[pg]` first on hot paths). */
  fetch(pg: number): void {
    if (this.pending[pg] === 0) return;
    this.ram.set(this.pendingPage(pg)!, pg * PAGE_BYTES);
    this.pending[pg] = 0;
    this.fetched++;
    // The last page in: the image is not needed any more (its memory goes when no one holds it).
    if (--this.left === 0) this.layers = [];
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
   * The image's copy of page `pg` while it is pending (from the topmost layer that holds it),
   * else undefined: a snapshot of this machine reads it from there instead of fetching it in.
   */
  pendingPage(pg: number): Uint8Array | undefined {
    if (this.pending[pg] === 0) return undefined;
    const at = pg * PAGE_BYTES;
    for (const img of this.layers) if (img.present[pg] !== 0) return img.bytes.subarray(at, at + PAGE_BYTES);
    return undefined; // unreachable: a pending page is some layer's
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

/**
 * Per RAM (by its buffer), one byte per page: 1 once the page may have been written since the
 * machine's RAM last matched what it started from: its boot (zero RAM), or the image it was
 * restored from or last snapshotted into memory (then the runner clears the map and the
 * write TLB, so the next store to each page translates again). Whatever writes RAM marks it:
 * the MMU on a store's translation (TLB fills for stores, the slow store path, atomics) and on
 * a PTE's A/D update, devices on every write they make (virtio DescriptorChain.write, the
 * used ring through GuestMemory, the balloon's zeroing), the SBI console, the boot's loads, a restore from a
 * file (all pages). A page paged in from the image is not written: it is still the image's.
 * A snapshot in memory reads only marked pages (host/snapshot/memory.ts imageOfRam).
 */
const writtenMaps = new WeakMap<ArrayBufferLike, Uint8Array>();

/** The written-page map of `ram` (made, all zero, on first use). */
export function writtenPages(ram: Uint8Array): Uint8Array {
  // A view that does not start its buffer gets a map of its own that no one else finds:
  // knownWrittenPages says undefined for it, and a snapshot then scans every page.
  if (ram.byteOffset !== 0) return new Uint8Array(Math.ceil(ram.length / PAGE_BYTES));
  let map = writtenMaps.get(ram.buffer);
  if (map === undefined) {
    map = new Uint8Array(Math.ceil(ram.length / PAGE_BYTES));
    writtenMaps.set(ram.buffer, map);
  }
  return map;
}

/** The map if something keeps one for `ram`, else undefined (then every page may hold data). */
export function knownWrittenPages(ram: Uint8Array): Uint8Array | undefined {
  return ram.byteOffset === 0 ? writtenMaps.get(ram.buffer) : undefined;
}

/** Marks the pages of RAM offsets [off, off + len) as written. */
export function markWritten(map: Uint8Array, off: number, len: number): void {
  if (len <= 0) return;
  const last = Math.floor((off + len - 1) / PAGE_BYTES);
  for (let pg = Math.floor(off / PAGE_BYTES); pg <= last && pg < map.length; pg++) map[pg] = 1;
}
