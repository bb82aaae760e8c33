import { VisorError } from '../../base/errors.js';
import type { FileHandle } from '../block-device.js';
import { LruCache } from './lru.js';
import { QCOW_MAX_REFTABLE_SIZE, type Geometry } from './format.js';

/**
 * Refcount table and blocks (qcow2.txt "Reference counts"). Every cluster of the file has a
 * refcount: 0 = free. The table lists refcount blocks; a cluster whose block is missing has
 * refcount 0.
 *
 * Crash-safety rule (the only one that matters here): a refcount is raised *before* anything
 * points at the cluster, and lowered only *after* the last pointer to it is gone. A process
 * killed between the two steps leaves a refcount that is too high, which `qemu-img check`
 * reports as a leak (harmless, repairable), never one that is too low (corruption).
 * Writes go straight to the file (write-through) in that order; the cache only saves reads.
 */
export class Refcounts {
  /** Refcount block offsets, indexed by block number; 0 = no block. */
  table: number[];
  private readonly blocks: LruCache<number, Uint8Array>;
  /** Blocks changed while writes are deferred (batched metadata operations). */
  private readonly dirty = new Map<number, Uint8Array>();
  private deferring = 0;
  /** No cluster below this index is free (allocation scan start). */
  private freeHint = 1;
  readonly maxRefcount: number;

  constructor(
    private readonly file: FileHandle,
    private readonly g: Geometry,
    public tableOffset: number,
    public tableClusters: number,
    table: number[],
    /** Points the header at a new refcount table (one 12-byte write: offset and clusters). */
    private readonly onTableMoved: (offset: number, clusters: number) => Promise<void>,
    /** Called before a cluster's contents are written, to stop metadata overwrites. */
    private readonly fileSize: () => number,
    cacheBytes = 8 << 20,
  ) {
    this.table = table;
    this.blocks = new LruCache(Math.max(4, Math.floor(cacheBytes / g.clusterSize)));
    this.maxRefcount = g.refcountBits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** g.refcountBits - 1;
  }

  static async load(
    file: FileHandle,
    g: Geometry,
    tableOffset: number,
    tableClusters: number,
    fileSize: number,
    onTableMoved: (offset: number, clusters: number) => Promise<void>,
    getFileSize: () => number,
  ): Promise<Refcounts> {
    const bytes = tableClusters * g.clusterSize;
    if (bytes > QCOW_MAX_REFTABLE_SIZE) throw new VisorError('BadImage', `qcow2: refcount table of ${bytes} bytes is too large`);
    if (tableOffset % g.clusterSize !== 0 || tableOffset === 0) throw new VisorError('CorruptImage', `qcow2: refcount table offset 0x${tableOffset.toString(16)} is invalid`);
    if (tableOffset + bytes > fileSize) throw new VisorError('CorruptImage', 'qcow2: refcount table lies outside the file');
    const buf = new Uint8Array(bytes);
    await file.read(tableOffset, buf);
    const view = new DataView(buf.buffer);
    const table: number[] = new Array(bytes / 8);
    for (let i = 0; i < table.length; i++) {
      const hi = view.getUint32(i * 8);
      const lo = view.getUint32(i * 8 + 4);
      // REFT_OFFSET_MASK: bits 9-63; bits 0-8 reserved.
      if (hi > 0x1fffff) throw new VisorError('CorruptImage', `qcow2: refcount block offset in entry ${i} is absurd`);
      table[i] = hi * 0x1_0000_0000 + ((lo & ~0x1ff) >>> 0);
    }
    return new Refcounts(file, g, tableOffset, tableClusters, table, onTableMoved, getFileSize);
  }

  get geometry(): Geometry {
    return this.g;
  }

  /** No cluster below this index is free (where a free-cluster scan may start). */
  get firstMaybeFree(): number {
    return this.freeHint;
  }

  /** Clusters the refcount table can describe. */
  get coveredClusters(): number {
    return this.table.length * this.g.refcountBlockEntries;
  }

