import { describe, expect, it } from 'vitest';
import { attachRamPager, knownWrittenPages, markWritten, MAX_IMAGE_LAYERS, PAGE_BYTES, RamPager, ramPagerOf, writtenPages, type RamImage } from './ram-pager.js';

/** An image of `pages` pages where the listed pages hold their number in every byte. */
function image(pages: number, present: number[]): RamImage {
  const bytes = new Uint8Array(new SharedArrayBuffer(pages * PAGE_BYTES));
  const map = new Uint8Array(new SharedArrayBuffer(pages));
  for (const p of present) {
    bytes.fill(p + 1, p * PAGE_BYTES, (p + 1) * PAGE_BYTES);
    map[p] = 1;
  }
  return { bytes, present: map };
}

describe('RamPager', () => {
  it('copies a page in on its first fetch, once, and leaves the others zero', () => {
    const ram = new Uint8Array(9 * PAGE_BYTES);
    const pager = new RamPager(ram, image(9, [0, 3, 4, 8]));
    expect(pager.stats).toEqual({ fetched: 0, pending: 4 });
    expect([...pager.pending]).toEqual([1, 0, 0, 1, 1, 0, 0, 0, 1]);
    pager.fetch(3);
    expect(ram.subarray(3 * PAGE_BYTES, 4 * PAGE_BYTES).every((b) => b === 4)).toBe(true);
    expect(ram.subarray(4 * PAGE_BYTES).every((b) => b === 0)).toBe(true);
    ram[3 * PAGE_BYTES] = 99; // the guest writes it: a second fetch must not undo that
    pager.fetch(3);
    pager.fetch(5); // not in the image: nothing to do
    expect(ram[3 * PAGE_BYTES]).toBe(99);
    expect(pager.stats).toEqual({ fetched: 1, pending: 3 });
  });

  it('fetches every page a range touches, including partial first and last pages', () => {
    const ram = new Uint8Array(9 * PAGE_BYTES);
    const pager = new RamPager(ram, image(9, [0, 3, 4, 8]));
    pager.fetchRange(3 * PAGE_BYTES + 4000, 200); // the end of page 3, the start of page 4
    expect(pager.stats.fetched).toBe(2);
    expect(ram[4 * PAGE_BYTES + 4095]).toBe(5);
    pager.fetchRange(0, 0); // nothing
    expect(pager.pending[0]).toBe(1);
    pager.fetchAll();
    expect(pager.stats).toEqual({ fetched: 4, pending: 0 });
    expect(ram[0]).toBe(1);
    expect(ram[8 * PAGE_BYTES + 17]).toBe(9);
  });

  it('hands out a pending page from the image without fetching it', () => {
    const ram = new Uint8Array(4 * PAGE_BYTES);
    const pager = new RamPager(ram, image(4, [2]));
    expect(pager.pendingPage(1)).toBeUndefined();
    expect(pager.pendingPage(2)!.every((b) => b === 3)).toBe(true);
    expect(pager.stats.pending).toBe(1);
    pager.fetch(2);
    expect(pager.pendingPage(2)).toBeUndefined();
  });

  it('counts any non-zero byte of the page map as present', () => {
    const img = image(7, [1, 6]);
    img.present[1] = 0xff;
    const pager = new RamPager(new Uint8Array(7 * PAGE_BYTES), img);
    expect(pager.stats.pending).toBe(2);
    expect(pager.pending[1]).not.toBe(0);
  });

  it('counts the pages of every layer, a word at a time, whatever the RAM size', () => {
    for (const pages of [1, 3, 4, 4099]) {
      const want = new Set<number>();
      const lower: number[] = [];
      const upper: number[] = [];
      for (let p = 0; p < pages; p++) {
        const r = (p * 2654435761) % 7;
        if (r === 1) lower.push(p);
        if (r === 2 || r === 3) upper.push(p);
        if (r >= 1 && r <= 3) want.add(p);
      }
      const pager = new RamPager(new Uint8Array(pages * PAGE_BYTES), { ...image(pages, upper), base: image(pages, lower) });
      expect(pager.stats.pending).toBe(want.size);
      expect([...pager.pending].flatMap((b, p) => (b ? [p] : []))).toEqual([...want].sort((a, b) => a - b));
    }
  });

  it('reads a lower layer whose page map does not start on a word', () => {
    const lower = image(9, [0, 5, 8]);
    const shifted = new Uint8Array(10);
    shifted.set(lower.present, 1);
    const pager = new RamPager(new Uint8Array(9 * PAGE_BYTES), { ...image(9, [1]), base: { ...lower, present: shifted.subarray(1) } });
    expect([...pager.pending].map((b) => (b ? 1 : 0))).toEqual([1, 1, 0, 0, 0, 1, 0, 0, 1]);
    expect(pager.stats.pending).toBe(4);
  });

  it('refuses an image that does not fit the RAM', () => {
    expect(() => new RamPager(new Uint8Array(4 * PAGE_BYTES), image(5, [1]))).toThrow(RangeError);
    const bad = { bytes: new Uint8Array(4 * PAGE_BYTES), present: new Uint8Array(3) };
    expect(() => new RamPager(new Uint8Array(4 * PAGE_BYTES), bad)).toThrow(RangeError);
  });

  it('is found by the RAM it fills, and a RAM takes one pager', () => {
    const ram = new Uint8Array(2 * PAGE_BYTES);
    expect(ramPagerOf(ram)).toBeUndefined();
    const pager = attachRamPager(ram, image(2, [1]));
    expect(ramPagerOf(ram)).toBe(pager);
    expect(ramPagerOf(ram.subarray(PAGE_BYTES))).toBeUndefined();
    expect(() => attachRamPager(ram, image(2, []))).toThrow(/already/);
  });

  it('takes each page from the topmost layer that holds it', () => {
    const bottom = image(5, [0, 1, 2]);
    const top = { ...image(5, [2, 4]), base: bottom };
    top.bytes.fill(0, 2 * PAGE_BYTES, 3 * PAGE_BYTES); // the top layer holds page 2, as zero
    const ram = new Uint8Array(5 * PAGE_BYTES);
    const pager = new RamPager(ram, top);
    expect([...pager.pending]).toEqual([1, 1, 1, 0, 1]);
    pager.fetchAll();
    expect(ram[0]).toBe(1);
    expect(ram[PAGE_BYTES]).toBe(2);
    expect(ram[2 * PAGE_BYTES + 9]).toBe(0);
    expect(ram[4 * PAGE_BYTES]).toBe(5);
    expect(writtenPages(ram).every((b) => b === 0)).toBe(true); // paged in is not written
  });

  it('refuses a chain of layers deeper than MAX_IMAGE_LAYERS, or with a layer of another size', () => {
    let img: RamImage = image(2, [1]);
    for (let k = 0; k < MAX_IMAGE_LAYERS; k++) img = { ...image(2, [0]), base: img };
    expect(() => new RamPager(new Uint8Array(2 * PAGE_BYTES), img)).toThrow(/layers/);
    expect(() => new RamPager(new Uint8Array(2 * PAGE_BYTES), { ...image(2, [0]), base: image(3, [1]) })).toThrow(RangeError);
  });
});

describe('written pages', () => {
  it('marks every page a range touches, and no page past RAM', () => {
    const ram = new Uint8Array(6 * PAGE_BYTES);
    expect(knownWrittenPages(ram)).toBeUndefined();
    const map = writtenPages(ram);
    expect(knownWrittenPages(ram)).toBe(map);
    markWritten(map, PAGE_BYTES - 1, 2); // the last byte of page 0, the first of page 1
    markWritten(map, 3 * PAGE_BYTES, 0); // nothing
    markWritten(map, 5 * PAGE_BYTES, 10 * PAGE_BYTES);
    expect([...map]).toEqual([1, 1, 0, 0, 0, 1]);
  });

  it('keeps no map that others would find for a view inside a buffer', () => {
    const buf = new Uint8Array(3 * PAGE_BYTES);
    const view = buf.subarray(PAGE_BYTES);
    writtenPages(view).fill(1);
    expect(knownWrittenPages(view)).toBeUndefined();
    expect(knownWrittenPages(buf)).toBeUndefined();
  });
});
