/**
 * The superblock (1024 bytes at byte 1024 of the filesystem, copies at the start of the
 * backup groups) and the group descriptor table that follows it.
 */
import { BLOCKS_PER_GROUP, BLOCK_SIZE, DESC_SIZE, FIRST_INO, INODE_SIZE, JOURNAL_INO, type Geometry } from './layout.js';
import { EXTRA_ISIZE } from './inode.js';

export const EXT4_MAGIC = 0xef53;

export const COMPAT_HAS_JOURNAL = 0x4;
export const COMPAT_EXT_ATTR = 0x8;
export const COMPAT_DIR_INDEX = 0x20;
export const INCOMPAT_FILETYPE = 0x2;
export const INCOMPAT_EXTENTS = 0x40;
export const RO_COMPAT_SPARSE_SUPER = 0x1;
export const RO_COMPAT_LARGE_FILE = 0x2;
export const RO_COMPAT_DIR_NLINK = 0x20;
export const RO_COMPAT_EXTRA_ISIZE = 0x40;

export interface GroupCounts {
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
}

export interface SuperblockFields {
  geo: Geometry;
  freeBlocks: number;
  freeInodes: number;
  uuid: Uint8Array;
  hashSeed: Uint8Array;
  label: Uint8Array;
  timestamp: number;
  /** The journal inode's i_block and size, backed up in s_jnl_blocks. */
  journalIblock: Uint8Array;
  journalSize: number;
}

export function encodeSuperblock(f: SuperblockFields, groupNr: number): Uint8Array {
  const b = new Uint8Array(1024);
  const v = new DataView(b.buffer);
  const { geo } = f;
  v.setUint32(0, geo.inodesCount, true);
  v.setUint32(4, geo.blocksCount, true);
  v.setUint32(8, 0, true); // reserved blocks: none (an image's root user runs everything)
  v.setUint32(12, f.freeBlocks, true);
  v.setUint32(16, f.freeInodes, true);
  v.setUint32(20, 0, true); // s_first_data_block: 0 with blocks larger than 1 KiB
  v.setUint32(24, Math.log2(BLOCK_SIZE) - 10, true);
  v.setUint32(28, Math.log2(BLOCK_SIZE) - 10, true); // cluster size = block size (no bigalloc)
  v.setUint32(32, BLOCKS_PER_GROUP, true);
  v.setUint32(36, BLOCKS_PER_GROUP, true);
  v.setUint32(40, geo.inodesPerGroup, true);
  v.setUint32(44, 0, true); // s_mtime: never mounted
  v.setUint32(48, f.timestamp, true); // s_wtime
  v.setUint16(52, 0, true); // s_mnt_count
  v.setUint16(54, 0xffff, true); // s_max_mnt_count = -1: no mount-count fsck
  v.setUint16(56, EXT4_MAGIC, true);
  v.setUint16(58, 1, true); // s_state: cleanly unmounted
  v.setUint16(60, 1, true); // s_errors: continue
  v.setUint32(64, f.timestamp, true); // s_lastcheck
  v.setUint32(72, 0, true); // s_creator_os: Linux
  v.setUint32(76, 1, true); // s_rev_level: dynamic inode sizes
  v.setUint32(84, FIRST_INO, true);
  v.setUint16(88, INODE_SIZE, true);
  v.setUint16(90, groupNr, true);
  v.setUint32(92, COMPAT_HAS_JOURNAL | COMPAT_EXT_ATTR | COMPAT_DIR_INDEX, true);
  v.setUint32(96, INCOMPAT_FILETYPE | INCOMPAT_EXTENTS, true);
  v.setUint32(100, RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_DIR_NLINK | RO_COMPAT_EXTRA_ISIZE, true);
  b.set(f.uuid.subarray(0, 16), 104);
  b.set(f.label.subarray(0, 16), 120);
  v.setUint32(224, JOURNAL_INO, true);
  for (let i = 0; i < 4; i++) v.setUint32(236 + 4 * i, new DataView(f.hashSeed.buffer, f.hashSeed.byteOffset, 16).getUint32(4 * i, true), true);
  b[252] = 1; // s_def_hash_version: half_md4 (for directories the kernel indexes later)
  b[253] = 1; // s_jnl_backup_type: s_jnl_blocks holds a copy of the journal inode's block map
  v.setUint16(254, 0, true); // s_desc_size: 32-byte descriptors
  v.setUint32(256, 0x0004 | 0x0008, true); // default mount options: user_xattr, acl
  v.setUint32(264, f.timestamp, true); // s_mkfs_time
  b.set(f.journalIblock.subarray(0, 60), 268);
  v.setUint32(268 + 60, Math.floor(f.journalSize / 2 ** 32), true);
  v.setUint32(268 + 64, f.journalSize % 2 ** 32, true);
  v.setUint16(348, EXTRA_ISIZE, true); // s_min_extra_isize
  v.setUint16(350, EXTRA_ISIZE, true); // s_want_extra_isize
  v.setUint32(352, 0x1, true); // s_flags: signed directory hash (what x86 mke2fs writes)
  return b;
}

export function encodeGroupDescriptors(geo: Geometry, counts: readonly GroupCounts[]): Uint8Array {
  const b = new Uint8Array(geo.gdtBlocks * BLOCK_SIZE);
  const v = new DataView(b.buffer);
  geo.groups.forEach((g, i) => {
    const o = i * DESC_SIZE;
    const c = counts[i]!;
    v.setUint32(o, g.blockBitmap, true);
    v.setUint32(o + 4, g.inodeBitmap, true);
    v.setUint32(o + 8, g.inodeTable, true);
    v.setUint16(o + 12, c.freeBlocks, true);
    v.setUint16(o + 14, c.freeInodes, true);
    v.setUint16(o + 16, c.usedDirs, true);
  });
  return b;
}
