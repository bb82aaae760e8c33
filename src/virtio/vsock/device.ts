/**
 * virtio-vsock (virtio 1.2 §5.10), stream sockets only. The host side is CID 2; each
 * connection pairs a guest port with a host port. What a connection reaches on the host is
 * the backend's business (src/host/vsock-unix.ts maps it to Unix sockets, Firecracker-style).
 *
 * Flow control follows §5.10.6.3: we send the guest at most what its buf_alloc/fwd_cnt
 * credit allows, and we report our own fwd_cnt whenever half our buffer has been forwarded,
 * so the guest never waits on a credit update we forgot to send. Host data waits (bounded)
 * for credit and receive buffers; nothing blocks the CPU loop.
 */
import { concatBytes } from '../../base/bytes.js';
import { VIRTIO_ID_VSOCK, readConfigBytes, type DeviceContext, type VirtioDevice } from '../device.js';
import { readU64, writeU64 } from '../guest-memory.js';
import type { DescriptorChain } from '../queue/chain.js';
import { fromBase64, isCount, isObject, isU32, restoreCounters, stateError, toBase64 } from '../state.js';

// §5.10.6 Device Operation
export const VIRTIO_VSOCK_TYPE_STREAM = 1;
export const VIRTIO_VSOCK_OP_INVALID = 0;
export const VIRTIO_VSOCK_OP_REQUEST = 1;
export const VIRTIO_VSOCK_OP_RESPONSE = 2;
export const VIRTIO_VSOCK_OP_RST = 3;
export const VIRTIO_VSOCK_OP_SHUTDOWN = 4;
export const VIRTIO_VSOCK_OP_RW = 5;
export const VIRTIO_VSOCK_OP_CREDIT_UPDATE = 6;
export const VIRTIO_VSOCK_OP_CREDIT_REQUEST = 7;
export const VIRTIO_VSOCK_SHUTDOWN_RCV = 1;
export const VIRTIO_VSOCK_SHUTDOWN_SEND = 2;
/** §5.10.6.6 Device Events: struct virtio_vsock_event { le32 id; }. */
export const VIRTIO_VSOCK_EVENT_TRANSPORT_RESET = 0;
const EVENT_SIZE = 4;
/** struct virtio_vsock_hdr is 44 bytes, packed. */
export const VIRTIO_VSOCK_HDR_SIZE = 44;
export const VMADDR_CID_HOST = 2;

const RX = 0;
const TX = 1;
const EVENT = 2;
/** Our receive buffer per connection, advertised as buf_alloc. */
const BUF_ALLOC = 256 * 1024;
/** Host bytes held per connection waiting for guest credit. */
const MAX_PENDING = 1 << 20;
/** Host ports for host-initiated connections (Firecracker starts at 1 << 30 too). */
const EPHEMERAL_BASE = 1 << 30;

interface Header {
  srcCid: number;
  dstCid: number;
  srcPort: number;
  dstPort: number;
  len: number;
  type: number;
  op: number;
  flags: number;
  bufAlloc: number;
  fwdCnt: number;
}

/** One stream as the host sees it. */
export class VsockConnection {
  /** Bytes from the guest. */
  onData: (data: Uint8Array) => void = () => {};
  /** The guest closed or reset the connection (or the device was reset). */
  onClose: () => void = () => {};
  /** @internal */ state: 'connecting' | 'connected' | 'closing' | 'closed' = 'connecting';
  /** @internal */ pending: Uint8Array[] = [];
  /** @internal */ pendingBytes = 0;
  /** @internal */ hostClosed = false;
  /** @internal */ peerBufAlloc = 0;
  /** @internal */ peerFwdCnt = 0;
  /** @internal */ txCnt = 0;
  /** @internal */ fwdCnt = 0;
  /** @internal */ reportedFwdCnt = 0;
  /** Bytes the host handed to send() (taken or dropped) and bytes handed to onData, since the connection began (a fork's barrier counts on them). */
  fromHost = 0;
  toHost = 0;
  /**
   * @internal A connection kept by a restore for its host to adopt (VirtioVsock.adopt): the
   * guest's data waits here, within the credit we gave it, until the host side is attached.
   */
  detached = false;
  /** @internal */ held: Uint8Array[] = [];
  /** @internal */ heldBytes = 0;
  dropped = 0;

