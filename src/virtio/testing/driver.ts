/**
 * A mock guest driver for unit tests. It lays out split rings in a RAM array and drives the
 * MMIO registers in the order Linux's virtio_mmio.c and virtio_ring.c do: reset, ACKNOWLEDGE,
 * DRIVER, feature negotiation with FEATURES_OK read-back, queue setup, DRIVER_OK; buffers go
 * in through the available ring, notifications honour NO_NOTIFY / avail_event, and the
 * interrupt handler reads InterruptStatus and acknowledges it.
 */
import type { AccessSize, IrqSink, MmioDevice } from '../../base/mmio.js';
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_DEVICE_FEATURES,
  VIRTIO_MMIO_DEVICE_FEATURES_SEL,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_MAGIC_VALUE,
  VIRTIO_MMIO_QUEUE_DESC_HIGH,
  VIRTIO_MMIO_QUEUE_DESC_LOW,
  VIRTIO_MMIO_QUEUE_DEVICE_HIGH,
  VIRTIO_MMIO_QUEUE_DEVICE_LOW,
  VIRTIO_MMIO_QUEUE_DRIVER_HIGH,
  VIRTIO_MMIO_QUEUE_DRIVER_LOW,
  VIRTIO_MMIO_QUEUE_NOTIFY,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_STATUS,
  VIRTIO_MMIO_VERSION,
  VirtioMmioTransport,
} from '../mmio/transport.js';
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  bit,
  type VirtioDevice,
} from '../device.js';
import {
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
} from '../queue/split-queue.js';

export const TEST_RAM_BASE = 0x8000_0000;

/** Records the interrupt line so tests can assert on it. */
export class IrqRecorder implements IrqSink {
  level = false;
  raised = 0;
  setIrq(_source: number, level: boolean): void {
    if (level && !this.level) this.raised++;
    this.level = level;
  }
}

export interface UsedBuffer {
  id: number;
  len: number;
  /** The device-writable buffers of the chain, as laid out when added. */
  inBufs: Uint8Array[];
  token: unknown;
}

interface DriverQueue {
  index: number;
  size: number;
  desc: number; // guest addresses
  avail: number;
  used: number;
  freeHead: number[];
  availIdx: number;
  lastUsed: number;
  kickedAt: number; // avail idx at the last notify decision
  pending: Map<number, { descs: number[]; inBufs: Uint8Array[]; token: unknown }>;
}

export interface AddOptions {
  /** Put the chain in an indirect table (needs VIRTIO_F_INDIRECT_DESC). */
  indirect?: boolean;
  token?: unknown;
  /** Do not notify (batch several adds, then call kick()). */
  noKick?: boolean;
}

export class MockDriver {
  readonly view: DataView;
  readonly irq: IrqRecorder;
  features = 0n;
  readonly queues: DriverQueue[] = [];
  notifies = 0;
  private heap: number;

  constructor(
    readonly dev: MmioDevice,
    readonly ram: Uint8Array,
    readonly ramBase = TEST_RAM_BASE,
    irq?: IrqRecorder,
    heapStart = 0x1000,
  ) {
    this.view = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
    this.irq = irq ?? new IrqRecorder();
    this.heap = heapStart;
  }

  /**
   * Builds a transport over `device` with a fresh recorder, and a driver for it whose rings
   * and buffers start at RAM offset `heapStart`.
   */
  static create(device: VirtioDevice, ramBytes = 4 << 20, heapStart = 0x1000): { driver: MockDriver; transport: VirtioMmioTransport } {
    const ram = new Uint8Array(ramBytes);
    const irq = new IrqRecorder();
    const transport = new VirtioMmioTransport({ device, ram: { ram, ramBase: TEST_RAM_BASE }, irq, irqSource: 1 });
    return { driver: new MockDriver(transport, ram, TEST_RAM_BASE, irq, heapStart), transport };
  }

