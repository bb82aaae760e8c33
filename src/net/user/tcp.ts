/**
 * One guest TCP connection terminated by the user-mode network (RFC 9293), proxied to a host
 * socket, as libslirp does: the guest talks TCP to us, we talk to the host's socket API. The
 * guest link is lossless and in order except when its receive ring is full, so the receiver
 * takes in-order segments only (a gap gets a duplicate ACK and the guest resends) and the
 * sender goes back to the first unacknowledged byte on a timeout.
 *
 * Backpressure both ways, with bounded buffers:
 * - host → guest: bytes wait in `sendBuf` until the guest acknowledges them; above SND_BUF
 *   the host socket is paused, below half it resumes;
 * - guest → host: our advertised window is RCV_BUF less what the host socket has not taken
 *   yet, so a host peer that stops reading closes the guest's window.
 */
import type { HostTcpSocket, TcpSocketEvents } from './host-sockets.js';

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

/** Host bytes held for the guest before the host socket is paused. */
export const SND_BUF = 512 * 1024;
/** Guest bytes the host socket may hold unwritten (our receive window). */
export const RCV_BUF = 1024 * 1024;
/** Our window scale (RFC 7323): 2^6 lets the 16-bit window say 4 MiB. */
export const OUR_WSCALE = 6;
/** Unacknowledged bytes in flight to the guest, whatever its window (its ring holds 256 frames). */
const MAX_INFLIGHT = 256 * 1024;
/** Payload of one GSO segment: an IPv4 packet stays within 64 KiB with headers and options. */
export const GSO_MAX_PAYLOAD = 65535 - 20 - 60;
// The guest is a VM on a shared host: its ACKs can be late by hundreds of milliseconds
// without any loss, and a spurious timeout resends the whole window. Losses (a full receive
// ring) are rare, so a long timeout costs little.
const MIN_RTO_MS = 1000;
const MAX_RTO_MS = 10_000;

/** A guest TCP connection as a snapshot records it (UserNet.resetRestored sends its reset). */
export interface SavedTcpFlow {
  guestIp: number;
  guestPort: number;
  remoteIp: number;
  remotePort: number;
  /** Our next sequence number (what the guest expects next), and the guest's. */
  seq: number;
  ack: number;
}

export type TcpState = 'connecting' | 'syn-rcvd' | 'syn-sent' | 'established' | 'closed';

export interface TcpSegmentOut {
  flags: number;
  seq: number;
  ack: number;
  window: number;
  /**
   * The data, as views of the send buffer in order (not copied: the stack copies them once,
   * into the frame; a 64 KiB GSO segment copied three times on its way made most of a
   * download's garbage).
   */
  payload?: readonly Uint8Array[];
  /** SYN options: MSS and (if agreed) window scale. */
  mss?: number;
  wscale?: number;
  /** A payload longer than one MSS (GSO to the guest): the MSS it is cut to. */
  gsoSize?: number;
}

/** What a flow needs from the stack that owns it. */
export interface TcpFlowHost {
  emit(flow: TcpFlow, seg: TcpSegmentOut): void;
  /** The flow is finished: forget it. */
  remove(flow: TcpFlow): void;
  now(): number;
  /** Whether segments larger than the MSS may go to the guest (its NIC takes TSO). */
  gso(): boolean;
}

export interface TcpSegmentIn {
  flags: number;
  seq: number;
  ack: number;
  window: number;
  payload: Uint8Array;
  mss?: number;
  wscale?: number;
}

const seqLt = (a: number, b: number) => ((a - b) | 0) < 0;
const seqLe = (a: number, b: number) => ((a - b) | 0) <= 0;
const u32 = (x: number) => x >>> 0;

export class TcpFlow implements TcpSocketEvents {
  state: TcpState;
  socket: HostTcpSocket | null = null;
  /** Next byte expected from the guest. */
  private rcvNxt = 0;
  private sndUna: number;
  private sndNxt: number;
  /** Host bytes from sndUna on (acknowledged ones are dropped from the front). */
  private sendBuf: Uint8Array[] = [];
  private sendBytes = 0;
  private guestWnd = 65535;
  private guestWscale = 0;
  private wscaleOk = false;
  private mss = 536;
  private hostEnded = false;
  private finSent = false;
  private finAcked = false;
  private guestFin = false;
  private hostPaused = false;
  private rto = MIN_RTO_MS * 2;
  private retries = 0;
  private lastSend = 0;
  lastActivity: number;
  /** Bytes each way (counters). */
  bytesToGuest = 0;
  bytesFromGuest = 0;
  /** Timeouts that sent unacknowledged data again. */
  retransmits = 0;