  constructor(
    private readonly dev: VirtioVsock,
    readonly guestPort: number,
    readonly hostPort: number,
  ) {}

  /** Sends bytes to the guest; drops (and counts) past a 1 MiB backlog. */
  send(data: Uint8Array): void {
    if (this.state === 'closed' || this.hostClosed || data.length === 0) return;
    this.fromHost += data.length;
    if (this.pendingBytes + data.length > MAX_PENDING) {
      this.dropped += data.length;
      return;
    }
    this.pending.push(data.slice());
    this.pendingBytes += data.length;
    this.dev.kick();
  }

  /** The host end is done: remaining data is delivered, then the guest is told. */
  close(): void {
    if (this.hostClosed || this.state === 'closed') return;
    this.hostClosed = true;
    this.dev.kick();
  }

  /** Credit the guest gives us (§5.10.6.3.1). */
  get peerFree(): number {
    return this.peerBufAlloc - ((this.txCnt - this.peerFwdCnt) >>> 0);
  }
}

export interface VsockBackend {
  /**
   * The guest connects to host port `conn.hostPort`. Return (or resolve) true to accept,
   * after setting conn.onData / conn.onClose; false refuses (the guest sees ECONNRESET).
   */
  accept(conn: VsockConnection): boolean | Promise<boolean>;
}

export interface VsockOptions {
  guestCid: number;
  backend?: VsockBackend;
  queueSize?: number;
}

export interface VsockCounters {
  connections: number;
  refused: number;
  rxBytes: number;
  txBytes: number;
  badPackets: number;
}

/** A connection as a snapshot keeps it: enough for a restore to continue it (VirtioVsock.keepOnRestore). */
export interface SavedVsockConnection {
  guestPort: number;
  hostPort: number;
  peerBufAlloc: number;
  peerFwdCnt: number;
  txCnt: number;
  fwdCnt: number;
  fromHost: number;
  toHost: number;
  /** Host bytes not yet delivered to the guest, base64. */
  pending: string;
}

/**
 * What a snapshot keeps of a virtio-vsock. A connection's host end is a socket of the process
 * that saved it, so by default, as Firecracker does, a restored device whose guest had
 * connections sends TRANSPORT_RESET on the event queue (§5.10.6.6), and the guest drops them
 * (Linux resets every connected socket and re-reads the guest CID). Version 2 also records each
 * connected stream, so that a restore that knows its host side (a fork's child, whose host
 * continues the parent's agent session: keepOnRestore) keeps those and resets only the rest.
 */
export interface VsockState {
  version: 1 | 2;
  guestCid: number;
  /** Connections open when saved (each is reset in the restored guest, unless kept). */
  connections: number;
  /** A TRANSPORT_RESET still waiting for an event buffer. */
  resetPending: boolean;
  counters: VsockCounters;
  /** Version 2: the connected streams, and the next ephemeral host port. */
  open?: SavedVsockConnection[];
  nextPort?: number;
}

/** Streams a saved state may list (each holds at most MAX_PENDING bytes for the guest). */
const MAX_SAVED_CONNECTIONS = 256;

