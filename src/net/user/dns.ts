/**
 * The DNS forwarder at 10.0.2.3 (RFC 1035): parses the guest's question, asks the injected
 * resolver (the host's), and answers A and AAAA; other types get NOTIMP, names with no
 * address NXDOMAIN, resolver failures SERVFAIL. Only the question is parsed, and it is bounded.
 */

export const DNS_PORT = 53;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;
export const RCODE_OK = 0;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
/** TTL of our answers: short, since the host's resolver caches. */
const TTL = 60;

export interface DnsQuestion {
  id: number;
  /** Whether the client asked for recursion (copied back). */
  rd: boolean;
  name: string;
  type: number;
  klass: number;
  /** The question section as it came (copied into the answer). */
  raw: Uint8Array;
}

/** Parses a query with exactly one question; null when malformed or not a query. */
export function parseDnsQuery(p: Uint8Array): DnsQuestion | null {
  if (p.length < 12 || p.length > 512) return null;
  if ((p[2]! & 0x80) !== 0) return null; // a response, not a query
  if ((p[2]! & 0x78) !== 0) return null; // opcode other than QUERY
  const qd = (p[4]! << 8) | p[5]!;
  if (qd !== 1) return null;
  let o = 12;
  const labels: string[] = [];
  let nameLen = 0;
  for (;;) {
    if (o >= p.length) return null;
    const len = p[o++]!;
    if (len === 0) break;
    if (len > 63 || o + len > p.length) return null; // compression pointers are not allowed here
    nameLen += len + 1;
    if (nameLen > 255) return null;
    let label = '';
    for (let i = 0; i < len; i++) {
      const c = p[o + i]!;
      // Hostnames only (letters, digits, '-', '_'): anything else is not a name the host should look up.
      if (!((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f)) return null;
      label += String.fromCharCode(c);
    }
    labels.push(label);
    o += len;
  }
  if (o + 4 > p.length) return null;
  const type = (p[o]! << 8) | p[o + 1]!;
  const klass = (p[o + 2]! << 8) | p[o + 3]!;
  return { id: (p[0]! << 8) | p[1]!, rd: (p[2]! & 1) === 1, name: labels.join('.'), type, klass, raw: p.slice(12, o + 4) };
}

export function wantsAddress(q: DnsQuestion): 4 | 6 | null {
  if (q.klass !== CLASS_IN) return null;
  return q.type === TYPE_A ? 4 : q.type === TYPE_AAAA ? 6 : null;
}

/** Builds the response: `addresses` are IPv4 or IPv6 text, matching the question's type. */
export function dnsResponse(q: DnsQuestion, rcode: number, addresses: string[] = []): Uint8Array {
  const rdatas = addresses.map((a) => (q.type === TYPE_A ? v4Bytes(a) : v6Bytes(a))).filter((b): b is Uint8Array => b !== null).slice(0, 16);
  const size = 12 + q.raw.length + rdatas.reduce((n, r) => n + 12 + r.length, 0);
  const out = new Uint8Array(size);
  out[0] = q.id >> 8;
  out[1] = q.id & 255;
  out[2] = 0x80 | (q.rd ? 1 : 0); // QR, opcode QUERY, RD copied
  out[3] = 0x80 | (rcode & 15); // RA
  out[5] = 1;
  out[7] = rdatas.length;
  out.set(q.raw, 12);
  let o = 12 + q.raw.length;
  for (const r of rdatas) {
    out[o++] = 0xc0; // a pointer to the question's name at offset 12
    out[o++] = 12;
    out[o++] = q.type >> 8;
    out[o++] = q.type & 255;
    out[o++] = 0;
    out[o++] = CLASS_IN;
    out[o++] = 0;
    out[o++] = 0;
    out[o++] = TTL >> 8;
    out[o++] = TTL & 255;
    out[o++] = 0;
    out[o++] = r.length;
    out.set(r, o);
    o += r.length;
  }
  return out;
}

function v4Bytes(a: string): Uint8Array | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (!m) return null;
  const b = m.slice(1).map(Number);
  return b.every((x) => x <= 255) ? Uint8Array.from(b) : null;
}

function v6Bytes(a: string): Uint8Array | null {
  if (!/^[0-9a-fA-F:.]+$/.test(a) || a.includes('.')) return null; // v4-mapped forms are not expected here
  const halves = a.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = 8 - head.length - tail.length;
  if ((halves.length === 1 && fill !== 0) || fill < 0) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? fill : 0).fill('0'), ...tail];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 255;
  });
  return out;
}
