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
