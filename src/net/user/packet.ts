/**
 * Wire formats the user-mode network speaks: Ethernet II, ARP (RFC 826), IPv4 (RFC 791),
 * ICMP (RFC 792), UDP (RFC 768) and TCP (RFC 9293) headers, and the Internet checksum
 * (RFC 1071). Parsers never throw: a frame a guest sends is untrusted, so every length is
 * checked and a malformed one yields null.
 */

export const ETH_HLEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPV4_HLEN = 20;
export const UDP_HLEN = 8;
export const TCP_HLEN = 20;
/** Our link MTU: what the guest's DHCP lease says and what we segment to. */
export const MTU = 1500;

export const BROADCAST_MAC = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);

/** An IPv4 address as an unsigned 32-bit number. */
export type Ip4 = number;

export function ip4(s: string): Ip4 | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const o = m.slice(1).map(Number);
  if (o.some((x) => x > 255)) return null;
  return ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
}

export function ip4Text(a: Ip4): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

export function readIp(b: Uint8Array, off: number): Ip4 {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

export function writeIp(b: Uint8Array, off: number, a: Ip4): void {
  b[off] = a >>> 24;
  b[off + 1] = (a >>> 16) & 255;
  b[off + 2] = (a >>> 8) & 255;
  b[off + 3] = a & 255;
}

/** One's-complement sum of `b[off, off+len)` folded into 16 bits, added to `sum`. */
export function csumAdd(b: Uint8Array, off: number, len: number, sum = 0): number {
  let s = sum;
  const end = off + len;
  let i = off;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  // Fold often enough that s stays a small integer (JS numbers are exact to 2^53).
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

export function csumFinish(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** The pseudo-header sum TCP and UDP checksums start from (RFC 9293 §3.1). */
export function pseudoSum(src: Ip4, dst: Ip4, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}

export interface Ipv4Packet {
  src: Ip4;
  dst: Ip4;
  proto: number;
  ttl: number;
  /** Offset of the payload in the frame, and its length (from the IP total length). */
  off: number;
  len: number;
  /** More-fragments set or a non-zero fragment offset. */
  fragment: boolean;
}

/** Parses the IPv4 header at `off`; null when malformed or its checksum is wrong. */
export function parseIpv4(f: Uint8Array, off: number): Ipv4Packet | null {
  if (f.length < off + IPV4_HLEN) return null;
  const vihl = f[off]!;
  if (vihl >> 4 !== 4) return null;
  const ihl = (vihl & 15) * 4;
  if (ihl < IPV4_HLEN || f.length < off + ihl) return null;
  const total = (f[off + 2]! << 8) | f[off + 3]!;
  if (total < ihl || off + total > f.length) return null;
  if (csumFinish(csumAdd(f, off, ihl)) !== 0) return null;
  const fragField = (f[off + 6]! << 8) | f[off + 7]!;
  return {
    src: readIp(f, off + 12),
    dst: readIp(f, off + 16),
    proto: f[off + 9]!,
    ttl: f[off + 8]!,
    off: off + ihl,
    len: total - ihl,
    fragment: (fragField & 0x2000) !== 0 || (fragField & 0x1fff) !== 0,
  };
}

let ipId = 1;

/** An Ethernet + IPv4 frame around `payloadLen` bytes; the caller fills the payload at 34. */
export function ipv4Frame(dstMac: Uint8Array, srcMac: Uint8Array, src: Ip4, dst: Ip4, proto: number, payloadLen: number): Uint8Array {
  const f = new Uint8Array(ETH_HLEN + IPV4_HLEN + payloadLen);
  f.set(dstMac, 0);
  f.set(srcMac, 6);
  f[12] = ETHERTYPE_IPV4 >> 8;
  f[13] = ETHERTYPE_IPV4 & 255;
  const o = ETH_HLEN;
  f[o] = 0x45;
  const total = IPV4_HLEN + payloadLen;
  f[o + 2] = total >> 8;
  f[o + 3] = total & 255;
  ipId = (ipId + 1) & 0xffff;
  f[o + 4] = ipId >> 8;
  f[o + 5] = ipId & 255;
  f[o + 6] = 0x40; // don't fragment
  f[o + 8] = 64;
  f[o + 9] = proto;
  writeIp(f, o + 12, src);
  writeIp(f, o + 16, dst);
  const c = csumFinish(csumAdd(f, o, IPV4_HLEN));
  f[o + 10] = c >> 8;
  f[o + 11] = c & 255;
  return f;
}

/** Fills the TCP or UDP checksum of a frame built by ipv4Frame. */
export function fillL4Checksum(f: Uint8Array, proto: number): void {
  const o = ETH_HLEN + IPV4_HLEN;
  const len = f.length - o;
  const at = o + (proto === IPPROTO_TCP ? 16 : 6);
  f[at] = 0;
  f[at + 1] = 0;
  let c = csumFinish(csumAdd(f, o, len, pseudoSum(readIp(f, ETH_HLEN + 12), readIp(f, ETH_HLEN + 16), proto, len)));
  if (proto === IPPROTO_UDP && c === 0) c = 0xffff; // RFC 768: zero means "no checksum"
  f[at] = c >> 8;
  f[at + 1] = c & 255;
}

/** Verifies a TCP or UDP checksum (UDP's zero means none was computed). */
export function l4ChecksumOk(f: Uint8Array, ip: Ipv4Packet): boolean {
  if (ip.proto === IPPROTO_UDP && f[ip.off + 6] === 0 && f[ip.off + 7] === 0) return true;
  return csumFinish(csumAdd(f, ip.off, ip.len, pseudoSum(ip.src, ip.dst, ip.proto, ip.len))) === 0;
}

export function macEqual(a: Uint8Array, aOff: number, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[aOff + i] !== b[i]) return false;
  return true;
}

/** An IPv4 CIDR block. */
export interface Cidr {
  addr: Ip4;
  prefix: number;
}

export function parseCidr(s: string): Cidr | null {
  const [a, p] = s.split('/');
  const addr = ip4(a ?? '');
  if (addr === null) return null;
  const prefix = p === undefined ? 32 : /^\d{1,2}$/.test(p) ? Number(p) : -1;
  if (prefix < 0 || prefix > 32) return null;
  return { addr: (addr & maskOf(prefix)) >>> 0, prefix };
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function inCidr(a: Ip4, c: Cidr): boolean {
  return ((a & maskOf(c.prefix)) >>> 0) === c.addr;
}