  constructor(
    private readonly host: TcpFlowHost,
    readonly key: string,
    /** The guest's end and the remote end as the guest sees it. */
    readonly guestIp: number,
    readonly guestPort: number,
    readonly remoteIp: number,
    readonly remotePort: number,
    initial: 'connecting' | 'syn-sent',
    iss: number,
  ) {
    this.state = initial;
    this.sndUna = u32(iss);
    this.sndNxt = u32(iss);
    this.lastActivity = host.now();
  }

  // ---- from the guest ----

  /** Outbound: the guest's SYN that created this flow. */
  acceptSyn(seg: TcpSegmentIn): void {
    this.rcvNxt = u32(seg.seq + 1);
    this.noteOptions(seg);
    this.guestWnd = seg.window; // never scaled in a SYN
  }

  private noteOptions(seg: TcpSegmentIn): void {
    if (seg.mss) this.mss = Math.max(64, Math.min(seg.mss, 1460));
    else this.mss = 536;
    if (seg.wscale !== undefined) {
      this.wscaleOk = true;
      this.guestWscale = Math.min(seg.wscale, 14);
    }
  }

  segment(seg: TcpSegmentIn): void {
    this.lastActivity = this.host.now();
    if (seg.flags & TCP_RST) {
      // RFC 5961 §3 in spirit: a reset must fall in the window, so a blind one cannot end the flow.
      const inWindow = Math.abs(u32(seg.seq - this.rcvNxt) | 0) <= RCV_BUF;
      if (this.state === 'syn-sent' ? seg.ack === u32(this.sndNxt) : inWindow) this.abort(false);
      return;
    }
    if (this.state === 'connecting') return; // still opening the host socket: the guest will resend
    if (this.state === 'syn-sent') {
      // Inbound: waiting for the guest's SYN-ACK to our SYN.
      if ((seg.flags & (TCP_SYN | TCP_ACK)) !== (TCP_SYN | TCP_ACK) || seg.ack !== u32(this.sndNxt)) {
        if (seg.flags & TCP_ACK) this.emitRst(seg.ack);
        return;
      }
      this.rcvNxt = u32(seg.seq + 1);
      this.noteOptions(seg);
      this.sndUna = seg.ack;
      this.guestWnd = seg.window;
      this.state = 'established';
      this.retries = 0;
      this.sendAck();
      this.socket?.resume();
      this.pump();
      return;
    }
    if (seg.flags & TCP_SYN) {
      // A retransmitted SYN: our SYN-ACK was lost.
      if (this.state === 'syn-rcvd') this.sendSynAck();
      else this.sendAck();
      return;
    }
    if (!(seg.flags & TCP_ACK)) return;
    this.processAck(seg);
    if (this.state === 'closed') return;
    let needAck = false;
    if (seg.payload.length > 0 || seg.flags & TCP_FIN) {
      if (seg.seq !== this.rcvNxt) {
        this.sendAck(); // old or out of order: tell the guest where we are
        return;
      }
      if (seg.payload.length > 0 && !this.guestFin) {
        const room = this.window();
        const take = Math.min(room, seg.payload.length);
        if (take > 0) {
          this.socket?.write(seg.payload.subarray(0, take));
          this.bytesFromGuest += take;
          this.rcvNxt = u32(this.rcvNxt + take);
        }
        needAck = true;
        if (take < seg.payload.length) {
          this.sendAck();
          return; // the rest, and any FIN, come again when the window opens
        }
      }
      if (seg.flags & TCP_FIN && !this.guestFin) {
        this.guestFin = true;
        this.rcvNxt = u32(this.rcvNxt + 1);
        this.socket?.end();
        needAck = true;
      }
    }
    if (needAck) this.sendAck();
    this.pump();
    this.maybeDone();
  }

  private processAck(seg: TcpSegmentIn): void {
    const ack = seg.ack;
    if (this.state === 'syn-rcvd') {
      if (ack !== u32(this.sndNxt)) {
        this.emitRst(ack);
        return;
      }
      this.sndUna = ack;
      this.state = 'established';
      this.retries = 0;
      this.socket?.resume();
    }
    this.guestWnd = seg.window << (this.wscaleOk ? this.guestWscale : 0);
    if (seqLt(this.sndUna, ack) && seqLe(ack, this.sndNxt)) {
      let acked = u32(ack - this.sndUna);
      this.sndUna = ack;
      if (this.finSent && ack === u32(this.sndNxt)) {
        this.finAcked = true;
        acked--; // the FIN's sequence number is no byte of ours
      }
      this.dropAcked(acked);
      this.retries = 0;
      this.rto = MIN_RTO_MS * 2;
      this.lastSend = this.host.now();
      if (this.hostPaused && this.sendBytes < SND_BUF / 2) {
        this.hostPaused = false;
        this.socket?.resume();
      }
    }
  }

