/**
 * The split virtqueue, device side (virtio 1.2 §2.7).
 *
 * Everything in the rings is written by a guest that may be buggy or hostile, so every
 * index, address and length is checked before use. The ring areas themselves are checked
 * once when the driver makes the queue ready (`enable()`); after that each ring access is
 * in bounds by construction. A malformed chain (index out of range, loop, nested or
 * misplaced indirect table, readable after writable, buffer outside RAM, too many bytes)
 * marks the queue broken: the transport then sets DEVICE_NEEDS_RESET (§2.1.2) and the queue
 * hands out nothing more until reset. The walk is bounded by the queue size, so it cannot
 * hang.
 */
import { GuestMemory } from '../guest-memory.js';
import { DescriptorChain, type Segment } from './chain.js';

// virtio 1.2 §2.7.5 The Virtqueue Descriptor Table
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
// §2.7.6 The Virtqueue Available Ring
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
// §2.7.8 The Virtqueue Used Ring
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** §2.7: "The maximum Queue Size value is 32768". */
export const VIRTQ_MAX_SIZE = 32768;
const DESC_SIZE = 16;

/** Plain, named fields: what a snapshot (issue 7) stores for one queue. */
export interface SplitQueueState {
  size: number;
  ready: boolean;
  descAddr: number;
  driverAddr: number;
  deviceAddr: number;
  lastAvailIdx: number;
  usedIdx: number;
  signalledUsed: number;
  signalledUsedValid: boolean;
  broken: string | null;
}

export interface SplitQueueOptions {
  /** Largest queue size the device offers (QueueNumMax). */
  maxSize: number;
  /** Cap on the bytes of one chain (readable + writable) so a guest cannot make us allocate
   *  gigabytes by pointing many descriptors at the same RAM. */
  maxChainBytes?: number;
}

export class SplitQueue {
  readonly maxSize: number;
  readonly maxChainBytes: number;
  // Driver-programmed registers (§4.2.2).
  size: number;
  ready = false;
  descAddr = 0;
  driverAddr = 0;
  deviceAddr = 0;
  // Device bookkeeping.
  lastAvailIdx = 0;
  usedIdx = 0;
  private signalledUsed = 0;
  private signalledUsedValid = false;
  /** Why the queue stopped, or null while it is healthy. */
  broken: string | null = null;
  // Negotiated features, set by the transport at FEATURES_OK.
  eventIdx = false;
  indirect = false;
  /** Called once when the queue breaks; the transport sets DEVICE_NEEDS_RESET. */
  onBroken: (reason: string) => void = () => {};

  private mem: GuestMemory;
  // RAM offsets of the three areas, valid while `ready`.
  private descOff = 0;
  private availOff = 0;
  private usedOff = 0;

  /** Writable segments of chains handed to the device, reported on pushUsed (see GuestRam). */
  private readonly inflightWritable = new Map<number, readonly Segment[]>();

  constructor(mem: GuestMemory, opts: SplitQueueOptions) {
    this.mem = mem;
    this.maxSize = opts.maxSize;
    this.size = opts.maxSize;
    this.maxChainBytes = opts.maxChainBytes ?? 64 * 1024 * 1024;
  }

