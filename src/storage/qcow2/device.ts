import { VisorError } from '../../base/errors.js';
import type { BlockDevice, FileHandle } from '../block-device.js';
import { Mutex, checkRange, checkWritable } from '../range.js';
import { compressCluster, decompressCluster } from './compression.js';
import {
  MAX_VIRTUAL_SIZE,
  QCOW2_COMPRESSION_TYPE_ZLIB,
  QCOW2_COMPRESSION_TYPE_ZSTD,
  QCOW2_INCOMPAT_COMPRESSION,
  QCOW2_INCOMPAT_CORRUPT,
  QCOW2_INCOMPAT_DATA_FILE,
  QCOW2_INCOMPAT_DIRTY,
  QCOW2_INCOMPAT_EXTL2,
  QCOW2_INCOMPAT_KNOWN,
  QCOW_MAX_L1_SIZE,
  QCOW_MAX_SNAPSHOTS,
  QCOW_MAX_SNAPSHOT_EXTRA_DATA,
  geometry,
  l1SizeFor,
  parseHeader,
  parseSnapshotTable,
  serializeSnapshotTable,
  type Geometry,
  type Qcow2Header,
  type SnapshotEntry,
} from './format.js';
import { decodeL2, encodeStd, HI_COPIED, HI_OFFSET_MASK, LO_OFFSET_MASK, LO_ZERO, type ClusterKind, type Mapping } from './l2-entry.js';
import { LruCache } from './lru.js';

export { decodeL2, type ClusterKind, type Mapping };
import { Refcounts, RefcountShadow } from './refcount.js';

/*
 * qcow2 block device (QEMU docs/interop/qcow2.txt). Guest offset → L1 entry → L2 table →
 * L2 entry → host cluster. Metadata writes follow one ordering rule (see refcount.ts): raise
 * refcounts, write data, link it in, and only then drop references to the old clusters.
 */

export interface SnapshotInfo {
  id: string;
  name: string;
  date: Date;
  vmStateSize: number;
  diskSize: number;
}

export interface Qcow2OpenOptions {
  readOnly: boolean;
  /** The opened backing image, if the header names one (the caller resolves the chain). */
  backing?: BlockDevice | undefined;
  /** Metadata cache budget in bytes for L2 tables. */
  cacheBytes?: number;
  /** Allow read-write opening of an image marked corrupt (for repair only). */
  allowCorrupt?: boolean | undefined;
}

const corrupt = (msg: string) => new VisorError('CorruptImage', `qcow2: ${msg}`);

/** A FileHandle wrapper that knows the file's length without asking. */
class TrackedFile {
  constructor(
    readonly inner: FileHandle,
    public length: number,
  ) {}

  read(offset: number, into: Uint8Array): Promise<void> {
    return this.inner.read(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.inner.write(offset, data);
    if (offset + data.length > this.length) this.length = offset + data.length;
  }
}

export class Qcow2Device implements BlockDevice {
  /** @internal Exposed for check.ts and snapshots; not part of the BlockDevice surface. */
  readonly g: Geometry;
  /** @internal */ header: Qcow2Header;
  /** @internal */ l1: Uint8Array;
  /** @internal */ l1View: DataView;
  /** @internal */ refs!: Refcounts;
  /** @internal */ snapshots: SnapshotEntry[] = [];
  /** On-disk length of the snapshot table (entries may be longer or shorter once rewritten). */
  private snapshotTableBytes = 0;
  /** @internal */ readonly file: TrackedFile;
  private readonly l2Cache: LruCache<number, Uint8Array>;
  private readonly lock = new Mutex();
  private compressedCache: { host: number; data: Uint8Array } | undefined;
  /** Next free byte in the cluster last used for compressed data (0 = none). */
  private compressedFree = 0;
  readonly backing: BlockDevice | undefined;
  readonly readOnly: boolean;
  private closed = false;
  /** Counts metadata reads, so tests can see the cache work. */
  readonly stats = { l2Reads: 0, l2CacheHits: 0 };

  private constructor(file: TrackedFile, header: Qcow2Header, l1: Uint8Array, opts: Qcow2OpenOptions) {
    this.file = file;
    this.header = header;
    this.g = geometry(header.clusterBits, header.refcountOrder);
    this.l1 = l1;
    this.l1View = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    this.readOnly = opts.readOnly;
    this.backing = opts.backing;
    this.l2Cache = new LruCache(Math.max(16, Math.floor((opts.cacheBytes ?? 32 << 20) / this.g.clusterSize)));
  }

  get size(): number {
    return this.header.size;
  }

  get clusterSize(): number {
    return this.g.clusterSize;
  }

