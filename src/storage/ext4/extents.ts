/**
 * Extent trees: a file's block map as runs (logical block, physical block, length). Up to
 * four extents live in the inode's i_block; more go into leaf blocks (340 entries each at
 * 4 KiB) under index levels, the root always in the inode.
 */
import { BLOCK_SIZE } from './layout.js';

export const EXTENT_MAGIC = 0xf30a;
/** Longest initialized extent. */
export const MAX_EXTENT_LEN = 32768;
const ROOT_ENTRIES = 4;
const BLOCK_ENTRIES = (BLOCK_SIZE - 12) / 12;

export interface Extent {
  logical: number;
  physical: number;
  length: number;
}

/** Collects mapped blocks in order and merges them into maximal extents. */
export class ExtentList {
  readonly extents: Extent[] = [];

  add(logical: number, physical: number, length = 1): void {
    const last = this.extents[this.extents.length - 1];
    if (last && last.logical + last.length === logical && last.physical + last.length === physical && last.length + length <= MAX_EXTENT_LEN) {
      last.length += length;
      return;
    }
    while (length > MAX_EXTENT_LEN) {
      this.extents.push({ logical, physical, length: MAX_EXTENT_LEN });
      logical += MAX_EXTENT_LEN;
      physical += MAX_EXTENT_LEN;
      length -= MAX_EXTENT_LEN;
    }
    this.extents.push({ logical, physical, length });
  }

  get blocks(): number {
    let n = 0;
    for (const e of this.extents) n += e.length;
    return n;
  }
}

/** Tree blocks needed beyond the inode for `n` extents. */
export function extentTreeBlocks(n: number): number {
  let total = 0;
  while (n > ROOT_ENTRIES) {
    n = Math.ceil(n / BLOCK_ENTRIES);
    total += n;
  }
  return total;
}

function writeHeader(v: DataView, off: number, entries: number, max: number, depth: number): void {
  v.setUint16(off, EXTENT_MAGIC, true);
  v.setUint16(off + 2, entries, true);
  v.setUint16(off + 4, max, true);
  v.setUint16(off + 6, depth, true);
  v.setUint32(off + 8, 0, true);
}

/** An entry one level up: the first logical block it covers and where it points. */
interface Entry {
  logical: number;
  write(v: DataView, off: number): void;
}

export interface ExtentTree {
  iblock: Uint8Array;
  /** Blocks to write: the leaf and index nodes below the root. */
  nodes: { block: number; data: Uint8Array }[];
}

/** Builds the tree, taking node blocks from `allocBlock`. */
export function buildExtentTree(extents: readonly Extent[], allocBlock: () => number): ExtentTree {
  let entries: Entry[] = extents.map((e) => ({
    logical: e.logical,
    write(v, off) {
      v.setUint32(off, e.logical, true);
      v.setUint16(off + 4, e.length, true);
      v.setUint16(off + 6, Math.floor(e.physical / 2 ** 32), true);
      v.setUint32(off + 8, e.physical % 2 ** 32, true);
    },
  }));
  const nodes: { block: number; data: Uint8Array }[] = [];
  let depth = 0;
  while (entries.length > ROOT_ENTRIES) {
    const up: Entry[] = [];
    for (let i = 0; i < entries.length; i += BLOCK_ENTRIES) {
      const chunk = entries.slice(i, i + BLOCK_ENTRIES);
      const data = new Uint8Array(BLOCK_SIZE);
      const v = new DataView(data.buffer);
      writeHeader(v, 0, chunk.length, BLOCK_ENTRIES, depth);
      chunk.forEach((e, j) => e.write(v, 12 + 12 * j));
      const block = allocBlock();
      nodes.push({ block, data });
      up.push({
        logical: chunk[0]!.logical,
        write(v2, off) {
          v2.setUint32(off, chunk[0]!.logical, true);
          v2.setUint32(off + 4, block % 2 ** 32, true);
          v2.setUint16(off + 8, Math.floor(block / 2 ** 32), true);
          v2.setUint16(off + 10, 0, true);
        },
      });
    }
    entries = up;
    depth++;
  }
  const iblock = new Uint8Array(60);
  const v = new DataView(iblock.buffer);
  writeHeader(v, 0, entries.length, ROOT_ENTRIES, depth);
  entries.forEach((e, j) => e.write(v, 12 + 12 * j));
  return { iblock, nodes };
}
