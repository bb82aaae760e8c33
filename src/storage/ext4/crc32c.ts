/**
 * CRC32C (Castagnoli) as ext4's metadata_csum uses it: the raw update, no inversion at the
 * start or the end (callers seed with 0xffffffff, as the kernel's ext4_chksum does).
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

export function crc32cU32(crc: number, value: number): number {
  return crc32c(crc, new Uint8Array([value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24]));
}

/**
 * metadata_csum: every metadata structure carries a CRC32C seeded from the filesystem UUID
 * (and, for what belongs to an inode, from the inode number and generation).
 */
export const DIR_TAIL_SIZE = 12;
export const EXTENT_TAIL_OFFSET = 12 + 12 * 340;

export function fsSeed(uuid: Uint8Array): number {
  return crc32c(0xffffffff, uuid.subarray(0, 16));
}

export function inodeSeed(seed: number, ino: number, generation = 0): number {
  return crc32cU32(crc32cU32(seed, ino), generation);
}

/** Fills i_checksum_lo/hi of the 256-byte inode at `off`. */
export function sealInode(buf: Uint8Array, off: number, ino: number, seed: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset + off, 256);
  v.setUint16(124, 0, true);
  v.setUint16(130, 0, true);
  const c = crc32c(inodeSeed(seed, ino, v.getUint32(100, true)), buf.subarray(off, off + 256));
  v.setUint16(124, c & 0xffff, true);
  v.setUint16(130, c >>> 16, true);
}

/** The 4-byte tail after an extent block's 340 entries. */
export function sealExtentBlock(block: Uint8Array, iseed: number): void {
  new DataView(block.buffer, block.byteOffset).setUint32(EXTENT_TAIL_OFFSET, crc32c(iseed, block.subarray(0, EXTENT_TAIL_OFFSET)), true);
}

/** The 12-byte fake entry ending a directory block (inode 0, rec_len 12, type 0xde, checksum). */
export function sealDirBlock(block: Uint8Array, iseed: number): void {
  const off = block.length - DIR_TAIL_SIZE;
  const v = new DataView(block.buffer, block.byteOffset);
  v.setUint32(off, 0, true);
  v.setUint16(off + 4, DIR_TAIL_SIZE, true);
  block[off + 6] = 0;
  block[off + 7] = 0xde;
  v.setUint32(off + 8, crc32c(iseed, block.subarray(0, off)), true);
}

export function sealXattrBlock(block: Uint8Array, blockNr: number, seed: number): void {
  const v = new DataView(block.buffer, block.byteOffset);
  v.setUint32(16, 0, true);
  let c = crc32cU32(seed, blockNr % 2 ** 32);
  c = crc32cU32(c, Math.floor(blockNr / 2 ** 32));
  v.setUint32(16, crc32c(c, block), true);
}