  private async block(blockIndex: number): Promise<Uint8Array | undefined> {
    const off = this.table[blockIndex] ?? 0;
    if (off === 0) return undefined;
    const d = this.dirty.get(off);
    if (d) return d;
    let b = this.blocks.get(off);
    if (!b) {
      if (off % this.g.clusterSize !== 0 || off + this.g.clusterSize > this.fileSize()) {
        throw new VisorError('CorruptImage', `qcow2: refcount block ${blockIndex} at 0x${off.toString(16)} lies outside the file or is unaligned`);
      }
      b = new Uint8Array(this.g.clusterSize);
      await this.file.read(off, b);
      this.blocks.set(off, b);
    }
    return b;
  }

  async get(cluster: number): Promise<number> {
    const b = await this.block(Math.floor(cluster / this.g.refcountBlockEntries));
    return b ? readEntry(b, cluster % this.g.refcountBlockEntries, this.g.refcountOrder) : 0;
  }

  /** Batches refcount writes until endDefer(); used by whole-tree operations (snapshots, repair). */
  beginDefer(): void {
    this.deferring++;
  }

  async endDefer(): Promise<void> {
    if (--this.deferring > 0) return;
    for (const [off, b] of this.dirty) {
      await this.file.write(off, b);
      this.blocks.set(off, b);
    }
    this.dirty.clear();
  }

  /** Sets one refcount; its block must exist. */
  private async setExisting(cluster: number, value: number): Promise<void> {
    const bi = Math.floor(cluster / this.g.refcountBlockEntries);
    const b = await this.block(bi);
    if (!b) throw new VisorError('Internal', `qcow2: refcount block ${bi} missing`);
    const idx = cluster % this.g.refcountBlockEntries;
    const [start, len] = writeEntry(b, idx, this.g.refcountOrder, value);
    const off = this.table[bi]!;
    if (this.deferring > 0) {
      this.dirty.set(off, b);
      return;
    }
    await this.file.write(off + start, b.subarray(start, start + len));
  }

  /** Sets the refcounts of a run of clusters (blocks must exist), one write per block. */
  private async setRun(start: number, n: number, value: number): Promise<void> {
    const entries = this.g.refcountBlockEntries;
    let c = start;
    while (c < start + n) {
      const bi = Math.floor(c / entries);
      const b = await this.block(bi);
      if (!b) throw new VisorError('Internal', `qcow2: refcount block ${bi} missing`);
      const end = Math.min(start + n, (bi + 1) * entries);
      let lo = Infinity;
      let hi = 0;
      for (let k = c; k < end; k++) {
        const [s0, l0] = writeEntry(b, k % entries, this.g.refcountOrder, value);
        lo = Math.min(lo, s0);
        hi = Math.max(hi, s0 + l0);
      }
      const off = this.table[bi]!;
      if (this.deferring > 0) this.dirty.set(off, b);
      else await this.file.write(off + lo, b.subarray(lo, hi));
      c = end;
    }
  }

  /** Adds `delta` to the refcount of every cluster overlapping [offset, offset+length). */
  async update(offset: number, length: number, delta: number): Promise<void> {
    const first = Math.floor(offset / this.g.clusterSize);
    const last = Math.floor((offset + length - 1) / this.g.clusterSize);
    if (delta > 0 && (last + 1) * this.g.clusterSize > Math.ceil(this.fileSize() / this.g.clusterSize) * this.g.clusterSize) {
      // Only metadata that points past the end of the file asks for this: never grow for it.
      throw new VisorError('CorruptImage', `qcow2: reference to cluster ${last}, past the end of the file`);
    }
    for (let c = first; c <= last; c++) {
      const cur = await this.get(c);
      const next = cur + delta;
      if (next < 0) throw new VisorError('CorruptImage', `qcow2: refcount of cluster ${c} would drop below zero`);
      if (next > this.maxRefcount) throw new VisorError('Unsupported', `qcow2: refcount overflow on cluster ${c} (max ${this.maxRefcount} with ${this.g.refcountBits}-bit refcounts)`);
      const bi = Math.floor(c / this.g.refcountBlockEntries);
      if (next > 0 && (bi >= this.table.length || this.table[bi] === 0)) await this.ensureBlock(c);
      await this.setExisting(c, next);
      if (next === 0 && c < this.freeHint) this.freeHint = c;
    }
  }

