/**
 * virtio-net (virtio 1.2 §5.1): one receive and one transmit queue, a fixed MAC, link
 * status. No offloads are offered, so every header the guest sends is zero-meaning and every
 * frame we deliver is complete (the guest computes checksums itself). The backend is a
 * `FrameSink` (a switch port, a socket link); frames from it arrive through `receive()`.
 */
import { VIRTIO_ID_NET, bit, readConfigBytes, type DeviceContext, type VirtioDevice } from '../device.js';
import { fromBase64, isObject, restoreCounters, stateError, toBase64 } from '../state.js';

// §5.1.3 Feature bits
export const VIRTIO_NET_F_CSUM = 0;
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_MTU = 3;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;
export const VIRTIO_NET_F_CTRL_VQ = 17;
// §5.1.4 status field
export const VIRTIO_NET_S_LINK_UP = 1;
/** §5.1.6: struct virtio_net_hdr is 12 bytes once VERSION_1 is negotiated. */
export const VIRTIO_NET_HDR_SIZE = 12;

const RX = 0;
const TX = 1;
/** Frames held while the guest has no receive buffers; more are dropped, as a NIC would. */
const MAX_PENDING_FRAMES = 256;

export interface FrameSink {
  send(frame: Uint8Array): void;
}

export interface NetOptions {
  mac: Uint8Array;
  queueSize?: number;
}

export interface NetCounters {
  txFrames: number;
  txBytes: number;
  rxFrames: number;
  rxBytes: number;
  rxDropped: number;
  txErrors: number;
}

/** Largest frame we hold for the guest (what a transmit chain may carry). */
const MAX_FRAME = 65536;

/** What a snapshot keeps of a virtio-net (the transport keeps registers and queue indices). */
export interface NetState {
  version: 1;
  /** The NIC's MAC, "02:00:…": a restored machine must have the same NIC. */
  mac: string;
  /** Frames from the network the guest has not received yet (base64), oldest first. */
  pending: string[];
  counters: NetCounters;
}

const macText = (m: Uint8Array) => [...m].map((b) => b.toString(16).padStart(2, '0')).join(':');

export class VirtioNet implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_NET;
  readonly name = 'net';
  readonly features = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS);
  readonly queueSizes: readonly number[];
  /** A transmit chain holds one header and one frame: 64 KiB is plenty. */
  readonly maxChainBytes = VIRTIO_NET_HDR_SIZE + 65536;
  readonly counters: NetCounters = { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0, rxDropped: 0, txErrors: 0 };
  readonly mac: Uint8Array;
  private readonly config = new Uint8Array(8);
  private ctx: DeviceContext | null = null;
  private backend: FrameSink | null = null;
  private pending: Uint8Array[] = [];

  constructor(opts: NetOptions) {
    if (opts.mac.length !== 6) throw new RangeError('MAC must be 6 bytes');
    this.mac = opts.mac.slice();
    this.queueSizes = [opts.queueSize ?? 256, opts.queueSize ?? 256];
    this.config.set(this.mac, 0);
    this.config[6] = VIRTIO_NET_S_LINK_UP;
  }

  /** Connects the NIC to a network (a switch port). */
  connect(backend: FrameSink | null): void {
    this.backend = backend;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size);
  }
  writeConfig(): void {} // §5.1.4: mac is read-only once VERSION_1 is negotiated

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    this.drainTx();
    this.fillRx();
  }

  reset(): void {
    this.ctx = null;
    this.pending = [];
  }

  saveState(): NetState {
    return { version: 1, mac: macText(this.mac), pending: this.pending.map(toBase64), counters: { ...this.counters } };
  }

  restore(state: unknown): void {
    const bad = (why: string) => stateError(this.name, why);
    if (!isObject(state) || state.version !== 1) throw bad('unknown version');
    const s = state as unknown as NetState;
    if (s.mac !== macText(this.mac)) throw bad(`the snapshot's NIC has MAC ${String(s.mac)}, this one ${macText(this.mac)}`);
    if (!Array.isArray(s.pending) || s.pending.length > MAX_PENDING_FRAMES) throw bad('pending frames');
    const frames = s.pending.map((f) => fromBase64(f, MAX_FRAME));
    if (frames.some((f) => f === null || f.length === 0)) throw bad('a pending frame is malformed');
    restoreCounters(this.counters, s.counters, this.name);
    this.pending = frames as Uint8Array[];
  }

  notify(queue: number): void {
    if (queue === TX) this.drainTx();
    else if (queue === RX) this.fillRx();
  }

  /** A frame from the network for the guest. Copied, so the caller may reuse its buffer. */
  receive(frame: Uint8Array): void {
    if (!this.ctx || this.pending.length >= MAX_PENDING_FRAMES || frame.length > MAX_FRAME) {
      this.counters.rxDropped++;
      return;
    }
    this.pending.push(frame.slice());
    this.fillRx();
  }

  private fillRx(): void {
    const ctx = this.ctx;
    if (!ctx || this.pending.length === 0) return;
    const q = ctx.queues[RX]!;
    const hdr = new Uint8Array(VIRTIO_NET_HDR_SIZE);
    new DataView(hdr.buffer).setUint16(10, 1, true); // num_buffers = 1
    let any = false;
    while (this.pending.length) {
      const chain = q.pop();
      if (!chain) break;
      const frame = this.pending.shift()!;
      any = true;
      if (chain.writableLen < VIRTIO_NET_HDR_SIZE + frame.length) {
        // Without MRG_RXBUF every buffer must hold a whole frame; a short one loses it.
        this.counters.rxDropped++;
        q.pushUsed(chain.head, 0);
        continue;
      }
      chain.write(0, hdr);
      chain.write(VIRTIO_NET_HDR_SIZE, frame);
      q.pushUsed(chain.head, VIRTIO_NET_HDR_SIZE + frame.length);
      this.counters.rxFrames++;
      this.counters.rxBytes += frame.length;
    }
    if (any) ctx.usedBuffers(RX);
  }

  private drainTx(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    const q = ctx.queues[TX]!;
    let any = false;
    // Collect first, then send: delivery may re-enter another device synchronously.
    const out: Uint8Array[] = [];
    for (let c = q.pop(); c; c = q.pop()) {
      any = true;
      if (c.readableLen <= VIRTIO_NET_HDR_SIZE) this.counters.txErrors++;
      else out.push(c.readAll(VIRTIO_NET_HDR_SIZE));
      q.pushUsed(c.head, 0);
    }
    if (any) ctx.usedBuffers(TX);
    for (const f of out) {
      this.counters.txFrames++;
      this.counters.txBytes += f.length;
      this.backend?.send(f);
    }
  }
}

export function createVirtioNet(opts: NetOptions): VirtioNet {
  return new VirtioNet(opts);
}
