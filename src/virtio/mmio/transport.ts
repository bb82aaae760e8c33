/**
 * virtio-mmio version 2 transport (virtio 1.2 §4.2.2). One instance per device slot; the
 * board maps it at 0x1000_1000 + 0x1000·n and wires `irq`/`irqSource` to the PLIC.
 *
 * The guest drives every register, so every write is checked against the status state
 * machine (§3.1.1) and bad ones are ignored and counted rather than thrown.
 */
import { VisorError } from '../../base/errors.js';
import type { AccessSize, IrqSink, MmioDevice } from '../../base/mmio.js';
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  bit,
  type DeviceContext,
  type VirtioDevice,
} from '../device.js';
import { GuestMemory, type GuestRam } from '../guest-memory.js';
import { SplitQueue, type SplitQueueState } from '../queue/split-queue.js';

// §4.2.2 MMIO Device Register Layout
export const VIRTIO_MMIO_MAGIC_VALUE = 0x000;
export const VIRTIO_MMIO_VERSION = 0x004;
export const VIRTIO_MMIO_DEVICE_ID = 0x008;
export const VIRTIO_MMIO_VENDOR_ID = 0x00c;
export const VIRTIO_MMIO_DEVICE_FEATURES = 0x010;
export const VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014;
export const VIRTIO_MMIO_DRIVER_FEATURES = 0x020;
export const VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024;
export const VIRTIO_MMIO_QUEUE_SEL = 0x030;
export const VIRTIO_MMIO_QUEUE_NUM_MAX = 0x034;
export const VIRTIO_MMIO_QUEUE_NUM = 0x038;
export const VIRTIO_MMIO_QUEUE_READY = 0x044;
export const VIRTIO_MMIO_QUEUE_NOTIFY = 0x050;
export const VIRTIO_MMIO_INTERRUPT_STATUS = 0x060;
export const VIRTIO_MMIO_INTERRUPT_ACK = 0x064;
export const VIRTIO_MMIO_STATUS = 0x070;
export const VIRTIO_MMIO_QUEUE_DESC_LOW = 0x080;
export const VIRTIO_MMIO_QUEUE_DESC_HIGH = 0x084;
export const VIRTIO_MMIO_QUEUE_DRIVER_LOW = 0x090;
export const VIRTIO_MMIO_QUEUE_DRIVER_HIGH = 0x094;
export const VIRTIO_MMIO_QUEUE_DEVICE_LOW = 0x0a0;
export const VIRTIO_MMIO_QUEUE_DEVICE_HIGH = 0x0a4;
export const VIRTIO_MMIO_SHM_SEL = 0x0ac;
export const VIRTIO_MMIO_SHM_LEN_LOW = 0x0b0;
export const VIRTIO_MMIO_SHM_LEN_HIGH = 0x0b4;
export const VIRTIO_MMIO_SHM_BASE_LOW = 0x0b8;
export const VIRTIO_MMIO_SHM_BASE_HIGH = 0x0bc;
export const VIRTIO_MMIO_QUEUE_RESET = 0x0c0;
export const VIRTIO_MMIO_CONFIG_GENERATION = 0x0fc;
export const VIRTIO_MMIO_CONFIG = 0x100;

/** "virt" in little-endian ASCII. */
export const VIRTIO_MMIO_MAGIC = 0x74726976;
/** Our vendor ID: "VISR" little-endian (Linux does not look at it). */
export const VISOR_VENDOR_ID = 0x52534956;

// §2.1 Device Status Field
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
export const VIRTIO_CONFIG_S_DRIVER = 2;
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
export const VIRTIO_CONFIG_S_NEEDS_RESET = 0x40;
export const VIRTIO_CONFIG_S_FAILED = 0x80;

// §4.2.2 InterruptStatus bits
export const VIRTIO_MMIO_INT_VRING = 1;
export const VIRTIO_MMIO_INT_CONFIG = 2;

/** Device-tree compatible string of a virtio-mmio node. */
export const VIRTIO_MMIO_COMPATIBLE = 'virtio,mmio';

/** Transport-level features visor offers on every device. */
const TRANSPORT_FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC);

export interface VirtioMmioCounters {
  notifies: number;
  interrupts: number;
  /** Guest register accesses that were ignored (bad width, bad state, unknown offset). */
  badAccesses: number;
  needsReset: number;
}

export interface VirtioMmioState {
  version: 1;
  status: number;
  deviceFeaturesSel: number;
  driverFeaturesSel: number;
  driverFeaturesLo: number;
  driverFeaturesHi: number;
  queueSel: number;
  interruptStatus: number;
  configGeneration: number;
  queues: SplitQueueState[];
}

export interface VirtioMmioOptions {
  device: VirtioDevice;
  ram: GuestRam;
  irq: IrqSink;
  irqSource: number;
}