  /**
   * Allocates `n` contiguous clusters with refcount 1 and returns the byte offset of the first.
   * The caller then writes the contents and only afterwards links them in (see class comment).
   */
  async alloc(n: number): Promise<number> {
    for (;;) {
      const start = await this.findFree(n);
      const entries = this.g.refcountBlockEntries;
      let missing = -1;
      for (let c = start; c < start + n; c++) {
        const bi = Math.floor(c / entries);
        if (bi >= this.table.length || this.table[bi] === 0) {
          missing = c;
          break;
        }
      }
      if (missing >= 0) {
        // Creating a block takes a free cluster, maybe one of ours: search again afterwards.
        await this.ensureBlock(missing);
        continue;
      }
      await this.setRun(start, n, 1);
      this.freeHint = start + n;
      return start * this.g.clusterSize;
    }
  }

  private async findFree(n: number): Promise<number> {
    let run = 0;
    let c = this.freeHint;
    for (;; c++) {
      if ((await this.get(c)) === 0) {
        run++;
        if (run === n) return c - n + 1;
      } else {
        run = 0;
        if (c === this.freeHint) this.freeHint = c + 1;
      }
    }
  }

  /**
   * Makes sure a refcount block covers `cluster`. A block's range has no block yet, so every
   * cluster in it is free: the new block goes in its own range (first free cluster at or after
   * the range start) and describes itself, so no other block changes.
   */
  private async ensureBlock(cluster: number): Promise<void> {
    const entries = this.g.refcountBlockEntries;
    const bi = Math.floor(cluster / entries);
    if (bi >= this.table.length) {
      await this.growTable(bi);
      return;
    }
    if (this.table[bi] !== 0) return;
    const rangeStart = bi * entries;
    const at = rangeStart === 0 ? 1 : rangeStart; // cluster 0 is the header
    const block = new Uint8Array(this.g.clusterSize);
    writeEntry(block, at - rangeStart, this.g.refcountOrder, 1);
    const off = at * this.g.clusterSize;
    await this.file.write(off, block);
    this.blocks.set(off, block);
    // Only now does the table point at it.
    this.table[bi] = off;
    const e = new Uint8Array(8);
    new DataView(e.buffer).setBigUint64(0, BigInt(off));
    await this.file.write(this.tableOffset + bi * 8, e);
  }

  /**
   * Moves the refcount table to a bigger one. The new table and the block describing it go in
   * the range of block `needed` (past every covered cluster, so all free); the header switches
   * to it in one write; only then are the old table's clusters released.
   */
  private async growTable(needed: number): Promise<void> {
    const g = this.g;
    const perCluster = g.clusterSize / 8;
    const entries = Math.max(needed + 1, this.table.length * 2);
    const clusters = Math.ceil(entries / perCluster);
    if (clusters * g.clusterSize > QCOW_MAX_REFTABLE_SIZE) throw new VisorError('Unsupported', 'qcow2: image too large: refcount table would exceed its maximum size');
    if (clusters + 1 > g.refcountBlockEntries) throw new VisorError('Unsupported', 'qcow2: refcount table too large for this cluster and refcount size');
    const rangeStart = needed * g.refcountBlockEntries;
    const block = new Uint8Array(g.clusterSize);
    for (let i = 0; i <= clusters; i++) writeEntry(block, i, g.refcountOrder, 1);
    const blockOff = rangeStart * g.clusterSize;
    const tableOff = blockOff + g.clusterSize;
    const newTable = this.table.slice();
    while (newTable.length < clusters * perCluster) newTable.push(0);
    newTable[needed] = blockOff;
    const tbuf = new Uint8Array(clusters * g.clusterSize);
    const tv = new DataView(tbuf.buffer);
    newTable.forEach((o, i) => tv.setBigUint64(i * 8, BigInt(o)));
    await this.file.write(blockOff, block);
    await this.file.write(tableOff, tbuf);
    this.blocks.set(blockOff, block);
    const oldOffset = this.tableOffset;
    const oldClusters = this.tableClusters;
    await this.onTableMoved(tableOff, clusters);
    this.table = newTable;
    this.tableOffset = tableOff;
    this.tableClusters = clusters;
    await this.update(oldOffset, oldClusters * g.clusterSize, -1);
  }

