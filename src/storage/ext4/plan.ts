/**
 * Sizing: how many blocks a tree needs (an upper bound: all-zero blocks become holes and
 * take nothing), and the default inode count, so callers can create the image first.
 */
import { VisorError } from '../../base/errors.js';
import { BLOCKS_PER_GROUP, BLOCK_SIZE, computeGeometry, defaultJournalBlocks, metadataBlocks } from './layout.js';
import { directoryBlocks } from './directory.js';
import { extentTreeBlocks } from './extents.js';
import { xattrsNeedBlock } from './xattr.js';
import { scanTree, type ScannedTree } from './scan.js';
import type { Ext4Node, Ext4Options } from './tree.js';

/** mke2fs's default: one inode per 16 KiB of filesystem. */
const BYTES_PER_INODE = 16384;
const MIN_SPARE_INODES = 256;

/** Blocks for the tree's contents (data, directories, extent trees, xattr and symlink blocks). */
export function contentBlocks(scan: ScannedTree): number {
  let total = 0;
  for (const r of scan.records) {
    if (!r) continue;
    const n = r.node;
    let data = 0;
    if (n.kind === 'file') data = Math.ceil(n.size / BLOCK_SIZE);
    else if (n.kind === 'dir') data = directoryBlocks(r.entries!.map((e) => e.name.length), r.minBlocks ?? 1);
    else if (n.kind === 'symlink' && new TextEncoder().encode(n.target).length >= 60) data = 1;
    // Sequential allocation breaks a run at most at group metadata and at the extent length limit.
    total += data + extentTreeBlocks(2 * Math.ceil(data / BLOCKS_PER_GROUP) + 1);
    if (xattrsNeedBlock(n.xattrs)) total++;
  }
  return total;
}

export function defaultInodeCount(blocks: number, usedInodes: number): number {
  return Math.max(usedInodes + MIN_SPARE_INODES, Math.floor((blocks * BLOCK_SIZE) / BYTES_PER_INODE));
}

/** The filesystem size in blocks for a scanned tree under the options. */
export function planBlocks(scan: ScannedTree, opts: Ext4Options): number {
  const content = contentBlocks(scan);
  const freeBytes = opts.freeBytes ?? 64 * 2 ** 20 + Math.ceil((content * BLOCK_SIZE) / 10);
  if (!Number.isSafeInteger(freeBytes) || freeBytes < 0) throw new VisorError('InvalidArgument', `ext4: freeBytes must be a non-negative integer`);
  const free = Math.ceil(freeBytes / BLOCK_SIZE);
  let blocks = content + free + 1024;
  for (let i = 0; i < 8; i++) {
    const journal = opts.journalBytes !== undefined ? Math.ceil(opts.journalBytes / BLOCK_SIZE) : defaultJournalBlocks(blocks);
    const inodes = opts.inodeCount ?? defaultInodeCount(blocks, scan.maxIno);
    const geo = computeGeometry(Math.max(blocks, 64), inodes);
    // Slack: one block per group for runs broken where the estimate above did not expect.
    const next = content + free + journal + extentTreeBlocks(journal) + metadataBlocks(geo) + geo.groupCount;
    if (next <= blocks) break;
    blocks = next;
  }
  return blocks;
}

/** Bytes a filesystem for this tree needs under `opts` (create the target at least this big). */
export function planExt4Size(root: Ext4Node, opts: Ext4Options = {}): number {
  if (opts.sizeBytes !== undefined) return opts.sizeBytes;
  return planBlocks(scanTree(root, opts.timestamp ?? 0), opts) * BLOCK_SIZE;
}