export class VirtioMmioTransport implements MmioDevice {
  readonly name: string;
  readonly device: VirtioDevice;
  readonly mem: GuestMemory;
  readonly queues: SplitQueue[];
  readonly counters: VirtioMmioCounters = { notifies: 0, interrupts: 0, badAccesses: 0, needsReset: 0 };
  /** Last DEVICE_NEEDS_RESET reason, for logs. */
  needsResetReason: string | null = null;

  private readonly irq: IrqSink;
  private readonly irqSource: number;
  private readonly offered: bigint;
  // Register state (plain fields: see saveState()).
  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeaturesLo = 0;
  private driverFeaturesHi = 0;
  private queueSel = 0;
  private interruptStatus = 0;
  private configGeneration = 0;
  private active = false;
  private irqLevel = false;
  private readonly ctx: DeviceContext;

  constructor(opts: VirtioMmioOptions) {
    this.device = opts.device;
    this.name = `virtio-${opts.device.name}`;
    this.mem = new GuestMemory(opts.ram);
    this.irq = opts.irq;
    this.irqSource = opts.irqSource;
    this.offered = opts.device.features | TRANSPORT_FEATURES;
    this.queues = opts.device.queueSizes.map((maxSize, i) => {
      const q = new SplitQueue(this.mem, { maxSize, ...(opts.device.maxChainBytes ? { maxChainBytes: opts.device.maxChainBytes } : {}) });
      q.onBroken = (reason) => this.setNeedsReset(`queue ${i}: ${reason}`);
      return q;
    });
    const self = this;
    this.ctx = {
      mem: this.mem,
      queues: this.queues,
      get features() {
        return self.negotiated();
      },
      usedBuffers: (q) => this.usedBuffers(q),
      configChanged: () => this.configChanged(),
      needsReset: (reason) => this.setNeedsReset(reason),
    };
  }

  /** Features the driver accepted. */
  negotiated(): bigint {
    return (BigInt(this.driverFeaturesHi) << 32n) | BigInt(this.driverFeaturesLo);
  }

  get deviceStatus(): number {
    return this.status;
  }

  read(offset: number, size: AccessSize): number {
    if (offset >= VIRTIO_MMIO_CONFIG) return this.device.readConfig(offset - VIRTIO_MMIO_CONFIG, size);
    // §4.2.2.2: control registers are accessed 32 bits wide and aligned only.
    if (size !== 4 || offset % 4) return this.bad();
    switch (offset) {
      case VIRTIO_MMIO_MAGIC_VALUE:
        return VIRTIO_MMIO_MAGIC;
      case VIRTIO_MMIO_VERSION:
        return 2;
      case VIRTIO_MMIO_DEVICE_ID:
        return this.device.deviceId;
      case VIRTIO_MMIO_VENDOR_ID:
        return VISOR_VENDOR_ID;
      case VIRTIO_MMIO_DEVICE_FEATURES:
        if (this.deviceFeaturesSel > 1) return 0;
        return Number((this.offered >> BigInt(32 * this.deviceFeaturesSel)) & 0xffff_ffffn);
      case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return this.selected()?.maxSize ?? 0;
      case VIRTIO_MMIO_QUEUE_READY:
        return this.selected()?.ready ? 1 : 0;
      case VIRTIO_MMIO_INTERRUPT_STATUS:
        return this.interruptStatus;
      case VIRTIO_MMIO_STATUS:
        return this.status;
      case VIRTIO_MMIO_SHM_LEN_LOW:
      case VIRTIO_MMIO_SHM_LEN_HIGH:
        return 0xffff_ffff; // §4.2.2: no shared memory region: length reads as -1
      case VIRTIO_MMIO_CONFIG_GENERATION:
        return this.configGeneration;
      case VIRTIO_MMIO_QUEUE_DESC_LOW:
        return lo(this.selected()?.descAddr);
      case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        return hi(this.selected()?.descAddr);
      case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
        return lo(this.selected()?.driverAddr);
      case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
        return hi(this.selected()?.driverAddr);
      case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
        return lo(this.selected()?.deviceAddr);
      case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        return hi(this.selected()?.deviceAddr);
      case VIRTIO_MMIO_QUEUE_NUM:
        return this.selected()?.size ?? 0;
      default:
        return this.bad(); // write-only or reserved: RAZ
    }
  }