  /** Refcount block `blockIndex` as cached (do not modify), or undefined when there is none. */
  readBlock(blockIndex: number): Promise<Uint8Array | undefined> {
    return this.block(blockIndex);
  }

  /** A copy of refcount block `blockIndex` (zeros when the table has no block there). */
  async blockCopy(blockIndex: number): Promise<Uint8Array> {
    const b = await this.block(blockIndex);
    return b ? b.slice() : new Uint8Array(this.g.clusterSize);
  }

  /** Rewrites the whole cached block set (repair). */
  async setAbsolute(cluster: number, value: number): Promise<void> {
    if (value > this.maxRefcount) throw new VisorError('Unsupported', `qcow2: refcount overflow on cluster ${cluster}`);
    const bi = Math.floor(cluster / this.g.refcountBlockEntries);
    if (value > 0 && (bi >= this.table.length || this.table[bi] === 0)) await this.ensureBlock(cluster);
    if (bi >= this.table.length || this.table[bi] === 0) return;
    await this.setExisting(cluster, value);
    if (value === 0 && cluster < this.freeHint) this.freeHint = cluster;
  }
}

/** Reads refcount `idx` from a block; sub-byte widths are packed LSB first (as QEMU does). */
export function readEntry(b: Uint8Array, idx: number, order: number): number {
  switch (order) {
    case 0:
      return (b[idx >> 3]! >> (idx & 7)) & 1;
    case 1:
      return (b[idx >> 2]! >> ((idx & 3) * 2)) & 3;
    case 2:
      return (b[idx >> 1]! >> ((idx & 1) * 4)) & 15;
    case 3:
      return b[idx]!;
    case 4:
      return (b[idx * 2]! << 8) | b[idx * 2 + 1]!;
    case 5:
      return ((b[idx * 4]! << 24) | (b[idx * 4 + 1]! << 16) | (b[idx * 4 + 2]! << 8) | b[idx * 4 + 3]!) >>> 0;
    default: {
      const v = new DataView(b.buffer, b.byteOffset + idx * 8, 8);
      const hi = v.getUint32(0);
      // Anything past 2^53 is absurd for a refcount: clamp so comparisons still work.
      return hi > 0x1fffff ? Number.MAX_SAFE_INTEGER : hi * 0x1_0000_0000 + v.getUint32(4);
    }
  }
}

/** Writes refcount `idx`; returns the [start, length] byte range that changed. */
export function writeEntry(b: Uint8Array, idx: number, order: number, value: number): [number, number] {
  switch (order) {
    case 0: {
      const i = idx >> 3;
      b[i] = (b[i]! & ~(1 << (idx & 7))) | ((value & 1) << (idx & 7));
      return [i, 1];
    }
    case 1: {
      const i = idx >> 2;
      const s = (idx & 3) * 2;
      b[i] = (b[i]! & ~(3 << s)) | ((value & 3) << s);
      return [i, 1];
    }
    case 2: {
      const i = idx >> 1;
      const s = (idx & 1) * 4;
      b[i] = (b[i]! & ~(15 << s)) | ((value & 15) << s);
      return [i, 1];
    }
    case 3:
      b[idx] = value;
      return [idx, 1];
    case 4:
      b[idx * 2] = value >>> 8;
      b[idx * 2 + 1] = value & 0xff;
      return [idx * 2, 2];
    case 5:
      new DataView(b.buffer, b.byteOffset).setUint32(idx * 4, value);
      return [idx * 4, 4];
    default:
      new DataView(b.buffer, b.byteOffset).setBigUint64(idx * 8, BigInt(value));
      return [idx * 8, 8];
  }
}

/** Where RefcountShadow.layout() puts the new refcount table and blocks, and their bytes. */
export interface RefcountLayout {
  tableOffset: number;
  tableClusters: number;
  table: Uint8Array;
  blocks: { offset: number; data: Uint8Array }[];
}

