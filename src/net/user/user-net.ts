/**
 * The user-mode network: what a guest on `--net user` sees as its LAN's other end. One
 * instance is one network 10.0.2.0/24 with QEMU's conventions (gateway and host 10.0.2.2,
 * DNS 10.0.2.3, DHCP leases from 10.0.2.15). It answers ARP and ping for its addresses,
 * serves DHCP and DNS, and terminates the guests' TCP and UDP flows onto host sockets (a
 * proxy NAT, as libslirp's). Port forwards come in from host listeners. It plugs into a
 * switch port like a NIC does, so several VMs (and processes) can share it.
 *
 * Everything a guest sends is untrusted: parsing never throws, every table is bounded, and
 * each drop is counted by reason.
 */
import { DROP_REASONS, type DropReason } from './drop-reasons.js';
import { DhcpServer, DHCP_CLIENT_PORT, DHCP_SERVER_PORT } from './dhcp.js';
import { DNS_PORT, dnsResponse, parseDnsQuery, RCODE_NOTIMP, RCODE_NXDOMAIN, RCODE_OK, RCODE_SERVFAIL, wantsAddress } from './dns.js';
import { Firewall, type FirewallRule } from './firewall.js';
import type { Clock, HostSockets, HostListener, HostTcpSocket, HostUdpSocket } from './host-sockets.js';
import {
  BROADCAST_MAC,
  ETH_HLEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  fillL4Checksum,
  ip4,
  ip4Text,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  ipv4Frame,
  IPV4_HLEN,
  l4ChecksumOk,
  macEqual,
  MTU,
  parseIpv4,
  readIp,
  writeIp,
  csumAdd,
  csumFinish,
  pseudoSum,
  type Ip4,
  type Ipv4Packet,
} from './packet.js';
import { TCP_ACK, TCP_RST, TCP_SYN, TcpFlow, type SavedTcpFlow, type TcpFlowHost, type TcpSegmentIn, type TcpSegmentOut } from './tcp.js';

export const NETWORK = ip4('10.0.2.0')!;
export const NETMASK = ip4('255.255.255.0')!;
export const GATEWAY = ip4('10.0.2.2')!;
export const DNS_SERVER = ip4('10.0.2.3')!;
export const FIRST_LEASE = ip4('10.0.2.15')!;
/** The gateway's MAC, libslirp's (52:55 then the address). */
export const GATEWAY_MAC = Uint8Array.of(0x52, 0x55, 0x0a, 0x00, 0x02, 0x02);

export interface PortForward {
  proto: 'tcp' | 'udp';
  /** Host address to listen on (default 127.0.0.1). */
  hostAddress?: string;
  hostPort: number;
  guestPort: number;
  /** The guest it reaches (default the first lease, 10.0.2.15)... */
  guestAddress?: string;
  /** ...or the guest with this MAC, wherever DHCP or ARP put it (shared networks). */
  guestMac?: Uint8Array;
}

export interface UserNetOptions {
  sockets: HostSockets;
  clock?: Clock;
  /** Ordered rules; the first match decides, none means allowed. */
  rules?: readonly FirewallRule[];
  /** Whether guests may reach the host itself (10.0.2.2 and the host's addresses). Default true. */
  hostAccess?: boolean;
  /** NAT flows (TCP + UDP) one guest address may hold (default 512). */
  maxFlowsPerGuest?: number;
  /** Idle time after which an established TCP flow is dropped (default 2 h). */
  tcpIdleMs?: number;
  /** Idle time after which a UDP flow is forgotten (default 60 s). */
  udpIdleMs?: number;
  /** DHCP pool size (default 64). */
  leaseCount?: number;
}

export { DROP_REASONS, type DropReason };

export interface UserNetCounters {
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
  tcpFlowsOpened: number;
  udpFlowsOpened: number;
  dnsQueries: number;
  dhcpReplies: number;
  /** Retransmission timeouts of guest-facing TCP (the guest's ring was full or it stalled). */
  tcpRetransmits: number;
  /** Connections a restored guest held that were reset (resetRestored). */
  tcpRestoredResets: number;
  drops: Record<DropReason, number>;
}

/** Offload meta for a frame to a guest NIC (virtio-net's FrameMeta, restated: no import outward). */
export interface OffloadMeta {
  gsoSize?: number;
  csumStart?: number;
  csumOffset?: number;
}

export type FrameOutput = (frame: Uint8Array, meta?: OffloadMeta) => void;