  /**
   * The driver wrote QueueReady=1. Returns an error string if the layout is unusable; the
   * queue then stays not ready. Sizes must be powers of two: the free-running 16-bit ring
   * indices only map consistently onto slots when the size divides 65536.
   */
  enable(): string | null {
    const n = this.size;
    if (n < 1 || n > this.maxSize || (n & (n - 1)) !== 0) return `bad queue size ${n}`;
    // §2.7 alignment: descriptor table 16, available ring 2, used ring 4.
    if (this.descAddr % 16 || this.driverAddr % 2 || this.deviceAddr % 4) return 'misaligned ring';
    const d = this.mem.offset(this.descAddr, DESC_SIZE * n);
    const a = this.mem.offset(this.driverAddr, 6 + 2 * n); // flags, idx, ring[n], used_event
    const u = this.mem.offset(this.deviceAddr, 6 + 8 * n); // flags, idx, ring[n], avail_event
    if (d < 0 || a < 0 || u < 0) return 'ring outside RAM';
    this.descOff = d;
    this.availOff = a;
    this.usedOff = u;
    this.ready = true;
    // A fresh queue starts at index 0 on both rings (§2.7.13.1: the driver zeroes them).
    this.usedIdx = 0;
    this.lastAvailIdx = 0;
    this.signalledUsedValid = false;
    return null;
  }

  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.descAddr = this.driverAddr = this.deviceAddr = 0;
    this.lastAvailIdx = this.usedIdx = this.signalledUsed = 0;
    this.signalledUsedValid = false;
    this.broken = null;
    this.eventIdx = this.indirect = false;
  }

  /** True if the driver has made buffers available that we have not taken yet. */
  hasAvailable(): boolean {
    if (!this.ready || this.broken) return false;
    return this.mem.u16(this.availOff + 2) !== this.lastAvailIdx;
  }

  /** Takes the next available chain, or null if there is none (or the queue is broken). */
  pop(): DescriptorChain | null {
    if (!this.ready || this.broken) return null;
    const availIdx = this.mem.u16(this.availOff + 2);
    const pending = (availIdx - this.lastAvailIdx) & 0xffff;
    if (pending === 0) {
      this.publishAvailEvent();
      return null;
    }
    // §2.7.6: the driver can never be more than a ring ahead of us.
    if (pending > this.size) return this.fail(`avail idx ${availIdx} ran ${pending} ahead`);
    const head = this.mem.u16(this.availOff + 4 + 2 * (this.lastAvailIdx % this.size));
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    this.publishAvailEvent();
    return this.walk(head);
  }

  /**
   * Walks the chain at `head` again without taking anything from the available ring: a
   * restored device resubmits the requests it had taken but not finished when the snapshot
   * was saved (their descriptors are in the saved RAM). Null if the queue is not usable or
   * the chain is malformed (which breaks the queue, as for pop()).
   */
  chainAt(head: number): DescriptorChain | null {
    if (!this.ready || this.broken) return null;
    return this.walk(head);
  }

  /** Returns a chain to the driver with `len` bytes written into its writable part. */
  pushUsed(head: number, len: number): void {
    const segs = this.inflightWritable.get(head);
    if (segs) {
      this.inflightWritable.delete(head);
      let left = len;
      for (const s of segs) {
        if (left <= 0) break;
        const n = Math.min(s.len, left);
        this.mem.onDeviceWrite!(s.off, n);
        left -= n;
      }
    }
    if (!this.ready || this.broken) return;
    const slot = this.usedOff + 4 + 8 * (this.usedIdx % this.size);
    this.mem.setU32(slot, head);
    this.mem.setU32(slot + 4, len);
    // §2.7.8.2: the element is written before idx moves (single-threaded: program order).
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.mem.setU16(this.usedOff + 2, this.usedIdx);
  }

  /**
   * Whether the driver wants an interrupt for the used buffers added since the last call
   * (§2.7.10 with EVENT_IDX, §2.7.7 without).
   */
  needsInterrupt(): boolean {
    if (!this.ready || this.broken) return false;
    const old = this.signalledUsed;
    const neu = this.usedIdx;
    const valid = this.signalledUsedValid;
    this.signalledUsed = neu;
    this.signalledUsedValid = true;
    if (this.eventIdx) {
      if (valid && old === neu) return false;
      const usedEvent = this.mem.u16(this.availOff + 4 + 2 * this.size);
      // vring_need_event(): did new_idx step past used_event since old?
      return !valid || ((neu - usedEvent - 1) & 0xffff) < ((neu - old) & 0xffff);
    }
    return (this.mem.u16(this.availOff) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  saveState(): SplitQueueState {
    return {
      size: this.size,
      ready: this.ready,
      descAddr: this.descAddr,
      driverAddr: this.driverAddr,
      deviceAddr: this.deviceAddr,
      lastAvailIdx: this.lastAvailIdx,
      usedIdx: this.usedIdx,
      signalledUsed: this.signalledUsed,
      signalledUsedValid: this.signalledUsedValid,
      broken: this.broken,
    };
  }

  /** Restores saved (untrusted) state; returns an error string if it does not validate. */
  restore(s: SplitQueueState): string | null {
    const u16 = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff;
    const addr = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
    if (typeof s !== 'object' || s === null) return 'not a queue state';
    if (!addr(s.descAddr) || !addr(s.driverAddr) || !addr(s.deviceAddr)) return 'bad ring address';
    if (s.broken !== null && typeof s.broken !== 'string') return 'bad broken reason';
    if (!u16(s.lastAvailIdx) || !u16(s.usedIdx) || !u16(s.signalledUsed)) return 'bad ring index';
    if (typeof s.ready !== 'boolean' || typeof s.signalledUsedValid !== 'boolean') return 'bad flag';
    this.reset();
    this.size = s.size;
    this.descAddr = s.descAddr;
    this.driverAddr = s.driverAddr;
    this.deviceAddr = s.deviceAddr;
    if (s.ready) {
      const err = this.enable();
      if (err) {
        this.reset();
        return err;
      }
    } else if (!Number.isInteger(s.size) || s.size < 1 || s.size > this.maxSize) {
      return 'bad queue size';
    }
    this.lastAvailIdx = s.lastAvailIdx;
    this.usedIdx = s.usedIdx;
    this.signalledUsed = s.signalledUsed;
    this.signalledUsedValid = s.signalledUsedValid;
    this.broken = typeof s.broken === 'string' ? s.broken : null;
    return null;
  }

  /** §2.7.10: with EVENT_IDX, tell the driver to notify once it adds past what we have seen. */
  private publishAvailEvent(): void {
    if (this.eventIdx) this.mem.setU16(this.usedOff + 4 + 8 * this.size, this.lastAvailIdx);
  }

  private fail(reason: string): null {
    if (!this.broken) {
      this.broken = reason;
      this.onBroken(reason);
    }
    return null;
  }

  /** §2.7.5 and §2.7.5.3: walks and validates one chain. Bounded by the queue size. */
  private walk(head: number): DescriptorChain | null {
    const mem = this.mem;
    const readable: Segment[] = [];
    const writable: Segment[] = [];
    let readableLen = 0;
    let writableLen = 0;
    let table = this.descOff;
    let tableSize = this.size;
    let inIndirect = false;
    let i = head;
    let count = 0;
    let seenWrite = false;
    for (;;) {
      if (i >= tableSize) return this.fail(`descriptor index ${i} out of range`);
      // §2.7.5.3.1: a chain is never longer than the queue size (indirect ones included);
      // this also cuts every loop.
      if (++count > this.size) return this.fail('descriptor chain loops or is too long');
      const d = table + DESC_SIZE * i;
      const addr = mem.u64(d);
      const len = mem.u32(d + 8);
      const flags = mem.u16(d + 12);
      const next = mem.u16(d + 14);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        // §2.7.5.3.1: no nesting, no NEXT alongside INDIRECT, whole descriptors only.
        if (!this.indirect) return this.fail('indirect descriptor without VIRTIO_F_INDIRECT_DESC');
        if (inIndirect) return this.fail('nested indirect table');
        if (flags & VIRTQ_DESC_F_NEXT) return this.fail('indirect descriptor with NEXT');
        if (len === 0 || len % DESC_SIZE) return this.fail(`indirect table length ${len}`);
        const off = mem.offset(addr, len);
        if (off < 0) return this.fail('indirect table outside RAM');
        table = off;
        tableSize = len / DESC_SIZE;
        inIndirect = true;
        i = 0;
        count--; // the table pointer itself is not a buffer
        continue;
      }
      const off = mem.offset(addr, len);
      if (off < 0) return this.fail('buffer outside RAM');
      if (flags & VIRTQ_DESC_F_WRITE) {
        seenWrite = true;
        if (len) writable.push({ off, len });
        writableLen += len;
      } else {
        // §2.7.4.2: device-readable descriptors come before device-writable ones.
        if (seenWrite) return this.fail('readable descriptor after writable');
        if (len) readable.push({ off, len });
        readableLen += len;
      }
      if (readableLen + writableLen > this.maxChainBytes) return this.fail('chain too large');
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      i = next;
    }
    if (writableLen > 0 && mem.onDeviceWrite) this.inflightWritable.set(head, writable);
    return new DescriptorChain(mem.ram, mem.written, head, readable, writable, readableLen, writableLen);
  }
}
