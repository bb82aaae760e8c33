import { describe, expect, it } from 'vitest';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit } from '../device.js';
import { EchoDevice } from '../testing/echo-device.js';
import { MockDriver, TEST_RAM_BASE, collect } from '../testing/driver.js';
import {
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_MMIO_CONFIG_GENERATION,
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_MAGIC_VALUE,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_STATUS,
  VIRTIO_MMIO_VERSION,
  VIRTIO_MMIO_SHM_LEN_LOW,
} from './transport.js';
import { VIRTQ_AVAIL_F_NO_INTERRUPT } from '../queue/split-queue.js';
import { VirtioMmioTransport } from './transport.js';

const ALL = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC) | 1n;
const bytes = (...v: number[]) => Uint8Array.from(v);

function setup(want = ALL, size = 16) {
  const dev = new EchoDevice(size);
  const { driver, transport } = MockDriver.create(dev, 1 << 20);
  driver.probe(1, want);
  return { dev, driver, transport };
}

describe('virtio-mmio transport', () => {
  it('identifies itself as an MMIO version 2 device', () => {
    const { driver } = MockDriver.create(new EchoDevice());
    expect(driver.r(VIRTIO_MMIO_MAGIC_VALUE)).toBe(0x74726976);
    expect(driver.r(VIRTIO_MMIO_VERSION)).toBe(2);
    expect(driver.r(VIRTIO_MMIO_DEVICE_ID)).toBe(0x7e);
    expect(driver.r(VIRTIO_MMIO_SHM_LEN_LOW)).toBe(0xffff_ffff);
    expect(driver.deviceFeatures()).toBe(ALL);
  });

  it('negotiates features and refuses FEATURES_OK without VERSION_1 or with unoffered bits', () => {
    const { driver, transport } = MockDriver.create(new EchoDevice());
    expect(driver.init(ALL)).toBe(true);
    expect(transport.negotiated()).toBe(ALL);
    expect(driver.init(1n)).toBe(false); // legacy driver
    // A driver that writes a bit we never offered.
    driver.w(VIRTIO_MMIO_STATUS, 0);
    driver.w(VIRTIO_MMIO_STATUS, 3);
    driver.w(0x24, 1);
    driver.w(0x20, 1 | (1 << 7)); // bit 39: not offered
    driver.w(VIRTIO_MMIO_STATUS, 3 | VIRTIO_CONFIG_S_FEATURES_OK);
    expect(driver.status() & VIRTIO_CONFIG_S_FEATURES_OK).toBe(0);
    // DRIVER_OK without FEATURES_OK is refused too.
    driver.w(VIRTIO_MMIO_STATUS, 3 | VIRTIO_CONFIG_S_DRIVER_OK);
    expect(driver.status() & VIRTIO_CONFIG_S_DRIVER_OK).toBe(0);
  });

  it('round-trips a buffer and raises then lowers the level-triggered interrupt', () => {
    const { driver } = setup();
    expect(driver.status()).toBe(0xf);
    driver.add(0, [bytes(1, 2, 3, 4, 5)], [3, 4]);
    expect(driver.irq.level).toBe(true);
    expect(driver.r(VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_VRING);
    const used = driver.used(0);
    expect(used).toHaveLength(1);
    expect(used[0]!.len).toBe(5);
    expect([...collect(used[0]!)]).toEqual([1, 2, 3, 4, 5]);
    expect(driver.ackInterrupt()).toBe(VIRTIO_MMIO_INT_VRING);
    expect(driver.irq.level).toBe(false);
  });

  it('follows indirect descriptor tables', () => {
    const { driver } = setup();
    driver.add(0, [bytes(9), bytes(8, 7)], [1, 2], { indirect: true });
    const [u] = driver.used(0);
    expect([...collect(u!)]).toEqual([9, 8, 7]);
    expect(driver.status() & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it('sets DEVICE_NEEDS_RESET for an indirect table when INDIRECT_DESC was not negotiated', () => {
    const { driver, transport } = setup(ALL & ~bit(VIRTIO_F_INDIRECT_DESC));
    driver.add(0, [bytes(1), bytes(2)], [2], { indirect: true });
    expect(driver.status() & VIRTIO_CONFIG_S_NEEDS_RESET).toBeTruthy();
    expect(driver.r(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG).toBeTruthy();
    expect(transport.needsResetReason).toMatch(/indirect/);
    expect(driver.used(0)).toHaveLength(0);
    // Reset brings it back.
    driver.probe(1, ALL);
    expect(driver.status() & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it('with EVENT_IDX, interrupts only when used_event is passed and publishes avail_event', () => {
    const { dev, driver } = setup();
    dev.immediate = false;
    // Driver asks to be woken only after 3 more used buffers (used_event = 2).
    const q = driver.queues[0]!;
    for (let i = 0; i < 3; i++) driver.add(0, [bytes(i)], [1]);
    // Only the first add notifies: the device publishes avail_event as it pops, and before
    // any pop avail_event is 0, so the 2nd and 3rd adds are suppressed.
    expect(driver.notifies).toBe(1);
    new DataView(driver.ram.buffer).setUint16(q.avail - TEST_RAM_BASE + 4 + 2 * q.size, 2, true);
    const irqBefore = driver.irq.raised;
    expect(dev.drain()).toBe(3);
    expect(driver.irq.raised).toBe(irqBefore + 1); // used idx went 0→3, past used_event=2
    driver.ackInterrupt();
    // avail_event now equals the device's last_avail_idx.
    expect(new DataView(driver.ram.buffer).getUint16(q.used - TEST_RAM_BASE + 4 + 8 * q.size, true)).toBe(3);
    expect(driver.used(0)).toHaveLength(3); // sets used_event = 3
    // used_event 3 → the next single completion (used idx 4) interrupts.
    driver.add(0, [bytes(7)], [1]);
    dev.drain();
    expect(driver.irq.raised).toBe(irqBefore + 2);
    driver.ackInterrupt();
    // Now set used_event far ahead: no interrupt for the next completion.
    new DataView(driver.ram.buffer).setUint16(q.avail - TEST_RAM_BASE + 4 + 2 * q.size, 100, true);
    driver.add(0, [bytes(7)], [1]);
    dev.drain();
    expect(driver.irq.raised).toBe(irqBefore + 2);
  });

  it('without EVENT_IDX, honours VIRTQ_AVAIL_F_NO_INTERRUPT', () => {
    const { driver } = setup(ALL & ~bit(VIRTIO_F_EVENT_IDX));
    const q = driver.queues[0]!;
    new DataView(driver.ram.buffer).setUint16(q.avail - TEST_RAM_BASE, VIRTQ_AVAIL_F_NO_INTERRUPT, true);
    driver.add(0, [bytes(1)], [1]);
    expect(driver.irq.level).toBe(false);
    expect(driver.used(0)).toHaveLength(1);
  });

  it('ignores queue layout writes while the queue is ready and non-32-bit control accesses', () => {
    const { driver, transport } = setup();
    const before = transport.counters.badAccesses;
    driver.w(VIRTIO_MMIO_QUEUE_SEL, 0);
    driver.w(VIRTIO_MMIO_QUEUE_NUM, 4);
    expect(driver.r(VIRTIO_MMIO_QUEUE_NUM)).toBe(16);
    expect(driver.r(VIRTIO_MMIO_MAGIC_VALUE, 2)).toBe(0);
    driver.w(VIRTIO_MMIO_STATUS, 0, 1);
    expect(driver.status()).toBe(0xf);
    expect(transport.counters.badAccesses).toBe(before + 3);
    // A queue that does not exist reads QueueNumMax 0.
    driver.w(VIRTIO_MMIO_QUEUE_SEL, 5);
    expect(driver.r(VIRTIO_MMIO_QUEUE_NUM_MAX)).toBe(0);
  });

  it('refuses rings outside RAM or of a non-power-of-two size', () => {
    for (const [num, addr] of [
      [16, TEST_RAM_BASE + (1 << 20) - 64],
      [16, 0x1000],
      [12, TEST_RAM_BASE + 0x1000],
    ] as const) {
      const { driver, transport } = MockDriver.create(new EchoDevice(), 1 << 20);
      driver.init(ALL);
      driver.w(VIRTIO_MMIO_QUEUE_SEL, 0);
      driver.w(VIRTIO_MMIO_QUEUE_NUM, num);
      driver.w(0x80, addr);
      driver.w(0x90, TEST_RAM_BASE + 0x8000);
      driver.w(0xa0, TEST_RAM_BASE + 0x9000);
      driver.w(VIRTIO_MMIO_QUEUE_READY, 1);
      expect(driver.r(VIRTIO_MMIO_QUEUE_READY)).toBe(0);
      expect(driver.status() & VIRTIO_CONFIG_S_NEEDS_RESET).toBeTruthy();
      expect(transport.counters.needsReset).toBe(1);
    }
  });

  it('resets on status 0: queues, features, interrupt and the device', () => {
    const { dev, driver, transport } = setup();
    driver.add(0, [bytes(1)], [1]);
    expect(driver.irq.level).toBe(true);
    driver.w(VIRTIO_MMIO_STATUS, 0);
    expect(driver.status()).toBe(0);
    expect(driver.irq.level).toBe(false);
    expect(transport.negotiated()).toBe(0n);
    driver.w(VIRTIO_MMIO_QUEUE_SEL, 0);
    expect(driver.r(VIRTIO_MMIO_QUEUE_READY)).toBe(0);
    expect(dev.resets).toBeGreaterThanOrEqual(2);
    expect(dev.ctx).toBe(null);
  });

  it('bumps the config generation and raises a config interrupt on a config change', () => {
    const { dev, driver } = setup();
    const g = driver.r(VIRTIO_MMIO_CONFIG_GENERATION);
    dev.config[0] = 0x42;
    dev.ctx!.configChanged();
    expect(driver.r(VIRTIO_MMIO_CONFIG_GENERATION)).toBe(g + 1);
    expect(driver.ackInterrupt()).toBe(VIRTIO_MMIO_INT_CONFIG);
    expect(driver.config(0, 1)).toBe(0x42);
    expect(driver.config(0, 4)).toBe(0x42);
  });

  it('driver ring indices wrap past 65535', () => {
    const { driver } = setup(ALL, 4);
    for (let i = 0; i < 70000; i++) {
      driver.add(0, [bytes(i & 0xff)], [1]);
      const u = driver.used(0);
      if (u.length !== 1 || collect(u[0]!)[0] !== (i & 0xff)) throw new Error(`lost buffer at ${i}`);
      driver.ackInterrupt();
      // Recycle the mock driver's bump heap so 70000 buffers fit in 1 MiB.
      (driver as unknown as { heap: number }).heap = 0x10000;
    }
    expect(driver.status()).toBe(0xf);
  });

  it('saves and restores its state, validating it first', () => {
    const { driver, transport } = setup();
    driver.add(0, [bytes(1, 2)], [2]);
    const saved = structuredClone(transport.saveState());
    // A second transport over the same RAM picks up where the first left off.
    const dev2 = new EchoDevice(16);
    const t2 = new VirtioMmioTransport({ device: dev2, ram: { ram: driver.ram, ramBase: TEST_RAM_BASE }, irq: driver.irq, irqSource: 1 });
    expect(() => t2.restore({ ...saved, driverFeaturesHi: 0xff })).toThrow(/never offered/);
    expect(() => t2.restore({ ...saved, queues: [] })).toThrow(/queue count/);
    expect(t2.saveState().status).toBe(0); // a rejected state changed nothing
    t2.restore(saved);
    expect(t2.saveState()).toEqual(saved);
    expect(dev2.ctx).not.toBe(null);
    const d2 = new MockDriver(t2, driver.ram, TEST_RAM_BASE, driver.irq);
    d2.features = driver.features;
    d2.queues[0] = driver.queues[0]!;
    d2.used(0);
    d2.add(0, [bytes(7)], [1]);
    expect(collect(d2.used(0)[0]!)[0]).toBe(7);
  });
});
