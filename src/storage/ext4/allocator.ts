/**
 * Block and inode bitmaps, and the block allocator. Allocation is strictly sequential (the
 * next free block after the last one handed out), so consecutive files land in consecutive
 * blocks and their writes merge into large sequential writes.
 */
import { VisorError } from '../../base/errors.js';
import { BLOCK_SIZE, type Geometry } from './layout.js';

export class BlockAllocator {
  /** One bitmap block per group; bit set = block in use. */
  readonly bitmaps: Uint8Array[];
  private readonly used: number[];
  private cursor = 0;

  constructor(private readonly geo: Geometry) {
    this.bitmaps = geo.groups.map(() => new Uint8Array(BLOCK_SIZE));
    this.used = geo.groups.map(() => 0);
    for (const g of geo.groups) {
      for (let b = g.start; b < g.firstData; b++) this.mark(b);
      // Bits past the end of the filesystem (in a short last group) are set, as e2fsck expects.
      const bm = this.bitmaps[g.index]!;
      for (let i = g.end - g.start; i < 8 * BLOCK_SIZE; i++) bm[i >> 3]! |= 1 << (i & 7);
    }
  }

  private mark(block: number): void {
    const g = Math.floor(block / (8 * BLOCK_SIZE));
    const i = block - g * 8 * BLOCK_SIZE;
    this.bitmaps[g]![i >> 3]! |= 1 << (i & 7);
    this.used[g]!++;
  }

  private isUsed(block: number): boolean {
    const g = Math.floor(block / (8 * BLOCK_SIZE));
    const i = block - g * 8 * BLOCK_SIZE;
    return (this.bitmaps[g]![i >> 3]! & (1 << (i & 7))) !== 0;
  }

  /** The next free block, marked used. */
  alloc(): number {
    while (this.cursor < this.geo.blocksCount && this.isUsed(this.cursor)) this.cursor++;
    if (this.cursor >= this.geo.blocksCount) {
      throw new VisorError('InvalidArgument', `ext4: the filesystem (${this.geo.blocksCount} blocks of 4 KiB) is full; give a larger size (planExt4Size says how much the tree needs)`);
    }
    const b = this.cursor++;
    this.mark(b);
    return b;
  }

  freeInGroup(g: number): number {
    const grp = this.geo.groups[g]!;
    return grp.end - grp.start - this.used[g]!;
  }

  get freeBlocks(): number {
    let n = 0;
    for (let g = 0; g < this.geo.groupCount; g++) n += this.freeInGroup(g);
    return n;
  }
}

/** Inode bitmaps for inodes 1..usedInodes in use (inode numbers are handed out densely). */
export function inodeBitmaps(geo: Geometry, usedInodes: number): Uint8Array[] {
  return geo.groups.map((g) => {
    const bm = new Uint8Array(BLOCK_SIZE);
    const first = g.index * geo.inodesPerGroup + 1;
    const inUse = Math.max(0, Math.min(geo.inodesPerGroup, usedInodes - first + 1));
    for (let i = 0; i < inUse; i++) bm[i >> 3]! |= 1 << (i & 7);
    // Bits past inodes_per_group are padding and set.
    for (let i = geo.inodesPerGroup; i < 8 * BLOCK_SIZE; i++) bm[i >> 3]! |= 1 << (i & 7);
    return bm;
  });
}
