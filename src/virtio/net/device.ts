/**
 * virtio-net (virtio 1.2 §5.1): one receive and one transmit queue, a fixed MAC, link
 * status. The backend is a `FrameSink` (a switch port, a socket link, a user network);
 * frames from it arrive through `receive()`.
 *
 * Offloads (`offloads: true`, for a backend that terminates TCP itself, the user network):
 * - transmit: CSUM and HOST_TSO4. The guest may hand over a TCP segment of up to 64 KiB with
 *   its checksum left partial; we complete the checksum here (§5.1.6.2.1), so the backend
 *   sees an ordinary, valid, large IPv4 packet and never has to cut it up.
 * - receive: GUEST_CSUM, GUEST_TSO4 and MRG_RXBUF. The backend may deliver a large TCP
 *   segment with a partial checksum and its MSS (`FrameMeta`); it goes to the guest as one
 *   GSO packet spread over as many receive buffers as it needs (§5.1.6.3, §5.1.6.4).
 * Without offloads every header is zero-meaning and every frame is complete.
 */
import { VIRTIO_ID_NET, bit, readConfigBytes, type DeviceContext, type VirtioDevice } from '../device.js';
import { fromBase64, isObject, restoreCounters, stateError, toBase64 } from '../state.js';

// §5.1.3 Feature bits
export const VIRTIO_NET_F_CSUM = 0;
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_MTU = 3;
export const VIRTIO_NET_F_GUEST_TSO4 = 7;
export const VIRTIO_NET_F_HOST_TSO4 = 11;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;
export const VIRTIO_NET_F_CTRL_VQ = 17;
// §5.1.4 status field
export const VIRTIO_NET_S_LINK_UP = 1;
/** §5.1.6: struct virtio_net_hdr is 12 bytes once VERSION_1 is negotiated. */
export const VIRTIO_NET_HDR_SIZE = 12;
// §5.1.6 struct virtio_net_hdr: flags and gso_type
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;

const RX = 0;
const TX = 1;
/** Frames held while the guest has no receive buffers; more are dropped, as a NIC would. */
const MAX_PENDING_FRAMES = 256;

export interface FrameSink {
  send(frame: Uint8Array): void;
}

/** What travels with a frame for the guest when offloads are on. */
export interface FrameMeta {
  /** A TCP segment longer than one MSS: the guest's stack sees a GSO packet of this MSS. */
  gsoSize?: number;
  /** The L4 checksum field holds only the pseudo-header sum, from this offset in the frame. */
  csumStart?: number;
  csumOffset?: number;
}

export interface NetOptions {
  mac: Uint8Array;
  queueSize?: number;
  /** Offer checksum and TSO offloads and mergeable receive buffers (see above). */
  offloads?: boolean;
}

export interface NetCounters {
  txFrames: number;
  txBytes: number;
  rxFrames: number;
  rxBytes: number;
  rxDropped: number;
  txErrors: number;
}

/** Largest frame we hold for the guest or take from it: a 64 KiB IP packet and its Ethernet header. */
const MAX_FRAME = 65536 + 14;

/** What a snapshot keeps of a virtio-net (the transport keeps registers and queue indices). */
export interface NetState {
  version: 1;
  /** The NIC's MAC, "02:00:…": a restored machine must have the same NIC. */
  mac: string;
  /** Frames from the network the guest has not received yet (base64), oldest first. */
  pending: string[];
  /** Their offload meta, when any has some (a GSO segment's MSS, a partial checksum). */
  pendingMeta?: FrameMeta[];
  counters: NetCounters;
}

const macText = (m: Uint8Array) => [...m].map((b) => b.toString(16).padStart(2, '0')).join(':');

