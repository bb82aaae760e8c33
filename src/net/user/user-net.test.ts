import { describe, expect, it } from 'vitest';
import { parseRule, type FirewallRule } from './firewall.js';
import { csumAdd, csumFinish, ETH_HLEN, ip4, ip4Text, IPPROTO_ICMP, ipv4Frame, IPV4_HLEN, parseIpv4 } from './packet.js';
import { GSO_MAX_PAYLOAD, SND_BUF, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from './tcp.js';
import { FakeGuest, FakeSockets } from './testing.js';
import { GATEWAY, GATEWAY_MAC, UserNet, type UserNetOptions } from './user-net.js';

function setup(opts: Partial<UserNetOptions> = {}) {
  const sockets = new FakeSockets();
  let now = 1000;
  const net = new UserNet({ sockets, clock: () => now, ...opts });
  const guest = new FakeGuest(net);
  return { sockets, net, guest, advance: (ms: number) => (now += ms) };
}

const rules = (...spec: [('allow' | 'deny'), string][]): FirewallRule[] =>
  spec.map(([a, t]) => {
    const r = parseRule(a, t);
    if (typeof r === 'string') throw new Error(r);
    return r;
  });

const text = (s: string) => new TextEncoder().encode(s);
const MSS_WS = [2, 4, 0x05, 0xb4, 1, 3, 3, 7];

/** Opens guest port 40000 → dst:port and completes the handshake; returns the host socket and sequence state. */
function connect(t: ReturnType<typeof setup>, dst = '93.184.216.34', port = 80) {
  t.guest.tcp(dst, 40000, port, 1000, 0, TCP_SYN, undefined, { options: MSS_WS });
  const sock = t.sockets.tcp.at(-1)!;
  expect(t.guest.segments()).toEqual([]); // no SYN-ACK before the host connects
  sock.events.onConnect();
  const [synack] = t.guest.segments();
  expect(synack!.flags).toBe(TCP_SYN | TCP_ACK);
  expect(synack!.ack).toBe(1001);
  t.guest.tcp(dst, 40000, port, 1001, synack!.seq + 1, TCP_ACK, undefined, { window: 1024 });
  return { sock, ourSeq: synack!.seq + 1, guestSeq: 1001 };
}

describe('user-mode network', () => {
  it('answers ARP for the gateway and the DNS address, and ping', () => {
    const t = setup();
    const arp = new Uint8Array(ETH_HLEN + 28);
    arp.fill(0xff, 0, 6);
    arp.set(t.guest.mac, 6);
    arp.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], 12);
    arp.set(t.guest.mac, 22);
    arp.set([10, 0, 2, 15], 28);
    arp.set([10, 0, 2, 3], 38);
    t.net.receive(arp);
    const [reply] = t.guest.take();
    expect([...reply!.subarray(0, 6)]).toEqual([...t.guest.mac]);
    expect(reply![21]).toBe(2);
    expect([...reply!.subarray(22, 28)]).toEqual([...GATEWAY_MAC]);
    expect([...reply!.subarray(28, 32)]).toEqual([10, 0, 2, 3]);

    const ping = ipv4Frame(GATEWAY_MAC, t.guest.mac, t.guest.ip, GATEWAY, IPPROTO_ICMP, 12);
    const o = ETH_HLEN + IPV4_HLEN;
    ping.set([8, 0, 0, 0, 0x12, 0x34, 0, 1, 0xde, 0xad, 0xbe, 0xef], o);
    const c = csumFinish(csumAdd(ping, o, 12));
    ping[o + 2] = c >> 8;
    ping[o + 3] = c & 255;
    t.net.receive(ping);
    const [pong] = t.guest.take();
    const ip = parseIpv4(pong!, ETH_HLEN)!;
    expect(ip.src).toBe(GATEWAY);
    expect(pong![o]).toBe(0);
    expect([...pong!.subarray(o + 4, o + 12)]).toEqual([0x12, 0x34, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    expect(csumFinish(csumAdd(pong!, o, 12))).toBe(0);
  });

  describe('DHCP', () => {
    const bootp = (mac: Uint8Array, type: number, requested?: number[]) => {
      const p = new Uint8Array(300);
      p.set([1, 1, 6, 0, 0xca, 0xfe, 0xba, 0xbe], 0);
      p.set(mac, 28);
      p.set([99, 130, 83, 99, 53, 1, type], 236);
      let o = 243;
      if (requested) {
        p.set([50, 4, ...requested], o);
        o += 6;
      }
      p[o] = 255;
      return p;
    };
    const options = (p: Uint8Array) => {
      const m = new Map<number, number[]>();
      for (let o = 240; p[o] !== 255; o += 2 + p[o + 1]!) m.set(p[o]!, [...p.subarray(o + 2, o + 2 + p[o + 1]!)]);
      return m;
    };

    it('offers and acknowledges 10.0.2.15 with gateway and DNS, a second MAC gets .16', () => {
      const t = setup();
      t.guest.udp('255.255.255.255', 68, 67, bootp(t.guest.mac, 1), { src: 0, dstMac: new Uint8Array(6).fill(255) });
      const [offer] = t.guest.udps();
      expect(offer!.dstPort).toBe(68);
      expect(ip4Text(new DataView(offer!.payload.buffer, offer!.payload.byteOffset).getUint32(16))).toBe('10.0.2.15');
      const o = options(offer!.payload);
      expect(o.get(53)).toEqual([2]);
      expect(o.get(3)).toEqual([10, 0, 2, 2]);
      expect(o.get(6)).toEqual([10, 0, 2, 3]);
      expect(o.get(1)).toEqual([255, 255, 255, 0]);
      t.guest.udp('255.255.255.255', 68, 67, bootp(t.guest.mac, 3, [10, 0, 2, 15]), { src: 0, dstMac: new Uint8Array(6).fill(255) });
      const [ack] = t.guest.udps();
      expect(options(ack!.payload).get(53)).toEqual([5]);

      const other = Uint8Array.of(2, 0, 0, 0, 0, 0x16);
      t.guest.udp('255.255.255.255', 68, 67, bootp(other, 1), { src: 0, dstMac: new Uint8Array(6).fill(255) });
      const [offer2] = t.guest.udps();
      expect([...offer2!.payload.subarray(16, 20)]).toEqual([10, 0, 2, 16]);
      // Asking for someone else's address gets a NAK.
      t.guest.udp('255.255.255.255', 68, 67, bootp(other, 3, [10, 0, 2, 15]), { src: 0, dstMac: new Uint8Array(6).fill(255) });
      expect(options(t.guest.udps()[0]!.payload).get(53)).toEqual([6]);
    });

    it('ignores truncated and non-DHCP BOOTP', () => {
      const t = setup();
      t.guest.udp('255.255.255.255', 68, 67, bootp(t.guest.mac, 1).subarray(0, 200), { src: 0, dstMac: new Uint8Array(6).fill(255) });
      const bad = bootp(t.guest.mac, 1);
      bad[237] = 0; // wrong magic cookie
      t.guest.udp('255.255.255.255', 68, 67, bad, { src: 0, dstMac: new Uint8Array(6).fill(255) });
      const runaway = bootp(t.guest.mac, 1);
      runaway.set([12, 200], 243); // an option longer than the packet
      t.guest.udp('255.255.255.255', 68, 67, runaway.subarray(0, 250), { src: 0, dstMac: new Uint8Array(6).fill(255) });
      expect(t.guest.udps()).toEqual([]);
    });
  });

  describe('DNS', () => {
    const query = (name: string, type = 1, id = 0x4242) => {
      const labels = name.split('.').flatMap((l) => [l.length, ...text(l)]);
      return Uint8Array.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, type, 0, 1]);
    };

    it('answers A and AAAA from the host resolver, NXDOMAIN, SERVFAIL and NOTIMP', async () => {
      const t = setup();
      t.sockets.names.set('deb.example', ['198.51.100.7', '2001:db8::1']);
      t.guest.udp('10.0.2.3', 5353, 53, query('deb.example'));
      t.guest.udp('10.0.2.3', 5354, 53, query('deb.example', 28));
      t.guest.udp('10.0.2.3', 5355, 53, query('nothing.example'));
      t.guest.udp('10.0.2.3', 5356, 53, query('fail.test'));
      t.guest.udp('10.0.2.3', 5357, 53, query('deb.example', 15));
      t.sockets.names.set('v4only.example', ['198.51.100.8']);
      t.guest.udp('10.0.2.3', 5358, 53, query('v4only.example', 28));
      await new Promise((r) => setTimeout(r, 5));
      const answers = new Map(t.guest.udps().map((u) => [u.dstPort, u]));
      const a = answers.get(5353)!;
      expect(a.src).toBe(ip4('10.0.2.3'));
      expect(a.srcPort).toBe(53);
      expect([a.payload[0], a.payload[1]]).toEqual([0x42, 0x42]);
      expect(a.payload[3]! & 15).toBe(0);
      expect(a.payload[7]).toBe(1); // one answer
      expect([...a.payload.subarray(-4)]).toEqual([198, 51, 100, 7]);
      const aaaa = answers.get(5354)!;
      expect([...aaaa.payload.subarray(-16)]).toEqual([0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1]);
      expect(answers.get(5355)!.payload[3]! & 15).toBe(3);
      expect(answers.get(5356)!.payload[3]! & 15).toBe(2);
      expect(answers.get(5357)!.payload[3]! & 15).toBe(4);
      // A name with only IPv4 addresses: AAAA gets NOERROR with no answer (NODATA), not NXDOMAIN.
      expect(answers.get(5358)!.payload[3]! & 15).toBe(0);
      expect(answers.get(5358)!.payload[7]).toBe(0);
    });

    it('drops malformed queries without asking the resolver', () => {
      const t = setup();
      const q = query('a.example');
      t.guest.udp('10.0.2.3', 5353, 53, q.subarray(0, 15));
      const ptr = q.slice();
      ptr[12] = 0xc0; // compression pointer in a question
      t.guest.udp('10.0.2.3', 5353, 53, ptr);
      const resp = q.slice();
      resp[2] |= 0x80;
      t.guest.udp('10.0.2.3', 5353, 53, resp);
      expect(t.sockets.resolveCalls).toBe(0);
      expect(t.net.counters.drops.malformed).toBe(3);
    });
  });

  describe('TCP', () => {
    it('proxies a connection: handshake, data both ways, close from both sides', () => {
      const t = setup();
      const { sock, ourSeq, guestSeq } = connect(t);
      expect(sock.address).toBe('93.184.216.34');
      expect(sock.port).toBe(80);
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq, TCP_ACK | TCP_PSH, text('GET / HTTP/1.0\r\n\r\n'));
      expect(sock.text()).toBe('GET / HTTP/1.0\r\n\r\n');
      const [ack] = t.guest.segments();
      expect(ack!.ack).toBe(guestSeq + 18);

      sock.events.onData(text('HTTP/1.0 200 OK\r\n\r\nhello'));
      const [data] = t.guest.segments();
      expect(new TextDecoder().decode(data!.payload)).toBe('HTTP/1.0 200 OK\r\n\r\nhello');
      expect(data!.seq).toBe(ourSeq);
      expect(data!.src).toBe(ip4('93.184.216.34'));
      expect(data!.srcPort).toBe(80);
      const afterData = ourSeq + data!.payload.length;
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq + 18, afterData, TCP_ACK);

      sock.events.onEnd();
      const [fin] = t.guest.segments();
      expect(fin!.flags & TCP_FIN).toBe(TCP_FIN);
      expect(fin!.seq).toBe(afterData);
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq + 18, afterData + 1, TCP_ACK | TCP_FIN);
      expect(sock.ended).toBe(true);
      expect(t.net.activeFlows.tcp).toBe(0);
      expect(t.guest.segments()[0]!.ack).toBe(guestSeq + 19);
    });

    it('sends a segment the guest did not acknowledge again after the timeout', () => {
      const t = setup();
      const { sock, ourSeq } = connect(t);
      sock.events.onData(text('x'.repeat(3000)));
      const first = t.guest.segments();
      expect(first.map((s) => s.payload.length)).toEqual([1460, 1460, 80]);
      t.advance(1000);
      t.net.tick();
      expect(t.guest.segments()).toEqual([]);
      t.advance(1500);
      t.net.tick();
      const again = t.guest.segments();
      expect(again[0]!.seq).toBe(ourSeq);
      expect(again.reduce((n, s) => n + s.payload.length, 0)).toBe(3000);
    });

    it('with GSO, sends only whole segments while data is in flight; the tail once acknowledged, or at the end', () => {
      const t = setup();
      t.net.connect((f) => t.guest.frames.push(f.slice()), () => true);
      const { sock, ourSeq, guestSeq } = connect(t); // the guest's window: 1024 << 7
      const max = Math.floor(GSO_MAX_PAYLOAD / 1460) * 1460;
      const chunk = (n: number, v: number) => new Uint8Array(n).fill(v);
      sock.events.onData(chunk(65536, 1)); // one host read: a whole segment, and a tail held back
      expect(t.guest.segments().map((s) => s.payload.length)).toEqual([max]);
      sock.events.onData(chunk(65536, 2)); // more before any acknowledgement: another whole one
      const second = t.guest.segments();
      expect(second.map((s) => s.payload.length)).toEqual([max]);
      expect(second[0]!.seq).toBe((ourSeq + max) >>> 0);
      // All acknowledged: nothing in flight, so the tail goes at once.
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq + 2 * max, TCP_ACK, undefined, { window: 1024 });
      const tail = t.guest.segments();
      expect(tail.map((s) => s.payload.length)).toEqual([2 * 65536 - 2 * max]);
      // A small write while that is in flight waits; the host's end sends it, then the FIN.
      sock.events.onData(chunk(100, 3));
      expect(t.guest.segments()).toEqual([]);
      sock.events.onEnd();
      const last = t.guest.segments();
      expect(last.map((s) => s.payload.length)).toEqual([100, 0]);
      expect(last[1]!.flags & TCP_FIN).toBe(TCP_FIN);
      expect(last[0]!.payload.every((b) => b === 3)).toBe(true);
    });

    it('with GSO and a short window, waits until it has opened to half before sending more', () => {
      const t = setup();
      t.net.connect((f) => t.guest.frames.push(f.slice()), () => true);
      const { sock, ourSeq, guestSeq } = connect(t);
      const win = (n: number) => ({ window: n >>> 7 }); // the guest's window scale is 7
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq, TCP_ACK, undefined, win(12800));
      sock.events.onData(new Uint8Array(65536));
      expect(t.guest.segments().map((s) => s.payload.length)).toEqual([12800]); // the whole window
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq + 3200, TCP_ACK, undefined, win(12800));
      expect(t.guest.segments().filter((s) => s.payload.length > 0)).toEqual([]); // 3200 open: under half
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq + 6400, TCP_ACK, undefined, win(12800));
      const more = t.guest.segments().filter((s) => s.payload.length > 0);
      expect(more.map((s) => [s.seq, s.payload.length])).toEqual([[(ourSeq + 12800) >>> 0, 6400]]);
    });

    it('resets the guest when the host refuses, and the host socket when the guest resets', () => {
      const t = setup();
      t.guest.tcp('10.0.2.2', 40001, 9, 5, 0, TCP_SYN);
      const refused = t.sockets.tcp.at(-1)!;
      expect(refused.address).toBe('127.0.0.1'); // the gateway is the host's loopback
      refused.events.onClose(true);
      const [rst] = t.guest.segments();
      expect(rst!.flags & TCP_RST).toBe(TCP_RST);
      expect(rst!.ack).toBe(6);

      const { sock, guestSeq } = connect(t);
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, 0, TCP_RST);
      expect(sock.destroyed).toBe(true);
      expect(t.net.activeFlows.tcp).toBe(0);
    });

    it('after a restore, resets the connections the snapshot saved, to the guest\'s MAC, with the sequence it expects', () => {
      const t = setup();
      const { sock, ourSeq, guestSeq } = connect(t);
      sock.events.onData(text('abc'));
      t.guest.segments();
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq + 3, TCP_ACK);
      const saved = t.net.savedTcpFlows();
      expect(saved).toEqual([{ guestIp: ip4('10.0.2.15'), guestPort: 40000, remoteIp: ip4('93.184.216.34'), remotePort: 80, seq: ourSeq + 3, ack: guestSeq }]);
      expect(t.net.savedTcpFlows(ip4('10.0.2.16')!)).toEqual([]);

      // A fresh network (the restoring process's) knows neither the flow nor the guest's MAC.
      const fresh = setup();
      expect(fresh.net.resetRestored(saved, fresh.guest.mac)).toBe(1);
      const [rst] = fresh.guest.segments();
      expect(rst!.flags).toBe(TCP_RST | TCP_ACK);
      expect(rst!.seq).toBe(ourSeq + 3);
      expect(rst!.ack).toBe(guestSeq);
      expect([rst!.src, rst!.srcPort, rst!.dst, rst!.dstPort]).toEqual([ip4('93.184.216.34'), 80, ip4('10.0.2.15'), 40000]);
      expect(fresh.net.counters.tcpRestoredResets).toBe(1);
      expect(fresh.sockets.tcp).toHaveLength(0);
      // Had the guest moved on, its challenge ACK is reset with its own number.
      fresh.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq + 9, TCP_ACK);
      expect(fresh.guest.segments()[0]).toMatchObject({ flags: TCP_RST, seq: ourSeq + 9 });
    });

    it('answers a segment for no connection with a reset', () => {
      const t = setup();
      t.guest.tcp('1.1.1.1', 40000, 80, 77, 12345, TCP_ACK, text('stale'));
      const [rst] = t.guest.segments();
      expect(rst!.flags).toBe(TCP_RST);
      expect(rst!.seq).toBe(12345);
      expect(t.sockets.tcp).toHaveLength(0);
    });

    it('pauses the host socket when the guest stops reading, and closes its window when the host does', () => {
      const t = setup();
      const { sock, ourSeq, guestSeq } = connect(t);
      const chunk = new Uint8Array(64 * 1024);
      for (let i = 0; i * chunk.length < SND_BUF; i++) sock.events.onData(chunk);
      expect(sock.paused).toBe(true);
      const sent = t.guest.segments();
      // Only the guest's window (1024 << 7) is in flight, the rest waits in our bounded buffer.
      expect(sent.reduce((n, s) => n + s.payload.length, 0)).toBeLessThanOrEqual(1024 << 7);
      expect(t.net.bufferedBytes).toBeLessThanOrEqual(SND_BUF);
      // The guest reads: each ACK lets the next window go out, until the buffer is half empty.
      let acked = sent.reduce((n, s) => n + s.payload.length, 0);
      for (let round = 0; round < 3 && sock.paused; round++) {
        t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq + acked, TCP_ACK, undefined, { window: 1024 });
        acked += t.guest.segments().reduce((n, s) => n + s.payload.length, 0);
      }
      expect(sock.paused).toBe(false);
      expect(t.net.bufferedBytes).toBeLessThan(SND_BUF / 2 + (1024 << 7));

      // Host side not reading: our advertised window drops to zero.
      sock.bufferedBytes = 4 * 1024 * 1024;
      t.guest.tcp('93.184.216.34', 40000, 80, guestSeq, ourSeq + acked, TCP_ACK | TCP_PSH, text('more'));
      const acks = t.guest.segments().filter((s) => s.payload.length === 0);
      expect(acks.at(-1)!.window).toBe(0);
      expect(acks.at(-1)!.ack).toBe(guestSeq); // nothing taken
      expect(sock.writtenBytes).toBe(0);
      sock.bufferedBytes = 0;
      sock.events.onDrain();
      expect(t.guest.segments().at(-1)!.window).toBeGreaterThan(0);
    });

    it('caps flows per guest and times out handshakes', () => {
      const t = setup({ maxFlowsPerGuest: 2 });
      for (let p = 1; p <= 3; p++) t.guest.tcp('198.51.100.1', 41000 + p, 80, 1, 0, TCP_SYN);
      expect(t.sockets.tcp).toHaveLength(2);
      expect(t.net.counters.drops.flowLimit).toBe(1);
      expect(t.guest.segments().some((s) => s.flags & TCP_RST && s.dstPort === 41003)).toBe(true);
      t.advance(31_000);
      t.net.tick();
      expect(t.net.activeFlows.tcp).toBe(0);
      expect(t.sockets.tcp.every((s) => s.destroyed)).toBe(true);
    });

    it('drops an idle established flow after the idle timeout', () => {
      const t = setup({ tcpIdleMs: 10_000 });
      const { sock } = connect(t);
      t.advance(5000);
      t.net.tick();
      expect(sock.destroyed).toBe(false);
      t.advance(6000);
      t.net.tick();
      expect(sock.destroyed).toBe(true);
    });
  });

  describe('UDP', () => {
    it('carries datagrams out and replies back, the host loopback appearing as the gateway', () => {
      const t = setup();
      t.guest.udp('10.0.2.2', 33000, 7000, text('ping'));
      const s = t.sockets.udp[0]!;
      expect(s.sent[0]!.address).toBe('127.0.0.1');
      expect(s.sent[0]!.port).toBe(7000);
      s.onMessage(text('pong'), '127.0.0.1', 7000);
      const [r] = t.guest.udps();
      expect(r!.src).toBe(GATEWAY);
      expect(r!.srcPort).toBe(7000);
      expect(r!.dstPort).toBe(33000);
      expect(new TextDecoder().decode(r!.payload)).toBe('pong');
      // The same guest port reuses its socket; idle flows are closed.
      t.guest.udp('203.0.113.5', 33000, 7001, text('x'));
      expect(t.sockets.udp).toHaveLength(1);
      expect(s.sent[1]!.address).toBe('203.0.113.5');
      t.advance(61_000);
      t.net.tick();
      expect(s.closed).toBe(true);
    });
  });

  describe('port forwards', () => {
    it('TCP: a host client reaches the guest port, data both ways', async () => {
      const t = setup();
      await t.net.addForward({ proto: 'tcp', hostPort: 8080, guestPort: 80 });
      // The guest announced itself (its DHCP or any packet teaches us its MAC).
      t.guest.udp('10.0.2.2', 1, 9, text('hi'));
      t.guest.take();
      const client = t.sockets.accept(8080);
      expect(client.paused).toBe(true);
      const [syn] = t.guest.segments();
      expect(syn!.flags).toBe(TCP_SYN);
      expect(syn!.dstPort).toBe(80);
      expect(syn!.src).toBe(GATEWAY);
      t.guest.tcp('10.0.2.2', 80, syn!.srcPort, 5000, syn!.seq + 1, TCP_SYN | TCP_ACK, undefined, { options: MSS_WS });
      expect(client.paused).toBe(false);
      expect(t.guest.segments()[0]!.flags).toBe(TCP_ACK);
      client.events.onData(text('request'));
      const [req] = t.guest.segments();
      expect(new TextDecoder().decode(req!.payload)).toBe('request');
      t.guest.tcp('10.0.2.2', 80, syn!.srcPort, 5001, syn!.seq + 8, TCP_ACK | TCP_PSH, text('response'));
      expect(client.text()).toBe('response');
    });

    it('UDP: datagrams to the guest, replies back to the client', async () => {
      const t = setup();
      await t.net.addForward({ proto: 'udp', hostPort: 5353, guestPort: 53 });
      t.guest.udp('10.0.2.2', 1, 9, text('hi'));
      t.guest.take();
      const l = t.sockets.udpListeners.get(5353)!;
      l.onMessage(text('q'), '127.0.0.1', 45000);
      const [d] = t.guest.udps();
      expect(d!.dstPort).toBe(53);
      expect(d!.src).toBe(GATEWAY);
      t.guest.udp('10.0.2.2', 53, d!.srcPort, text('a'));
      expect(l.sent).toEqual([{ data: text('a'), port: 45000, address: '127.0.0.1' }]);
    });
  });

  describe('firewall', () => {
    it('parses rules and rejects malformed ones', () => {
      expect(parseRule('allow', 'out:tcp:10.0.0.0/8:80-443')).toEqual({ action: 'allow', dir: 'out', proto: 'tcp', target: { addr: ip4('10.0.0.0'), prefix: 8 }, ports: { from: 80, to: 443 } });
      for (const bad of ['sideways:tcp:any', 'out:sctp:any', 'out:tcp:10.0.0.0/33', 'out:tcp:any:0', 'out:tcp:any:443-80', 'out:icmp:any:1', 'out:tcp']) {
        expect(typeof parseRule('deny', bad)).toBe('string');
      }
    });

    it('denies TCP by CIDR and port range, first match wins', () => {
      const t = setup({ rules: rules(['allow', 'out:tcp:10.9.0.1:443'], ['deny', 'out:tcp:10.9.0.0/16:1-1000']) });
      t.guest.tcp('10.9.0.1', 40000, 443, 1, 0, TCP_SYN);
      t.guest.tcp('10.9.0.2', 40001, 443, 1, 0, TCP_SYN);
      t.guest.tcp('10.9.0.2', 40002, 8080, 1, 0, TCP_SYN);
      expect(t.sockets.tcp.map((s) => `${s.address}:${s.port}`)).toEqual(['10.9.0.1:443', '10.9.0.2:8080']);
      expect(t.net.counters.drops.firewall).toBe(1);
    });

    it('denies UDP and ICMP', () => {
      const t = setup({ rules: rules(['deny', 'out:udp:any:53'], ['deny', 'out:icmp:any']) });
      t.guest.udp('8.8.8.8', 1000, 53, text('q'));
      t.guest.udp('8.8.8.8', 1000, 54, text('q'));
      expect(t.sockets.udp[0]!.sent.map((s) => s.port)).toEqual([54]);
      const ping = ipv4Frame(GATEWAY_MAC, t.guest.mac, t.guest.ip, GATEWAY, IPPROTO_ICMP, 8);
      ping.set([8, 0, 0xf7, 0xff, 0, 0, 0, 0], ETH_HLEN + IPV4_HLEN);
      t.net.receive(ping);
      expect(t.guest.take()).toEqual([]);
      expect(t.net.counters.drops.firewall).toBe(2);
    });

    it('the host switch: 10.0.2.2, loopback and the host\'s addresses are denied, the rest allowed', () => {
      const t = setup({ hostAccess: false });
      t.guest.tcp('10.0.2.2', 40000, 22, 1, 0, TCP_SYN);
      t.guest.tcp('192.168.1.10', 40001, 22, 1, 0, TCP_SYN);
      t.guest.udp('10.0.2.2', 1000, 7, text('x'));
      t.guest.tcp('198.51.100.9', 40002, 22, 1, 0, TCP_SYN);
      expect(t.sockets.tcp.map((s) => s.address)).toEqual(['198.51.100.9']);
      expect(t.sockets.udp).toHaveLength(0);
      expect(t.net.counters.drops.firewall).toBe(3);
      // Rules naming 'host' work the same way.
      const u = setup({ rules: rules(['deny', 'out:tcp:host:22']) });
      u.guest.tcp('10.0.2.2', 40000, 22, 1, 0, TCP_SYN);
      u.guest.tcp('10.0.2.2', 40001, 80, 1, 0, TCP_SYN);
      expect(u.sockets.tcp.map((s) => s.port)).toEqual([80]);
    });

    it('setPolicy replaces the rules and host access for new flows; open ones stay', () => {
      const t = setup({ rules: rules(['deny', 'out:any:any']), hostAccess: false });
      t.guest.tcp('198.51.100.9', 40000, 80, 1, 0, TCP_SYN);
      expect(t.sockets.tcp).toHaveLength(0);
      t.net.setPolicy({ rules: rules(['deny', 'out:tcp:203.0.113.0/24']), hostAccess: true });
      t.guest.tcp('198.51.100.9', 40001, 80, 1, 0, TCP_SYN);
      t.guest.tcp('203.0.113.5', 40002, 80, 1, 0, TCP_SYN);
      t.guest.tcp('10.0.2.2', 40003, 22, 1, 0, TCP_SYN);
      expect(t.sockets.tcp.map((s) => s.address)).toEqual(['198.51.100.9', '127.0.0.1']);
      expect(t.net.counters.drops.firewall).toBe(2);
      // Back to no host access: it comes before every rule again, allow rules included.
      t.net.setPolicy({ rules: rules(['allow', 'out:any:any']), hostAccess: false });
      t.guest.tcp('10.0.2.2', 40004, 22, 1, 0, TCP_SYN);
      expect(t.sockets.tcp).toHaveLength(2);
      expect(t.net.counters.drops.firewall).toBe(3);
    });

    it('inbound rules filter port-forward clients', async () => {
      const t = setup({ rules: rules(['allow', 'in:tcp:127.0.0.1:80'], ['deny', 'in:any:any']) });
      await t.net.addForward({ proto: 'tcp', hostPort: 8080, guestPort: 80 });
      await t.net.addForward({ proto: 'tcp', hostPort: 2222, guestPort: 22 });
      expect(t.sockets.accept(2222).destroyed).toBe(true);
      expect(t.sockets.accept(8080, '192.0.2.1').destroyed).toBe(true);
      expect(t.sockets.accept(8080).destroyed).toBe(false);
      expect(t.net.counters.drops.firewall).toBe(2);
    });
  });

  describe('hostile frames', () => {
    it('drops fragments, bad checksums and truncated headers, counting each', () => {
      const t = setup();
      const f = t.guest.tcpFrame('1.2.3.4', 1, 80, 1, 0, TCP_SYN);
      const frag = f.slice();
      frag[ETH_HLEN + 6] = 0x20; // more fragments (the header checksum is now wrong too)
      const c0 = frag.slice();
      c0[ETH_HLEN + 10] = 0;
      c0[ETH_HLEN + 11] = 0;
      const c = csumFinish(csumAdd(c0, ETH_HLEN, IPV4_HLEN));
      c0[ETH_HLEN + 10] = c >> 8;
      c0[ETH_HLEN + 11] = c & 255;
      t.net.receive(c0);
      const badSum = f.slice();
      badSum[badSum.length - 1]! ^= 0xff;
      badSum[ETH_HLEN + IPV4_HLEN + 16]! ^= 1;
      t.net.receive(badSum);
      t.net.receive(f.subarray(0, ETH_HLEN + 10));
      expect(t.net.counters.drops.fragment).toBe(1);
      expect(t.net.counters.drops.checksum).toBe(1);
      expect(t.net.counters.drops.malformed).toBe(1);
      expect(t.sockets.tcp).toHaveLength(0);
    });

    it('survives random and mutated frames with bounded state', () => {
      const t = setup({ maxFlowsPerGuest: 64 });
      let seed = 12345;
      const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
      const templates = [
        t.guest.tcpFrame('1.2.3.4', 1, 80, 1, 0, TCP_SYN, undefined, { options: MSS_WS }),
        t.guest.tcpFrame('1.2.3.4', 1, 80, 2, 5, TCP_ACK | TCP_PSH, text('payload')),
        t.guest.tcpFrame('10.0.2.2', 1, 22, 2, 5, TCP_ACK | TCP_FIN),
      ];
      const udpFrames: Uint8Array[] = [];
      const g2 = new FakeGuest(t.net);
      udpFrames.push(g2.udp('10.0.2.3', 53, 53, Uint8Array.of(0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 97, 0, 0, 1, 0, 1)));
      udpFrames.push(g2.udp('255.255.255.255', 68, 67, new Uint8Array(300)));
      const all = [...templates, ...udpFrames];
      for (let i = 0; i < 20000; i++) {
        let f: Uint8Array;
        if (rnd() < 0.2) {
          f = new Uint8Array(Math.floor(rnd() * 200));
          for (let j = 0; j < f.length; j++) f[j] = Math.floor(rnd() * 256);
          if (rnd() < 0.5 && f.length > 14) f.set(GATEWAY_MAC, 0);
        } else {
          f = all[Math.floor(rnd() * all.length)]!.slice();
          const flips = 1 + Math.floor(rnd() * 4);
          for (let k = 0; k < flips; k++) f[14 + Math.floor(rnd() * (f.length - 14))] = Math.floor(rnd() * 256);
          if (rnd() < 0.3) f = f.subarray(0, Math.floor(rnd() * f.length));
        }
        t.net.receive(f);
        // Half of the SYNs connect on the host: handshakes and data run too.
        const s = t.sockets.tcp.at(-1);
        if (s && rnd() < 0.5) s.events.onConnect();
        if (i % 1000 === 0) {
          t.advance(200);
          t.net.tick();
        }
        g2.take();
      }
      expect(t.net.counters.drops.internal).toBe(0);
      expect(t.net.activeFlows.tcp).toBeLessThanOrEqual(64 * 2);
      expect(t.net.bufferedBytes).toBe(0);
    });

    it('ignores unicast frames for other MACs (other VMs on a shared network)', () => {
      const t = setup();
      const f = t.guest.tcpFrame('1.2.3.4', 1, 80, 1, 0, TCP_SYN);
      f.set([2, 0, 0, 0, 0, 0x99], 0);
      t.net.receive(f);
      expect(t.sockets.tcp).toHaveLength(0);
      expect(t.guest.take()).toEqual([]);
    });
  });
});

describe('port forwards on a shared network', () => {
  it('reach the guest with the given MAC at the address it leased', async () => {
    const t = setup();
    const mac = Uint8Array.of(2, 0, 0, 0, 0, 0x77);
    await t.net.addForward({ proto: 'tcp', hostPort: 8081, guestPort: 80, guestMac: mac });
    const g = new FakeGuest(t.net, mac, '10.0.2.31');
    g.udp('10.0.2.2', 1, 9, text('hello')); // teaches ARP
    g.take();
    t.sockets.accept(8081);
    const [syn] = g.segments();
    expect(syn!.dst).toBe(ip4('10.0.2.31'));
    expect(syn!.dstPort).toBe(80);
  });
});
