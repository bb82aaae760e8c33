/** Deterministic helpers shared by the storage tests and the kill-test writer. */

/** mulberry32: a tiny seeded PRNG, so every random test prints a seed that replays it. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Bytes that differ by position and tag, so misplaced data is caught. */
export function pattern(length: number, tag: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + tag * 7 + (i >> 9)) & 0xff;
  return b;
}

/**
 * Index of the first differing byte, or -1 when equal (and of equal length). vitest's
 * toEqual walks typed arrays element by element and takes seconds on a megabyte.
 */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