export class VirtioVsock implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_VSOCK;
  readonly name = 'vsock';
  readonly features = 0n; // §5.10.3: no bits means stream sockets only
  readonly queueSizes: readonly number[];
  readonly maxChainBytes = VIRTIO_VSOCK_HDR_SIZE + 64 * 1024;
  readonly guestCid: number;
  readonly counters: VsockCounters = { connections: 0, refused: 0, rxBytes: 0, txBytes: 0, badPackets: 0 };
  backend: VsockBackend | null;
  private readonly config = new Uint8Array(8);
  private ctx: DeviceContext | null = null;
  private readonly conns = new Map<string, VsockConnection>();
  private control: Header[] = [];
  private connectWaiters = new Map<VsockConnection, { resolve: (c: VsockConnection) => void; reject: (e: Error) => void }>();
  private nextPort = EPHEMERAL_BASE;
  private flushing = false;
  /** TRANSPORT_RESET to deliver on the event queue (after a restore). */
  private resetPending = false;
  /**
   * Saved connections (guest port, host port) the next restore() keeps, detached, for their
   * host to adopt (adopt()), instead of resetting the guest's connections; the others get a
   * RST each. Null: reset them all (TRANSPORT_RESET), the default.
   */
  keepOnRestore: readonly { guestPort: number; hostPort: number }[] | null = null;

  constructor(opts: VsockOptions) {
    // CIDs 0-2 are reserved (hypervisor, local, host); the guest needs its own.
    if (!Number.isSafeInteger(opts.guestCid) || opts.guestCid < 3 || opts.guestCid > 0xffff_fffe) {
      throw new RangeError(`bad guest CID ${opts.guestCid}`);
    }
    this.guestCid = opts.guestCid;
    this.backend = opts.backend ?? null;
    this.queueSizes = [opts.queueSize ?? 128, opts.queueSize ?? 128, 16];
    writeU64(new DataView(this.config.buffer), 0, this.guestCid);
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size);
  }
  writeConfig(): void {}

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    this.sendEvents();
    this.drainTx();
  }

  reset(): void {
    this.ctx = null;
    this.resetPending = false;
    this.control = [];
    for (const c of this.conns.values()) this.drop(c);
    this.conns.clear();
  }

  notify(queue: number): void {
    if (queue === TX) this.drainTx();
    else if (queue === RX) this.kick();
    else if (queue === EVENT) this.sendEvents();
  }

  saveState(): VsockState {
    let open = 0;
    const saved: SavedVsockConnection[] = [];
    for (const c of this.conns.values()) {
      if (c.state === 'closed') continue;
      open++;
      // Only a stream in its steady state can be continued; one still connecting, closing or
      // whose host end is done is reset whatever the restore wants.
      if (c.state !== 'connected' || c.hostClosed || c.detached || saved.length >= MAX_SAVED_CONNECTIONS) continue;
      saved.push({
        guestPort: c.guestPort, hostPort: c.hostPort, peerBufAlloc: c.peerBufAlloc, peerFwdCnt: c.peerFwdCnt,
        txCnt: c.txCnt, fwdCnt: c.fwdCnt, fromHost: c.fromHost, toHost: c.toHost, pending: toBase64(concatBytes(c.pending, c.pendingBytes)),
      });
    }
    return { version: 2, guestCid: this.guestCid, connections: open, resetPending: this.resetPending, counters: { ...this.counters }, open: saved, nextPort: this.nextPort };
  }

  restore(state: unknown): void {
    const bad = (why: string) => stateError(this.name, why);
    if (!isObject(state) || (state.version !== 1 && state.version !== 2)) throw bad('unknown version');
    const s = state as unknown as VsockState;
    if (s.guestCid !== this.guestCid) throw bad(`the snapshot's guest CID is ${String(s.guestCid)}, this device's ${this.guestCid}`);
    if (!isCount(s.connections) || typeof s.resetPending !== 'boolean') throw bad('connections');
    const listed = s.version === 2 ? savedConnections(s, bad) : [];
    if (s.version === 2 && (!isU32(s.nextPort) || s.nextPort < EPHEMERAL_BASE)) throw bad('nextPort');
    restoreCounters(this.counters, s.counters, this.name);
    const keep = new Set((this.keepOnRestore ?? []).map((c) => key(c.guestPort, c.hostPort)));
    const kept = (k: { conn: SavedVsockConnection }) => keep.has(key(k.conn.guestPort, k.conn.hostPort));
    if (s.resetPending || !listed.some(kept)) {
      // A guest without connections has nothing to forget: no event, so a restored idle guest
      // runs exactly as one never interrupted.
      this.resetPending = s.resetPending || s.connections > 0;
      return;
    }
    // (A reset still pending when saved is for streams older than these: it wins.) A
    // TRANSPORT_RESET would reset the kept ones too: each other listed stream gets a RST.
    // One the state does not list (closing, or past the limit) is reset at its next packet,
    // which no connection of this device matches.
    if (s.nextPort !== undefined) this.nextPort = s.nextPort;
    for (const k of listed) {
      const conn = new VsockConnection(this, k.conn.guestPort, k.conn.hostPort);
      if (!kept(k)) {
        this.control.push(this.header(conn, VIRTIO_VSOCK_OP_RST));
        continue;
      }
      Object.assign(conn, { peerBufAlloc: k.conn.peerBufAlloc, peerFwdCnt: k.conn.peerFwdCnt, txCnt: k.conn.txCnt, fwdCnt: k.conn.fwdCnt, reportedFwdCnt: k.conn.fwdCnt, fromHost: k.conn.fromHost, toHost: k.conn.toHost });
      conn.state = 'connected';
      conn.detached = true;
      if (k.pending.length > 0) {
        conn.pending = [k.pending];
        conn.pendingBytes = k.pending.length;
      }
      this.conns.set(key(conn.guestPort, conn.hostPort), conn);
    }
  }

  /**
   * The host side of a connection kept by restore() (keepOnRestore): `attach` sets its
   * onData/onClose, then the guest's data that waited is delivered. Null when there is no such
   * detached connection (the guest reset it meanwhile, or it was never kept).
   */
  adopt(guestPort: number, hostPort: number, attach: (conn: VsockConnection) => void): VsockConnection | null {
    const conn = this.connection(guestPort, hostPort);
    if (!conn || !conn.detached || conn.state !== 'connected') return null;
    attach(conn);
    conn.detached = false;
    const held = conn.held;
    conn.held = [];
    conn.heldBytes = 0;
    for (const d of held) this.deliver(conn, d);
    this.kick();
    return conn;
  }

  /** A connection by its ports (a fork's barrier reads its byte counts). */
  connection(guestPort: number, hostPort: number): VsockConnection | undefined {
    // Not `>>> 0`: a port past 32 bits must not wrap onto another stream.
    return isU32(guestPort) && isU32(hostPort) ? this.conns.get(key(guestPort, hostPort)) : undefined;
  }

  /** §5.10.6.6: delivers a pending TRANSPORT_RESET once the driver has an event buffer. */
  private sendEvents(): void {
    const ctx = this.ctx;
    if (!ctx || !this.resetPending) return;
    const q = ctx.queues[EVENT]!;
    const c = q.pop();
    if (!c) return;
    this.resetPending = false;
    const ev = new Uint8Array(EVENT_SIZE);
    new DataView(ev.buffer).setUint32(0, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, true);
    q.pushUsed(c.head, c.write(0, ev));
    ctx.usedBuffers(EVENT);
  }

  /** Host-initiated connection to the guest's listening `guestPort`. */
  connect(guestPort: number): Promise<VsockConnection> {
    if (!this.ctx) return Promise.reject(new Error('vsock: driver not ready'));
    let hostPort = this.nextPort;
    while (this.conns.has(key(guestPort, hostPort))) hostPort++;
    this.nextPort = hostPort + 1 > 0xffff_ffff ? EPHEMERAL_BASE : hostPort + 1;
    const conn = new VsockConnection(this, guestPort >>> 0, hostPort);
    this.conns.set(key(conn.guestPort, hostPort), conn);
    const p = new Promise<VsockConnection>((resolve, reject) => this.connectWaiters.set(conn, { resolve, reject }));
    this.sendControl(conn, VIRTIO_VSOCK_OP_REQUEST);
    return p;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** @internal moves whatever can be moved into guest receive buffers. */
  kick(): void {
    const ctx = this.ctx;
    if (!ctx || this.flushing) return;
    this.flushing = true;
    try {
      const q = ctx.queues[RX]!;
      let any = false;
      while (q.hasAvailable()) {
        const next = this.nextPacket();
        if (!next) break;
        const chain = q.pop();
        if (!chain) break;
        any = true;
        this.writePacket(chain, next);
      }
      if (any) ctx.usedBuffers(RX);
    } finally {
      this.flushing = false;
    }
  }

  // --- guest → host ----------------------------------------------------------------------

  private drainTx(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    const q = ctx.queues[TX]!;
    let any = false;
    for (let c = q.pop(); c; c = q.pop()) {
      any = true;
      this.handle(c);
      q.pushUsed(c.head, 0);
    }
    if (any) ctx.usedBuffers(TX);
    this.kick();
  }

  private handle(c: DescriptorChain): void {
    if (c.readableLen < VIRTIO_VSOCK_HDR_SIZE) {
      this.counters.badPackets++;
      return;
    }
    const raw = new Uint8Array(VIRTIO_VSOCK_HDR_SIZE);
    c.read(0, raw);
    const h = parseHeader(raw);
    // A guest claiming another CID is spoofing: drop it, like Firecracker does.
    if (h.srcCid !== this.guestCid) {
      this.counters.badPackets++;
      return;
    }
    // §5.10.6.4: packets for other CIDs or socket types get a reset.
    if (h.dstCid !== VMADDR_CID_HOST || h.type !== VIRTIO_VSOCK_TYPE_STREAM) {
      this.counters.badPackets++;
      if (h.op !== VIRTIO_VSOCK_OP_RST) this.rstFor(h);
      return;
    }
    const conn = this.conns.get(key(h.srcPort, h.dstPort));
    if (conn) {
      conn.peerBufAlloc = h.bufAlloc;
      conn.peerFwdCnt = h.fwdCnt;
    }
    switch (h.op) {
      case VIRTIO_VSOCK_OP_REQUEST:
        if (conn) this.reset_(conn, true);
        else this.incoming(h);
        return;
      case VIRTIO_VSOCK_OP_RESPONSE:
        if (conn?.state === 'connecting') {
          conn.state = 'connected';
          this.counters.connections++;
          const w = this.connectWaiters.get(conn);
          this.connectWaiters.delete(conn);
          w?.resolve(conn);
        } else if (conn) this.reset_(conn, true);
        else this.rstFor(h);
        return;
      case VIRTIO_VSOCK_OP_RW: {
        if (conn?.state !== 'connected' && conn?.state !== 'closing') {
          if (conn) this.reset_(conn, true);
          else this.rstFor(h);
          return;
        }
        const n = Math.min(h.len, c.readableLen - VIRTIO_VSOCK_HDR_SIZE);
        if (n <= 0) return;
        const data = new Uint8Array(n);
        c.read(VIRTIO_VSOCK_HDR_SIZE, data);
        this.counters.rxBytes += n;
        if (conn.detached) {
          // Held until the host adopts it; fwdCnt stays, so the guest's credit bounds this.
          if (conn.heldBytes + n > BUF_ALLOC) return this.reset_(conn, true);
          conn.held.push(data);
          conn.heldBytes += n;
          return;
        }
        this.deliver(conn, data);
        return;
      }
      case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
        return; // credit already taken from the header; kick() after drainTx uses it
      case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
        if (conn) this.sendControl(conn, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
        return;
      case VIRTIO_VSOCK_OP_SHUTDOWN:
        if (!conn) return this.rstFor(h);
        // We do not keep half-open streams: any guest shutdown ends the connection, which
        // §5.10.6.5 confirms with a RST.
        this.reset_(conn, true);
        return;
      case VIRTIO_VSOCK_OP_RST:
        if (conn) this.reset_(conn, false);
        return;
      default:
        this.counters.badPackets++;
        if (conn) this.reset_(conn, true);
        else this.rstFor(h);
    }
  }

  /** Guest bytes to the host end; our consumption goes back as credit once half the buffer has. */
  private deliver(conn: VsockConnection, data: Uint8Array): void {
    conn.fwdCnt = (conn.fwdCnt + data.length) >>> 0;
    conn.toHost += data.length;
    if (conn.state === 'connected') conn.onData(data);
    if (((conn.fwdCnt - conn.reportedFwdCnt) >>> 0) >= BUF_ALLOC / 2) this.sendControl(conn, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
  }

  private incoming(h: Header): void {
    const conn = new VsockConnection(this, h.srcPort, h.dstPort);
    conn.peerBufAlloc = h.bufAlloc;
    conn.peerFwdCnt = h.fwdCnt;
    this.conns.set(key(conn.guestPort, conn.hostPort), conn);
    const refuse = () => {
      this.counters.refused++;
      this.reset_(conn, true);
    };
    const decide = (ok: boolean) => {
      if (this.conns.get(key(conn.guestPort, conn.hostPort)) !== conn) return; // reset meanwhile
      if (!ok) return refuse();
      conn.state = 'connected';
      this.counters.connections++;
      this.sendControl(conn, VIRTIO_VSOCK_OP_RESPONSE);
    };
    if (!this.backend) return refuse();
    let r: boolean | Promise<boolean>;
    try {
      r = this.backend.accept(conn);
    } catch {
      return refuse();
    }
    if (typeof r === 'boolean') decide(r);
    else r.then(decide, () => decide(false));
  }

  /** Ends a connection; with `tellGuest`, sends it a RST. */
  private reset_(conn: VsockConnection, tellGuest: boolean): void {
    if (tellGuest) this.control.push(this.header(conn, VIRTIO_VSOCK_OP_RST));
    this.conns.delete(key(conn.guestPort, conn.hostPort));
    this.drop(conn);
    this.kick();
  }

  private drop(conn: VsockConnection): void {
    const wasOpen = conn.state !== 'closed';
    const w = this.connectWaiters.get(conn);
    conn.state = 'closed';
    conn.pending = [];
    conn.pendingBytes = 0;
    conn.held = [];
    conn.heldBytes = 0;
    if (w) {
      this.connectWaiters.delete(conn);
      w.reject(new Error(`vsock: guest port ${conn.guestPort} refused the connection`));
    } else if (wasOpen) conn.onClose();
  }

  private rstFor(h: Header): void {
    if (h.op === VIRTIO_VSOCK_OP_RST) return;
    this.control.push({
      srcCid: VMADDR_CID_HOST, dstCid: this.guestCid, srcPort: h.dstPort, dstPort: h.srcPort,
      len: 0, type: VIRTIO_VSOCK_TYPE_STREAM, op: VIRTIO_VSOCK_OP_RST, flags: 0, bufAlloc: 0, fwdCnt: 0,
    });
    this.kick();
  }

  // --- host → guest ----------------------------------------------------------------------

  private sendControl(conn: VsockConnection, op: number, flags = 0): void {
    const h = this.header(conn, op);
    h.flags = flags;
    this.control.push(h);
    this.kick();
  }

  private header(conn: VsockConnection, op: number): Header {
    conn.reportedFwdCnt = conn.fwdCnt;
    return {
      srcCid: VMADDR_CID_HOST, dstCid: this.guestCid, srcPort: conn.hostPort, dstPort: conn.guestPort,
      len: 0, type: VIRTIO_VSOCK_TYPE_STREAM, op, flags: 0, bufAlloc: BUF_ALLOC, fwdCnt: conn.fwdCnt,
    };
  }

  /** The next packet to deliver: control first, then data within credit, then shutdowns. */
  private nextPacket(): { h: Header; conn?: VsockConnection } | null {
    const h = this.control.shift();
    if (h) return { h };
    for (const conn of this.conns.values()) {
      if (conn.state !== 'connected') continue;
      if (conn.pendingBytes > 0 && conn.peerFree > 0) return { h: this.header(conn, VIRTIO_VSOCK_OP_RW), conn };
      if (conn.hostClosed && conn.pendingBytes === 0) {
        conn.state = 'closing';
        const s = this.header(conn, VIRTIO_VSOCK_OP_SHUTDOWN);
        s.flags = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
        return { h: s };
      }
    }
    return null;
  }

  private writePacket(chain: DescriptorChain, p: { h: Header; conn?: VsockConnection }): void {
    const q = this.ctx!.queues[RX]!;
    if (chain.writableLen < VIRTIO_VSOCK_HDR_SIZE) {
      // A receive buffer too small for a header is a driver bug; the packet is lost.
      this.counters.badPackets++;
      q.pushUsed(chain.head, 0);
      return;
    }
    let payload: Uint8Array | null = null;
    const conn = p.conn;
    if (conn) {
      const room = Math.min(chain.writableLen - VIRTIO_VSOCK_HDR_SIZE, conn.peerFree, conn.pendingBytes);
      payload = new Uint8Array(room);
      let off = 0;
      while (off < room) {
        const head = conn.pending[0]!;
        const n = Math.min(head.length, room - off);
        payload.set(head.subarray(0, n), off);
        off += n;
        if (n === head.length) conn.pending.shift();
        else conn.pending[0] = head.subarray(n);
      }
      conn.pendingBytes -= room;
      conn.txCnt = (conn.txCnt + room) >>> 0;
      p.h.len = room;
      this.counters.txBytes += room;
    }
    chain.write(0, encodeHeader(p.h));
    if (payload) chain.write(VIRTIO_VSOCK_HDR_SIZE, payload);
    q.pushUsed(chain.head, VIRTIO_VSOCK_HDR_SIZE + (payload?.length ?? 0));
  }
}

/** Version 2's connection list, each field checked (a snapshot is untrusted input). */
function savedConnections(s: VsockState, bad: (why: string) => Error): { conn: SavedVsockConnection; pending: Uint8Array }[] {
  const list: unknown = s.open;
  if (!Array.isArray(list) || list.length > MAX_SAVED_CONNECTIONS || list.length > s.connections) throw bad('open connections');
  const seen = new Set<string>();
  return list.map((c: unknown) => {
    if (!isObject(c)) throw bad('open connection');
    for (const f of ['guestPort', 'hostPort', 'peerBufAlloc', 'peerFwdCnt', 'txCnt', 'fwdCnt'] as const) if (!isU32(c[f])) throw bad(`open connection ${f}`);
    if (!isCount(c.fromHost) || !isCount(c.toHost)) throw bad('open connection byte counts');
    const pending = fromBase64(c.pending, MAX_PENDING);
    if (!pending) throw bad('open connection pending bytes');
    const k = key(c.guestPort as number, c.hostPort as number);
    if (seen.has(k)) throw bad(`connection ${k} listed twice`);
    seen.add(k);
    return { conn: c as unknown as SavedVsockConnection, pending };
  });
}

function key(guestPort: number, hostPort: number): string {
  return `${guestPort}:${hostPort}`;
}

export function parseHeader(b: Uint8Array): Header {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    srcCid: readU64(v, 0),
    dstCid: readU64(v, 8),
    srcPort: v.getUint32(16, true),
    dstPort: v.getUint32(20, true),
    len: v.getUint32(24, true),
    type: v.getUint16(28, true),
    op: v.getUint16(30, true),
    flags: v.getUint32(32, true),
    bufAlloc: v.getUint32(36, true),
    fwdCnt: v.getUint32(40, true),
  };
}

export function encodeHeader(h: Header): Uint8Array {
  const b = new Uint8Array(VIRTIO_VSOCK_HDR_SIZE);
  const v = new DataView(b.buffer);
  writeU64(v, 0, h.srcCid);
  writeU64(v, 8, h.dstCid);
  v.setUint32(16, h.srcPort, true);
  v.setUint32(20, h.dstPort, true);
  v.setUint32(24, h.len, true);
  v.setUint16(28, h.type, true);
  v.setUint16(30, h.op, true);
  v.setUint32(32, h.flags, true);
  v.setUint32(36, h.bufAlloc, true);
  v.setUint32(40, h.fwdCnt, true);
  return b;
}

export type VsockHeader = Header;

export function createVirtioVsock(opts: VsockOptions): VirtioVsock {
  return new VirtioVsock(opts);
}
