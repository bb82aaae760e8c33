/**
 * A tiny host on a switch port that answers ARP for its IPv4 address and ICMP echo
 * requests (RFC 826, RFC 792), so one guest can prove its virtio-net link with `ping`.
 */
import type { L2Switch } from '../../src/net/switch.js';

function checksum(b: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[off + i]! << 8) | (b[off + i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

export function attachPingResponder(sw: L2Switch, ip: [number, number, number, number], mac = Uint8Array.of(2, 0, 0, 0, 0x99, 1)) {
  const stats = { arp: 0, echo: 0 };
  const port = sw.attach((f) => {
    if (f.length < 42) return;
    const type = (f[12]! << 8) | f[13]!;
    if (type === 0x0806 && f[21] === 1 && ip.every((x, i) => f[38 + i] === x)) {
      const r = new Uint8Array(42);
      r.set(f.subarray(6, 12), 0);
      r.set(mac, 6);
      r.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2], 12);
      r.set(mac, 22);
      r.set(ip, 28);
      r.set(f.subarray(22, 32), 32); // sender MAC + IP become the target
      stats.arp++;
      port.send(r);
    } else if (type === 0x0800 && f[23] === 1 && ip.every((x, i) => f[30 + i] === x)) {
      const ihl = (f[14]! & 0xf) * 4;
      const icmp = 14 + ihl;
      if (f[icmp] !== 8) return;
      const r = f.slice();
      r.set(f.subarray(6, 12), 0);
      r.set(mac, 6);
      r.set(f.subarray(30, 34), 26);
      r.set(f.subarray(26, 30), 30);
      r[22] = 64;
      r[24] = r[25] = 0;
      const ipSum = checksum(r, 14, ihl);
      r[24] = ipSum >> 8;
      r[25] = ipSum & 0xff;
      r[icmp] = 0;
      r[icmp + 2] = r[icmp + 3] = 0;
      const totalLen = (f[16]! << 8) | f[17]!;
      const icmpSum = checksum(r, icmp, totalLen - ihl);
      r[icmp + 2] = icmpSum >> 8;
      r[icmp + 3] = icmpSum & 0xff;
      stats.echo++;
      port.send(r);
    }
  }, 'ping-responder');
  return stats;
}
