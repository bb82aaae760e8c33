/**
 * Disk limits in the virtio-blk path, in real time: a driver keeps the queue full of reads
 * against a ThrottledDevice and the rate it gets, over about two seconds, is the limit
 * within 10% (the bucket's burst is a tenth of a second's worth, so the first 5% is the
 * burst; a slow host only makes the rate lower, and the margin covers timer slack).
 */
import { describe, expect, it } from 'vitest';
import { ThrottledDevice, type DiskLimits } from '../../storage/throttle.js';
import { MockDriver } from '../testing/driver.js';
import { MemoryBlockDevice } from '../testing/memory-block-device.js';
import { VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VirtioBlk } from './device.js';

const MiB = 1 << 20;

function hdr(type: number, sector: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, type, true);
  v.setUint32(8, sector, true);
  return b;
}

/** Reads of `reqBytes`, `depth` at a time, for `seconds`: bytes and requests per second. */
async function measure(limits: DiskLimits, reqBytes: number, depth: number, seconds: number): Promise<{ bytesPerSec: number; iops: number }> {
  const disk = new ThrottledDevice(new MemoryBlockDevice(8 * MiB), limits);
  const blk = new VirtioBlk({ disk });
  const { driver } = MockDriver.create(blk, 16 * MiB);
  driver.probe(1);
  const heap = driver.alloc(16) - driver.ramBase; // past the rings: each batch reuses the RAM after it
  const t0 = performance.now();
  let bytes = 0;
  let reqs = 0;
  let sector = 0;
  while (performance.now() - t0 < seconds * 1000) {
    driver.resetHeap(heap);
    for (let i = 0; i < depth; i++) {
      driver.add(0, [hdr(VIRTIO_BLK_T_IN, sector)], [reqBytes, 1]);
      sector = (sector + reqBytes / 512) % ((8 * MiB) / 512);
    }
    await blk.whenIdle();
    for (const u of driver.used(0)) {
      const last = u.inBufs[u.inBufs.length - 1]!;
      expect(last[last.length - 1]).toBe(VIRTIO_BLK_S_OK);
      bytes += u.len - 1;
      reqs++;
    }
  }
  const wall = (performance.now() - t0) / 1000;
  return { bytesPerSec: bytes / wall, iops: reqs / wall };
}

describe('virtio-blk under disk limits', () => {
  it('reads at the bandwidth limit, within 10%', async () => {
    const limit = 4 * MiB;
    const r = await measure({ bytesPerSec: limit }, 64 * 1024, 8, 2);
    expect(r.bytesPerSec / limit).toBeGreaterThan(0.9);
    expect(r.bytesPerSec / limit).toBeLessThan(1.1);
  });

  it('completes requests at the IOPS limit, within 10%', async () => {
    const limit = 400;
    const r = await measure({ iops: limit }, 4096, 16, 2);
    expect(r.iops / limit).toBeGreaterThan(0.9);
    expect(r.iops / limit).toBeLessThan(1.1);
  });
});
