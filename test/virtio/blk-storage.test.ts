/**
 * virtio-blk over the storage layer's real block devices (raw and qcow2 on an in-memory
 * file): one suite, both formats. What the guest writes through the virtqueue is what the
 * format reads back, including discard and write-zeroes holes.
 */
import { describe, expect, it } from 'vitest';
import type { BlockDevice } from '../../src/storage/block-device.js';
import { MemoryFile } from '../../src/storage/memory-file.js';
import { RawDevice } from '../../src/storage/raw.js';
import { createQcow2 } from '../../src/storage/qcow2/create.js';
import { Qcow2Device } from '../../src/storage/qcow2/device.js';
import { VirtioBlk, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_DISCARD } from '../../src/virtio/blk/device.js';
import { MockDriver, collect, type UsedBuffer } from '../../src/virtio/testing/driver.js';

const SIZE = 4 << 20;
const formats: Record<string, () => Promise<BlockDevice>> = {
  raw: async () => RawDevice.open(new MemoryFile(new Uint8Array(SIZE)), { readOnly: false }),
  qcow2: async () => {
    const f = new MemoryFile();
    await createQcow2(f, { size: SIZE, version: 3, clusterSize: 65536 });
    return Qcow2Device.open(f, { readOnly: false });
  },
};

function req(type: number, sector: number, extra: Uint8Array[] = []): Uint8Array[] {
  const h = new Uint8Array(16);
  new DataView(h.buffer).setUint32(0, type, true);
  new DataView(h.buffer).setUint32(8, sector, true);
  return [h, ...extra];
}
function seg(sector: number, n: number, flags: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, sector, true);
  v.setUint32(8, n, true);
  v.setUint32(12, flags, true);
  return b;
}
/** Byte equality without vitest's element-by-element deep diff (slow on 192 KiB). */
const same = (x: Uint8Array, y: Uint8Array) => Buffer.compare(x, y) === 0;
const status = (u: UsedBuffer) => u.inBufs.at(-1)!.at(-1);
const pattern = (n: number, t: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + t * 13 + (i >> 9)) & 0xff);

for (const [name, open] of Object.entries(formats)) {
  describe(`virtio-blk on ${name}`, () => {
    it('writes patterns, reads them back, flushes, and zeroes ranges', async () => {
      const disk = await open();
      const blk = new VirtioBlk({ disk });
      const { driver } = MockDriver.create(blk, 8 << 20);
      driver.probe(1);
      const run = async () => {
        await blk.whenIdle();
        return driver.used(0).sort((a, b) => a.id - b.id);
      };
      // Writes that straddle qcow2 clusters, in several descriptors.
      const a = pattern(192 * 1024, 1);
      const b = pattern(4096, 2);
      driver.add(0, req(VIRTIO_BLK_T_OUT, 100, [a.subarray(0, 5000 - 5000 % 512), a.subarray(5000 - 5000 % 512)]), [1]);
      driver.add(0, req(VIRTIO_BLK_T_OUT, 8000, [b]), [1]);
      driver.add(0, req(VIRTIO_BLK_T_FLUSH, 0), [1]);
      let used = await run();
      expect(used.map(status)).toEqual([0, 0, 0]);
      driver.add(0, req(VIRTIO_BLK_T_IN, 100), [192 * 1024, 1]);
      driver.add(0, req(VIRTIO_BLK_T_IN, 8000), [4096, 1], { indirect: true });
      used = await run();
      expect(used.map(status)).toEqual([VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK]);
      expect(same(collect(used[0]!, a.length), a)).toBe(true);
      expect(same(collect(used[1]!, b.length), b)).toBe(true);
      // Zero 64 KiB in the middle of `a` (unmap allowed) and discard `b`.
      driver.add(0, req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [seg(164, 128, 1)]), [1]);
      driver.add(0, req(VIRTIO_BLK_T_DISCARD, 0, [seg(8000, 8, 0)]), [1]);
      used = await run();
      expect(used.map(status)).toEqual([0, 0]);
      driver.add(0, req(VIRTIO_BLK_T_IN, 100), [192 * 1024, 1]);
      used = await run();
      const want = a.slice();
      want.fill(0, 64 * 512, 192 * 512);
      expect(same(collect(used[0]!, a.length), want)).toBe(true);
      await disk.close();
    });
  });
}