  /** Reads and validates the header, L1 table, refcount table and snapshot table. */
  static async open(inner: FileHandle, opts: Qcow2OpenOptions): Promise<Qcow2Device> {
    const fileSize = await inner.size();
    if (fileSize > Number.MAX_SAFE_INTEGER) throw new VisorError('BadImage', 'qcow2: file too large');
    // cluster_bits (offset 20) says how much header to read; parseHeader validates it.
    const first = new Uint8Array(72);
    await inner.read(0, first);
    const bits = Math.min(Math.max(new DataView(first.buffer).getUint32(20), 9), 21);
    const headerBuf = new Uint8Array(Math.max(2 ** bits, 72));
    await inner.read(0, headerBuf);
    const header = parseHeader(headerBuf, fileSize);

    const incompat = header.incompatibleFeatures;
    if (incompat & QCOW2_INCOMPAT_EXTL2) {
      throw new VisorError('Unsupported', 'qcow2: extended L2 entries (subclusters) are not supported; convert the image with `qemu-img convert -O qcow2 -o extended_l2=off`');
    }
    if (incompat & QCOW2_INCOMPAT_DATA_FILE) throw new VisorError('Unsupported', 'qcow2: images with an external data file are not supported');
    const unknown = incompat & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown) {
      const names: string[] = [];
      for (let bit = 0; bit < 64; bit++) {
        if (!(unknown & (1n << BigInt(bit)))) continue;
        const f = header.featureNames.find((n) => n.type === 'incompatible' && n.bit === bit);
        names.push(f ? `${f.name} (bit ${bit})` : `bit ${bit}`);
      }
      throw new VisorError('Unsupported', `qcow2: unsupported incompatible features: ${names.join(', ')}`);
    }
    if (!(incompat & QCOW2_INCOMPAT_COMPRESSION) && header.compressionType !== QCOW2_COMPRESSION_TYPE_ZLIB) {
      throw new VisorError('BadImage', 'qcow2: compression_type is set but the compression type feature bit is not');
    }
    if (header.compressionType !== QCOW2_COMPRESSION_TYPE_ZLIB && header.compressionType !== QCOW2_COMPRESSION_TYPE_ZSTD) {
      throw new VisorError('Unsupported', `qcow2: compression type ${header.compressionType} is not supported`);
    }
    if ((incompat & QCOW2_INCOMPAT_CORRUPT) && !opts.readOnly && !opts.allowCorrupt) {
      throw new VisorError('NotAllowed', 'qcow2: the image is marked corrupt; open it read-only or repair it (`visor disk check --repair`)');
    }
    if (header.backingFile !== undefined && !opts.backing) {
      throw new VisorError('InvalidArgument', `qcow2: the image has a backing file (${header.backingFile}) that was not opened`);
    }

    const g = geometry(header.clusterBits, header.refcountOrder);
    if (header.l1Size * 8 > QCOW_MAX_L1_SIZE) throw new VisorError('BadImage', `qcow2: L1 table of ${header.l1Size} entries is too large`);
    if (header.l1Size < l1SizeFor(header.size, g)) throw corrupt(`L1 table (${header.l1Size} entries) is too small for the virtual size ${header.size}`);
    if (header.l1Size > 0) checkTableRange('L1 table', header.l1TableOffset, header.l1Size * 8, g, fileSize);
    const l1 = new Uint8Array(header.l1Size * 8);
    await inner.read(header.l1TableOffset, l1);

    const file = new TrackedFile(inner, fileSize);
    const dev = new Qcow2Device(file, header, l1, opts);
    dev.refs = await dev.loadRefcounts();
    [dev.snapshots, dev.snapshotTableBytes] = await readSnapshots(inner, header, g, fileSize);

    if (!opts.readOnly) {
      if (incompat & QCOW2_INCOMPAT_DIRTY) {
        // Lazy refcounts were in use and the writer did not close cleanly: rebuild refcounts.
        const { checkQcow2 } = await import('./check.js');
        await checkQcow2(dev, { repair: true });
        await dev.setIncompatible(dev.header.incompatibleFeatures & ~QCOW2_INCOMPAT_DIRTY);
      }
      if (header.version === 3 && header.autoclearFeatures !== 0n) {
        // qcow2.txt: a writer that does not understand an autoclear feature clears its bit.
        header.autoclearFeatures = 0n;
        await dev.writeHeaderU64(88, 0n);
      }
    }
    return dev;
  }

  /** Reads the refcount table the header names (at open, and after a metadata switch). */
  private loadRefcounts(): Promise<Refcounts> {
    const h = this.header;
    return Refcounts.load(
      trackingHandle(this.file.inner, this.file),
      this.g,
      h.refcountTableOffset,
      h.refcountTableClusters,
      this.file.length,
      (offset, clusters) => this.writeRefcountTableLocation(offset, clusters),
      () => this.file.length,
    );
  }

  // ---- header helpers -------------------------------------------------------------------