  write(offset: number, size: AccessSize, value: number): void {
    value >>>= 0;
    if (offset >= VIRTIO_MMIO_CONFIG) {
      this.device.writeConfig(offset - VIRTIO_MMIO_CONFIG, size, value);
      return;
    }
    if (size !== 4 || offset % 4) {
      this.bad();
      return;
    }
    switch (offset) {
      case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = value;
        return;
      case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = value;
        return;
      case VIRTIO_MMIO_DRIVER_FEATURES:
        // §3.1.1: features are written between DRIVER and FEATURES_OK only.
        if (this.status & VIRTIO_CONFIG_S_FEATURES_OK || !(this.status & VIRTIO_CONFIG_S_DRIVER)) {
          this.bad();
        } else if (this.driverFeaturesSel === 0) this.driverFeaturesLo = value;
        else if (this.driverFeaturesSel === 1) this.driverFeaturesHi = value;
        return;
      case VIRTIO_MMIO_QUEUE_SEL:
        this.queueSel = value;
        return;
      case VIRTIO_MMIO_QUEUE_NUM:
        this.queueWrite((q) => (q.size = value));
        return;
      case VIRTIO_MMIO_QUEUE_DESC_LOW:
        this.queueWrite((q) => (q.descAddr = setLo(q.descAddr, value)));
        return;
      case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        this.queueWrite((q) => (q.descAddr = setHi(q.descAddr, value)));
        return;
      case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
        this.queueWrite((q) => (q.driverAddr = setLo(q.driverAddr, value)));
        return;
      case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
        this.queueWrite((q) => (q.driverAddr = setHi(q.driverAddr, value)));
        return;
      case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
        this.queueWrite((q) => (q.deviceAddr = setLo(q.deviceAddr, value)));
        return;
      case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        this.queueWrite((q) => (q.deviceAddr = setHi(q.deviceAddr, value)));
        return;
      case VIRTIO_MMIO_QUEUE_READY:
        this.queueReady(value);
        return;
      case VIRTIO_MMIO_QUEUE_NOTIFY:
        this.queueNotify(value);
        return;
      case VIRTIO_MMIO_INTERRUPT_ACK:
        this.interruptStatus &= ~value;
        this.updateIrq();
        return;
      case VIRTIO_MMIO_STATUS:
        this.writeStatus(value);
        return;
      case VIRTIO_MMIO_SHM_SEL:
        return;
      default:
        this.bad();
    }
  }

  saveState(): VirtioMmioState {
    return {
      version: 1,
      status: this.status,
      deviceFeaturesSel: this.deviceFeaturesSel,
      driverFeaturesSel: this.driverFeaturesSel,
      driverFeaturesLo: this.driverFeaturesLo,
      driverFeaturesHi: this.driverFeaturesHi,
      queueSel: this.queueSel,
      interruptStatus: this.interruptStatus,
      configGeneration: this.configGeneration,
      queues: this.queues.map((q) => q.saveState()),
    };
  }