export class VirtioNet implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_NET;
  readonly name = 'net';
  readonly features: bigint;
  readonly queueSizes: readonly number[];
  /**
   * A transmit chain holds one header and one frame. A receive chain without mergeable
   * buffers holds a whole GSO packet (Linux's "big packets": 17 pages).
   */
  readonly maxChainBytes: number;
  readonly counters: NetCounters = { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0, rxDropped: 0, txErrors: 0 };
  private macBytes: Uint8Array;
  private readonly config = new Uint8Array(8);
  private ctx: DeviceContext | null = null;
  private backend: FrameSink | null = null;
  private pending: Uint8Array[] = [];
  /** Meta of each pending frame (same index); null for plain frames. */
  private pendingMeta: (FrameMeta | null)[] = [];

  constructor(opts: NetOptions) {
    if (opts.mac.length !== 6) throw new RangeError('MAC must be 6 bytes');
    this.macBytes = opts.mac.slice();
    this.queueSizes = [opts.queueSize ?? 256, opts.queueSize ?? 256];
    this.features = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS);
    if (opts.offloads) {
      this.features |= bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_MRG_RXBUF);
    }
    this.maxChainBytes = opts.offloads ? 128 * 1024 : VIRTIO_NET_HDR_SIZE + MAX_FRAME;
    this.config.set(this.macBytes, 0);
    this.config[6] = VIRTIO_NET_S_LINK_UP;
  }

  /** The NIC's address (config space). */
  get mac(): Uint8Array {
    return this.macBytes;
  }

  /**
   * Gives the NIC another address (a fork's child must not share its parent's): config space
   * shows it from now on and snapshots record it. The guest's driver read the old one at
   * probe time and keeps using it until the guest is told (ip link set … address).
   */
  setMac(mac: Uint8Array): void {
    if (mac.length !== 6) throw new RangeError('MAC must be 6 bytes');
    this.macBytes = mac.slice();
    this.config.set(this.macBytes, 0);
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
    this.pendingMeta = [];
    this.held = [];
  }

  private has(feature: number): boolean {
    return ((this.ctx?.features ?? 0n) & bit(feature)) !== 0n;
  }

  /** Whether the driver takes large TCP segments with partial checksums (GUEST_TSO4 + GUEST_CSUM). */
  get acceptsGso(): boolean {
    return this.has(VIRTIO_NET_F_GUEST_TSO4) && this.has(VIRTIO_NET_F_GUEST_CSUM);
  }

  saveState(): NetState {
    const st: NetState = { version: 1, mac: macText(this.mac), pending: this.pending.map(toBase64), counters: { ...this.counters } };
    if (this.pendingMeta.some((m) => m !== null)) st.pendingMeta = this.pendingMeta.map((m) => m ?? {});
    return st;
  }

  restore(state: unknown): void {
    const bad = (why: string) => stateError(this.name, why);
    if (!isObject(state) || state.version !== 1) throw bad('unknown version');
    const s = state as unknown as NetState;
    if (s.mac !== macText(this.mac)) throw bad(`the snapshot's NIC has MAC ${String(s.mac)}, this one ${macText(this.mac)}`);
    if (!Array.isArray(s.pending) || s.pending.length > MAX_PENDING_FRAMES) throw bad('pending frames');
    const frames = s.pending.map((f) => fromBase64(f, MAX_FRAME));
    if (frames.some((f) => f === null || f.length === 0)) throw bad('a pending frame is malformed');
    let metas: (FrameMeta | null)[] = frames.map(() => null);
    if (s.pendingMeta !== undefined) {
      if (!Array.isArray(s.pendingMeta) || s.pendingMeta.length !== frames.length) throw bad('pending frame meta');
      metas = s.pendingMeta.map((m, i) => {
        if (!isObject(m)) throw bad('pending frame meta');
        const ok = (v: unknown, max: number) => v === undefined || (Number.isInteger(v) && (v as number) > 0 && (v as number) <= max);
        if (!ok(m.gsoSize, 65535) || !ok(m.csumStart, frames[i]!.length) || !ok(m.csumOffset, 64)) throw bad('pending frame meta');
        return m.gsoSize === undefined && m.csumStart === undefined ? null : (m as FrameMeta);
      });
    }
    restoreCounters(this.counters, s.counters, this.name);
    this.pending = frames as Uint8Array[];
    this.pendingMeta = metas;
  }

  notify(queue: number): void {
    if (queue === TX) this.drainTx();
    else if (queue === RX) this.fillRx();
  }

  /**
   * A frame from the network for the guest. Copied, so the caller may reuse its buffer.
   * `meta` is for offloaded frames (only when acceptsGso).
   */
  receive(frame: Uint8Array, meta?: FrameMeta): void {
    if (!this.ctx || this.pending.length >= MAX_PENDING_FRAMES || frame.length > MAX_FRAME || (meta && !this.acceptsGso)) {
      this.counters.rxDropped++;
      return;
    }
    // Straight into the guest's buffers when it has room (the common case: no copy); a frame
    // left waiting is copied, as the caller may reuse its buffer.
    this.pending.push(frame);
    this.pendingMeta.push(meta ?? null);
    this.fillRx();
    const last = this.pending.length - 1;
    if (last >= 0 && this.pending[last] === frame) this.pending[last] = frame.slice();
  }

  /** Room for frames (the backend's hint to slow down before frames are dropped). */
  get rxRoom(): number {
    return MAX_PENDING_FRAMES - this.pending.length;
  }

  private header(meta: FrameMeta | null, numBuffers: number): Uint8Array {
    const hdr = new Uint8Array(VIRTIO_NET_HDR_SIZE);
    const dv = new DataView(hdr.buffer);
    if (meta?.csumStart !== undefined) {
      hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      dv.setUint16(6, meta.csumStart, true);
      dv.setUint16(8, meta.csumOffset ?? 16, true);
    }
    if (meta?.gsoSize !== undefined) {
      hdr[1] = VIRTIO_NET_HDR_GSO_TCPV4;
      dv.setUint16(2, meta.csumStart !== undefined ? meta.csumStart + 20 : 54, true); // hdr_len: through the TCP header
      dv.setUint16(4, meta.gsoSize, true);
    }
    dv.setUint16(10, numBuffers, true);
    return hdr;
  }

  /** Chains taken for a frame that did not fit yet (mergeable buffers), in order. */
  private held: { head: number; chain: import('../queue/chain.js').DescriptorChain }[] = [];

  private fillRx(): void {
    const ctx = this.ctx;
    if (!ctx || this.pending.length === 0) return;
    const q = ctx.queues[RX]!;
    const mergeable = this.has(VIRTIO_NET_F_MRG_RXBUF);
    let any = false;
    while (this.pending.length) {
      const frame = this.pending[0]!;
      const meta = this.pendingMeta[0] ?? null;
      const need = VIRTIO_NET_HDR_SIZE + frame.length;
      if (mergeable) {
        // §5.1.6.4.2: as many buffers as the frame needs; num_buffers in the first header.
        let room = this.held.reduce((n, h) => n + h.chain.writableLen, 0);
        while (room < need && this.held.length < 256) {
          const c = q.pop();
          if (!c) break;
          this.held.push({ head: c.head, chain: c });
          room += c.writableLen;
        }
        if (room < need) {
          if (this.held.length >= 256) this.dropHeld(q);
          break; // wait for the driver to add buffers
        }
        this.pending.shift();
        this.pendingMeta.shift();
        any = true;
        let used = 0;
        for (let pos = 0; pos < need; used++) pos += Math.min(this.held[used]!.chain.writableLen, need - pos);
        // The header, then the frame, over the buffers in order (each filled before the next).
        const hdr = this.header(meta, used);
        let pos = 0;
        for (let i = 0; i < used; i++) {
          const h = this.held[i]!;
          const n = Math.min(h.chain.writableLen, need - pos);
          let at = 0;
          if (pos < VIRTIO_NET_HDR_SIZE) at = h.chain.write(0, hdr.subarray(pos, Math.min(VIRTIO_NET_HDR_SIZE, pos + n)));
          const from = pos + at - VIRTIO_NET_HDR_SIZE;
          if (at < n) h.chain.write(at, frame.subarray(from, from + n - at));
          q.pushUsed(h.head, n);
          pos += n;
        }
        this.held.splice(0, used);
      } else {
        const chain = q.pop();
        if (!chain) break;
        this.pending.shift();
        this.pendingMeta.shift();
        any = true;
        if (chain.writableLen < need) {
          // Without MRG_RXBUF every buffer must hold a whole frame; a short one loses it.
          this.counters.rxDropped++;
          q.pushUsed(chain.head, 0);
          continue;
        }
        chain.write(0, this.header(meta, 1));
        chain.write(VIRTIO_NET_HDR_SIZE, frame);
        q.pushUsed(chain.head, need);
      }
      this.counters.rxFrames++;
      this.counters.rxBytes += frame.length;
    }
    if (any) ctx.usedBuffers(RX);
  }

  /** Returns held buffers unused (a frame no buffers could ever hold). */
  private dropHeld(q: import('../queue/split-queue.js').SplitQueue): void {
    for (const h of this.held) q.pushUsed(h.head, 0);
    this.held = [];
    this.pending.shift();
    this.pendingMeta.shift();
    this.counters.rxDropped++;
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
      if (c.readableLen <= VIRTIO_NET_HDR_SIZE || c.readableLen > VIRTIO_NET_HDR_SIZE + MAX_FRAME) this.counters.txErrors++;
      else {
        const hdr = new Uint8Array(VIRTIO_NET_HDR_SIZE);
        c.read(0, hdr);
        const f = c.readAll(VIRTIO_NET_HDR_SIZE);
        if (hdr[0]! & VIRTIO_NET_HDR_F_NEEDS_CSUM && !completeChecksum(f, hdr)) this.counters.txErrors++;
        else out.push(f);
      }
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

/**
 * §5.1.6.2.1: the checksum from csum_start to the end, added to what the field holds (the
 * pseudo-header sum), stored at csum_start + csum_offset. False when the offsets are outside
 * the frame (a driver bug or a hostile guest: the frame is dropped).
 */
function completeChecksum(f: Uint8Array, hdr: Uint8Array): boolean {
  const start = hdr[6]! | (hdr[7]! << 8);
  const at = start + (hdr[8]! | (hdr[9]! << 8));
  if (start >= f.length || at + 2 > f.length) return false;
  let sum = 0;
  let i = start;
  for (; i + 1 < f.length; i += 2) sum += (f[i]! << 8) | f[i + 1]!;
  if (i < f.length) sum += f[i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const c = ~sum & 0xffff;
  f[at] = c >> 8;
  f[at + 1] = c & 255;
  return true;
}

export function createVirtioNet(opts: NetOptions): VirtioNet {
  return new VirtioNet(opts);
}