  /** @internal */
  async writeHeaderU64(at: number, value: bigint): Promise<void> {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value);
    await this.file.write(at, b);
  }

  /** @internal Sets the incompatible feature bits (v3 only; v2 has none). */
  async setIncompatible(bits: bigint): Promise<void> {
    if (this.header.version !== 3) return;
    this.header.incompatibleFeatures = bits;
    await this.writeHeaderU64(72, bits);
  }

  private async writeRefcountTableLocation(offset: number, clusters: number): Promise<void> {
    // Header bytes 48-59: refcount_table_offset and refcount_table_clusters, in one write.
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, BigInt(offset));
    v.setUint32(8, clusters);
    await this.file.write(48, b);
    this.header.refcountTableOffset = offset;
    this.header.refcountTableClusters = clusters;
  }

  /** @internal Header bytes 36-47: l1_size and l1_table_offset, in one write. */
  async writeL1Location(offset: number, size: number): Promise<void> {
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    v.setUint32(0, size);
    v.setBigUint64(4, BigInt(offset));
    await this.file.write(36, b);
    this.header.l1TableOffset = offset;
    this.header.l1Size = size;
  }

  /** @internal Marks the image corrupt (v3) so no one writes through broken metadata. */
  async markCorrupt(reason: string): Promise<never> {
    if (!this.readOnly && this.header.version === 3) {
      await this.setIncompatible(this.header.incompatibleFeatures | QCOW2_INCOMPAT_CORRUPT).catch(() => undefined);
    }
    throw corrupt(reason);
  }

  // ---- mapping --------------------------------------------------------------------------

  /** @internal L1 entry: [L2 table offset, COPIED]. */
  l1Entry(i: number): [number, boolean] {
    if (i >= this.header.l1Size) return [0, false];
    const hi = this.l1View.getUint32(i * 8);
    const lo = this.l1View.getUint32(i * 8 + 4);
    return [(hi & HI_OFFSET_MASK) * 0x1_0000_0000 + ((lo & LO_OFFSET_MASK) >>> 0), (hi & HI_COPIED) !== 0];
  }

  /** @internal Loads an L2 table (cached), validating its offset. */
  async loadL2(offset: number): Promise<Uint8Array> {
    const hit = this.l2Cache.get(offset);
    if (hit) {
      this.stats.l2CacheHits++;
      return hit;
    }
    if (offset % this.g.clusterSize !== 0) return this.markCorrupt(`L2 table offset 0x${offset.toString(16)} is not cluster-aligned`);
    if (offset + this.g.clusterSize > this.file.length) return this.markCorrupt(`L2 table at 0x${offset.toString(16)} lies outside the file`);
    const t = new Uint8Array(this.g.clusterSize);
    await this.file.read(offset, t);
    this.stats.l2Reads++;
    this.l2Cache.set(offset, t);
    return t;
  }

  /** @internal */
  async lookup(cluster: number): Promise<Mapping> {
    const [l2Off] = this.l1Entry(Math.floor(cluster / this.g.l2Entries));
    if (l2Off === 0) return { kind: 'unallocated', host: 0, copied: false, csize: 0 };
    const t = await this.loadL2(l2Off);
    return decodeL2(new DataView(t.buffer), cluster % this.g.l2Entries, this.g);
  }

  /**
   * The L2 table for `l1Index`, made private to the active image: allocated when missing,
   * copied when shared with a snapshot (COPIED clear).
   */
  private async l2ForWrite(l1Index: number): Promise<[number, Uint8Array]> {
    const [off, copied] = this.l1Entry(l1Index);
    if (off !== 0 && copied) return [off, await this.loadL2(off)];
    const table = off === 0 ? new Uint8Array(this.g.clusterSize) : (await this.loadL2(off)).slice();
    const host = await this.refs.alloc(1);
    await this.file.write(host, table);
    this.l2Cache.set(host, table);
    await this.setL1Entry(l1Index, host, true);
    if (off !== 0) await this.refs.update(off, this.g.clusterSize, -1);
    return [host, table];
  }

  /** @internal */
  async setL1Entry(i: number, host: number, copied: boolean): Promise<void> {
    const [hi, lo] = encodeStd(host, copied, false);
    this.l1View.setUint32(i * 8, hi);
    this.l1View.setUint32(i * 8 + 4, lo);
    await this.file.write(this.header.l1TableOffset + i * 8, this.l1.subarray(i * 8, i * 8 + 8));
  }

  private async setL2Entry(tableOff: number, table: Uint8Array, i: number, hi: number, lo: number): Promise<void> {
    const v = new DataView(table.buffer, table.byteOffset);
    v.setUint32(i * 8, hi);
    v.setUint32(i * 8 + 4, lo);
    await this.file.write(tableOff + i * 8, table.subarray(i * 8, i * 8 + 8));
  }

  /** Drops the references `m` held (after the entry stopped pointing at them). */
  private async release(m: Mapping): Promise<void> {
    if (m.kind === 'normal' || (m.kind === 'zero' && m.host !== 0)) await this.refs.update(m.host, this.g.clusterSize, -1);
    else if (m.kind === 'compressed') {
      // The packing cursor must not point into a cluster that may now be freed and reused.
      const cs = this.g.clusterSize;
      const cur = Math.floor(this.compressedFree / cs);
      if (cur >= Math.floor(m.host / cs) && cur <= Math.floor((m.host + m.csize - 1) / cs)) this.compressedFree = 0;
      await this.refs.update(m.host, m.csize, -1);
      if (this.compressedCache?.host === m.host) this.compressedCache = undefined;
    }
  }

  /** Refuses to write guest data over the header or the active tables of a corrupt image. */
  private async checkDataCluster(host: number): Promise<void> {
    const h = this.header;
    const cs = this.g.clusterSize;
    const overlaps = (start: number, len: number) => host < start + len && start < host + cs;
    if (
      host % cs !== 0 ||
      host < cs ||
      overlaps(h.l1TableOffset, h.l1Size * 8) ||
      overlaps(h.refcountTableOffset, h.refcountTableClusters * cs)
    ) {
      await this.markCorrupt(`data cluster at 0x${host.toString(16)} overlaps metadata`);
    }
  }

  /** The full contents of one guest cluster as it reads now. */
  private async readCluster(cluster: number, m: Mapping): Promise<Uint8Array> {
    const cs = this.g.clusterSize;
    const buf = new Uint8Array(cs);
    await this.readMapped(cluster * cs, m, buf);
    return buf;
  }

  /** Reads `into` (within one cluster, starting at guest `offset`) through mapping `m`. */
  private async readMapped(offset: number, m: Mapping, into: Uint8Array): Promise<void> {
    const inner = offset % this.g.clusterSize;
    switch (m.kind) {
      case 'normal':
        await this.file.read(m.host + inner, into);
        return;
      case 'zero':
        into.fill(0);
        return;
      case 'unallocated':
        await this.readBacking(offset, into);
        return;
      case 'compressed': {
        const data = await this.decompressed(m);
        into.set(data.subarray(inner, inner + into.length));
      }
    }
  }

  private async readBacking(offset: number, into: Uint8Array): Promise<void> {
    const b = this.backing;
    if (!b || offset >= b.size) {
      into.fill(0);
      return;
    }
    const n = Math.min(into.length, b.size - offset);
    await b.read(offset, n === into.length ? into : into.subarray(0, n));
    if (n < into.length) into.fill(0, n);
  }

  private async decompressed(m: Mapping): Promise<Uint8Array> {
    if (this.compressedCache?.host === m.host) return this.compressedCache.data;
    if (m.host >= this.file.length) throw corrupt(`compressed cluster at 0x${m.host.toString(16)} lies outside the file`);
    const raw = new Uint8Array(Math.min(m.csize, this.file.length - m.host));
    await this.file.read(m.host, raw);
    const out = new Uint8Array(this.g.clusterSize);
    decompressCluster(this.header.compressionType, raw, out);
    this.compressedCache = { host: m.host, data: out };
    return out;
  }

  // ---- BlockDevice ----------------------------------------------------------------------

  read(offset: number, into: Uint8Array): Promise<void> {
    checkRange('read', offset, into.length, this.size);
    return this.lock.run(() => this.readLocked(offset, into));
  }

  private async readLocked(offset: number, into: Uint8Array): Promise<void> {
    const cs = this.g.clusterSize;
    let pos = 0;
    while (pos < into.length) {
      const v = offset + pos;
      const cluster = Math.floor(v / cs);
      let n = Math.min(cs - (v % cs), into.length - pos);
      const m = await this.lookup(cluster);
      if (m.kind === 'normal') {
        // Coalesce clusters that are contiguous on the host into one read.
        let next = cluster + 1;
        while (pos + n < into.length) {
          const m2 = await this.lookup(next);
          if (m2.kind !== 'normal' || m2.host !== m.host + (next - cluster) * cs) break;
          n += Math.min(cs, into.length - pos - n);
          next++;
        }
        await this.file.read(m.host + (v % cs), into.subarray(pos, pos + n));
      } else {
        await this.readMapped(v, m, into.subarray(pos, pos + n));
      }
      pos += n;
    }
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    checkWritable('write', this.readOnly);
    checkRange('write', offset, data.length, this.size);
    return this.lock.run(() => this.writeLocked(offset, data));
  }

  private async writeLocked(offset: number, data: Uint8Array): Promise<void> {
    const cs = this.g.clusterSize;
    let pos = 0;
    while (pos < data.length) {
      const v = offset + pos;
      const cluster = Math.floor(v / cs);
      let n = Math.min(cs - (v % cs), data.length - pos);
      const m = await this.lookup(cluster);
      if (m.kind === 'normal' && m.copied) {
        await this.checkDataCluster(m.host);
        let next = cluster + 1;
        while (pos + n < data.length) {
          const m2 = await this.lookup(next);
          if (m2.kind !== 'normal' || !m2.copied || m2.host !== m.host + (next - cluster) * cs) break;
          await this.checkDataCluster(m2.host);
          n += Math.min(cs, data.length - pos - n);
          next++;
        }
        await this.file.write(m.host + (v % cs), data.subarray(pos, pos + n));
      } else if (v % cs === 0 && n === cs && (m.kind === 'unallocated' || (m.kind === 'zero' && m.host === 0))) {
        n = await this.writeFreshRun(cluster, data.subarray(pos));
      } else {
        await this.writeNewCluster(cluster, v % cs, data.subarray(pos, pos + n), m);
      }
      pos += n;
    }
  }

  /**
   * Whole clusters that own nothing yet (unallocated or plain zero), within one L2 table:
   * one allocation, one data write, one write of the L2 entries. Returns bytes written.
   */
  private async writeFreshRun(cluster: number, data: Uint8Array): Promise<number> {
    const cs = this.g.clusterSize;
    const l1Index = Math.floor(cluster / this.g.l2Entries);
    const l2First = cluster % this.g.l2Entries;
    let k = 1;
    const maxK = Math.min(Math.floor(data.length / cs), this.g.l2Entries - l2First, 256);
    while (k < maxK) {
      const m = await this.lookup(cluster + k);
      if (!(m.kind === 'unallocated' || (m.kind === 'zero' && m.host === 0))) break;
      k++;
    }
    const [tOff, table] = await this.l2ForWrite(l1Index);
    const host = await this.refs.alloc(k);
    await this.file.write(host, data.subarray(0, k * cs));
    const v = new DataView(table.buffer, table.byteOffset);
    for (let i = 0; i < k; i++) {
      const [hi, lo] = encodeStd(host + i * cs, true, false);
      v.setUint32((l2First + i) * 8, hi);
      v.setUint32((l2First + i) * 8 + 4, lo);
    }
    await this.file.write(tOff + l2First * 8, table.subarray(l2First * 8, (l2First + k) * 8));
    return k * cs;
  }

  /** Writes part of a cluster that is not privately allocated: copy-on-write. */
  private async writeNewCluster(cluster: number, inner: number, chunk: Uint8Array, m: Mapping): Promise<void> {
    const cs = this.g.clusterSize;
    let buf = chunk;
    if (chunk.length !== cs) {
      buf = await this.readCluster(cluster, m);
      buf.set(chunk, inner);
    }
    const l1Index = Math.floor(cluster / this.g.l2Entries);
    const l2Index = cluster % this.g.l2Entries;
    if (m.kind === 'zero' && m.host !== 0 && m.copied) {
      // A preallocated zero cluster we own: fill it in place, then clear the zero flag.
      await this.checkDataCluster(m.host);
      await this.file.write(m.host, buf);
      const [tOff, table] = await this.l2ForWrite(l1Index);
      const [hi, lo] = encodeStd(m.host, true, false);
      await this.setL2Entry(tOff, table, l2Index, hi, lo);
      return;
    }
    const [tOff, table] = await this.l2ForWrite(l1Index);
    const host = await this.refs.alloc(1);
    await this.file.write(host, buf);
    const [hi, lo] = encodeStd(host, true, false);
    await this.setL2Entry(tOff, table, l2Index, hi, lo);
    await this.release(m);
  }

  /**
   * Writes one whole cluster compressed with deflate (qemu-img convert -c does the same).
   * Falls back to a normal write when compression saves nothing.
   */
  writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    checkWritable('writeCompressed', this.readOnly);
    const cs = this.g.clusterSize;
    if (offset % cs !== 0 || (data.length !== cs && offset + data.length !== this.size) || data.length > cs) {
      throw new VisorError('InvalidArgument', 'writeCompressed: needs one whole, cluster-aligned cluster');
    }
    checkRange('writeCompressed', offset, data.length, this.size);
    if (this.header.compressionType !== QCOW2_COMPRESSION_TYPE_ZLIB) {
      throw new VisorError('Unsupported', 'qcow2: visor writes deflate-compressed clusters only (this image uses zstd)');
    }
    return this.lock.run(async () => {
      const full = data.length === cs ? data : padTo(data, cs);
      const c = compressCluster(full);
      const cluster = offset / cs;
      const m = await this.lookup(cluster);
      if (!c) {
        await this.writeLocked(offset, data);
        return;
      }
      const padded = padTo(c, Math.ceil(c.length / 512) * 512);
      const [tOff, table] = await this.l2ForWrite(Math.floor(cluster / this.g.l2Entries));
      const host = await this.allocCompressedBytes(padded.length);
      await this.file.write(host, padded);
      // qcow2.txt: bits x-61 hold the number of additional 512-byte sectors.
      const e = (1n << 62n) | (BigInt(padded.length / 512 - 1) << BigInt(this.g.csizeShift)) | BigInt(host);
      await this.setL2Entry(tOff, table, cluster % this.g.l2Entries, Number(e >> 32n), Number(e & 0xffffffffn));
      await this.release(m);
    });
  }

  /**
   * Packs compressed clusters back to back, as QEMU does: the tail of the last cluster used
   * for compressed data takes the next one if it fits (its refcount counts one more user).
   * A descriptor's range then touches each host cluster it overlaps, and qemu-img check
   * counts exactly those.
   */
  private async allocCompressedBytes(len: number): Promise<number> {
    const cs = this.g.clusterSize;
    const at = this.compressedFree;
    if (at !== 0 && at % cs !== 0 && len <= cs - (at % cs)) {
      await this.refs.update(at, len, +1);
      this.compressedFree = at + len;
      return at;
    }
    const host = await this.refs.alloc(Math.ceil(len / cs));
    this.compressedFree = host + len;
    return host;
  }

  async flush(): Promise<void> {
    if (this.readOnly) return;
    await this.lock.run(() => this.file.inner.sync());
  }

  discard(offset: number, length: number): Promise<void> {
    // Discarded ranges read as zeros afterwards: deterministic, and the same as raw.
    return this.writeZeroes(offset, length, true);
  }

  writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    checkWritable('writeZeroes', this.readOnly);
    checkRange('writeZeroes', offset, length, this.size);
    return this.lock.run(async () => {
      const cs = this.g.clusterSize;
      let pos = 0;
      while (pos < length) {
        const v = offset + pos;
        const cluster = Math.floor(v / cs);
        const n = Math.min(cs - (v % cs), length - pos);
        // The last cluster may be partial when the virtual size is not cluster-aligned.
        const whole = n === cs || (v % cs === 0 && v + n === this.size);
        await this.zeroCluster(cluster, v, n, whole, mayUnmap);
        pos += n;
      }
    });
  }

  private async zeroCluster(cluster: number, v: number, n: number, whole: boolean, mayUnmap: boolean): Promise<void> {
    const m = await this.lookup(cluster);
    const readsZero = m.kind === 'zero' || (m.kind === 'unallocated' && (!this.backing || v >= this.backing.size));
    if (readsZero) return;
    const v3 = this.header.version === 3;
    if (!whole || (!v3 && this.backing)) {
      // Partial cluster, or v2 over a backing file (no zero flag): write real zeros.
      await this.writeLocked(v, new Uint8Array(n));
      return;
    }
    const l1Index = Math.floor(cluster / this.g.l2Entries);
    const [tOff, table] = await this.l2ForWrite(l1Index);
    const idx = cluster % this.g.l2Entries;
    if (v3 && !mayUnmap && m.kind === 'normal' && m.copied) {
      const [hi, lo] = encodeStd(m.host, true, true); // keep the allocation (ZERO_ALLOC)
      await this.setL2Entry(tOff, table, idx, hi, lo);
      return;
    }
    // v3: plain zero cluster; v2 without backing: unallocated reads as zeros.
    await this.setL2Entry(tOff, table, idx, 0, v3 ? LO_ZERO : 0);
    await this.release(m);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.lock.run(async () => {
      if (!this.readOnly) await this.file.inner.sync();
      await this.file.inner.close();
    });
    await this.backing?.close();
  }

  // ---- whole-image operations -------------------------------------------------------------

  /** Runs `fn` under the device lock (check and snapshot code use it). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(fn);
  }

  /** Grows the virtual size (shrinking is refused: it would need to drop guest data). */
  resize(newSize: number): Promise<void> {
    checkWritable('resize', this.readOnly);
    if (!Number.isSafeInteger(newSize) || newSize <= 0 || newSize % 512 !== 0 || newSize > MAX_VIRTUAL_SIZE) {
      throw new VisorError('InvalidArgument', `resize: size ${newSize} must be a positive multiple of 512`);
    }
    if (newSize < this.size) throw new VisorError('InvalidArgument', `qcow2: cannot shrink an image (it has ${this.size} bytes; give a larger size, or convert the data to a new, smaller image)`);
    return this.lock.run(async () => {
      const need = l1SizeFor(newSize, this.g);
      if (need > this.header.l1Size) await this.growL1(need);
      await this.writeHeaderU64(24, BigInt(newSize));
      this.header.size = newSize;
    });
  }

  /** @internal New, larger active L1 table: write it, switch the header, free the old one. */
  async growL1(entries: number, contents?: Uint8Array): Promise<void> {
    if (entries * 8 > QCOW_MAX_L1_SIZE) throw new VisorError('Unsupported', 'qcow2: the L1 table would exceed its maximum size');
    const cs = this.g.clusterSize;
    const table = new Uint8Array(entries * 8);
    table.set(contents ?? this.l1);
    const clusters = Math.ceil(table.length / cs);
    const host = await this.refs.alloc(clusters);
    await this.file.write(host, table);
    const oldOff = this.header.l1TableOffset;
    const oldSize = this.header.l1Size;
    await this.writeL1Location(host, entries);
    this.l1 = table;
    this.l1View = new DataView(table.buffer);
    if (oldSize > 0) await this.refs.update(oldOff, oldSize * 8, -1);
  }

  /** @internal Walks an L1 table: calls fn for every L2 table it references. */
  async walk(l1: Uint8Array, fn: (l1Index: number, l2Offset: number, table: Uint8Array, view: DataView) => Promise<void>): Promise<void> {
    const v = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    for (let i = 0; i < l1.length / 8; i++) {
      const off = (v.getUint32(i * 8) & HI_OFFSET_MASK) * 0x1_0000_0000 + ((v.getUint32(i * 8 + 4) & LO_OFFSET_MASK) >>> 0);
      if (off === 0) continue;
      const t = await this.loadL2(off);
      await fn(i, off, t, new DataView(t.buffer, t.byteOffset));
    }
  }

  /**
   * @internal Makes COPIED exactly "refcount is 1" across the active tree (qcow2.txt: the
   * flag must be set iff the refcount is exactly one), rewriting only what changed.
   */
  async fixCopiedFlags(): Promise<number> {
    let fixed = 0;
    for (let i = 0; i < this.header.l1Size; i++) {
      const [off, copied] = this.l1Entry(i);
      if (off === 0) continue;
      const t = await this.loadL2(off);
      const view = new DataView(t.buffer, t.byteOffset);
      let changed = false;
      for (let j = 0; j < this.g.l2Entries; j++) {
        const m = decodeL2(view, j, this.g);
        let want: boolean;
        if (m.kind === 'normal' || (m.kind === 'zero' && m.host !== 0)) want = (await this.refs.get(m.host / this.g.clusterSize)) === 1;
        else if (m.kind === 'compressed') want = false;
        else want = m.copied && false;
        if (want !== m.copied) {
          const hi = view.getUint32(j * 8);
          view.setUint32(j * 8, want ? (hi | HI_COPIED) >>> 0 : (hi & ~HI_COPIED) >>> 0);
          changed = true;
          fixed++;
        }
      }
      if (changed) await this.file.write(off, t);
      const want = (await this.refs.get(off / this.g.clusterSize)) === 1;
      if (want !== copied) {
        await this.setL1Entry(i, off, want);
        fixed++;
      }
    }
    return fixed;
  }

  // ---- internal snapshots (qcow2.txt "Snapshots") -----------------------------------------

  listSnapshots(): SnapshotInfo[] {
    return this.snapshots.map((s) => ({
      id: s.id,
      name: s.name,
      date: new Date(s.dateSec * 1000 + Math.floor(s.dateNsec / 1e6)),
      vmStateSize: s.vmStateSize,
      diskSize: s.diskSize ?? this.size,
    }));
  }

  private findSnapshot(idOrName: string): SnapshotEntry {
    const s = this.snapshots.find((x) => x.id === idOrName) ?? this.snapshots.find((x) => x.name === idOrName);
    if (!s) throw new VisorError('NotFound', `qcow2: no snapshot '${idOrName}'`);
    return s;
  }

  /** Adds `delta` to the refcount of everything reached through `l1` (QEMU counts per path). */
  private async addTree(shadow: RefcountShadow, l1: Uint8Array, delta: number): Promise<void> {
    const cs = this.g.clusterSize;
    await this.walk(l1, async (_i, off, _t, view) => {
      await shadow.add(off, cs, delta);
      for (let j = 0; j < this.g.l2Entries; j++) {
        const m = decodeL2(view, j, this.g);
        if (m.kind === 'normal' || (m.kind === 'zero' && m.host !== 0)) await shadow.add(m.host, cs, delta);
        else if (m.kind === 'compressed') await shadow.add(m.host, m.csize, delta);
      }
    });
  }

  /**
   * Snapshot create, apply and delete change refcounts, COPIED flags, the active L1 and the
   * snapshot table together; written in place, some order always leaves a window where the
   * flags and the refcounts disagree (qemu-img check: corruption). So the whole new state is
   * built in clusters that are free before and after (snapshot table, active L1, the active
   * L2 tables whose COPIED flags change, the refcount blocks that change and a new refcount
   * table: RefcountShadow), flushed, and committed by one write of header bytes 24-71 (size,
   * L1, refcount table and snapshot table fields: all in the first sector, so a killed
   * process leaves either all old or all new). Until then the old metadata is untouched and
   * describes the image exactly; the new clusters are unreferenced with refcount 0. Clusters
   * freed by the switch are reused only after the second flush. Cost: one pass over the L2
   * tables reached, plus the refcount blocks that change; never the data.
   */
  private async switchMetadata(s: MetadataSwitch): Promise<void> {
    const g = this.g;
    const cs = g.clusterSize;
    const h = this.header;
    if (s.l1.length > QCOW_MAX_L1_SIZE) throw new VisorError('Unsupported', 'qcow2: the L1 table would exceed its maximum size');
    const end = Math.ceil(this.file.length / cs);
    const shadow = new RefcountShadow(this.refs, end);
    for (const t of s.trees) await this.addTree(shadow, t.l1, t.delta);
    for (const f of s.free) if (f.length > 0) await shadow.add(f.offset, f.length, -1);

    const writes: [number, Uint8Array][] = [];
    const place = async (bytes: Uint8Array): Promise<number> => {
      const at = (await shadow.allocate(Math.ceil(bytes.length / cs))) * cs;
      writes.push([at, bytes]);
      return at;
    };

    let snapshots = this.snapshots;
    let stOffset = h.snapshotsOffset;
    let stBytes = this.snapshotTableBytes;
    if (s.snapshots) {
      if (h.nbSnapshots > 0 && this.snapshotTableBytes > 0) await shadow.add(h.snapshotsOffset, this.snapshotTableBytes, -1);
      // Old v2 entries lack disk_size; the rewritten entry records the size that applied.
      const entries = s.snapshots.map((e) => (e.diskSize === undefined ? { ...e, diskSize: this.size } : e));
      const bytes = serializeSnapshotTable(entries);
      snapshots = parseSnapshotTable(bytes, entries.length);
      stOffset = entries.length > 0 ? await place(bytes) : 0;
      stBytes = entries.length > 0 ? bytes.length : 0;
    }

    // The new active L1, with COPIED right for the new refcounts (qcow2.txt: set iff the
    // refcount is exactly one). An L2 table whose entries' flags change is copied, never
    // edited: the old tree must stay valid until the header switch.
    const l1 = s.l1.slice();
    const l1v = new DataView(l1.buffer);
    const l1Offset = l1.length > 0 ? await place(l1) : 0;
    for (let i = 0; i < l1.length / 8; i++) {
      const off = (l1v.getUint32(i * 8) & HI_OFFSET_MASK) * 0x1_0000_0000 + ((l1v.getUint32(i * 8 + 4) & LO_OFFSET_MASK) >>> 0);
      if (off === 0) {
        l1v.setBigUint64(i * 8, 0n);
        continue;
      }
      const t = await this.loadL2(off);
      const tv = new DataView(t.buffer, t.byteOffset);
      let copy: Uint8Array | undefined;
      for (let j = 0; j < g.l2Entries; j++) {
        const m = decodeL2(tv, j, g);
        let want = m.copied;
        if (m.kind === 'normal' || (m.kind === 'zero' && m.host !== 0)) want = (await shadow.get(m.host / cs)) === 1;
        else if (m.kind === 'compressed') want = false;
        if (want === m.copied) continue;
        copy ??= t.slice();
        const hi = tv.getUint32(j * 8);
        new DataView(copy.buffer).setUint32(j * 8, want ? (hi | HI_COPIED) >>> 0 : (hi & ~HI_COPIED) >>> 0);
      }
      let host = off;
      if (copy) {
        host = await place(copy);
        await shadow.add(off, cs, -1);
      }
      const [hi, lo] = encodeStd(host, (await shadow.get(host / cs)) === 1, false);
      l1v.setUint32(i * 8, hi);
      l1v.setUint32(i * 8 + 4, lo);
    }

    const rl = await shadow.layout();
    writes.push([rl.tableOffset, rl.table], ...rl.blocks.map((b): [number, Uint8Array] => [b.offset, b.data]));
    writes.sort((a, b) => a[0] - b[0]);
    for (const [off, bytes] of writes) await this.file.write(off, bytes);
    await this.file.inner.sync();

    // The commit: header bytes 24-71 in one write (qcow2.txt "Header": size, crypt_method,
    // l1_size, l1_table_offset, refcount_table_offset, refcount_table_clusters,
    // nb_snapshots, snapshots_offset).
    const hb = new Uint8Array(48);
    const hv = new DataView(hb.buffer);
    hv.setBigUint64(0, BigInt(s.size));
    hv.setUint32(8, h.cryptMethod);
    hv.setUint32(12, l1.length / 8);
    hv.setBigUint64(16, BigInt(l1Offset));
    hv.setBigUint64(24, BigInt(rl.tableOffset));
    hv.setUint32(32, rl.tableClusters);
    hv.setUint32(36, snapshots.length);
    hv.setBigUint64(40, BigInt(stOffset));
    await this.file.write(24, hb);

    // The disk now holds the new state: the in-memory view follows at once, so an error in
    // the sync below cannot leave this device writing through the old (freed) metadata.
    h.size = s.size;
    h.l1Size = l1.length / 8;
    h.l1TableOffset = l1Offset;
    h.refcountTableOffset = rl.tableOffset;
    h.refcountTableClusters = rl.tableClusters;
    h.nbSnapshots = snapshots.length;
    h.snapshotsOffset = stOffset;
    this.l1 = l1;
    this.l1View = l1v;
    this.snapshots = snapshots;
    this.snapshotTableBytes = stBytes;
    this.refs = await this.loadRefcounts();
    // Freed clusters may be reused for anything now: drop what was cached about them.
    this.l2Cache.clear();
    this.compressedCache = undefined;
    this.compressedFree = 0;
    // Only after this sync may the freed clusters be reused (the lock is held until then).
    await this.file.inner.sync();
  }

  createSnapshot(name: string, now = Date.now()): Promise<SnapshotInfo> {
    checkWritable('snapshot create', this.readOnly);
    if (!name || new TextEncoder().encode(name).length > 65535) throw new VisorError('InvalidArgument', 'snapshot name must be 1-65535 bytes');
    return this.lock.run(async () => {
      if (this.snapshots.some((s) => s.name === name || s.id === name)) throw new VisorError('InvalidArgument', `qcow2: a snapshot named '${name}' already exists`);
      if (this.snapshots.length + 1 > QCOW_MAX_SNAPSHOTS) throw new VisorError('Unsupported', 'qcow2: too many snapshots');
      const ids = this.snapshots.map((s) => Number.parseInt(s.id, 10)).filter((n) => Number.isFinite(n));
      // The current active L1 table becomes the snapshot's, as it is on disk (QEMU's
      // snapshot L1 tables keep the COPIED bits too; only the active tree's are checked);
      // the active image moves to a fresh copy.
      const entry: SnapshotEntry = {
        l1TableOffset: this.header.l1TableOffset,
        l1Size: this.header.l1Size,
        id: String(ids.length ? Math.max(...ids) + 1 : 1),
        name,
        dateSec: Math.floor(now / 1000),
        dateNsec: (now % 1000) * 1e6,
        vmClockNsec: 0n,
        vmStateSize: 0,
        diskSize: this.size,
        icount: 0xffffffffffffffffn,
        extraData: new Uint8Array(0),
      };
      await this.switchMetadata({
        l1: this.l1,
        trees: [{ l1: this.l1, delta: +1 }],
        free: [],
        snapshots: [...this.snapshots, entry],
        size: this.size,
      });
      return this.listSnapshots().at(-1)!;
    });
  }

  /** Reverts the active image to a snapshot (one atomic metadata switch). */
  applySnapshot(idOrName: string): Promise<void> {
    checkWritable('snapshot apply', this.readOnly);
    return this.lock.run(async () => {
      const sn = this.findSnapshot(idOrName);
      const snL1 = new Uint8Array(sn.l1Size * 8);
      await this.file.read(sn.l1TableOffset, snL1);
      const l1 = new Uint8Array(Math.max(sn.l1Size, this.header.l1Size) * 8);
      l1.set(snL1);
      await this.switchMetadata({
        l1,
        trees: [
          { l1: snL1, delta: +1 },
          { l1: this.l1, delta: -1 },
        ],
        free: [{ offset: this.header.l1TableOffset, length: this.header.l1Size * 8 }],
        size: sn.diskSize ?? this.size,
      });
    });
  }

  /** Deletes a snapshot (one atomic metadata switch); clusters only it held are freed. */
  deleteSnapshot(idOrName: string): Promise<void> {
    checkWritable('snapshot delete', this.readOnly);
    return this.lock.run(async () => {
      const sn = this.findSnapshot(idOrName);
      const snL1 = new Uint8Array(sn.l1Size * 8);
      await this.file.read(sn.l1TableOffset, snL1);
      await this.switchMetadata({
        l1: this.l1,
        trees: [{ l1: snL1, delta: -1 }],
        free: [
          { offset: sn.l1TableOffset, length: sn.l1Size * 8 },
          { offset: this.header.l1TableOffset, length: this.header.l1Size * 8 },
        ],
        snapshots: this.snapshots.filter((s) => s !== sn),
        size: this.size,
      });
    });
  }
}

