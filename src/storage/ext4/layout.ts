/**
 * Where everything goes: block groups, the superblock backups sparse_super keeps, each
 * group's bitmaps and inode table. 4 KiB blocks, 32768 blocks per group (one bitmap block),
 * 32-byte group descriptors (no 64bit feature: fine below 16 TiB).
 */
import { VisorError } from '../../base/errors.js';

export const BLOCK_SIZE = 4096;
export const BLOCKS_PER_GROUP = 8 * BLOCK_SIZE;
export const INODE_SIZE = 256;
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE;
export const DESC_SIZE = 32;
/** First inode number not reserved by ext4 (lost+found takes it). */
export const FIRST_INO = 11;
export const ROOT_INO = 2;
export const JOURNAL_INO = 8;
/** Largest filesystem without the 64bit feature: 2^32 blocks. */
export const MAX_BLOCKS = 2 ** 32 - 1;

export interface GroupLayout {
  index: number;
  start: number;
  /** One past the group's last block. */
  end: number;
  hasSuper: boolean;
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  /** First block after the group's metadata. */
  firstData: number;
}

export interface Geometry {
  blocksCount: number;
  groupCount: number;
  inodesPerGroup: number;
  inodesCount: number;
  inodeTableBlocks: number;
  gdtBlocks: number;
  groups: GroupLayout[];
}

/** sparse_super: groups 0, 1 and powers of 3, 5 and 7 carry superblock and descriptor backups. */
export function groupHasSuper(g: number): boolean {
  if (g <= 1) return true;
  for (const base of [3, 5, 7]) {
    let p = base;
    while (p < g) p *= base;
    if (p === g) return true;
  }
  return false;
}

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/**
 * Lays out a filesystem of `blocksCount` blocks with at least `inodeCount` inodes. A last group
 * too small to hold its own metadata plus a little data is dropped (as mke2fs does).
 */
export function computeGeometry(blocksCount: number, inodeCount: number): Geometry {
  if (!Number.isSafeInteger(blocksCount) || blocksCount < 64) {
    throw new VisorError('InvalidArgument', `ext4: a filesystem needs at least 64 blocks of 4 KiB (asked for ${blocksCount})`);
  }
  if (blocksCount > MAX_BLOCKS) throw new VisorError('Unsupported', `ext4: filesystems above 16 TiB need the 64bit feature, which this writer does not produce`);
  for (;;) {
    const groupCount = Math.ceil(blocksCount / BLOCKS_PER_GROUP);
    const inodesPerGroup = Math.min(BLOCKS_PER_GROUP, Math.max(INODES_PER_BLOCK, roundUp(Math.ceil(inodeCount / groupCount), INODES_PER_BLOCK)));
    const inodeTableBlocks = inodesPerGroup / INODES_PER_BLOCK;
    const gdtBlocks = Math.ceil((groupCount * DESC_SIZE) / BLOCK_SIZE);
    const groups: GroupLayout[] = [];
    for (let g = 0; g < groupCount; g++) {
      const start = g * BLOCKS_PER_GROUP;
      const hasSuper = groupHasSuper(g);
      let b = start + (hasSuper ? 1 + gdtBlocks : 0);
      const blockBitmap = b++;
      const inodeBitmap = b++;
      const inodeTable = b;
      b += inodeTableBlocks;
      groups.push({ index: g, start, end: Math.min(start + BLOCKS_PER_GROUP, blocksCount), hasSuper, blockBitmap, inodeBitmap, inodeTable, firstData: b });
    }
    const last = groups[groupCount - 1]!;
    if (last.end - last.firstData < 64) {
      if (groupCount === 1) throw new VisorError('InvalidArgument', `ext4: ${blocksCount} blocks cannot hold ${inodeCount} inodes; give a larger size or fewer inodes`);
      blocksCount = last.start;
      continue;
    }
    return { blocksCount, groupCount, inodesPerGroup, inodesCount: inodesPerGroup * groupCount, inodeTableBlocks, gdtBlocks, groups };
  }
}

/** Blocks taken by group metadata (superblock copies, descriptors, bitmaps, inode tables). */
export function metadataBlocks(geo: Geometry): number {
  let n = 0;
  for (const g of geo.groups) n += g.firstData - g.start;
  return n;
}

/** Journal length in blocks for a filesystem of `blocks` blocks (mke2fs's default steps). */
export function defaultJournalBlocks(blocks: number): number {
  if (blocks < 32768) return 1024;
  if (blocks < 256 * 1024) return 4096;
  if (blocks < 512 * 1024) return 8192;
  return 16384;
}