  private dropAcked(n: number): void {
    let left = Math.min(n, this.sendBytes);
    this.sendBytes -= left;
    while (left > 0) {
      const head = this.sendBuf[0]!;
      if (head.length <= left) {
        left -= head.length;
        this.sendBuf.shift();
      } else {
        this.sendBuf[0] = head.subarray(left);
        left = 0;
      }
    }
  }

  // ---- from the host socket ----

  onConnect(): void {
    if (this.state !== 'connecting') return;
    this.state = 'syn-rcvd';
    this.sendSynAck();
  }

  onData(data: Uint8Array): void {
    if (this.state === 'closed' || this.hostEnded) return;
    this.sendBuf.push(data);
    this.sendBytes += data.length;
    if (this.sendBytes >= SND_BUF && !this.hostPaused) {
      this.hostPaused = true;
      this.socket?.pause();
    }
    this.pump();
  }

  onEnd(): void {
    this.hostEnded = true;
    this.pump();
  }

  onClose(error: boolean): void {
    this.socket = null;
    if (this.state === 'closed') return;
    if (error || this.state === 'connecting' || this.state === 'syn-sent') this.abort(true);
    else this.onEnd();
  }

  onDrain(): void {
    // The window we advertise grew: tell the guest.
    if (this.state === 'established') this.sendAck();
  }

  // ---- to the guest ----

  /** Our receive window in bytes: what the host socket can still take. */
  private window(): number {
    const buffered = this.socket?.bufferedBytes ?? 0;
    return Math.max(0, RCV_BUF - buffered);
  }

  private advertised(): number {
    const w = this.window();
    return this.wscaleOk ? Math.min(0xffff, w >>> OUR_WSCALE) : Math.min(0xffff, w);
  }

  private sendSynAck(): void {
    this.host.emit(this, { flags: TCP_SYN | TCP_ACK, seq: this.sndUna, ack: this.rcvNxt, window: Math.min(0xffff, this.window()), mss: 1460, ...(this.wscaleOk ? { wscale: OUR_WSCALE } : {}) });
    this.sndNxt = u32(this.sndUna + 1);
    this.lastSend = this.host.now();
  }

  /** Inbound: our SYN to the guest's listening port. */
  sendSyn(): void {
    this.wscaleOk = false;
    this.host.emit(this, { flags: TCP_SYN, seq: this.sndUna, ack: 0, window: 0xffff, mss: 1460, wscale: OUR_WSCALE });
    this.sndNxt = u32(this.sndUna + 1);
    this.lastSend = this.host.now();
  }

  private sendAck(): void {
    this.host.emit(this, { flags: TCP_ACK, seq: this.sndNxt, ack: this.rcvNxt, window: this.advertised() });
  }

  private emitRst(seq: number): void {
    this.host.emit(this, { flags: TCP_RST, seq, ack: 0, window: 0 });
  }

