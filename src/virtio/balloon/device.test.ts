import { describe, expect, it } from 'vitest';
import { VIRTIO_F_VERSION_1, bit } from '../device.js';
import { writtenPages } from '../../cpu/ram-pager.js';
import { MockDriver, TEST_RAM_BASE } from '../testing/driver.js';
import { VIRTIO_MMIO_INT_CONFIG } from '../mmio/transport.js';
import {
  VIRTIO_BALLOON_F_PAGE_REPORTING,
  VIRTIO_BALLOON_F_STATS_VQ,
  VIRTIO_BALLOON_S_AVAIL,
  VIRTIO_BALLOON_S_MEMFREE,
  VirtioBalloon,
} from './device.js';

const pfns = (...p: number[]) => {
  const b = new Uint8Array(4 * p.length);
  p.forEach((x, i) => new DataView(b.buffer).setUint32(4 * i, x, true));
  return b;
};
const stats = (...e: [number, number][]) => {
  const b = new Uint8Array(10 * e.length);
  const v = new DataView(b.buffer);
  e.forEach(([t, val], i) => {
    v.setUint16(10 * i, t, true);
    v.setUint32(10 * i + 2, val % 2 ** 32, true);
    v.setUint32(10 * i + 6, Math.floor(val / 2 ** 32), true);
  });
  return b;
};
const BASE_PFN = TEST_RAM_BASE / 4096;

describe('virtio-balloon', () => {
  it('inflates on host request: config change, PFNs zeroed and counted, then deflates', () => {
    const b = new VirtioBalloon();
    const { driver } = MockDriver.create(b);
    driver.probe(4);
    b.setTarget(3);
    expect(driver.ackInterrupt() & VIRTIO_MMIO_INT_CONFIG).toBeTruthy();
    expect(driver.config(0, 4)).toBe(3);
    driver.ram.fill(0x77, 0x100000, 0x103000);
    const written = writtenPages(driver.ram);
    written.fill(0);
    const p = BASE_PFN + 0x100;
    driver.add(0, [pfns(p, p + 1, p + 2, 0x10)], []); // 0x10: not RAM
    // The zeroed pages count as written (an in-memory snapshot must hold them as zero).
    expect([0x100, 0x101, 0x102].map((pg) => written[pg])).toEqual([1, 1, 1]);
    expect(driver.used(0)).toHaveLength(1);
    driver.writeConfig(4, 4, 3); // the guest reports actual
    expect(b.actual).toBe(3);
    expect(b.inflated.size).toBe(3);
    expect(b.counters.badPfns).toBe(1);
    expect(driver.ram.subarray(0x100000, 0x103000).every((x) => x === 0)).toBe(true);
    driver.add(1, [pfns(p + 1)], []);
    expect(b.inflated.has(p + 1)).toBe(false);
    expect(b.inflated.size).toBe(2);
    // The target is host-owned: the driver cannot write it.
    driver.writeConfig(0, 4, 99);
    expect(b.target).toBe(3);
  });

  it('collects statistics on request through the held stats buffer', async () => {
    const b = new VirtioBalloon();
    const { driver } = MockDriver.create(b);
    driver.probe(4);
    expect(driver.has(VIRTIO_BALLOON_F_STATS_VQ)).toBe(true);
    driver.add(2, [stats([VIRTIO_BALLOON_S_MEMFREE, 1000])], []); // at probe, like Linux
    expect(b.lastStats?.get(VIRTIO_BALLOON_S_MEMFREE)).toBe(1000);
    const pending = b.requestStats();
    // The driver sees its buffer come back and refills it.
    expect(driver.used(2)).toHaveLength(1);
    driver.add(2, [stats([VIRTIO_BALLOON_S_MEMFREE, 500], [VIRTIO_BALLOON_S_AVAIL, 2 ** 40])], []);
    const s = await pending;
    expect(s.get(VIRTIO_BALLOON_S_MEMFREE)).toBe(500);
    expect(s.get(VIRTIO_BALLOON_S_AVAIL)).toBe(2 ** 40);
  });

  it('numbers optional queues compactly: reporting is queue 2 without STATS_VQ', () => {
    const b = new VirtioBalloon();
    const { driver } = MockDriver.create(b);
    driver.probe(3, bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_BALLOON_F_PAGE_REPORTING));
    driver.add(2, [], [4096 * 4]);
    expect(driver.used(2)).toHaveLength(1);
    expect(b.counters.reportedBytes).toBe(4096 * 4);
    expect(b.lastStats).toBe(null);
  });

  it('gives all pages back on reset', () => {
    const b = new VirtioBalloon();
    const { driver } = MockDriver.create(b);
    driver.probe(4);
    driver.add(0, [pfns(BASE_PFN + 0x200)], []);
    expect(b.inflated.size).toBe(1);
    driver.w(0x70, 0);
    expect(b.inflated.size).toBe(0);
    expect(b.saveState()).toMatchObject({ version: 1, numPages: 0, actual: 0, inflated: [], statsHead: null });
  });

  it('accepts free-page reports far larger than the default chain cap', () => {
    const b = new VirtioBalloon();
    const { driver, transport } = MockDriver.create(b, 16 << 20);
    driver.probe(4);
    // 32 blocks of 4 MiB each, aliasing the same RAM (only bounds matter to the device).
    const bufs = Array.from({ length: 32 }, () => ({ addr: TEST_RAM_BASE + (8 << 20), len: 4 << 20, write: true }));
    driver.addRaw(3, bufs, [], { indirect: true });
    expect(driver.used(3)).toHaveLength(1);
    expect(b.counters.reportedBytes).toBe(128 << 20);
    expect(transport.deviceStatus & 0x40).toBe(0);
  });

  it('round-trips its state and rejects a malformed one', () => {
    const b = new VirtioBalloon();
    const { driver } = MockDriver.create(b);
    driver.probe(4);
    b.setTarget(5);
    driver.add(0, [pfns(BASE_PFN + 0x300, BASE_PFN + 0x301)], []);
    driver.writeConfig(4, 4, 2);
    const saved = structuredClone(b.saveState());
    const b2 = new VirtioBalloon();
    b2.restore(saved);
    expect(b2.saveState()).toEqual(saved);
    expect(b2.target).toBe(5);
    expect(() => b2.restore({ ...saved, inflated: [-1] })).toThrow(/malformed/);
    expect(() => b2.restore({ ...saved, version: 2 as 1 })).toThrow(/malformed/);
  });
});
