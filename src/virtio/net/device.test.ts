import { describe, expect, it } from 'vitest';
import { L2Switch } from '../../net/switch.js';
import { stableMac } from '../../net/mac.js';
import { MockDriver, collect } from '../testing/driver.js';
import { VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_HDR_SIZE, VirtioNet } from './device.js';

function vm(sw: L2Switch, name: string) {
  const net = new VirtioNet({ mac: stableMac(name) });
  net.connect(sw.attach((f) => net.receive(f), name));
  const { driver } = MockDriver.create(net);
  driver.probe(2);
  for (let i = 0; i < 4; i++) driver.add(0, [], [VIRTIO_NET_HDR_SIZE + 1514]);
  return { net, driver };
}
const eth = (dst: Uint8Array, src: Uint8Array, payload: string) =>
  Uint8Array.from([...dst, ...src, 0x88, 0xb5, ...new TextEncoder().encode(payload)]);

describe('virtio-net', () => {
  it('exposes its MAC and link status', () => {
    const { driver, net } = vm(new L2Switch('s'), 'vm-a');
    expect(driver.has(VIRTIO_NET_F_MAC) && driver.has(VIRTIO_NET_F_STATUS)).toBe(true);
    expect([0, 1, 2, 3, 4, 5].map((i) => driver.config(i, 1))).toEqual([...net.mac]);
    expect(driver.config(6, 2)).toBe(1);
  });

  it('carries frames between two VMs over the switch', () => {
    const sw = new L2Switch('s');
    const a = vm(sw, 'vm-a');
    const b = vm(sw, 'vm-b');
    const f = eth(b.net.mac, a.net.mac, 'hello b');
    a.driver.add(1, [new Uint8Array(VIRTIO_NET_HDR_SIZE), f], []);
    expect(a.driver.used(1)).toHaveLength(1);
    const [rx] = b.driver.used(0);
    expect(rx!.len).toBe(VIRTIO_NET_HDR_SIZE + f.length);
    const got = collect(rx!);
    expect(new DataView(got.buffer).getUint16(10, true)).toBe(1); // num_buffers
    expect(got.subarray(VIRTIO_NET_HDR_SIZE)).toEqual(f);
    expect(b.driver.irq.level).toBe(true);
    expect(a.net.counters.txFrames).toBe(1);
    expect(b.net.counters.rxBytes).toBe(f.length);
  });

  it('queues frames until receive buffers arrive, and drops frames too big for a buffer', () => {
    const sw = new L2Switch('s');
    const net = new VirtioNet({ mac: stableMac('x') });
    const { driver } = MockDriver.create(net);
    driver.probe(2);
    net.receive(eth(net.mac, stableMac('y'), 'one'));
    net.receive(new Uint8Array(200));
    expect(driver.used(0)).toHaveLength(0);
    driver.add(0, [], [100]);
    driver.add(0, [], [100]);
    const [u1, u2] = driver.used(0);
    expect(u1!.len).toBe(VIRTIO_NET_HDR_SIZE + 17);
    expect(u2!.len).toBe(0);
    expect(net.counters.rxDropped).toBe(1);
    expect(sw.portCount).toBe(0);
  });

  it('counts a transmit without a frame as an error, not a crash', () => {
    const sent: Uint8Array[] = [];
    const net = new VirtioNet({ mac: stableMac('x') });
    net.connect({ send: (f) => sent.push(f) });
    const { driver } = MockDriver.create(net);
    driver.probe(2);
    driver.add(1, [new Uint8Array(5)], []);
    expect(driver.used(1)).toHaveLength(1);
    expect(net.counters.txErrors).toBe(1);
    expect(sent).toHaveLength(0);
  });
});

