import { describe, expect, it } from 'vitest';
import { attachRamPager, PAGE_BYTES, RamPager, ramPagerOf, type RamImage } from './ram-pager.js';

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
    expect(pager.pending[1]).toBe(1);
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
});
