/**
 * writeExt4: lays a tree out as an ext4 filesystem on a BlockDevice. One pass writes the
 * journal superblock, then every inode's data, directory blocks, extent-tree and xattr
 * blocks in inode order (blocks allocated sequentially, writes merged), then the inode
 * tables, bitmaps, group descriptors and superblocks. Blocks that stay free are never
 * written, so a fresh qcow2 target keeps them unallocated; the target must read as zeros
 * where nothing is written (a freshly created image does).
 */
import { VisorError } from '../../base/errors.js';
import type { BlockDevice } from '../block-device.js';
import { BlockAllocator, inodeBitmaps } from './allocator.js';
import { packDirectory } from './directory.js';
import { ExtentList, buildExtentTree } from './extents.js';
import {
  EXT4_EXTENTS_FL,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
  encodeDeviceNumber,
  encodeInode,
  type InodeFields,
} from './inode.js';
import { JBD2_MIN_BLOCKS, encodeJournalSuperblock } from './journal.js';
import { BLOCK_SIZE, INODE_SIZE, JOURNAL_INO, computeGeometry, defaultJournalBlocks, type Geometry } from './layout.js';
import { defaultInodeCount, dirUsableBytes, planBlocks } from './plan.js';
import { buildHtree, EXT4_INDEX_FL } from './htree.js';
import { fsSeed, inodeSeed, sealDirBlock, sealExtentBlock, sealInode, sealXattrBlock } from './crc32c.js';
import { scanTree, type InodeRecord } from './scan.js';
import { encodeGroupDescriptors, encodeSuperblock, type GroupCounts, type SuperblockFields } from './superblock.js';
import type { Ext4Node, Ext4Options, Ext4Summary } from './tree.js';
import { encodeXattrs } from './xattr.js';

/** File data is read in pieces of this size. */
const READ_CHUNK = 1 << 20;
/** Writes to the target are merged up to this size. */
const WRITE_BATCH = 4 << 20;

/** Merges writes to consecutive blocks into large sequential writes. */
class BlockWriter {
  private readonly buf = new Uint8Array(WRITE_BATCH);
  private start = -1;
  private blocks = 0;

  constructor(private readonly dev: BlockDevice) {}

  /** Writes `data` (zero-padded to whole blocks) at `block`. */
  async put(block: number, data: Uint8Array): Promise<void> {
    const nBlocks = Math.ceil(data.length / BLOCK_SIZE);
    if (this.start < 0 || block !== this.start + this.blocks || (this.blocks + nBlocks) * BLOCK_SIZE > WRITE_BATCH) {
      await this.flush();
      if (nBlocks * BLOCK_SIZE > WRITE_BATCH) {
        const padded = data.length % BLOCK_SIZE === 0 ? data : copyPadded(data, nBlocks * BLOCK_SIZE);
        await this.dev.write(block * BLOCK_SIZE, padded);
        return;
      }
      this.start = block;
    }
    const off = this.blocks * BLOCK_SIZE;
    this.buf.set(data, off);
    this.buf.fill(0, off + data.length, off + nBlocks * BLOCK_SIZE);
    this.blocks += nBlocks;
  }

  async flush(): Promise<void> {
    if (this.blocks > 0) await this.dev.write(this.start * BLOCK_SIZE, this.buf.subarray(0, this.blocks * BLOCK_SIZE));
    this.start = -1;
    this.blocks = 0;
  }
}

function copyPadded(data: Uint8Array, length: number): Uint8Array {
  const b = new Uint8Array(length);
  b.set(data);
  return b;
}

