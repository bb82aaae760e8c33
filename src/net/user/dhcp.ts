/**
 * The DHCP server of the user-mode network (RFC 2131, options RFC 2132): leases from
 * 10.0.2.15 up, by client MAC, with QEMU's gateway (10.0.2.2) and DNS (10.0.2.3). The lease
 * table is the network's, so several VMs on one named network get distinct addresses.
 */
import { ip4Text, readIp, writeIp, type Ip4 } from './packet.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
const MAGIC = 0x63825363;
// RFC 2132 §9.6 message types
const DHCPDISCOVER = 1;
const DHCPOFFER = 2;
const DHCPREQUEST = 3;
const DHCPACK = 5;
const DHCPNAK = 6;
const DHCPRELEASE = 7;
const DHCPINFORM = 8;
// option codes
const OPT_SUBNET_MASK = 1;
const OPT_ROUTER = 3;
const OPT_DNS = 6;
const OPT_MTU = 26;
const OPT_REQUESTED_IP = 50;
const OPT_LEASE_TIME = 51;
const OPT_MSG_TYPE = 53;
const OPT_SERVER_ID = 54;
const OPT_END = 255;
const BOOTP_FIXED = 236;

export interface DhcpConfig {
  gateway: Ip4;
  dns: Ip4;
  netmask: Ip4;
  firstLease: Ip4;
  leaseCount: number;
  leaseSeconds: number;
  mtu: number;
}

export interface DhcpReply {
  /** The BOOTP message to send from port 67 to the client's port 68. */
  payload: Uint8Array;
  /** Where it goes: the client's address when it has one, else broadcast. */
  dstIp: Ip4;
}

export class DhcpServer {
  /** MAC (hex) → address; bounded by leaseCount. */
  private readonly leases = new Map<string, Ip4>();

  constructor(private readonly cfg: DhcpConfig) {}

  get leaseTable(): ReadonlyMap<string, Ip4> {
    return this.leases;
  }

  /** Handles one BOOTP request (the UDP payload); null when it needs no answer or is malformed. */
  handle(p: Uint8Array): DhcpReply | null {
    if (p.length < BOOTP_FIXED + 4 || p[0] !== 1 || p[1] !== 1 || p[2] !== 6) return null;
    if (readIp(p, BOOTP_FIXED) !== MAGIC) return null;
    const opts = parseOptions(p, BOOTP_FIXED + 4);
    if (!opts) return null;
    const type = opts.get(OPT_MSG_TYPE)?.[0];
    const mac = p.subarray(28, 34);
    const key = [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
    const ciaddr = readIp(p, 12);
    switch (type) {
      case DHCPDISCOVER: {
        const ip = this.leaseFor(key);
        return ip === null ? null : this.reply(p, DHCPOFFER, ip, 0);
      }
      case DHCPREQUEST: {
        const req = opts.get(OPT_REQUESTED_IP);
        const wanted = req && req.length === 4 ? readIp(req, 0) : ciaddr;
        const ip = this.leaseFor(key);
        if (ip === null || wanted !== ip) return this.reply(p, DHCPNAK, 0, 0);
        return this.reply(p, DHCPACK, ip, ciaddr);
      }
      case DHCPRELEASE:
        if (this.leases.get(key) === ciaddr) this.leases.delete(key);
        return null;
      case DHCPINFORM:
        return this.reply(p, DHCPACK, 0, ciaddr);
      default:
        return null;
    }
  }

  private leaseFor(key: string): Ip4 | null {
    const have = this.leases.get(key);
    if (have !== undefined) return have;
    const used = new Set(this.leases.values());
    for (let i = 0; i < this.cfg.leaseCount; i++) {
      const ip = (this.cfg.firstLease + i) >>> 0;
      if (!used.has(ip)) {
        this.leases.set(key, ip);
        return ip;
      }
    }
    return null; // pool exhausted: stay silent, as a full server does
  }

  private reply(req: Uint8Array, type: number, yiaddr: Ip4, ciaddr: Ip4): DhcpReply {
    const c = this.cfg;
    const out = new Uint8Array(300);
    out[0] = 2; // BOOTREPLY
    out[1] = 1;
    out[2] = 6;
    out.set(req.subarray(4, 8), 4); // xid
    out.set(req.subarray(10, 12), 10); // flags
    writeIp(out, 12, ciaddr);
    writeIp(out, 16, yiaddr);
    writeIp(out, 20, c.gateway); // siaddr
    out.set(req.subarray(24, 44), 24); // giaddr, chaddr
    writeIp(out, BOOTP_FIXED, MAGIC);
    let o = BOOTP_FIXED + 4;
    const opt = (code: number, data: number[]) => {
      out[o++] = code;
      out[o++] = data.length;
      for (const b of data) out[o++] = b;
    };
    const ipBytes = (a: Ip4) => [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255];
    opt(OPT_MSG_TYPE, [type]);
    opt(OPT_SERVER_ID, ipBytes(c.gateway));
    if (type !== DHCPNAK) {
      if (yiaddr !== 0) opt(OPT_LEASE_TIME, ipBytes(c.leaseSeconds));
      opt(OPT_SUBNET_MASK, ipBytes(c.netmask));
      opt(OPT_ROUTER, ipBytes(c.gateway));
      opt(OPT_DNS, ipBytes(c.dns));
      opt(OPT_MTU, [c.mtu >> 8, c.mtu & 255]);
    }
    out[o++] = OPT_END;
    return { payload: out, dstIp: ciaddr !== 0 && type !== DHCPNAK ? ciaddr : 0xffffffff };
  }

  describe(): string[] {
    return [...this.leases].map(([mac, ip]) => `${mac} ${ip4Text(ip)}`);
  }
}

/** Options as code → value; null when an option runs past the end. */
function parseOptions(p: Uint8Array, off: number): Map<number, Uint8Array> | null {
  const m = new Map<number, Uint8Array>();
  let o = off;
  while (o < p.length) {
    const code = p[o++]!;
    if (code === 0) continue;
    if (code === OPT_END) return m;
    if (o >= p.length) return null;
    const len = p[o++]!;
    if (o + len > p.length) return null;
    if (!m.has(code)) m.set(code, p.subarray(o, o + len));
    o += len;
  }
  return m;
}
