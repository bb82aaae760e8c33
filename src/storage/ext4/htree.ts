/**
 * Hashed directory indexes (dir_index): block 0 of the directory holds "." and "..", then the
 * dx_root (hash version, limit, count and sorted (hash, block) pairs); the leaves are
 * ordinary directory blocks whose entries are grouped by hash, so the kernel finds a name by
 * reading two blocks instead of scanning them all. One index level (up to ~500 leaves, tens
 * of thousands of names) is built; bigger directories stay linear.
 * The hash is ext4's half-MD4 over the name, signed-char variant (the superblock says so).
 */
import { BLOCK_SIZE } from './layout.js';
import { entrySize, FT_DIR, writeDirEntry, type DirEntry } from './directory.js';
import { crc32c } from './crc32c.js';

export const EXT4_INDEX_FL = 0x1000;
const DX_HASH_HALF_MD4 = 1;
const ROOT_HEADER = 32; // ".", "..", dx_root_info
const DX_TAIL = 8;

const DEFAULT_SEED = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

function rol(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

/** One half-MD4 compression of 8 input words into the 4-word state (three rounds). */
function halfMd4(buf: number[], w: number[]): void {
  let [a, b, c, d] = buf as [number, number, number, number];
  const F = (x: number, y: number, z: number): number => z ^ (x & (y ^ z));
  const G = (x: number, y: number, z: number): number => ((x & y) + ((x ^ y) & z)) >>> 0;
  const H = (x: number, y: number, z: number): number => x ^ y ^ z;
  const K2 = 0x5a827999;
  const K3 = 0x6ed9eba1;
  const rounds: [typeof F, number, number[], number[]][] = [
    [F, 0, [0, 1, 2, 3, 4, 5, 6, 7], [3, 7, 11, 19]],
    [G, K2, [1, 3, 5, 7, 0, 2, 4, 6], [3, 5, 9, 13]],
    [H, K3, [3, 7, 2, 6, 1, 5, 0, 4], [3, 9, 11, 15]],
  ];
  for (const [f, k, order, shifts] of rounds) {
    for (let i = 0; i < 8; i++) {
      const x = (w[order[i]!]! + k) >>> 0;
      const s = shifts[i % 4]!;
      // The state rotates: a, d, c, b take turns.
      switch (i % 4) {
        case 0: a = rol((a + f(b, c, d) + x) >>> 0, s); break;
        case 1: d = rol((d + f(a, b, c) + x) >>> 0, s); break;
        case 2: c = rol((c + f(d, a, b) + x) >>> 0, s); break;
        case 3: b = rol((b + f(c, d, a) + x) >>> 0, s); break;
      }
    }
  }
  buf[0] = (buf[0]! + a) >>> 0;
  buf[1] = (buf[1]! + b) >>> 0;
  buf[2] = (buf[2]! + c) >>> 0;
  buf[3] = (buf[3]! + d) >>> 0;
}

/** Up to 32 name bytes as 8 words, padded with the remaining length (signed chars). */
function nameWords(name: Uint8Array, start: number): number[] {
  const len = name.length - start;
  let pad = (len | (len << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  const words: number[] = [];
  let val = pad;
  const n = Math.min(len, 32);
  for (let i = 0; i < n; i++) {
    const byte = name[start + i]!;
    const signed = byte >= 128 ? byte - 256 : byte;
    val = (signed + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      words.push(val);
      val = pad;
    }
  }
  if (words.length < 8) words.push(val);
  while (words.length < 8) words.push(pad);
  return words;
}

/** The directory hash of a name (low bit clear, as stored in the index). */
export function dxHash(name: Uint8Array, seed: readonly number[]): number {
  const buf = seed.some((s) => s !== 0) ? [...seed] : [...DEFAULT_SEED];
  for (let p = 0; p < name.length; p += 32) halfMd4(buf, nameWords(name, p));
  let h = buf[1]! & ~1;
  if (h >>> 0 === 0xfffffffe) h = 0xfffffffc; // the end-of-directory marker is reserved
  return h >>> 0;
}

/** Dx entries the root block holds: 8 bytes each after the header, less one for the checksum tail. */
export function dxRootLimit(csum: boolean): number {
  return (BLOCK_SIZE - ROOT_HEADER - (csum ? DX_TAIL : 0)) / 8;
}

export interface Htree {
  /** Block 0 (the root) then the leaves. */
  blocks: Uint8Array[];
  /** Seals block 0's checksum (needs the inode's checksum seed); leaves are sealed as directory blocks. */
  sealRoot(iseed: number): void;
}

/**
 * Builds an indexed directory, or returns undefined when one block suffices or the leaves
 * would not fit one index level.
 */
export function buildHtree(self: number, parent: number, entries: readonly DirEntry[], seed: readonly number[], usable: number, csum: boolean): Htree | undefined {
  const hashed = entries.map((e) => ({ e, h: dxHash(e.name, seed) })).sort((x, y) => x.h - y.h);
  // Leaves: fill blocks in hash order.
  const leaves: { start: number; entries: DirEntry[] }[] = [];
  let used = usable;
  for (let i = 0; i < hashed.length; i++) {
    const size = entrySize(hashed[i]!.e.name.length);
    if (used + size > usable) {
      leaves.push({ start: i, entries: [] });
      used = 0;
    }
    leaves[leaves.length - 1]!.entries.push(hashed[i]!.e);
    used += size;
  }
  if (leaves.length < 1 || leaves.length > dxRootLimit(csum)) return undefined;
  const root = new Uint8Array(BLOCK_SIZE);
  const v = new DataView(root.buffer);
  v.setUint32(0, self, true);
  v.setUint16(4, 12, true);
  root[6] = 1;
  root[7] = FT_DIR;
  root[8] = 0x2e;
  v.setUint32(12, parent, true);
  v.setUint16(16, BLOCK_SIZE - 12, true);
  root[18] = 2;
  root[19] = FT_DIR;
  root[20] = 0x2e;
  root[21] = 0x2e;
  root[24 + 4] = DX_HASH_HALF_MD4;
  root[24 + 5] = 8; // info_length
  root[24 + 6] = 0; // indirect levels
  const limit = dxRootLimit(csum);
  v.setUint16(32, limit, true);
  v.setUint16(34, leaves.length, true);
  v.setUint32(36, 1, true); // the first leaf (hashes from 0) is directory block 1
  for (let i = 1; i < leaves.length; i++) {
    const first = hashed[leaves[i]!.start]!.h;
    const prevLast = hashed[leaves[i]!.start - 1]!.h;
    // A hash split across two leaves: the low bit says "continued from the previous block".
    v.setUint32(32 + 8 * i, (first | (first === prevLast ? 1 : 0)) >>> 0, true);
    v.setUint32(32 + 8 * i + 4, i + 1, true);
  }
  const leafBlocks = leaves.map((l) => packLeaf(l.entries, usable));
  return {
    blocks: [root, ...leafBlocks],
    sealRoot(iseed: number): void {
      if (!csum) return;
      const tail = 32 + 8 * limit;
      // Over the header and the entries in use, then the tail with its checksum field zero.
      v.setUint32(tail, 0, true); // dt_reserved
      v.setUint32(tail + 4, 0, true);
      let c = crc32c(iseed, root.subarray(0, 32 + 8 * leaves.length));
      c = crc32c(c, root.subarray(tail, tail + 8));
      v.setUint32(tail + 4, c, true);
    },
  };
}

/** A leaf: entries packed as a directory block, without "." and "..". */
function packLeaf(entries: DirEntry[], usable: number): Uint8Array {
  const block = new Uint8Array(BLOCK_SIZE);
  const v = new DataView(block.buffer);
  let off = 0;
  let last = 0;
  for (const e of entries) {
    last = off;
    off += writeDirEntry(block, v, off, e);
  }
  v.setUint16(last + 4, usable - last, true);
  return block;
}