const HANDSHAKE_MS = 30_000;
const MAX_ARP = 256;
const MAX_DNS_PENDING = 64;
const MAX_UDP_QUEUE = 64;
/** Datagram payload bound: what fits one frame on our MTU. */
const MAX_UDP_PAYLOAD = MTU - IPV4_HLEN - 8;

interface UdpFlow {
  key: string;
  guestIp: Ip4;
  guestPort: number;
  socket: HostUdpSocket;
  lastActivity: number;
}

/** A UDP port forward's client, as the guest sees it: 10.0.2.2:`mappedPort`. */
interface UdpForwardPeer {
  mappedPort: number;
  address: string;
  port: number;
  listener: HostUdpSocket;
  lastActivity: number;
}

export class UserNet implements TcpFlowHost {
  readonly counters: UserNetCounters = {
    framesIn: 0,
    bytesIn: 0,
    framesOut: 0,
    bytesOut: 0,
    tcpFlowsOpened: 0,
    udpFlowsOpened: 0,
    dnsQueries: 0,
    dhcpReplies: 0,
    tcpRetransmits: 0,
    tcpRestoredResets: 0,
    drops: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>,
  };
  readonly dhcp: DhcpServer;
  private output: FrameOutput | null = null;
  private gsoOk: () => boolean = () => false;
  private readonly sockets: HostSockets;
  readonly now: Clock;
  private firewall: Firewall;
  private readonly hostAddrs: Set<Ip4>;
  private readonly arp = new Map<Ip4, Uint8Array>();
  private readonly tcp = new Map<string, TcpFlow>();
  private readonly udp = new Map<string, UdpFlow>();
  private readonly udpPeers = new Map<number, UdpForwardPeer>();
  private readonly flowsPerGuest = new Map<Ip4, number>();
  private readonly listeners: (HostListener | HostUdpSocket)[] = [];
  private dnsPending = 0;
  private nextPort = 49152;
  private iss: number;
  private closed = false;
  private readonly maxFlows: number;
  private readonly tcpIdleMs: number;
  private readonly udpIdleMs: number;

  constructor(opts: UserNetOptions) {
    this.sockets = opts.sockets;
    this.now = opts.clock ?? (() => Date.now());
    this.maxFlows = opts.maxFlowsPerGuest ?? 512;
    this.tcpIdleMs = opts.tcpIdleMs ?? 2 * 3600_000;
    this.udpIdleMs = opts.udpIdleMs ?? 60_000;
    this.hostAddrs = new Set(opts.sockets.hostAddresses().map(ip4).filter((a): a is Ip4 => a !== null));
    this.firewall = this.firewallFor(opts);
    this.dhcp = new DhcpServer({ gateway: GATEWAY, dns: DNS_SERVER, netmask: NETMASK, firstLease: FIRST_LEASE, leaseCount: Math.min(opts.leaseCount ?? 64, 239), leaseSeconds: 86400, mtu: MTU });
    this.iss = (this.now() * 2654435761) >>> 0;
  }

  /**
   * Where frames for the guests go (a switch port, or straight to one NIC). `gso` says
   * whether that NIC takes large TCP segments now (offloads negotiated): then segments go
   * out up to 64 KiB with a partial checksum and their MSS as meta.
   */
  connect(output: FrameOutput | null, gso?: () => boolean): void {
    this.output = output;
    this.gsoOk = gso ?? (() => false);
  }

  /** TcpFlowHost */
  gso(): boolean {
    return this.gsoOk();
  }

  /** The host rule (hostAccess false) comes before all others: no allow rule reopens the host. */
  private firewallFor(opts: Pick<UserNetOptions, 'rules' | 'hostAccess'>): Firewall {
    const rules: FirewallRule[] = [];
    if (opts.hostAccess === false) rules.push({ action: 'deny', dir: 'out', proto: 'any', target: 'host' });
    rules.push(...(opts.rules ?? []));
    return new Firewall(rules, (a) => this.isHost(a));
  }

  /**
   * Replaces the firewall rules and host access (a sandbox taken from a pool of restored
   * machines gets its own policy). It decides new flows and forwarded connections from now
   * on; flows already open stay open.
   */
  setPolicy(opts: Pick<UserNetOptions, 'rules' | 'hostAccess'>): void {
    this.firewall = this.firewallFor(opts);
  }

  private isHost(a: Ip4): boolean {
    return a === GATEWAY || a >>> 24 === 127 || this.hostAddrs.has(a);
  }