  // --- registers -----------------------------------------------------------------------
  r(off: number, size: AccessSize = 4): number {
    return this.dev.read(off, size) >>> 0;
  }
  w(off: number, v: number, size: AccessSize = 4): void {
    this.dev.write(off, size, v >>> 0);
  }
  config(off: number, size: AccessSize): number {
    return this.r(VIRTIO_MMIO_CONFIG + off, size);
  }
  writeConfig(off: number, size: AccessSize, v: number): void {
    this.w(VIRTIO_MMIO_CONFIG + off, v, size);
  }
  status(): number {
    return this.r(VIRTIO_MMIO_STATUS);
  }

  deviceFeatures(): bigint {
    this.w(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    const hi = BigInt(this.r(VIRTIO_MMIO_DEVICE_FEATURES));
    this.w(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    return (hi << 32n) | BigInt(this.r(VIRTIO_MMIO_DEVICE_FEATURES));
  }

  /**
   * virtio_dev_probe(): reset, ACK, DRIVER, negotiate. `want` is what the driver supports;
   * by default VERSION_1, EVENT_IDX and INDIRECT_DESC plus all device bits below 24.
   * Returns false if the device refused FEATURES_OK.
   */
  init(want: bigint = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC) | 0xff_ffffn): boolean {
    if (this.r(VIRTIO_MMIO_MAGIC_VALUE) !== 0x74726976 || this.r(VIRTIO_MMIO_VERSION) !== 2) return false;
    this.w(VIRTIO_MMIO_STATUS, 0);
    this.w(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    this.w(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    this.features = this.deviceFeatures() & want;
    this.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    this.w(VIRTIO_MMIO_DRIVER_FEATURES, Number(this.features >> 32n));
    this.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    this.w(VIRTIO_MMIO_DRIVER_FEATURES, Number(this.features & 0xffff_ffffn));
    this.w(VIRTIO_MMIO_STATUS, this.status() | VIRTIO_CONFIG_S_FEATURES_OK);
    return (this.status() & VIRTIO_CONFIG_S_FEATURES_OK) !== 0;
  }

  has(feature: number): boolean {
    return (this.features & bit(feature)) !== 0n;
  }

  /** vm_setup_vq(): returns the queue size used, or 0 if the device has no such queue. */
  setupQueue(index: number, size?: number): number {
    this.w(VIRTIO_MMIO_QUEUE_SEL, index);
    if (this.r(VIRTIO_MMIO_QUEUE_READY) !== 0) throw new Error('queue already ready');
    const max = this.r(VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max === 0) return 0;
    const n = Math.min(size ?? max, max);
    const desc = this.alloc(16 * n, 4096);
    const avail = this.alloc(6 + 2 * n, 2);
    const used = this.alloc(6 + 8 * n, 4096);
    this.w(VIRTIO_MMIO_QUEUE_NUM, n);
    this.w(VIRTIO_MMIO_QUEUE_DESC_LOW, desc % 2 ** 32);
    this.w(VIRTIO_MMIO_QUEUE_DESC_HIGH, Math.floor(desc / 2 ** 32));
    this.w(VIRTIO_MMIO_QUEUE_DRIVER_LOW, avail % 2 ** 32);
    this.w(VIRTIO_MMIO_QUEUE_DRIVER_HIGH, Math.floor(avail / 2 ** 32));
    this.w(VIRTIO_MMIO_QUEUE_DEVICE_LOW, used % 2 ** 32);
    this.w(VIRTIO_MMIO_QUEUE_DEVICE_HIGH, Math.floor(used / 2 ** 32));
    this.w(VIRTIO_MMIO_QUEUE_READY, 1);
    this.queues[index] = {
      index, size: n, desc, avail, used,
      freeHead: Array.from({ length: n }, (_, i) => i),
      availIdx: 0, lastUsed: 0, kickedAt: 0, pending: new Map(),
    };
    return n;
  }

  driverOk(): void {
    this.w(VIRTIO_MMIO_STATUS, this.status() | VIRTIO_CONFIG_S_DRIVER_OK);
  }

  /** init() + setupQueue() for `queues` queues + driverOk(). */
  probe(queues: number, want?: bigint): void {
    if (!this.init(want)) throw new Error('FEATURES_OK refused');
    for (let i = 0; i < queues; i++) this.setupQueue(i);
    this.driverOk();
  }

  // --- RAM helpers ---------------------------------------------------------------------
  /** Restarts the bump allocator (after a reset, rings may be laid out again). */
  resetHeap(at = 0x1000): void {
    this.heap = at;
  }
  alloc(len: number, align = 16): number {
    this.heap = Math.ceil(this.heap / align) * align;
    const off = this.heap;
    this.heap += Math.max(len, 1);
    if (this.heap > this.ram.length) throw new Error('mock driver out of RAM');
    return this.ramBase + off;
  }
  bytes(addr: number, len: number): Uint8Array {
    return this.ram.subarray(addr - this.ramBase, addr - this.ramBase + len);
  }
  private u16(addr: number): number {
    return this.view.getUint16(addr - this.ramBase, true);
  }
  private setU16(addr: number, v: number): void {
    this.view.setUint16(addr - this.ramBase, v, true);
  }
  private writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const o = table - this.ramBase + 16 * i;
    this.view.setUint32(o, addr % 2 ** 32, true);
    this.view.setUint32(o + 4, Math.floor(addr / 2 ** 32), true);
    this.view.setUint32(o + 8, len, true);
    this.view.setUint16(o + 12, flags, true);
    this.view.setUint16(o + 14, next, true);
  }

  // --- buffers -------------------------------------------------------------------------
  /**
   * virtqueue_add_sgs() + virtqueue_kick(): `out` buffers are copied into fresh RAM and
   * made device-readable, `inLens` buffers are device-writable. Returns the head index.
   */
  add(queue: number, out: Uint8Array[], inLens: number[], opts: AddOptions = {}): number {
    const q = this.q(queue);
    const bufs: { addr: number; len: number; write: boolean }[] = [];
    for (const o of out) {
      const a = this.alloc(o.length);
      this.bytes(a, o.length).set(o);
      bufs.push({ addr: a, len: o.length, write: false });
    }
    const inBufs: Uint8Array[] = [];
    for (const n of inLens) {
      const a = this.alloc(n);
      this.bytes(a, n).fill(0xee);
      inBufs.push(this.bytes(a, n));
      bufs.push({ addr: a, len: n, write: true });
    }
    return this.addRaw(queue, bufs, inBufs, opts, q);
  }

  /** Adds a chain of explicit guest buffers (addresses may be anything: fuzzing). */
  addRaw(
    queue: number,
    bufs: { addr: number; len: number; write: boolean }[],
    inBufs: Uint8Array[] = [],
    opts: AddOptions = {},
    q = this.q(queue),
  ): number {
    let descs: number[];
    if (opts.indirect && bufs.length > 1) {
      const table = this.alloc(16 * bufs.length, 16);
      bufs.forEach((b, i) =>
        this.writeDesc(table, i, b.addr, b.len, (b.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < bufs.length ? VIRTQ_DESC_F_NEXT : 0), i + 1),
      );
      const head = this.takeDesc(q, 1);
      this.writeDesc(q.desc, head[0]!, table, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT, 0);
      descs = head;
    } else {
      descs = this.takeDesc(q, bufs.length);
      bufs.forEach((b, i) =>
        this.writeDesc(q.desc, descs[i]!, b.addr, b.len, (b.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < bufs.length ? VIRTQ_DESC_F_NEXT : 0), descs[i + 1] ?? 0),
      );
    }
    const head = descs[0]!;
    q.pending.set(head, { descs, inBufs, token: opts.token });
    this.setU16(q.avail + 4 + 2 * (q.availIdx % q.size), head);
    q.availIdx = (q.availIdx + 1) & 0xffff;
    this.setU16(q.avail + 2, q.availIdx);
    if (!opts.noKick) this.kick(queue);
    return head;
  }

  /** virtqueue_kick_prepare() + notify: honours the device's suppression. */
  kick(queue: number): boolean {
    const q = this.q(queue);
    const old = q.kickedAt;
    const neu = q.availIdx;
    q.kickedAt = neu;
    let needed: boolean;
    if (this.has(VIRTIO_F_EVENT_IDX)) {
      const availEvent = this.u16(q.used + 4 + 8 * q.size);
      needed = ((neu - availEvent - 1) & 0xffff) < ((neu - old) & 0xffff);
    } else {
      needed = (this.u16(q.used) & VIRTQ_USED_F_NO_NOTIFY) === 0;
    }
    if (needed) {
      this.notifies++;
      this.w(VIRTIO_MMIO_QUEUE_NOTIFY, queue);
    }
    return needed;
  }

  /** Like vm_interrupt(): read and acknowledge the interrupt status. */
  ackInterrupt(): number {
    const s = this.r(VIRTIO_MMIO_INTERRUPT_STATUS);
    if (s) this.w(VIRTIO_MMIO_INTERRUPT_ACK, s);
    return s;
  }

  /** virtqueue_get_buf() until empty; re-arms used_event like virtqueue_enable_cb(). */
  used(queue: number): UsedBuffer[] {
    const q = this.q(queue);
    const out: UsedBuffer[] = [];
    while (q.lastUsed !== this.u16(q.used + 2)) {
      const e = q.used - this.ramBase + 4 + 8 * (q.lastUsed % q.size);
      const id = this.view.getUint32(e, true);
      const len = this.view.getUint32(e + 4, true);
      q.lastUsed = (q.lastUsed + 1) & 0xffff;
      const p = q.pending.get(id);
      if (!p) throw new Error(`device returned unknown id ${id}`);
      q.pending.delete(id);
      q.freeHead.push(...p.descs);
      out.push({ id, len, inBufs: p.inBufs, token: p.token });
    }
    if (this.has(VIRTIO_F_EVENT_IDX)) this.setU16(q.avail + 4 + 2 * q.size, q.lastUsed);
    return out;
  }

  /**
   * The same driver state (features, queues, buffers in flight, allocator) over another
   * device and a copy of this RAM: how a test continues a guest after a snapshot restore.
   */
  moveTo(dev: MmioDevice, ram: Uint8Array, irq?: IrqRecorder): MockDriver {
    const d = new MockDriver(dev, ram, this.ramBase, irq, this.heap);
    d.features = this.features;
    const remap = (b: Uint8Array) => ram.subarray(b.byteOffset - this.ram.byteOffset, b.byteOffset - this.ram.byteOffset + b.length);
    this.queues.forEach((q, i) => {
      if (!q) return;
      const pending = new Map([...q.pending].map(([k, p]) => [k, { descs: [...p.descs], inBufs: p.inBufs.map(remap), token: p.token }]));
      d.queues[i] = { ...q, freeHead: [...q.freeHead], pending };
    });
    return d;
  }

  inFlight(queue: number): number {
    return this.q(queue).pending.size;
  }

  private q(i: number): DriverQueue {
    const q = this.queues[i];
    if (!q) throw new Error(`queue ${i} not set up`);
    return q;
  }

  private takeDesc(q: DriverQueue, n: number): number[] {
    if (q.freeHead.length < n) throw new Error('mock driver: queue full');
    return q.freeHead.splice(0, n);
  }
}

/** Concatenates the first `len` bytes of a used buffer's writable parts. */
export function collect(u: UsedBuffer, len = u.len): Uint8Array {
  const out = new Uint8Array(len);
  let p = 0;
  for (const b of u.inBufs) {
    if (p >= len) break;
    const n = Math.min(b.length, len - p);
    out.set(b.subarray(0, n), p);
    p += n;
  }
  return out;
}
