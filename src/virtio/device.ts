/**
 * The contract between the virtio-mmio transport and a device model. The transport owns
 * registers, feature negotiation, status, queues and the interrupt line; the device owns its
 * config space and what it does with buffers.
 */
import type { GuestMemory } from './guest-memory.js';
import type { SplitQueue } from './queue/split-queue.js';

// virtio 1.2 §6 Reserved Feature Bits (bit numbers).
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_ACCESS_PLATFORM = 33;
export const VIRTIO_F_RING_PACKED = 34;
export const VIRTIO_F_IN_ORDER = 35;
export const VIRTIO_F_RING_RESET = 40;

// virtio 1.2 §5 Device Types (the IDs in §5 headings).
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_BLOCK = 2;
export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_ID_RNG = 4;
export const VIRTIO_ID_BALLOON = 5;
export const VIRTIO_ID_VSOCK = 19;

export const bit = (n: number): bigint => 1n << BigInt(n);

/** What a device can do once the driver has set DRIVER_OK. */
export interface DeviceContext {
  readonly mem: GuestMemory;
  readonly queues: readonly SplitQueue[];
  /** Negotiated feature bits. */
  readonly features: bigint;
  /** Call after pushing used buffers on `queue`: raises the interrupt if the driver wants it. */
  usedBuffers(queue: number): void;
  /** The device changed its config space (§2.5.1): bumps generation, raises a config IRQ. */
  configChanged(): void;
  /** Something went irrecoverably wrong: sets DEVICE_NEEDS_RESET (§2.1.2). */
  needsReset(reason: string): void;
}

export interface VirtioDevice {
  readonly deviceId: number;
  /** Short name for logs and counters ("blk", "net", ...). */
  readonly name: string;
  /** Device-specific features offered (the transport adds VERSION_1, EVENT_IDX, INDIRECT). */
  readonly features: bigint;
  /** QueueNumMax of each queue; the array length is the number of queues. */
  readonly queueSizes: readonly number[];
  /** Cap on the bytes of one descriptor chain (default: the queue's, 64 MiB). */
  readonly maxChainBytes?: number;
  /** Bytes of device config space (§4.2.2: at offset 0x100). */
  readConfig(offset: number, size: 1 | 2 | 4): number;
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  /** DRIVER_OK was set: the device may start using its queues. */
  activate(ctx: DeviceContext): void;
  /** The driver notified `queue` (QueueNotify). Only called while activated. */
  notify(queue: number): void;
  /** Device reset (status written 0): forget everything guest-given; in-flight I/O must
   *  not touch guest memory when it completes. */
  reset(): void;
  /**
   * Snapshots (issue 7): the device's own state as plain named fields, versioned: config
   * the guest wrote, work taken from the queues but not yet returned, data waiting for the
   * guest. The transport saves registers, features and queue indices itself.
   */
  saveState?(): unknown;
  /**
   * Restores saved (untrusted) state into a fresh device, before the transport's restore
   * re-activates it; validates everything first and throws VisorError('IntegrityError').
   */
  restore?(state: unknown): void;
}

/** Little-endian config read from a byte array; out-of-range bytes read as zero. */
export function readConfigBytes(bytes: Uint8Array, offset: number, size: 1 | 2 | 4): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + (bytes[offset + i] ?? 0);
  return v >>> 0;
}