  private drop(r: DropReason): void {
    this.counters.drops[r]++;
  }

  // ---------------------------------------------------------------- frames in

  /** A frame from the network. Never throws. */
  receive(f: Uint8Array): void {
    if (this.closed) return;
    this.counters.framesIn++;
    this.counters.bytesIn += f.length;
    try {
      this.dispatch(f);
    } catch {
      // A bug must not take the host down with it; the frame is lost, as on a wire, and
      // counted apart so tests (the fuzz test) see it.
      this.drop('internal');
    }
  }

  private dispatch(f: Uint8Array): void {
    if (f.length < ETH_HLEN) return this.drop('malformed');
    // Ours are the frames to our MAC and broadcasts; other unicast is another VM's business.
    const toUs = macEqual(f, 0, GATEWAY_MAC);
    if (!toUs && !macEqual(f, 0, BROADCAST_MAC)) return;
    const type = (f[12]! << 8) | f[13]!;
    if (type === ETHERTYPE_ARP) return this.handleArp(f);
    if (type !== ETHERTYPE_IPV4) return this.drop('unsupported');
    const ip = parseIpv4(f, ETH_HLEN);
    if (!ip) return this.drop(f.length >= ETH_HLEN + IPV4_HLEN && f[ETH_HLEN]! >> 4 === 4 ? 'checksum' : 'malformed');
    // Fragments are not reassembled: guests on a 1500-byte link with DF set never send them.
    if (ip.fragment) return this.drop('fragment');
    this.learn(ip.src, f.subarray(6, 12));
    if (ip.proto === IPPROTO_UDP) return this.handleUdp(f, ip);
    if (!toUs) return;
    if (ip.proto === IPPROTO_TCP) return this.handleTcp(f, ip);
    if (ip.proto === IPPROTO_ICMP) return this.handleIcmp(f, ip);
    this.drop('unsupported');
  }

  private learn(ipAddr: Ip4, mac: Uint8Array): void {
    if (((ipAddr & NETMASK) >>> 0) !== NETWORK || ipAddr === GATEWAY || ipAddr === DNS_SERVER) return;
    if (mac[0]! & 1) return;
    const have = this.arp.get(ipAddr);
    if (have && macEqual(have, 0, mac)) return;
    if (this.arp.size >= MAX_ARP) this.arp.clear();
    this.arp.set(ipAddr, mac.slice());
  }

  // RFC 826
  private handleArp(f: Uint8Array): void {
    if (f.length < ETH_HLEN + 28) return this.drop('malformed');
    const a = ETH_HLEN;
    if (f[a] !== 0 || f[a + 1] !== 1 || f[a + 2] !== 0x08 || f[a + 3] !== 0 || f[a + 4] !== 6 || f[a + 5] !== 4) return this.drop('malformed');
    const op = (f[a + 6]! << 8) | f[a + 7]!;
    const senderMac = f.subarray(a + 8, a + 14);
    const senderIp = readIp(f, a + 14);
    const targetIp = readIp(f, a + 24);
    if (senderIp !== 0) this.learn(senderIp, senderMac);
    if (op !== 1 || (targetIp !== GATEWAY && targetIp !== DNS_SERVER)) return;
    const r = new Uint8Array(ETH_HLEN + 28);
    r.set(senderMac, 0);
    r.set(GATEWAY_MAC, 6);
    r[12] = 0x08;
    r[13] = 0x06;
    r.set(f.subarray(a, a + 6), a);
    r[a + 7] = 2; // reply
    r.set(GATEWAY_MAC, a + 8);
    writeIp(r, a + 14, targetIp);
    r.set(senderMac, a + 18);
    writeIp(r, a + 24, senderIp);
    this.send(r);
  }

  private arpRequest(target: Ip4): void {
    const r = new Uint8Array(ETH_HLEN + 28);
    r.set(BROADCAST_MAC, 0);
    r.set(GATEWAY_MAC, 6);
    r[12] = 0x08;
    r[13] = 0x06;
    const a = ETH_HLEN;
    r.set([0, 1, 0x08, 0, 6, 4, 0, 1], a);
    r.set(GATEWAY_MAC, a + 8);
    writeIp(r, a + 14, GATEWAY);
    writeIp(r, a + 24, target);
    this.send(r);
  }