/**
 * The refcounts as they will be after one atomic metadata switch (Qcow2Device
 * switchMetadata). Nothing is written here: changes go to private copies of the refcount
 * blocks they touch, and layout() then places those copies and a new refcount table, which
 * count themselves and count the old blocks and old table they replace as free.
 *
 * New metadata goes only to clusters that are free both before and after the switch
 * (refcount 0 in the old table, not claimed since): the old metadata references none of them,
 * so writing there before the commit leaves the old image exactly as it was (unreferenced
 * clusters with refcount 0: qemu-img check counts nothing, not even a leak). Clusters this
 * switch frees still have their old refcount and are never chosen: they are reused only
 * after the commit. Free clusters inside the file come first, so repeated snapshot
 * operations do not grow the file without bound.
 */
export class RefcountShadow {
  private readonly blocks = new Map<number, Uint8Array>();
  private readonly g: Geometry;
  /** Set by layout(): the only blocks that may still change. */
  private frozen: Set<number> | undefined;
  /** Allocation scan position: only moves forward (claims only make clusters non-free). */
  private cursor: number;

  constructor(
    private readonly refs: Refcounts,
    /** Clusters at or past this index lie past the end of the file. */
    private readonly endCluster: number,
  ) {
    this.g = refs.geometry;
    this.cursor = Math.max(1, refs.firstMaybeFree);
  }

  private async blockFor(bi: number): Promise<Uint8Array> {
    let b = this.blocks.get(bi);
    if (!b) {
      if (this.frozen && !this.frozen.has(bi)) throw new VisorError('Internal', `qcow2: refcount block ${bi} changed after layout`);
      b = await this.refs.blockCopy(bi);
      this.blocks.set(bi, b);
    }
    return b;
  }

  async get(cluster: number): Promise<number> {
    const e = this.g.refcountBlockEntries;
    const b = this.blocks.get(Math.floor(cluster / e));
    return b ? readEntry(b, cluster % e, this.g.refcountOrder) : this.refs.get(cluster);
  }