/** One snapshot operation's new metadata, as switchMetadata builds and commits it. */
interface MetadataSwitch {
  /** Entries of the new active L1 table (its COPIED flags are recomputed). */
  l1: Uint8Array;
  /** L1 tables whose whole tree gains or loses one reference. */
  trees: { l1: Uint8Array; delta: number }[];
  /** Metadata that loses its one reference (old L1 tables). */
  free: { offset: number; length: number }[];
  /** The new snapshot table; absent: unchanged. */
  snapshots?: SnapshotEntry[];
  /** The virtual size afterwards. */
  size: number;
}

function padTo(b: Uint8Array, n: number): Uint8Array {
  if (b.length >= n) return b;
  const out = new Uint8Array(n);
  out.set(b);
  return out;
}

function checkTableRange(what: string, offset: number, bytes: number, g: Geometry, fileSize: number): void {
  if (offset % g.clusterSize !== 0 || offset === 0) throw corrupt(`${what} offset 0x${offset.toString(16)} is invalid`);
  if (offset + bytes > fileSize) throw corrupt(`${what} lies outside the file`);
}

/** Routes writes made through a raw FileHandle (refcount code) past the length tracker. */
function trackingHandle(inner: FileHandle, tracked: TrackedFile): FileHandle {
  return {
    size: () => inner.size(),
    read: (o, b) => inner.read(o, b),
    write: (o, d) => tracked.write(o, d),
    truncate: (s) => inner.truncate(s),
    punchHole: (o, l) => inner.punchHole(o, l),
    sync: () => inner.sync(),
    close: () => inner.close(),
  };
}

