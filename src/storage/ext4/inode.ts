/**
 * The 256-byte on-disk inode: the 128-byte base, 32 bytes of extra fields (nanosecond/epoch
 * timestamps, creation time) and 96 bytes left for in-inode extended attributes.
 */
import { INODE_SIZE } from './layout.js';

export const EXTRA_ISIZE = 32;
/** Where in-inode xattrs start (the 4-byte magic, then entries). */
export const INLINE_XATTR_OFFSET = 128 + EXTRA_ISIZE;
export const INLINE_XATTR_SPACE = INODE_SIZE - INLINE_XATTR_OFFSET;

export const S_IFIFO = 0x1000;
export const S_IFCHR = 0x2000;
export const S_IFDIR = 0x4000;
export const S_IFBLK = 0x6000;
export const S_IFREG = 0x8000;
export const S_IFLNK = 0xa000;
export const S_IFSOCK = 0xc000;

export const EXT4_EXTENTS_FL = 0x80000;

export interface InodeFields {
  /** Type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds; used for atime, ctime, mtime and crtime alike. */
  time: number;
  links: number;
  /** Blocks in use (data, extent tree, xattr block), in filesystem blocks. */
  blocks: number;
  flags: number;
  /** The 60-byte i_block area: extent root, inline symlink target or device number. */
  iblock: Uint8Array;
  /** Block holding this inode's extended attributes, or 0. */
  xattrBlock: number;
  /** The 96-byte in-inode xattr area (magic included), or undefined. */
  inlineXattrs?: Uint8Array | undefined;
}

/** Splits seconds into the 32-bit field and the extra field's epoch bits (nanoseconds are 0). */
function encodeTime(seconds: number): [number, number] {
  const lo = ((seconds % 2 ** 32) + 2 ** 32) % 2 ** 32;
  const signedLo = lo >= 2 ** 31 ? lo - 2 ** 32 : lo;
  const epoch = (seconds - signedLo) / 2 ** 32;
  return [lo, epoch & 3];
}

export function encodeInode(out: Uint8Array, off: number, f: InodeFields, blockSize: number): void {
  const v = new DataView(out.buffer, out.byteOffset + off, INODE_SIZE);
  v.setUint16(0, f.mode, true);
  v.setUint16(2, f.uid & 0xffff, true);
  v.setUint32(4, f.size % 2 ** 32, true);
  const [t, epoch] = encodeTime(f.time);
  v.setUint32(8, t, true); // atime
  v.setUint32(12, t, true); // ctime
  v.setUint32(16, t, true); // mtime
  v.setUint16(24, f.gid & 0xffff, true);
  v.setUint16(26, f.links, true);
  v.setUint32(28, f.blocks * (blockSize / 512), true); // i_blocks in 512-byte sectors (no huge_file)
  v.setUint32(32, f.flags, true);
  out.set(f.iblock.subarray(0, 60), off + 40);
  v.setUint32(104, f.xattrBlock, true);
  v.setUint32(108, Math.floor(f.size / 2 ** 32), true);
  v.setUint16(120, Math.floor(f.uid / 0x10000), true);
  v.setUint16(122, Math.floor(f.gid / 0x10000), true);
  v.setUint16(128, EXTRA_ISIZE, true);
  v.setUint32(132, epoch, true); // ctime_extra
  v.setUint32(136, epoch, true); // mtime_extra
  v.setUint32(140, epoch, true); // atime_extra
  v.setUint32(144, t, true); // crtime
  v.setUint32(148, epoch, true);
  if (f.inlineXattrs) out.set(f.inlineXattrs, off + INLINE_XATTR_OFFSET);
}

/** i_block for a device node: the old 16-bit encoding when it fits, the new 32-bit one otherwise. */
export function encodeDeviceNumber(major: number, minor: number): Uint8Array {
  const b = new Uint8Array(60);
  const v = new DataView(b.buffer);
  if (major < 256 && minor < 256) v.setUint32(0, (major << 8) | minor, true);
  else v.setUint32(4, ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, true);
  return b;
}