  /** Sends what the guest's window and our in-flight cap allow, then the FIN when due. */
  pump(): void {
    if (this.state !== 'established') return;
    const limit = Math.min(this.guestWnd, MAX_INFLIGHT);
    for (;;) {
      const sentData = u32(this.sndNxt - this.sndUna) - (this.finSent ? 1 : 0);
      const unsent = this.sendBytes - sentData;
      if (unsent <= 0 || this.finSent) break;
      const room = limit - sentData;
      if (room <= 0) break;
      // With GSO one segment carries up to ~64 KiB, a whole number of MSS-sized pieces.
      const max = this.host.gso() ? Math.floor(GSO_MAX_PAYLOAD / this.mss) * this.mss : this.mss;
      const n = Math.min(unsent, max, room);
      // Only whole segments while data is in flight (an acknowledgement is due, and the host
      // may send more meanwhile), as Nagle's algorithm and the sender's silly window
      // avoidance do (RFC 9293 §3.7.4, §3.8.6.2.1): a host read of 64 KiB is one GSO segment
      // of 62 780 bytes and a tail of 2 756, and sending each tail at once doubled the frames
      // and the guest's per-packet work in a 64 MiB download. A short window waits until it
      // has opened to half the limit; the host's end, or nothing in flight, sends what is left.
      // (Only with GSO: a guest taking MSS-sized frames gets each as it comes, as before.)
      if (max > this.mss && sentData > 0 && !this.hostEnded && n < max && (room >= unsent || room < (limit >>> 1))) break;
      const payload = this.pieces(sentData, n);
      this.host.emit(this, { flags: TCP_ACK | TCP_PSH, seq: this.sndNxt, ack: this.rcvNxt, window: this.advertised(), payload, ...(n > this.mss ? { gsoSize: this.mss } : {}) });
      if (this.sndNxt === this.sndUna) this.lastSend = this.host.now();
      this.sndNxt = u32(this.sndNxt + n);
      this.bytesToGuest += n;
    }
    const allSent = u32(this.sndNxt - this.sndUna) >= this.sendBytes;
    if (this.hostEnded && !this.finSent && allSent) {
      this.finSent = true;
      this.host.emit(this, { flags: TCP_ACK | TCP_FIN, seq: this.sndNxt, ack: this.rcvNxt, window: this.advertised() });
      if (this.sndNxt === this.sndUna) this.lastSend = this.host.now();
      this.sndNxt = u32(this.sndNxt + 1);
    }
    this.maybeDone();
  }

  /** `n` bytes of the send buffer from `from`, as views of its chunks. */
  private pieces(from: number, n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let skip = from;
    let o = 0;
    for (const c of this.sendBuf) {
      if (skip >= c.length) {
        skip -= c.length;
        continue;
      }
      const take = Math.min(c.length - skip, n - o);
      out.push(c.subarray(skip, skip + take));
      o += take;
      skip = 0;
      if (o === n) break;
    }
    return out;
  }

  /** Timers: retransmission. */
  tick(now: number): void {
    if (this.state === 'closed') return;
    const outstanding = this.sndNxt !== this.sndUna;
    if (!outstanding || now - this.lastSend < this.rto) return;
    // No give-up count: a paused VM acknowledges nothing for as long as it is paused, and
    // its connections must survive that. The stack's idle timeouts end dead flows.
    this.retries++;
    this.rto = Math.min(this.rto * 2, MAX_RTO_MS);
    this.lastSend = now;
    this.retransmits++;
    if (this.state === 'syn-rcvd') {
      this.sndNxt = this.sndUna;
      this.sendSynAck();
    } else if (this.state === 'syn-sent') {
      this.sndNxt = this.sndUna;
      this.sendSyn();
    } else {
      // Go back to the first unacknowledged byte.
      this.sndNxt = this.sndUna;
      this.finSent = false;
      this.pump();
    }
  }

  /** Both directions closed and our FIN acknowledged: the flow is over. */
  private maybeDone(): void {
    if (this.state !== 'closed' && this.guestFin && this.finAcked) {
      this.state = 'closed';
      this.socket?.destroy();
      this.host.remove(this);
    }
  }

  /** Ends the flow at once: RST to the guest when `tellGuest`, the host socket destroyed. */
  abort(tellGuest: boolean): void {
    if (this.state === 'closed') return;
    if (tellGuest && this.state !== 'connecting') this.host.emit(this, { flags: TCP_RST | TCP_ACK, seq: this.sndNxt, ack: this.rcvNxt, window: 0 });
    else if (tellGuest) this.host.emit(this, { flags: TCP_RST | TCP_ACK, seq: 0, ack: this.rcvNxt, window: 0 });
    this.state = 'closed';
    const s = this.socket;
    this.socket = null;
    s?.destroy();
    this.host.remove(this);
  }

  /** Bytes held for this flow (memory accounting). */
  get bufferedBytes(): number {
    return this.sendBytes;
  }

  /**
   * What a snapshot keeps of this connection: its ends and the sequence numbers the guest's
   * side holds, enough to reset it in the guest after a restore (the host socket is gone).
   * Null before the guest has a synchronized connection.
   */
  saved(): SavedTcpFlow | null {
    if (this.state === 'connecting' || this.state === 'closed') return null;
    return { guestIp: this.guestIp, guestPort: this.guestPort, remoteIp: this.remoteIp, remotePort: this.remotePort, seq: this.sndNxt, ack: this.rcvNxt };
  }

  get closing(): boolean {
    return this.guestFin || this.hostEnded;
  }
}