async function readSnapshots(file: FileHandle, h: Qcow2Header, g: Geometry, fileSize: number): Promise<[SnapshotEntry[], number]> {
  if (h.nbSnapshots === 0) return [[], 0];
  if (h.nbSnapshots > QCOW_MAX_SNAPSHOTS) throw new VisorError('BadImage', `qcow2: ${h.nbSnapshots} snapshots is too many`);
  checkTableRange('snapshot table', h.snapshotsOffset, 40, g, fileSize);
  // Entries have variable length: read them one by one, each bounded.
  const parts: Uint8Array[] = [];
  let off = h.snapshotsOffset;
  let tableEnd = off;
  for (let i = 0; i < h.nbSnapshots; i++) {
    const head = new Uint8Array(40);
    if (off + 40 > fileSize) throw corrupt('snapshot table is truncated');
    await file.read(off, head);
    const v = new DataView(head.buffer);
    const extra = v.getUint32(36);
    if (extra > QCOW_MAX_SNAPSHOT_EXTRA_DATA) throw new VisorError('BadImage', `qcow2: snapshot ${i}: extra data size ${extra} is too large`);
    // Entries are padded to 8 bytes, except that QEMU leaves the last one unpadded (its table
    // size ends at the last name): the unpadded length must fit in the file; the padding
    // reads as zeros past the end (FileHandle contract).
    const rawLen = 40 + extra + v.getUint16(12) + v.getUint16(14);
    if (off + rawLen > fileSize) throw corrupt('snapshot table is truncated');
    const e = new Uint8Array(Math.ceil(rawLen / 8) * 8);
    await file.read(off, e);
    parts.push(e);
    tableEnd = off + rawLen;
    off += e.length;
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  const entries = parseSnapshotTable(all, h.nbSnapshots);
  for (const s of entries) {
    if (s.l1Size * 8 > QCOW_MAX_L1_SIZE) throw new VisorError('BadImage', `qcow2: snapshot '${s.name}' has an absurd L1 size`);
    if (s.l1Size > 0) checkTableRange(`snapshot '${s.name}' L1 table`, s.l1TableOffset, s.l1Size * 8, g, fileSize);
    if (s.diskSize !== undefined && s.diskSize > MAX_VIRTUAL_SIZE) throw new VisorError('BadImage', `qcow2: snapshot '${s.name}' has an absurd size`);
    if (s.diskSize !== undefined && s.l1Size < l1SizeFor(s.diskSize, g)) throw corrupt(`snapshot '${s.name}' L1 table is too small for its size`);
  }
  // The table's size as QEMU counts it (no padding after the last entry): what a rewrite frees.
  return [entries, tableEnd - h.snapshotsOffset];
}