  // RFC 792: echo for our own addresses only (a host socket cannot ping without privileges).
  private handleIcmp(f: Uint8Array, ip: Ipv4Packet): void {
    if (ip.len < 8 || csumFinish(csumAdd(f, ip.off, ip.len)) !== 0) return this.drop('checksum');
    if (f[ip.off] !== 8) return this.drop('unsupported');
    if (ip.dst !== GATEWAY && ip.dst !== DNS_SERVER) return this.drop('unsupported');
    if (!this.firewall.allows({ dir: 'out', proto: 'icmp', addr: ip.dst, port: 0 })) return this.drop('firewall');
    const r = ipv4Frame(f.subarray(6, 12), GATEWAY_MAC, ip.dst, ip.src, IPPROTO_ICMP, ip.len);
    r.set(f.subarray(ip.off, ip.off + ip.len), ETH_HLEN + IPV4_HLEN);
    const o = ETH_HLEN + IPV4_HLEN;
    r[o] = 0; // echo reply
    r[o + 2] = 0;
    r[o + 3] = 0;
    const c = csumFinish(csumAdd(r, o, ip.len));
    r[o + 2] = c >> 8;
    r[o + 3] = c & 255;
    this.send(r);
  }

  // ---------------------------------------------------------------- frames out

  private send(f: Uint8Array, meta?: OffloadMeta): void {
    this.counters.framesOut++;
    this.counters.bytesOut += f.length;
    this.output?.(f, meta);
  }

  /** The MAC for a guest address, asking for it when unknown (the caller's packet is lost). */
  private macOf(ipAddr: Ip4): Uint8Array | null {
    if (ipAddr === 0xffffffff) return BROADCAST_MAC;
    const m = this.arp.get(ipAddr);
    if (m) return m;
    this.arpRequest(ipAddr);
    this.drop('noArp');
    return null;
  }

  private sendUdp(src: Ip4, srcPort: number, dst: Ip4, dstPort: number, payload: Uint8Array, dstMac?: Uint8Array): void {
    const mac = dstMac ?? this.macOf(dst);
    if (!mac) return;
    const f = ipv4Frame(mac, GATEWAY_MAC, src, dst, IPPROTO_UDP, 8 + payload.length);
    const o = ETH_HLEN + IPV4_HLEN;
    f[o] = srcPort >> 8;
    f[o + 1] = srcPort & 255;
    f[o + 2] = dstPort >> 8;
    f[o + 3] = dstPort & 255;
    f[o + 4] = (8 + payload.length) >> 8;
    f[o + 5] = (8 + payload.length) & 255;
    f.set(payload, o + 8);
    fillL4Checksum(f, IPPROTO_UDP);
    this.send(f);
  }

  /** TcpFlowHost: a segment from the flow's remote end to its guest. */
  emit(flow: TcpFlow, seg: TcpSegmentOut): void {
    const mac = this.macOf(flow.guestIp);
    if (!mac) return;
    const optLen = seg.mss !== undefined ? (seg.wscale !== undefined ? 8 : 4) : 0;
    const hlen = 20 + optLen;
    let plen = 0;
    for (const piece of seg.payload ?? []) plen += piece.length;
    const f = ipv4Frame(mac, GATEWAY_MAC, flow.remoteIp, flow.guestIp, IPPROTO_TCP, hlen + plen);
    const o = ETH_HLEN + IPV4_HLEN;
    const dv = new DataView(f.buffer);
    dv.setUint16(o, flow.remotePort);
    dv.setUint16(o + 2, flow.guestPort);
    dv.setUint32(o + 4, seg.seq >>> 0);
    dv.setUint32(o + 8, seg.ack >>> 0);
    f[o + 12] = (hlen / 4) << 4;
    f[o + 13] = seg.flags;
    dv.setUint16(o + 14, seg.window);
    if (seg.mss !== undefined) {
      f.set([2, 4, seg.mss >> 8, seg.mss & 255], o + 20);
      if (seg.wscale !== undefined) f.set([1, 3, 3, seg.wscale], o + 24);
    }
    let at = o + hlen;
    for (const piece of seg.payload ?? []) {
      f.set(piece, at);
      at += piece.length;
    }
    if (seg.gsoSize !== undefined) {
      // virtio 1.2 §5.1.6.4.1: the field holds the pseudo-header sum; the guest finishes it.
      const len = f.length - o;
      let p = pseudoSum(flow.remoteIp, flow.guestIp, IPPROTO_TCP, len);
      while (p > 0xffff) p = (p & 0xffff) + (p >>> 16);
      dv.setUint16(o + 16, p);
      this.send(f, { gsoSize: seg.gsoSize, csumStart: o, csumOffset: 16 });
      return;
    }
    fillL4Checksum(f, IPPROTO_TCP);
    this.send(f);
  }

