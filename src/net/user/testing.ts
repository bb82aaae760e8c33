/**
 * Test support for the user-mode network: a fake host socket backend that records what the
 * stack asks of it and lets a test play the host's side, and a guest that crafts frames and
 * parses the stack's answers. Used by the unit tests; not part of the product.
 */
import type { HostListener, HostSockets, HostTcpSocket, HostUdpSocket, TcpSocketEvents } from './host-sockets.js';
import { ETH_HLEN, fillL4Checksum, ip4, IPPROTO_TCP, IPPROTO_UDP, ipv4Frame, IPV4_HLEN, parseIpv4, readIp, type Ip4 } from './packet.js';
import { GATEWAY_MAC, type UserNet } from './user-net.js';

export class FakeTcp implements HostTcpSocket {
  written: Uint8Array[] = [];
  ended = false;
  destroyed = false;
  paused = false;
  bufferedBytes = 0;
  events!: TcpSocketEvents;
  constructor(
    readonly address: string,
    readonly port: number,
    readonly remoteAddress?: string,
    readonly remotePort?: number,
  ) {}
  write(d: Uint8Array): void {
    this.written.push(d.slice());
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  text(): string {
    return this.written.map((d) => new TextDecoder().decode(d)).join('');
  }
  get writtenBytes(): number {
    return this.written.reduce((n, d) => n + d.length, 0);
  }
}

export class FakeUdp implements HostUdpSocket {
  sent: { data: Uint8Array; port: number; address: string }[] = [];
  closed = false;
  constructor(readonly onMessage: (d: Uint8Array, a: string, p: number) => void) {}
  send(data: Uint8Array, port: number, address: string): void {
    this.sent.push({ data: data.slice(), port, address });
  }
  close(): void {
    this.closed = true;
  }
}

export class FakeSockets implements HostSockets {
  tcp: FakeTcp[] = [];
  udp: FakeUdp[] = [];
  tcpListeners = new Map<number, (s: HostTcpSocket) => TcpSocketEvents>();
  udpListeners = new Map<number, FakeUdp>();
  names = new Map<string, string[]>();
  resolveCalls = 0;
  connectTcp(address: string, port: number, events: TcpSocketEvents): HostTcpSocket {
    const s = new FakeTcp(address, port);
    s.events = events;
    this.tcp.push(s);
    return s;
  }
  bindUdp(onMessage: (d: Uint8Array, a: string, p: number) => void): HostUdpSocket {
    const s = new FakeUdp(onMessage);
    this.udp.push(s);
    return s;
  }
  async listenTcp(_a: string, port: number, accept: (s: HostTcpSocket) => TcpSocketEvents): Promise<HostListener> {
    this.tcpListeners.set(port, accept);
    return { close: () => this.tcpListeners.delete(port) };
  }
  async listenUdp(_a: string, port: number, onMessage: (d: Uint8Array, a: string, p: number) => void): Promise<HostUdpSocket> {
    const s = new FakeUdp(onMessage);
    this.udpListeners.set(port, s);
    return s;
  }
  async resolve(name: string, family: 4 | 6): Promise<string[]> {
    this.resolveCalls++;
    if (name === 'fail.test') throw new Error('resolver down');
    return (this.names.get(name) ?? []).filter((a) => (family === 4) === a.includes('.'));
  }
  hostAddresses(): string[] {
    return ['127.0.0.1', '192.168.1.10'];
  }
  /** A host client connecting to a TCP forward on `port`. */
  accept(port: number, from = '127.0.0.1'): FakeTcp {
    const s = new FakeTcp('', port, from, 40000);
    const accept = this.tcpListeners.get(port);
    if (!accept) throw new Error(`nothing listens on ${port}`);
    s.events = accept(s);
    return s;
  }
}

export interface ParsedSegment {
  src: Ip4;
  dst: Ip4;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  payload: Uint8Array;
  options: Uint8Array;
}

export interface ParsedUdp {
  src: Ip4;
  dst: Ip4;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

/** A guest NIC plugged straight into a UserNet. */
export class FakeGuest {
  readonly frames: Uint8Array[] = [];
  ip: Ip4;
  constructor(
    readonly net: UserNet,
    readonly mac = Uint8Array.of(0x02, 0, 0, 0, 0, 0x15),
    ipText = '10.0.2.15',
  ) {
    this.ip = ip4(ipText)!;
    net.connect((f) => this.frames.push(f.slice()));
  }