describe('virtio-net offloads', () => {
  const tcpFrame = (payload: number) => {
    // Ethernet + IPv4 (20) + TCP (20): the L4 checksum field holds the pseudo-header sum only.
    const f = new Uint8Array(14 + 20 + 20 + payload);
    f.set([0x08, 0x00], 12);
    f.set([0x45, 0, (40 + payload) >> 8, (40 + payload) & 255, 0, 0, 0x40, 0, 64, 6], 14);
    f.set([10, 0, 2, 15, 10, 0, 2, 2], 26);
    for (let i = 0; i < payload; i++) f[54 + i] = i * 7;
    return f;
  };
  const sum = (b: Uint8Array, from: number) => {
    let s = 0;
    for (let i = from; i < b.length; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    return s;
  };

  it('completes a partial checksum the guest left (CSUM, HOST_TSO4) and passes a 60 KiB segment whole', () => {
    const sent: Uint8Array[] = [];
    const net = new VirtioNet({ mac: stableMac('x'), offloads: true });
    net.connect({ send: (f) => sent.push(f) });
    const { driver } = MockDriver.create(net);
    driver.probe(2);
    const f = tcpFrame(60_000);
    const hdr = new Uint8Array(VIRTIO_NET_HDR_SIZE);
    hdr.set([1, 1, 54, 0, 0xb4, 0x05, 34, 0, 16, 0]); // NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size 1460, csum_start 34, csum_offset 16
    driver.add(1, [hdr, f], []);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.length).toBe(f.length);
    // The completed checksum makes the one's-complement sum over the segment 0xffff.
    expect(sum(sent[0]!, 34)).toBe(0xffff);
    // Offsets outside the frame: dropped and counted, never a throw.
    hdr.set([0xff, 0xff], 6);
    driver.add(1, [hdr, tcpFrame(10)], []);
    expect(sent).toHaveLength(1);
    expect(net.counters.txErrors).toBe(1);
  });

  it('spreads a GSO segment over mergeable buffers with its MSS and num_buffers', () => {
    const net = new VirtioNet({ mac: stableMac('x'), offloads: true });
    const { driver } = MockDriver.create(net);
    driver.probe(2);
    expect(net.acceptsGso).toBe(true);
    const f = tcpFrame(20_000);
    net.receive(f, { gsoSize: 1460, csumStart: 34, csumOffset: 16 });
    expect(driver.used(0)).toHaveLength(0); // no buffers yet: it waits
    for (let i = 0; i < 8; i++) driver.add(0, [], [4096]);
    const used = driver.used(0);
    const need = VIRTIO_NET_HDR_SIZE + f.length;
    expect(used).toHaveLength(Math.ceil(need / 4096));
    const all = new Uint8Array(used.reduce((n, u) => n + u.len, 0));
    let o = 0;
    for (const u of used) {
      all.set(collect(u).subarray(0, u.len), o);
      o += u.len;
    }
    const dv = new DataView(all.buffer);
    expect(all[0]).toBe(1); // NEEDS_CSUM
    expect(all[1]).toBe(1); // GSO_TCPV4
    expect(dv.getUint16(4, true)).toBe(1460);
    expect(dv.getUint16(10, true)).toBe(used.length); // num_buffers
    expect(all.subarray(VIRTIO_NET_HDR_SIZE)).toEqual(f);
  });

  it('keeps its own copy of a frame that waits, and writes a header split over tiny buffers', () => {
    const net = new VirtioNet({ mac: stableMac('x'), offloads: true });
    const { driver } = MockDriver.create(net);
    driver.probe(2);
    const f = tcpFrame(3000);
    const want = f.slice();
    net.receive(f, { gsoSize: 1460, csumStart: 34, csumOffset: 16 });
    f.fill(0xee); // the caller reuses its buffer while the frame waits for receive buffers
    // A driver's buffers smaller than the header (a hostile guest's): the bytes still go in order.
    driver.add(0, [], [5]);
    driver.add(0, [], [5]);
    driver.add(0, [], [4096]);
    const used = driver.used(0);
    expect(used.map((u) => u.len)).toEqual([5, 5, VIRTIO_NET_HDR_SIZE + want.length - 10]);
    const all = new Uint8Array(VIRTIO_NET_HDR_SIZE + want.length);
    let o = 0;
    for (const u of used) {
      all.set(collect(u).subarray(0, u.len), o);
      o += u.len;
    }
    expect(new DataView(all.buffer).getUint16(10, true)).toBe(3); // num_buffers
    expect(all.subarray(VIRTIO_NET_HDR_SIZE)).toEqual(want);
    // With buffers ready, a frame goes straight in: what the caller does afterwards is not seen.
    driver.add(0, [], [4096]);
    const g = tcpFrame(500);
    const gWant = g.slice();
    net.receive(g);
    g.fill(0xee);
    const [u] = driver.used(0);
    expect(collect(u!).subarray(VIRTIO_NET_HDR_SIZE, u!.len)).toEqual(gWant);
  });

  it('refuses offloaded frames the driver did not negotiate', () => {
    const net = new VirtioNet({ mac: stableMac('x') });
    const { driver } = MockDriver.create(net);
    driver.probe(2);
    expect(net.acceptsGso).toBe(false);
    net.receive(tcpFrame(3000), { gsoSize: 1460, csumStart: 34, csumOffset: 16 });
    expect(net.counters.rxDropped).toBe(1);
  });
});