  /**
   * Restores saved (untrusted) transport state into a transport that has not run: everything
   * is validated before anything is applied. Restore the device model's own state first
   * (device.restore); an active device is then re-activated, and picks up the work it saved.
   */
  restore(s: VirtioMmioState): void {
    const bad = (why: string) => new VisorError('IntegrityError', `virtio-mmio ${this.name} state: ${why}`);
    const u32 = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff;
    if (s?.version !== 1) throw bad('unknown version');
    for (const k of ['status', 'deviceFeaturesSel', 'driverFeaturesSel', 'driverFeaturesLo', 'driverFeaturesHi', 'queueSel', 'interruptStatus', 'configGeneration'] as const) {
      if (!u32(s[k])) throw bad(`bad ${k}`);
    }
    if (s.status > 0xff || s.interruptStatus > 3) throw bad('bad status');
    const features = (BigInt(s.driverFeaturesHi) << 32n) | BigInt(s.driverFeaturesLo);
    if ((features & ~this.offered) !== 0n) throw bad('features never offered');
    if (!Array.isArray(s.queues) || s.queues.length !== this.queues.length) throw bad('queue count');
    // Validate the queues on scratch copies so a failure leaves this transport untouched.
    s.queues.forEach((qs, i) => {
      const scratch = new SplitQueue(this.mem, { maxSize: this.queues[i]!.maxSize });
      const err = scratch.restore(qs);
      if (err) throw bad(`queue ${i}: ${err}`);
    });
    // Registers and queues only: the device model was restored just before (its own part of
    // the snapshot) and a device reset would throw that away.
    this.active = false;
    for (const q of this.queues) q.reset();
    this.needsResetReason = null;
    this.status = s.status;
    this.deviceFeaturesSel = s.deviceFeaturesSel;
    this.driverFeaturesSel = s.driverFeaturesSel;
    this.driverFeaturesLo = s.driverFeaturesLo;
    this.driverFeaturesHi = s.driverFeaturesHi;
    this.queueSel = s.queueSel;
    this.configGeneration = s.configGeneration;
    s.queues.forEach((qs, i) => {
      const q = this.queues[i]!;
      q.restore(qs);
      q.eventIdx = (features & bit(VIRTIO_F_EVENT_IDX)) !== 0n;
      q.indirect = (features & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n;
    });
    this.interruptStatus = s.interruptStatus;
    this.updateIrq();
    if (this.status & VIRTIO_CONFIG_S_DRIVER_OK && !(this.status & VIRTIO_CONFIG_S_FAILED)) {
      this.active = true;
      this.device.activate(this.ctx);
    }
  }

  private selected(): SplitQueue | undefined {
    return this.queues[this.queueSel];
  }

  private bad(): number {
    this.counters.badAccesses++;
    return 0;
  }

  /** §4.2.2.3: queue layout registers are written only while the queue is not ready. */
  private queueWrite(f: (q: SplitQueue) => void): void {
    const q = this.selected();
    if (!q || q.ready) {
      this.bad();
      return;
    }
    f(q);
  }

  private queueReady(value: number): void {
    const q = this.selected();
    if (!q) {
      this.bad();
      return;
    }
    if (value === 0) {
      // Linux writes 0 on teardown; the queue stops and forgets its position.
      q.ready = false;
      return;
    }
    if (q.ready) return;
    q.eventIdx = (this.negotiated() & bit(VIRTIO_F_EVENT_IDX)) !== 0n;
    q.indirect = (this.negotiated() & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n;
    const err = q.enable();
    if (err) this.setNeedsReset(`queue ${this.queueSel}: ${err}`);
  }

  private queueNotify(index: number): void {
    this.counters.notifies++;
    if (!this.active || this.status & VIRTIO_CONFIG_S_NEEDS_RESET) return;
    const q = this.queues[index];
    if (!q || !q.ready) {
      this.bad();
      return;
    }
    this.device.notify(index);
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const old = this.status;
    // The driver only ever adds bits (§3.1.1); NEEDS_RESET is ours, the driver cannot set it.
    let next = (value & 0xff & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
    if ((next & old) !== old) {
      this.bad();
      return;
    }
    const added = next & ~old;
    if (added & VIRTIO_CONFIG_S_FEATURES_OK) {
      // §2.2.2: accept only a subset of what we offered, and only VERSION_1 drivers
      // (legacy layouts are not supported by an MMIO version 2 device).
      const f = this.negotiated();
      if ((f & ~this.offered) !== 0n || (f & bit(VIRTIO_F_VERSION_1)) === 0n) {
        next &= ~VIRTIO_CONFIG_S_FEATURES_OK;
      }
    }
    if (added & VIRTIO_CONFIG_S_DRIVER_OK && !(next & VIRTIO_CONFIG_S_FEATURES_OK)) {
      next &= ~VIRTIO_CONFIG_S_DRIVER_OK;
      this.bad();
    }
    this.status = next;
    if (next & VIRTIO_CONFIG_S_DRIVER_OK && !this.active && !(next & VIRTIO_CONFIG_S_FAILED)) {
      this.active = true;
      this.device.activate(this.ctx);
    }
  }

  /** §2.4 Device Reset: back to the state right after power-on. */
  reset(): void {
    this.active = false;
    this.device.reset();
    for (const q of this.queues) q.reset();
    this.status = 0;
    this.deviceFeaturesSel = this.driverFeaturesSel = 0;
    this.driverFeaturesLo = this.driverFeaturesHi = 0;
    this.queueSel = 0;
    this.interruptStatus = 0;
    this.needsResetReason = null;
    this.updateIrq();
  }

  private usedBuffers(index: number): void {
    const q = this.queues[index];
    if (!this.active || !q) return;
    if (q.needsInterrupt()) this.raise(VIRTIO_MMIO_INT_VRING);
  }

  private configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if (this.status & VIRTIO_CONFIG_S_DRIVER_OK) this.raise(VIRTIO_MMIO_INT_CONFIG);
  }

  private setNeedsReset(reason: string): void {
    if (this.status & VIRTIO_CONFIG_S_NEEDS_RESET) return;
    this.counters.needsReset++;
    this.needsResetReason = reason;
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    // §2.1.2: "the device MUST send a device configuration change notification".
    if (this.status & VIRTIO_CONFIG_S_DRIVER_OK) this.raise(VIRTIO_MMIO_INT_CONFIG);
  }

  private raise(bits: number): void {
    this.interruptStatus |= bits;
    this.counters.interrupts++;
    this.updateIrq();
  }

  private updateIrq(): void {
    const level = this.interruptStatus !== 0;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.setIrq(this.irqSource, level);
    }
  }
}

function lo(v: number | undefined): number {
  return (v ?? 0) % 0x1_0000_0000 >>> 0;
}
function hi(v: number | undefined): number {
  return Math.floor((v ?? 0) / 0x1_0000_0000) >>> 0;
}
function setLo(v: number, x: number): number {
  return hi(v) * 0x1_0000_0000 + x;
}
function setHi(v: number, x: number): number {
  return x * 0x1_0000_0000 + lo(v);
}