  take(): Uint8Array[] {
    return this.frames.splice(0);
  }

  udp(dst: string, srcPort: number, dstPort: number, payload: Uint8Array, opts: { src?: Ip4; dstMac?: Uint8Array } = {}): Uint8Array {
    const f = ipv4Frame(opts.dstMac ?? GATEWAY_MAC, this.mac, opts.src ?? this.ip, ip4(dst)!, IPPROTO_UDP, 8 + payload.length);
    const o = ETH_HLEN + IPV4_HLEN;
    const dv = new DataView(f.buffer);
    dv.setUint16(o, srcPort);
    dv.setUint16(o + 2, dstPort);
    dv.setUint16(o + 4, 8 + payload.length);
    f.set(payload, o + 8);
    fillL4Checksum(f, IPPROTO_UDP);
    this.net.receive(f);
    return f;
  }

  tcpFrame(dst: string, srcPort: number, dstPort: number, seq: number, ack: number, flags: number, payload = new Uint8Array(0), opts: { window?: number; options?: number[] } = {}): Uint8Array {
    const optBytes = opts.options ?? [];
    const hlen = 20 + optBytes.length;
    const f = ipv4Frame(GATEWAY_MAC, this.mac, this.ip, ip4(dst)!, IPPROTO_TCP, hlen + payload.length);
    const o = ETH_HLEN + IPV4_HLEN;
    const dv = new DataView(f.buffer);
    dv.setUint16(o, srcPort);
    dv.setUint16(o + 2, dstPort);
    dv.setUint32(o + 4, seq >>> 0);
    dv.setUint32(o + 8, ack >>> 0);
    f[o + 12] = (hlen / 4) << 4;
    f[o + 13] = flags;
    dv.setUint16(o + 14, opts.window ?? 65535);
    f.set(optBytes, o + 20);
    f.set(payload, o + hlen);
    fillL4Checksum(f, IPPROTO_TCP);
    return f;
  }

  tcp(...args: Parameters<FakeGuest['tcpFrame']>): void {
    this.net.receive(this.tcpFrame(...args));
  }

  /** TCP segments among the frames received so far (taken). */
  segments(): ParsedSegment[] {
    const out: ParsedSegment[] = [];
    for (const f of this.take()) {
      const ip = parseIpv4(f, ETH_HLEN);
      if (!ip || ip.proto !== IPPROTO_TCP) continue;
      const dv = new DataView(f.buffer, f.byteOffset);
      const hlen = (f[ip.off + 12]! >> 4) * 4;
      out.push({
        src: ip.src,
        dst: ip.dst,
        srcPort: dv.getUint16(ip.off),
        dstPort: dv.getUint16(ip.off + 2),
        seq: dv.getUint32(ip.off + 4),
        ack: dv.getUint32(ip.off + 8),
        flags: f[ip.off + 13]!,
        window: dv.getUint16(ip.off + 14),
        options: f.slice(ip.off + 20, ip.off + hlen),
        payload: f.slice(ip.off + hlen, ip.off + ip.len),
      });
    }
    return out;
  }

  udps(): ParsedUdp[] {
    const out: ParsedUdp[] = [];
    for (const f of this.take()) {
      const ip = parseIpv4(f, ETH_HLEN);
      if (!ip || ip.proto !== IPPROTO_UDP) continue;
      out.push({ src: ip.src, dst: ip.dst, srcPort: (f[ip.off]! << 8) | f[ip.off + 1]!, dstPort: (f[ip.off + 2]! << 8) | f[ip.off + 3]!, payload: f.slice(ip.off + 8, ip.off + ip.len) });
    }
    return out;
  }
}

export { readIp };