  // ---------------------------------------------------------------- UDP

  private handleUdp(f: Uint8Array, ip: Ipv4Packet): void {
    if (ip.len < 8) return this.drop('malformed');
    const o = ip.off;
    const srcPort = (f[o]! << 8) | f[o + 1]!;
    const dstPort = (f[o + 2]! << 8) | f[o + 3]!;
    const ulen = (f[o + 4]! << 8) | f[o + 5]!;
    if (ulen < 8 || ulen > ip.len) return this.drop('malformed');
    if (!l4ChecksumOk(f, { ...ip, len: ulen })) return this.drop('checksum');
    const payload = f.subarray(o + 8, o + ulen);
    if (dstPort === DHCP_SERVER_PORT && (ip.dst === 0xffffffff || ip.dst === GATEWAY)) {
      const r = this.dhcp.handle(payload);
      if (r) {
        this.counters.dhcpReplies++;
        const mac = r.dstIp === 0xffffffff ? BROADCAST_MAC : f.subarray(6, 12).slice();
        this.sendUdp(GATEWAY, DHCP_SERVER_PORT, r.dstIp, DHCP_CLIENT_PORT, r.payload, mac);
      }
      return;
    }
    if (!macEqual(f, 0, GATEWAY_MAC)) return; // other broadcasts are the guests' business
    if (ip.dst === DNS_SERVER) {
      if (dstPort !== DNS_PORT) return this.drop('unsupported');
      return this.handleDns(ip.src, srcPort, payload);
    }
    if (ip.dst === GATEWAY) {
      const peer = this.udpPeers.get(dstPort);
      if (peer) {
        peer.lastActivity = this.now();
        peer.listener.send(payload.slice(), peer.port, peer.address);
        return;
      }
    }
    this.udpOut(ip, srcPort, dstPort, payload);
  }

  private route(dst: Ip4): string | null {
    if (dst === GATEWAY) return '127.0.0.1';
    if (((dst & NETMASK) >>> 0) === NETWORK) return null; // another guest, or nobody
    if (dst >>> 24 === 0 || dst >>> 24 === 127 || dst >>> 28 >= 14) return null; // this-host, loopback, multicast, reserved
    return ip4Text(dst);
  }

  private udpOut(ip: Ipv4Packet, srcPort: number, dstPort: number, payload: Uint8Array): void {
    const target = this.route(ip.dst);
    if (target === null || dstPort === 0) return this.drop('noRoute');
    if (!this.firewall.allows({ dir: 'out', proto: 'udp', addr: ip.dst, port: dstPort })) return this.drop('firewall');
    const key = `${ip.src}:${srcPort}`;
    let flow = this.udp.get(key);
    if (!flow) {
      if (!this.takeFlowSlot(ip.src)) return this.drop('flowLimit');
      const guestIp = ip.src;
      const guestPort = srcPort;
      const socket = this.sockets.bindUdp((data, address, port) => {
        const from = address === '127.0.0.1' ? GATEWAY : ip4(address);
        const fl = this.udp.get(key);
        if (from === null || !fl || data.length > MAX_UDP_PAYLOAD) return;
        fl.lastActivity = this.now();
        this.sendUdp(from, port, guestIp, guestPort, data);
      });
      flow = { key, guestIp, guestPort, socket, lastActivity: this.now() };
      this.udp.set(key, flow);
      this.counters.udpFlowsOpened++;
    }
    flow.lastActivity = this.now();
    flow.socket.send(payload.slice(), dstPort, target);
  }

  private handleDns(guestIp: Ip4, guestPort: number, payload: Uint8Array): void {
    const q = parseDnsQuery(payload);
    if (!q) return this.drop('malformed');
    this.counters.dnsQueries++;
    const family = wantsAddress(q);
    const reply = (rcode: number, addrs: string[] = []) => {
      if (!this.closed) this.sendUdp(DNS_SERVER, DNS_PORT, guestIp, guestPort, dnsResponse(q, rcode, addrs));
    };
    if (family === null) return reply(RCODE_NOTIMP);
    if (this.dnsPending >= MAX_DNS_PENDING) return this.drop('dnsBusy');
    this.dnsPending++;
    this.sockets.resolve(q.name, family).then(
      async (addrs) => {
        if (addrs.length === 0) {
          // No address of this family: NODATA (NOERROR, no answer) if the name has the other
          // family's, else NXDOMAIN; resolvers treat the two differently.
          const other = await this.sockets.resolve(q.name, family === 4 ? 6 : 4).catch(() => []);
          this.dnsPending--;
          return reply(other.length ? RCODE_OK : RCODE_NXDOMAIN);
        }
        this.dnsPending--;
        reply(RCODE_OK, addrs);
      },
      () => {
        this.dnsPending--;
        reply(RCODE_SERVFAIL);
      },
    );
  }

