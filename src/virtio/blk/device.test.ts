import { describe, expect, it } from 'vitest';
import { MockDriver, collect, type UsedBuffer } from '../testing/driver.js';
import { MemoryBlockDevice } from '../testing/memory-block-device.js';
import {
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VirtioBlk,
  type BlkOptions,
} from './device.js';
import { VIRTIO_CONFIG_S_NEEDS_RESET } from '../mmio/transport.js';

const MiB = 1 << 20;

function hdr(type: number, sector: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, type, true);
  v.setUint32(8, sector % 2 ** 32, true);
  v.setUint32(12, Math.floor(sector / 2 ** 32), true);
  return b;
}
function seg(sector: number, num: number, flags: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, sector, true);
  v.setUint32(8, num, true);
  v.setUint32(12, flags, true);
  return b;
}
const status = (u: UsedBuffer) => u.inBufs[u.inBufs.length - 1]![u.inBufs[u.inBufs.length - 1]!.length - 1];
const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

async function setup(opts: Partial<BlkOptions> = {}, diskBytes = 1 * MiB, ro = false) {
  const disk = new MemoryBlockDevice(diskBytes, ro);
  const blk = new VirtioBlk({ disk, serial: 'visor-disk-0', ...opts });
  const { driver, transport } = MockDriver.create(blk, 8 * MiB);
  driver.probe(1);
  const run = async () => {
    await blk.whenIdle();
    // Errors complete before I/O does: put results back in submission order (head ids
    // grow with each add on a fresh queue).
    return driver.used(0).sort((a, b) => a.id - b.id);
  };
  return { disk, blk, driver, transport, run };
}