  /**
   * Adds `delta` to every cluster overlapping [offset, offset+length). Checks what
   * Refcounts.update checks, before anything reaches the disk: references past the end of
   * the file, refcounts below zero, overflow.
   */
  async add(offset: number, length: number, delta: number): Promise<void> {
    const cs = this.g.clusterSize;
    const e = this.g.refcountBlockEntries;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + length - 1) / cs);
    if (last >= this.endCluster) throw new VisorError('CorruptImage', `qcow2: reference to cluster ${last}, past the end of the file`);
    for (let c = first; c <= last; c++) {
      const b = await this.blockFor(Math.floor(c / e));
      const next = readEntry(b, c % e, this.g.refcountOrder) + delta;
      if (next < 0) throw new VisorError('CorruptImage', `qcow2: refcount of cluster ${c} would drop below zero`);
      if (next > this.refs.maxRefcount) {
        throw new VisorError('Unsupported', `qcow2: refcount overflow on cluster ${c} (max ${this.refs.maxRefcount} with ${this.g.refcountBits}-bit refcounts)`);
      }
      writeEntry(b, c % e, this.g.refcountOrder, next);
    }
  }

  private async setClaim(c: number, value: 0 | 1): Promise<void> {
    const e = this.g.refcountBlockEntries;
    writeEntry(await this.blockFor(Math.floor(c / e)), c % e, this.g.refcountOrder, value);
  }

  /** Claims `n` contiguous free clusters (refcount 1 after the switch); returns the first index. */
  async allocate(n: number): Promise<number> {
    const e = this.g.refcountBlockEntries;
    const order = this.g.refcountOrder;
    let run = 0;
    let c = this.cursor;
    // Block by block, so the scan costs a pass over the refcount blocks, not an await per cluster.
    while (run < n) {
      const bi = Math.floor(c / e);
      const before = await this.refs.readBlock(bi);
      const after = this.blocks.get(bi);
      for (const end = (bi + 1) * e; c < end && run < n; c++) {
        const free = (!before || readEntry(before, c % e, order) === 0) && (!after || readEntry(after, c % e, order) === 0);
        run = free ? run + 1 : 0;
      }
    }
    const start = c - n;
    for (let k = start; k < c; k++) await this.setClaim(k, 1);
    this.cursor = c;
    return start;
  }

  /**
   * Places the new refcount table and the new blocks. Which blocks change depends on where
   * the table and blocks go (they count themselves, and each replaced block frees its old
   * cluster, counted in some other block), so the placement is redone until the number of
   * blocks and the table size stop growing; both only grow and both are bounded, so it ends,
   * in two or three rounds in practice.
   */
  async layout(): Promise<RefcountLayout> {
    const g = this.g;
    const cs = g.clusterSize;
    const e = g.refcountBlockEntries;
    const perCluster = cs / 8;
    const old = this.refs.table;
    const oldFirst = this.refs.tableOffset / cs;
    const oldClusters = this.refs.tableClusters;
    const bi = (c: number) => Math.floor(c / e);
    const cursor = this.cursor;
    let tableClusters = oldClusters;
    let slots = 0;
    let tableAt = 0;
    let slotAt: number[] = [];
    let set: Set<number>;
    for (;;) {
      // Undo the previous round's placement, then place again from the same point.
      if (tableAt > 0) for (let c = tableAt; c < tableAt + tableClusters; c++) await this.setClaim(c, 0);
      for (const c of slotAt) await this.setClaim(c, 0);
      this.cursor = cursor;
      tableAt = await this.allocate(tableClusters);
      slotAt = [];
      for (let k = 0; k < slots; k++) slotAt.push(await this.allocate(1));
      // Blocks touched so far (claims included), the old table's, and by closure the ones
      // holding the refcounts of the old copies of all of them.
      set = new Set(this.blocks.keys());
      for (let c = oldFirst; c < oldFirst + oldClusters; c++) set.add(bi(c));
      const queue = [...set];
      while (queue.length > 0) {
        const off = old[queue.pop()!] ?? 0;
        if (off === 0) continue;
        const ob = bi(off / cs);
        if (!set.has(ob)) {
          set.add(ob);
          queue.push(ob);
        }
      }
      let maxBlock = old.length - 1;
      for (const b of set) if (b > maxBlock) maxBlock = b;
      const need = Math.ceil((maxBlock + 1) / perCluster);
      if (set.size <= slots && need <= tableClusters) break;
      // Unclaim with the old size before growing it.
      for (let c = tableAt; c < tableAt + tableClusters; c++) await this.setClaim(c, 0);
      tableAt = 0;
      slots = Math.max(slots, set.size);
      tableClusters = Math.max(tableClusters, need);
      if (tableClusters * cs > QCOW_MAX_REFTABLE_SIZE) throw new VisorError('Unsupported', 'qcow2: image too large: refcount table would exceed its maximum size');
    }
    this.frozen = set;
    // Slots beyond the blocks needed stay free.
    const order = [...set].sort((a, b) => a - b);
    for (const c of slotAt.slice(order.length)) await this.setClaim(c, 0);
    // The old table and the old copies of replaced blocks lose their one reference.
    if (oldClusters > 0) await this.add(oldFirst * cs, oldClusters * cs, -1);
    for (const b of set) if ((old[b] ?? 0) !== 0) await this.add(old[b]!, cs, -1);
    const table = new Uint8Array(tableClusters * cs);
    const tv = new DataView(table.buffer);
    old.forEach((off, i) => tv.setBigUint64(i * 8, BigInt(off)));
    order.forEach((b, k) => tv.setBigUint64(b * 8, BigInt(slotAt[k]! * cs)));
    // Contents last: the claims and frees above may have changed any block of the set.
    const blocks: { offset: number; data: Uint8Array }[] = [];
    for (let k = 0; k < order.length; k++) blocks.push({ offset: slotAt[k]! * cs, data: await this.blockFor(order[k]!) });
    return { tableOffset: tableAt * cs, tableClusters, table, blocks };
  }
}