  // ---------------------------------------------------------------- TCP

  private handleTcp(f: Uint8Array, ip: Ipv4Packet): void {
    if (ip.len < 20) return this.drop('malformed');
    const o = ip.off;
    const hlen = (f[o + 12]! >> 4) * 4;
    if (hlen < 20 || hlen > ip.len) return this.drop('malformed');
    if (!l4ChecksumOk(f, ip)) return this.drop('checksum');
    const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
    const srcPort = dv.getUint16(o);
    const dstPort = dv.getUint16(o + 2);
    const seg: TcpSegmentIn = {
      seq: dv.getUint32(o + 4),
      ack: dv.getUint32(o + 8),
      flags: f[o + 13]! & 0x3f,
      window: dv.getUint16(o + 14),
      payload: f.subarray(o + hlen, o + ip.len),
    };
    // Options (RFC 9293 §3.2): MSS and window scale matter to us; the rest is skipped.
    for (let p = o + 20; p < o + hlen; ) {
      const kind = f[p]!;
      if (kind === 0) break;
      if (kind === 1) {
        p++;
        continue;
      }
      const len = f[p + 1] ?? 0;
      if (len < 2 || p + len > o + hlen) break;
      if (kind === 2 && len === 4) seg.mss = dv.getUint16(p + 2);
      if (kind === 3 && len === 3) seg.wscale = f[p + 2]!;
      p += len;
    }
    const key = `${ip.src}:${srcPort}>${ip.dst}:${dstPort}`;
    const flow = this.tcp.get(key);
    if (flow) return flow.segment(seg);
    if ((seg.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN) return this.tcpOpen(key, ip, srcPort, dstPort, seg, f);
    if (!(seg.flags & TCP_RST)) this.resetUnknown(f, ip, srcPort, dstPort, seg);
  }

  /** RFC 9293 §3.10.7.1: a segment for no connection gets a reset. */
  private resetUnknown(f: Uint8Array, ip: Ipv4Packet, srcPort: number, dstPort: number, seg: TcpSegmentIn): void {
    const tmp = new TcpFlow(this.nullHost(f.subarray(6, 12)), '', ip.src, srcPort, ip.dst, dstPort, 'connecting', 0);
    const len = seg.payload.length + (seg.flags & TCP_SYN ? 1 : 0) + (seg.flags & 1 ? 1 : 0);
    if (seg.flags & TCP_ACK) this.emitVia(tmp, f.subarray(6, 12), { flags: TCP_RST, seq: seg.ack, ack: 0, window: 0 });
    else this.emitVia(tmp, f.subarray(6, 12), { flags: TCP_RST | TCP_ACK, seq: 0, ack: (seg.seq + len) >>> 0, window: 0 });
  }

  private nullHost(_mac: Uint8Array): TcpFlowHost {
    return { emit: () => {}, remove: () => {}, now: this.now, gso: () => false };
  }

  /** Emits for a flow that is not in the table (resets), to a known MAC. */
  private emitVia(flow: TcpFlow, mac: Uint8Array, seg: TcpSegmentOut): void {
    this.learn(flow.guestIp, mac);
    this.emit(flow, seg);
  }

  private takeFlowSlot(guest: Ip4): boolean {
    const n = this.flowsPerGuest.get(guest) ?? 0;
    if (n >= this.maxFlows) return false;
    this.flowsPerGuest.set(guest, n + 1);
    return true;
  }

  private freeFlowSlot(guest: Ip4): void {
    const n = (this.flowsPerGuest.get(guest) ?? 1) - 1;
    if (n <= 0) this.flowsPerGuest.delete(guest);
    else this.flowsPerGuest.set(guest, n);
  }

  private tcpOpen(key: string, ip: Ipv4Packet, srcPort: number, dstPort: number, seg: TcpSegmentIn, f: Uint8Array): void {
    const target = this.route(ip.dst);
    if (target === null) {
      this.drop('noRoute');
      return this.resetUnknown(f, ip, srcPort, dstPort, seg);
    }
    if (!this.firewall.allows({ dir: 'out', proto: 'tcp', addr: ip.dst, port: dstPort })) return this.drop('firewall');
    if (!this.takeFlowSlot(ip.src)) {
      this.drop('flowLimit');
      return this.resetUnknown(f, ip, srcPort, dstPort, seg);
    }
    const flow = new TcpFlow(this, key, ip.src, srcPort, ip.dst, dstPort, 'connecting', this.nextIss());
    flow.acceptSyn(seg);
    this.tcp.set(key, flow);
    this.counters.tcpFlowsOpened++;
    flow.socket = this.sockets.connectTcp(target, dstPort, flow);
  }

  private nextIss(): number {
    this.iss = (this.iss + 64000 + Math.floor(Math.random() * 65536)) >>> 0;
    return this.iss;
  }

  /** TcpFlowHost */
  remove(flow: TcpFlow): void {
    if (this.tcp.get(flow.key) === flow) {
      this.tcp.delete(flow.key);
      this.freeFlowSlot(flow.guestIp);
    }
  }

  // ---------------------------------------------------------------- port forwards

  /** Starts listening for a forward; rejects with the host's error (port in use, …). */
  async addForward(fwd: PortForward): Promise<void> {
    const hostAddress = fwd.hostAddress ?? '127.0.0.1';
    const fixed = ip4(fwd.guestAddress ?? '10.0.2.15');
    if (fixed === null) throw new RangeError(`bad guest address '${fwd.guestAddress}'`);
    const guest = () => (fwd.guestMac ? this.addressOf(fwd.guestMac) : null) ?? fixed;
    if (fwd.proto === 'tcp') {
      const l = await this.sockets.listenTcp(hostAddress, fwd.hostPort, (socket) => this.tcpAccept(socket, guest(), fwd.guestPort));
      this.listeners.push(l);
    } else {
      const holder: { sock?: HostUdpSocket } = {};
      const sock = await this.sockets.listenUdp(hostAddress, fwd.hostPort, (data, address, port) => {
        if (holder.sock) this.udpForwardIn(holder.sock, guest(), fwd.guestPort, data, address, port);
      });
      holder.sock = sock;
      this.listeners.push(sock);
    }
  }

  /** The address a guest NIC has: its DHCP lease, else what ARP saw it use. */
  addressOf(mac: Uint8Array): Ip4 | null {
    const key = [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
    const lease = this.dhcp.leaseTable.get(key);
    if (lease !== undefined) return lease;
    for (const [a, m] of this.arp) if (macEqual(m, 0, mac)) return a;
    return null;
  }

  private inboundAllowed(proto: 'tcp' | 'udp', client: string | undefined, guestPort: number): boolean {
    const addr = ip4(client?.replace(/^::ffff:/, '') ?? '') ?? 0;
    return this.firewall.allows({ dir: 'in', proto, addr, port: guestPort });
  }

  private allocPort(): number {
    for (let i = 0; i < 16384; i++) {
      const p = this.nextPort;
      this.nextPort = p >= 65535 ? 49152 : p + 1;
      if (!this.udpPeers.has(p) && ![...this.tcp.values()].some((fl) => fl.remotePort === p && fl.remoteIp === GATEWAY)) return p;
    }
    return 0;
  }

  private tcpAccept(socket: HostTcpSocket, guest: Ip4, guestPort: number): TcpFlowEventsSink {
    const refuse = (r: DropReason): TcpFlowEventsSink => {
      this.drop(r);
      socket.destroy();
      return ignoreEvents;
    };
    if (this.closed) return refuse('noRoute');
    if (!this.inboundAllowed('tcp', socket.remoteAddress, guestPort)) return refuse('firewall');
    if (!this.takeFlowSlot(guest)) return refuse('flowLimit');
    const port = this.allocPort();
    const key = `${guest}:${guestPort}>${GATEWAY}:${port}`;
    const flow = new TcpFlow(this, key, guest, guestPort, GATEWAY, port, 'syn-sent', this.nextIss());
    flow.socket = socket;
    socket.pause(); // until the guest accepts
    this.tcp.set(key, flow);
    this.counters.tcpFlowsOpened++;
    flow.sendSyn();
    return flow;
  }

  private udpForwardIn(listener: HostUdpSocket, guest: Ip4, guestPort: number, data: Uint8Array, address: string, port: number): void {
    if (data.length > MAX_UDP_PAYLOAD) return this.drop('malformed');
    if (!this.inboundAllowed('udp', address, guestPort)) return this.drop('firewall');
    let peer = [...this.udpPeers.values()].find((p) => p.address === address && p.port === port && p.listener === listener);
    if (!peer) {
      if (this.udpPeers.size >= MAX_UDP_QUEUE * 4) return this.drop('flowLimit');
      const mappedPort = this.allocPort();
      if (mappedPort === 0) return this.drop('flowLimit');
      peer = { mappedPort, address, port, listener, lastActivity: this.now() };
      this.udpPeers.set(mappedPort, peer);
    }
    peer.lastActivity = this.now();
    this.sendUdp(GATEWAY, peer.mappedPort, guest, guestPort, data);
  }

  // ---------------------------------------------------------------- timers, teardown

  /** Retransmissions and idle timeouts; call every ~100 ms. */
  tick(): void {
    const now = this.now();
    for (const flow of [...this.tcp.values()]) {
      const idle = now - flow.lastActivity;
      const limit = flow.state === 'established' && !flow.closing ? this.tcpIdleMs : flow.state === 'established' ? Math.min(this.tcpIdleMs, 120_000) : HANDSHAKE_MS;
      if (idle > limit) flow.abort(true);
      else {
        const before = flow.retransmits;
        flow.tick(now);
        this.counters.tcpRetransmits += flow.retransmits - before;
      }
    }
    for (const [key, u] of this.udp) {
      if (now - u.lastActivity > this.udpIdleMs) {
        u.socket.close();
        this.udp.delete(key);
        this.freeFlowSlot(u.guestIp);
      }
    }
    for (const [port, p] of this.udpPeers) if (now - p.lastActivity > this.udpIdleMs) this.udpPeers.delete(port);
  }

  /**
   * The guest-side TCP connections of the guest at `guestIp` (all guests: undefined), for a
   * snapshot: a restored guest still holds them, but their host sockets are gone.
   */
  savedTcpFlows(guestIp?: Ip4): SavedTcpFlow[] {
    const out: SavedTcpFlow[] = [];
    for (const f of this.tcp.values()) {
      const s = f.saved();
      if (s && (guestIp === undefined || s.guestIp === guestIp)) out.push(s);
    }
    return out;
  }

  /**
   * After a restore: resets (RFC 9293 §3.10.7) each connection the snapshot's guest held, to
   * the NIC with MAC `mac`, so the guest's sockets fail at once instead of waiting forever
   * on a peer that no longer exists. The sequence number is the one the guest expects next;
   * should it have moved on, the guest answers with a challenge ACK (RFC 5961 §3.2), which
   * finds no flow here and is reset with the guest's own number (resetUnknown).
   */
  resetRestored(flows: readonly SavedTcpFlow[], mac: Uint8Array): number {
    let n = 0;
    for (const s of flows) {
      if (this.tcp.has(`${s.guestIp}:${s.guestPort}>${s.remoteIp}:${s.remotePort}`)) continue;
      const tmp = new TcpFlow(this.nullHost(mac), '', s.guestIp, s.guestPort, s.remoteIp, s.remotePort, 'connecting', 0);
      this.emitVia(tmp, mac, { flags: TCP_RST | TCP_ACK, seq: s.seq >>> 0, ack: s.ack >>> 0, window: 0 });
      this.counters.tcpRestoredResets++;
      n++;
    }
    return n;
  }

  get activeFlows(): { tcp: number; udp: number } {
    return { tcp: this.tcp.size, udp: this.udp.size };
  }

  /** Bytes held in flow buffers (the memory bound tests check). */
  get bufferedBytes(): number {
    let n = 0;
    for (const f of this.tcp.values()) n += f.bufferedBytes;
    return n;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const f of [...this.tcp.values()]) f.abort(false);
    for (const u of this.udp.values()) u.socket.close();
    this.udp.clear();
    for (const l of this.listeners) l.close();
    this.listeners.length = 0;
    this.output = null;
  }
}

type TcpFlowEventsSink = import('./host-sockets.js').TcpSocketEvents;
const ignoreEvents: TcpFlowEventsSink = { onConnect() {}, onData() {}, onEnd() {}, onClose() {}, onDrain() {} };