function isZero(b: Uint8Array): boolean {
  if (b.byteOffset % 4 === 0 && b.length % 4 === 0) {
    const w = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
    return true;
  }
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** A deterministic 16-byte identifier from a few numbers (splitmix64-style mixing), as a v4 UUID. */
function derivedUuid(...seed: number[]): Uint8Array {
  let x = 0x9e3779b97f4a7c15n;
  for (const s of seed) x = (x ^ BigInt(Math.floor(s))) * 0xbf58476d1ce4e5b9n & 0xffffffffffffffffn;
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  for (let i = 0; i < 2; i++) {
    x = (x + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    let z = x;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
    v.setBigUint64(8 * i, z ^ (z >> 31n));
  }
  out[6] = (out[6]! & 0x0f) | 0x40;
  out[8] = (out[8]! & 0x3f) | 0x80;
  return out;
}

function check16(name: string, b: Uint8Array | undefined): void {
  if (b !== undefined && b.length !== 16) throw new VisorError('InvalidArgument', `ext4: ${name} must be 16 bytes`);
}

export async function writeExt4(root: Ext4Node, target: BlockDevice, opts: Ext4Options = {}): Promise<Ext4Summary> {
  if (opts.blockSize !== undefined && opts.blockSize !== BLOCK_SIZE) {
    throw new VisorError('Unsupported', `ext4: block size ${opts.blockSize} is not supported; this writer makes 4096-byte blocks`);
  }
  check16('uuid', opts.uuid);
  check16('hashSeed', opts.hashSeed);
  const label = new TextEncoder().encode(opts.label ?? '');
  if (label.length > 16) throw new VisorError('InvalidArgument', `ext4: label '${opts.label}' is longer than 16 bytes`);
  const timestamp = opts.timestamp ?? 0;
  if (!Number.isInteger(timestamp) || timestamp < 0 || timestamp >= 2 ** 32) throw new VisorError('InvalidArgument', 'ext4: timestamp must be seconds from 1970 to 2106');
  if (target.readOnly) throw new VisorError('InvalidArgument', 'ext4: the target device is read-only');

  const scan = scanTree(root, timestamp);
  let blocksCount: number;
  if (opts.sizeBytes !== undefined) {
    if (!Number.isSafeInteger(opts.sizeBytes) || opts.sizeBytes <= 0) throw new VisorError('InvalidArgument', `ext4: bad sizeBytes ${opts.sizeBytes}`);
    blocksCount = Math.floor(opts.sizeBytes / BLOCK_SIZE);
  } else {
    blocksCount = planBlocks(scan, opts);
  }
  if (blocksCount * BLOCK_SIZE > target.size) {
    throw new VisorError('InvalidArgument', `ext4: the filesystem needs ${blocksCount * BLOCK_SIZE} bytes but the target holds ${target.size}; create it with planExt4Size()'s size`);
  }
  const geo = computeGeometry(blocksCount, opts.inodeCount ?? defaultInodeCount(blocksCount, scan.maxIno));
  if (scan.maxIno > geo.inodesCount) {
    throw new VisorError('InvalidArgument', `ext4: the tree needs ${scan.maxIno} inodes but the filesystem has ${geo.inodesCount}; raise inodeCount`);
  }
  const uuid = opts.uuid ?? derivedUuid(geo.blocksCount, scan.maxIno, timestamp, label.length);
  const hashSeed = opts.hashSeed ?? derivedUuid(...uuid);

  const alloc = new BlockAllocator(geo);
  const out = new BlockWriter(target);
  const itable = new Uint8Array(scan.maxIno * INODE_SIZE);
  const usedDirs = geo.groups.map(() => 0);
  const csum = opts.metadataCsum ?? true;
  const hashSeedWords = [0, 1, 2, 3].map((i) => new DataView(hashSeed.buffer, hashSeed.byteOffset, 16).getUint32(4 * i, true));
  const ctx: WriteContext = { alloc, out, csum, seed: fsSeed(uuid), dirUsable: dirUsableBytes(opts), htree: opts.htree ?? true, hashSeed: hashSeedWords };
  const putInode = (ino: number, f: InodeFields): void => {
    encodeInode(itable, (ino - 1) * INODE_SIZE, f, BLOCK_SIZE);
    if (csum) sealInode(itable, (ino - 1) * INODE_SIZE, ino, ctx.seed);
  };

  // The journal: contiguous blocks, only its superblock written.
  const journalBlocks = opts.journalBytes !== undefined ? Math.ceil(opts.journalBytes / BLOCK_SIZE) : defaultJournalBlocks(geo.blocksCount);
  if (journalBlocks < JBD2_MIN_BLOCKS) throw new VisorError('InvalidArgument', `ext4: the journal must be at least ${JBD2_MIN_BLOCKS} blocks (4 MiB)`);
  if (journalBlocks > alloc.freeBlocks / 2) throw new VisorError('InvalidArgument', `ext4: a ${journalBlocks}-block journal does not fit in ${geo.blocksCount} blocks; give a larger size`);
  const jext = new ExtentList();
  for (let i = 0; i < journalBlocks; i++) jext.add(i, alloc.alloc());
  const jtree = buildExtentTree(jext.extents, () => alloc.alloc());
  await out.put(jext.extents[0]!.physical, encodeJournalSuperblock(BLOCK_SIZE, journalBlocks, uuid));
  for (const n of jtree.nodes) {
    if (csum) sealExtentBlock(n.data, inodeSeed(ctx.seed, JOURNAL_INO));
    await out.put(n.block, n.data);
  }
  putInode(JOURNAL_INO, {
    mode: S_IFREG | 0o600, uid: 0, gid: 0, size: journalBlocks * BLOCK_SIZE, time: timestamp, links: 1,
    blocks: journalBlocks + jtree.nodes.length, flags: EXT4_EXTENTS_FL, iblock: jtree.iblock, xattrBlock: 0,
  });

  let dataBytes = 0;
  let totalBytes = 0;
  for (const rec of scan.records) if (rec?.node.kind === 'file') totalBytes += rec.node.size;
  for (const rec of scan.records) {
    if (!rec) continue;
    const r = await writeInode(rec, ctx);
    dataBytes += r.dataBytes;
    if (r.dataBytes > 0) opts.onProgress?.(dataBytes, totalBytes);
    if (rec.node.kind === 'dir') usedDirs[Math.floor((rec.ino - 1) / geo.inodesPerGroup)]!++;
    putInode(rec.ino, r.fields);
  }
  await out.flush();

  await writeMetadata(geo, out, alloc, itable, scan.maxIno, usedDirs, {
    uuid, hashSeed, label, timestamp, journalIblock: jtree.iblock, journalSize: journalBlocks * BLOCK_SIZE, csum,
  });
  await target.flush();
  const freeBlocks = alloc.freeBlocks;
  return {
    sizeBytes: geo.blocksCount * BLOCK_SIZE,
    blockSize: BLOCK_SIZE,
    blocksCount: geo.blocksCount,
    freeBlocks,
    inodesCount: geo.inodesCount,
    freeInodes: geo.inodesCount - scan.maxIno,
    inodesUsed: scan.records.filter(Boolean).length,
    dataBytes,
  };
}

const TYPE_BITS: Record<Ext4Node['kind'], number> = {
  file: S_IFREG, dir: S_IFDIR, symlink: S_IFLNK, chardev: S_IFCHR, blockdev: S_IFBLK, fifo: S_IFIFO, socket: S_IFSOCK,
};

interface WriteContext {
  alloc: BlockAllocator;
  out: BlockWriter;
  /** metadata_csum on, its seed (from the UUID), and the bytes of a directory block entries may use. */
  csum: boolean;
  seed: number;
  dirUsable: number;
  /** Index directories over one block, with the superblock's hash seed. */
  htree: boolean;
  hashSeed: number[];
}

/** Writes one inode's blocks and returns its inode fields. */
async function writeInode(rec: InodeRecord, ctx: WriteContext): Promise<{ fields: InodeFields; dataBytes: number }> {
  const { alloc, out, csum } = ctx;
  const iseed = csum ? inodeSeed(ctx.seed, rec.ino) : 0;
  const n = rec.node;
  const fields: InodeFields = {
    mode: TYPE_BITS[n.kind] | n.mode, uid: n.uid, gid: n.gid, size: 0, time: n.mtime, links: rec.links,
    blocks: 0, flags: 0, iblock: new Uint8Array(60), xattrBlock: 0,
  };
  let dataBytes = 0;
  const mapped = async (ext: ExtentList): Promise<void> => {
    const tree = buildExtentTree(ext.extents, () => alloc.alloc());
    for (const t of tree.nodes) {
      if (csum) sealExtentBlock(t.data, iseed);
      await out.put(t.block, t.data);
    }
    fields.iblock = tree.iblock;
    fields.flags |= EXT4_EXTENTS_FL;
    fields.blocks += ext.blocks + tree.nodes.length;
  };
  switch (n.kind) {
    case 'file': {
      const ext = new ExtentList();
      for (let off = 0; off < n.size; off += READ_CHUNK) {
        const len = Math.min(READ_CHUNK, n.size - off);
        let data: Uint8Array;
        try {
          data = await n.read(off, len);
        } catch (err) {
          throw new VisorError('IoError', `ext4: reading ${rec.path} at ${off}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        if (!(data instanceof Uint8Array) || data.length !== len) {
          throw new VisorError('InvalidArgument', `ext4: ${rec.path}: read(${off}, ${len}) returned ${data?.length} bytes`);
        }
        for (let p = 0; p < len; p += BLOCK_SIZE) {
          const blk = data.subarray(p, Math.min(p + BLOCK_SIZE, len));
          if (isZero(blk)) continue; // a hole reads as zeros and takes no space
          const phys = alloc.alloc();
          ext.add((off + p) / BLOCK_SIZE, phys);
          await out.put(phys, blk);
        }
      }
      dataBytes = n.size;
      fields.size = n.size;
      await mapped(ext);
      break;
    }
    case 'dir': {
      let blocks = packDirectory(rec.ino, rec.parent!, rec.entries!, rec.minBlocks ?? 1, ctx.dirUsable);
      let firstLeaf = 0;
      if (ctx.htree && blocks.length > 1 && rec.entries!.length > 0) {
        const ht = buildHtree(rec.ino, rec.parent!, rec.entries!, ctx.hashSeed, ctx.dirUsable, csum);
        if (ht) {
          ht.sealRoot(iseed);
          blocks = ht.blocks;
          firstLeaf = 1;
          fields.flags |= EXT4_INDEX_FL;
        }
      }
      const ext = new ExtentList();
      for (let i = 0; i < blocks.length; i++) {
        if (csum && i >= firstLeaf) sealDirBlock(blocks[i]!, iseed);
        const phys = alloc.alloc();
        ext.add(i, phys);
        await out.put(phys, blocks[i]!);
      }
      fields.size = blocks.length * BLOCK_SIZE;
      await mapped(ext);
      break;
    }
    case 'symlink': {
      const target = new TextEncoder().encode(n.target);
      fields.size = target.length;
      if (target.length < 60) {
        fields.iblock.set(target); // a fast symlink: the target lives in i_block
      } else {
        const phys = alloc.alloc();
        await out.put(phys, target);
        const ext = new ExtentList();
        ext.add(0, phys);
        await mapped(ext);
      }
      break;
    }
    case 'chardev':
    case 'blockdev':
      fields.iblock = encodeDeviceNumber(n.major, n.minor);
      break;
    case 'fifo':
    case 'socket':
      break;
  }
  const x = encodeXattrs(n.xattrs, rec.path || '/');
  if (x.inline) fields.inlineXattrs = x.inline;
  if (x.block) {
    const phys = alloc.alloc();
    if (csum) sealXattrBlock(x.block, phys, ctx.seed);
    await out.put(phys, x.block);
    fields.xattrBlock = phys;
    fields.blocks += 1;
  }
  return { fields, dataBytes };
}

/** The superblock's fields the writer knows before counting what is free. */
type MetaFields = Omit<SuperblockFields, 'geo' | 'freeBlocks' | 'freeInodes'>;

/** Inode tables (only the blocks holding used inodes), bitmaps, descriptors, superblocks. */
async function writeMetadata(geo: Geometry, out: BlockWriter, alloc: BlockAllocator, itable: Uint8Array, maxIno: number, usedDirs: number[], m: MetaFields): Promise<void> {
  const ibitmaps = inodeBitmaps(geo, maxIno);
  const counts: GroupCounts[] = [];
  for (const g of geo.groups) {
    const first = g.index * geo.inodesPerGroup; // inode number - 1 of the group's first inode
    const inUse = Math.max(0, Math.min(geo.inodesPerGroup, maxIno - first));
    await out.put(g.blockBitmap, alloc.bitmaps[g.index]!);
    await out.put(g.inodeBitmap, ibitmaps[g.index]!);
    if (inUse > 0) await out.put(g.inodeTable, itable.subarray(first * INODE_SIZE, (first + inUse) * INODE_SIZE));
    counts.push({ freeBlocks: alloc.freeInGroup(g.index), freeInodes: geo.inodesPerGroup - inUse, usedDirs: usedDirs[g.index]! });
  }
  let freeBlocks = 0;
  for (const c of counts) freeBlocks += c.freeBlocks;
  const gdt = encodeGroupDescriptors(geo, counts, m.csum ? { seed: fsSeed(m.uuid), blockBitmaps: alloc.bitmaps, inodeBitmaps: ibitmaps } : undefined);
  const sbFields = { geo, freeBlocks, freeInodes: geo.inodesCount - maxIno, ...m };
  for (const g of geo.groups) {
    if (!g.hasSuper) continue;
    const sb = encodeSuperblock(sbFields, g.index);
    const first = new Uint8Array(BLOCK_SIZE);
    // Group 0's superblock sits 1024 bytes into block 0 (the boot sector comes first); backups start their block.
    first.set(sb, g.index === 0 ? 1024 : 0);
    await out.put(g.start, first);
    await out.put(g.start + 1, gdt);
  }
  await out.flush();
}
