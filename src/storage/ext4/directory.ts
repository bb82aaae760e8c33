/**
 * Linear directories: blocks of variable-length entries (inode, rec_len, name_len,
 * file_type, name padded to 4 bytes). Entries never cross a block; the last entry of each
 * block stretches to the block's end. "." and ".." come first.
 */
import { BLOCK_SIZE } from './layout.js';

export const FT_REG = 1;
export const FT_DIR = 2;
export const FT_CHR = 3;
export const FT_BLK = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;

export interface DirEntry {
  name: Uint8Array;
  ino: number;
  type: number;
}

const DOT = new Uint8Array([0x2e]);
const DOTDOT = new Uint8Array([0x2e, 0x2e]);

export function entrySize(nameLength: number): number {
  return (8 + nameLength + 3) & ~3;
}

/**
 * Writes one entry at `off` of a directory block, its rec_len its own size (the caller
 * stretches a block's last entry to the block's end); returns the size.
 */
export function writeDirEntry(block: Uint8Array, view: DataView, off: number, e: DirEntry): number {
  const size = entrySize(e.name.length);
  view.setUint32(off, e.ino, true);
  view.setUint16(off + 4, size, true);
  block[off + 6] = e.name.length;
  block[off + 7] = e.type;
  block.set(e.name, off + 8);
  return size;
}

/** How many blocks a directory with entries of these name lengths takes (same packing as below). */
/** `usable`: bytes per block for entries (less than a block when a checksum tail ends it). */
export function directoryBlocks(nameLengths: Iterable<number>, minBlocks = 1, usable = BLOCK_SIZE): number {
  let blocks = 1;
  let used = entrySize(1) + entrySize(2);
  for (const n of nameLengths) {
    const size = entrySize(n);
    if (used + size > usable) {
      blocks++;
      used = 0;
    }
    used += size;
  }
  return Math.max(blocks, minBlocks);
}

/** Packs "." (self), ".." (parent) and the entries into directory blocks. */
export function packDirectory(self: number, parent: number, entries: readonly DirEntry[], minBlocks = 1, usable = BLOCK_SIZE): Uint8Array[] {
  const blocks: Uint8Array[] = [];
  let block = new Uint8Array(BLOCK_SIZE);
  let view = new DataView(block.buffer);
  let used = 0;
  let lastOff = -1;
  const put = (e: DirEntry): void => {
    const size = entrySize(e.name.length);
    if (used + size > usable) {
      view.setUint16(lastOff + 4, usable - lastOff, true);
      blocks.push(block);
      block = new Uint8Array(BLOCK_SIZE);
      view = new DataView(block.buffer);
      used = 0;
    }
    lastOff = used;
    used += writeDirEntry(block, view, used, e);
  };
  put({ name: DOT, ino: self, type: FT_DIR });
  put({ name: DOTDOT, ino: parent, type: FT_DIR });
  for (const e of entries) put(e);
  view.setUint16(lastOff + 4, usable - lastOff, true);
  blocks.push(block);
  while (blocks.length < minBlocks) {
    // An empty block: one unused entry spanning it.
    const empty = new Uint8Array(BLOCK_SIZE);
    new DataView(empty.buffer).setUint16(4, usable, true);
    blocks.push(empty);
  }
  return blocks;
}