describe('virtio-blk', () => {
  it('exposes capacity, limits and features in config space', async () => {
    const { driver, blk } = await setup();
    expect(driver.config(0, 4)).toBe(2048);
    expect(driver.config(4, 4)).toBe(0);
    expect(driver.config(12, 4)).toBe(126); // seg_max
    expect(driver.config(20, 4)).toBe(512);
    expect(driver.has(VIRTIO_BLK_F_FLUSH) && driver.has(VIRTIO_BLK_F_DISCARD) && driver.has(VIRTIO_BLK_F_WRITE_ZEROES)).toBe(true);
    expect(driver.has(VIRTIO_BLK_F_RO)).toBe(false);
    expect(blk.capacity).toBe(2048);
  });

  it('writes a pattern and reads it back, asynchronously', async () => {
    const { driver, disk, run } = await setup();
    disk.delay = 2;
    const data = pattern(4096, 7);
    driver.add(0, [hdr(VIRTIO_BLK_T_OUT, 8), data.subarray(0, 1000), data.subarray(1000)], [1]);
    expect(driver.used(0)).toHaveLength(0); // not complete when notify returns
    const [w] = await run();
    expect(w!.len).toBe(1);
    expect(status(w!)).toBe(VIRTIO_BLK_S_OK);
    expect(disk.data.subarray(8 * 512, 8 * 512 + 4096)).toEqual(data);
    driver.add(0, [hdr(VIRTIO_BLK_T_IN, 8)], [512, 3584, 1], { indirect: true });
    const [r] = await run();
    expect(r!.len).toBe(4097);
    expect(status(r!)).toBe(VIRTIO_BLK_S_OK);
    expect(collect(r!, 4096)).toEqual(data);
    expect(driver.irq.raised).toBeGreaterThanOrEqual(1);
  });

  it('fails out-of-range, unaligned and headerless requests with IOERR', async () => {
    const { driver, run, blk } = await setup();
    driver.add(0, [hdr(VIRTIO_BLK_T_IN, 2047)], [1024, 1]); // crosses the end
    driver.add(0, [hdr(VIRTIO_BLK_T_IN, 2 ** 60)], [512, 1]);
    driver.add(0, [hdr(VIRTIO_BLK_T_OUT, 0), new Uint8Array(100)], [1]); // not a sector multiple
    driver.add(0, [new Uint8Array(8)], [1]); // short header
    const used = await run();
    expect(used.map(status)).toEqual([1, 1, 1, 1].map(() => VIRTIO_BLK_S_IOERR));
    expect(used.every((u) => u.len === 1)).toBe(true);
    expect(blk.counters.errors).toBe(4);
  });

  it('completes a request without a status byte with used length 0', async () => {
    const { driver, run, transport } = await setup();
    driver.add(0, [hdr(VIRTIO_BLK_T_FLUSH, 0)], []);
    const [u] = await run();
    expect(u!.len).toBe(0);
    expect(transport.deviceStatus & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it('is read-only when asked: writes, discards and write-zeroes fail', async () => {
    const { driver, run, disk } = await setup({ readOnly: true });
    expect(driver.has(VIRTIO_BLK_F_RO)).toBe(true);
    expect(driver.has(VIRTIO_BLK_F_DISCARD)).toBe(false);
    driver.add(0, [hdr(VIRTIO_BLK_T_OUT, 0), pattern(512, 1)], [1]);
    driver.add(0, [hdr(VIRTIO_BLK_T_WRITE_ZEROES, 0), seg(0, 1, 0)], [1]);
    const used = await run();
    expect(used.map(status)).toEqual([VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_IOERR]);
    expect(disk.data.subarray(0, 512).every((b) => b === 0)).toBe(true);
  });

  it('flushes, reports its serial and rejects unknown requests', async () => {
    const { driver, run, disk } = await setup();
    driver.add(0, [hdr(VIRTIO_BLK_T_FLUSH, 0)], [1]);
    driver.add(0, [hdr(VIRTIO_BLK_T_GET_ID, 0)], [20, 1]);
    driver.add(0, [hdr(99, 0)], [1]);
    const [f, id, bad] = await run();
    expect(status(f!)).toBe(VIRTIO_BLK_S_OK);
    expect(disk.flushes).toBe(1);
    expect(new TextDecoder().decode(collect(id!, 12))).toBe('visor-disk-0');
    expect(id!.len).toBe(21);
    expect(collect(id!, 20)[12]).toBe(0);
    expect(status(bad!)).toBe(VIRTIO_BLK_S_UNSUPP);
  });

  it('discards and writes zeroes, checking flags and ranges', async () => {
    const { driver, run, disk } = await setup();
    disk.data.fill(0xaa);
    driver.add(0, [hdr(VIRTIO_BLK_T_DISCARD, 0), seg(8, 8, 0)], [1]);
    driver.add(0, [hdr(VIRTIO_BLK_T_WRITE_ZEROES, 0), seg(32, 2, 1)], [1]);
    driver.add(0, [hdr(VIRTIO_BLK_T_DISCARD, 0), seg(0, 1, 1)], [1]); // unmap flag on discard
    driver.add(0, [hdr(VIRTIO_BLK_T_WRITE_ZEROES, 0), seg(2047, 2, 0)], [1]); // past the end
    driver.add(0, [hdr(VIRTIO_BLK_T_DISCARD, 0), seg(0, 1, 0), seg(4, 1, 0)], [1]); // 2 segments
    const used = await run();
    expect(used.map(status)).toEqual([VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP]);
    expect(disk.discards).toEqual([[4096, 4096]]);
    expect(disk.data[4096]).toBe(0);
    expect(disk.data[4095]).toBe(0xaa);
    expect(disk.data.subarray(32 * 512, 34 * 512).every((b) => b === 0)).toBe(true);
    expect(disk.data[34 * 512]).toBe(0xaa);
  });

  it('turns a backend failure into IOERR', async () => {
    const { driver, run, disk } = await setup();
    disk.failNext = 1;
    driver.add(0, [hdr(VIRTIO_BLK_T_IN, 0)], [512, 1]);
    const [u] = await run();
    expect(status(u!)).toBe(VIRTIO_BLK_S_IOERR);
    expect(u!.len).toBe(1);
  });

  it('completes out of order under random latency and never exceeds maxInFlight', async () => {
    const { driver, run, disk, blk } = await setup({ maxInFlight: 4 });
    let seed = 1;
    disk.delay = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 5;
    let peak = 0;
    const orig = disk.write.bind(disk);
    let live = 0;
    disk.write = async (o, d) => {
      peak = Math.max(peak, ++live);
      try {
        await orig(o, d);
      } finally {
        live--;
      }
    };
    for (let i = 0; i < 40; i++) driver.add(0, [hdr(VIRTIO_BLK_T_OUT, i * 8), pattern(4096, i)], [1], { token: i });
    // Completions arrive over several event-loop turns, each re-pumping the ring.
    const used: UsedBuffer[] = [];
    while (used.length < 40) {
      used.push(...(await run()));
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(used.map(status).every((s) => s === VIRTIO_BLK_S_OK)).toBe(true);
    expect(peak).toBeLessThanOrEqual(4);
    for (let i = 0; i < 40; i++) expect(disk.data.subarray(i * 4096, (i + 1) * 4096)).toEqual(pattern(4096, i));
    expect(blk.counters.writes).toBe(40);
  });

  it('never writes guest RAM for a read that completes after a reset', async () => {
    const { driver, disk, blk } = await setup();
    disk.data.fill(0x55);
    disk.delay = 5;
    driver.add(0, [hdr(VIRTIO_BLK_T_IN, 0)], [512, 1]);
    const buf = driver.queues[0]!.pending.values().next().value!.inBufs[0]!;
    driver.w(0x70, 0); // reset while the read is in flight
    await new Promise((r) => setTimeout(r, 20));
    expect(buf.every((b) => b === 0xee)).toBe(true);
    expect(blk.counters.reads).toBe(0);
  });
});
