import { describe, expect, it } from 'vitest';
import { isVisorError } from '../base/errors.js';
import type { BlockDevice } from './block-device.js';
import { MemoryFileSystem } from './memory-file.js';
import { createDisk, openDisk } from './open.js';
import { firstDiff, pattern } from './testing.js';

// One suite, several implementations (CONVENTIONS: "one conformance suite").
const SIZE = 4 << 20;

interface Impl {
  name: string;
  make(): Promise<{ dev: BlockDevice; reopen(readOnly: boolean): Promise<BlockDevice> }>;
}

function impl(name: string, format: 'raw' | 'qcow2', extra: { version?: 2 | 3; clusterSize?: number; backing?: boolean } = {}): Impl {
  return {
    name,
    async make() {
      const fs = new MemoryFileSystem();
      if (extra.backing) {
        const bf = fs.create('/d/base.qcow2');
        await createDisk(fs, '/d/base.qcow2', bf, { format: 'qcow2', size: SIZE });
        const b = await openDisk(fs, '/d/base.qcow2', { readOnly: false });
        await b.device.write(0, pattern(SIZE, 99));
        await b.device.close();
      }
      const f = fs.create('/d/disk');
      await createDisk(fs, '/d/disk', f, {
        format,
        size: extra.backing ? undefined : SIZE,
        version: extra.version,
        clusterSize: extra.clusterSize,
        backingFile: extra.backing ? 'base.qcow2' : undefined,
      });
      const reopen = async (readOnly: boolean) => (await openDisk(fs, '/d/disk', { readOnly })).device;
      return { dev: await reopen(false), reopen };
    },
  };
}

const IMPLS: Impl[] = [
  impl('raw', 'raw'),
  impl('qcow2 v3', 'qcow2'),
  impl('qcow2 v2', 'qcow2', { version: 2 }),
  impl('qcow2 v3 4K clusters', 'qcow2', { clusterSize: 4096 }),
  impl('qcow2 v3 over a backing file', 'qcow2', { backing: true }),
  impl('qcow2 v2 over a backing file', 'qcow2', { version: 2, backing: true }),
];

describe.each(IMPLS)('block device conformance: $name', ({ make, name }) => {
  const backed = name.includes('backing');

  it('reports its size and reads zeros (or the backing data) when fresh', async () => {
    const { dev } = await make();
    expect(dev.size).toBe(SIZE);
    const b = new Uint8Array(8192);
    await dev.read(SIZE - 8192, b);
    expect(firstDiff(b, backed ? pattern(SIZE, 99).subarray(SIZE - 8192) : new Uint8Array(8192))).toBe(-1);
    await dev.close();
  });

  it('reads back what it wrote, across cluster boundaries, after reopening', async () => {
    const { dev, reopen } = await make();
    const data = pattern(200 * 512, 1);
    await dev.write(65536 - 1024, data);
    await dev.write(3 << 20, pattern(512, 2));
    await dev.flush();
    await dev.close();
    const again = await reopen(true);
    const got = new Uint8Array(data.length);
    await again.read(65536 - 1024, got);
    expect(firstDiff(got, data)).toBe(-1);
    const s = new Uint8Array(512);
    await again.read(3 << 20, s);
    expect(firstDiff(s, pattern(512, 2))).toBe(-1);
    // Untouched neighbours are intact.
    const n = new Uint8Array(512);
    await again.read(65536 - 1536, n);
    expect(firstDiff(n, backed ? pattern(SIZE, 99).subarray(65536 - 1536, 65536 - 1024) : new Uint8Array(512))).toBe(-1);
    await again.close();
  });

  it('write-zeroes and discard read back as zeros, partial and whole clusters', async () => {
    const { dev } = await make();
    await dev.write(0, pattern(1 << 20, 3));
    await dev.writeZeroes(512, 1024, false);
    await dev.writeZeroes(65536, 65536, false);
    await dev.discard(131072, 65536 + 512);
    await dev.writeZeroes(300 * 1024, 200 * 1024, true);
    const got = new Uint8Array(1 << 20);
    await dev.read(0, got);
    const want = pattern(1 << 20, 3);
    want.fill(0, 512, 1536);
    want.fill(0, 65536, 131072);
    want.fill(0, 131072, 131072 + 65536 + 512);
    want.fill(0, 300 * 1024, 500 * 1024);
    expect(firstDiff(got, want)).toBe(-1);
    await dev.close();
  });

  it('rejects unaligned and out-of-range requests with InvalidArgument', async () => {
    const { dev } = await make();
    const cases = [
      () => dev.read(1, new Uint8Array(512)),
      () => dev.read(0, new Uint8Array(100)),
      () => dev.read(SIZE, new Uint8Array(512)),
      () => dev.write(SIZE - 512, new Uint8Array(1024)),
      () => dev.discard(-512, 512),
      () => dev.writeZeroes(0, SIZE + 512, true),
    ];
    for (const c of cases) {
      const err = await Promise.resolve().then(c).catch((e: unknown) => e);
      expect(isVisorError(err, 'InvalidArgument')).toBe(true);
    }
    await dev.close();
  });

  it('refuses writes when read-only', async () => {
    const { dev, reopen } = await make();
    await dev.close();
    const ro = await reopen(true);
    expect(ro.readOnly).toBe(true);
    for (const c of [() => ro.write(0, new Uint8Array(512)), () => ro.discard(0, 512), () => ro.writeZeroes(0, 512, false)]) {
      const err = await Promise.resolve().then(c).catch((e: unknown) => e);
      expect(isVisorError(err, 'NotAllowed')).toBe(true);
    }
    await ro.close();
  });

  it('handles concurrent requests without mixing them up', async () => {
    const { dev } = await make();
    await Promise.all(Array.from({ length: 32 }, (_, i) => dev.write(i * 70 * 512, pattern(70 * 512, i))));
    const reads = await Promise.all(
      Array.from({ length: 32 }, async (_, i) => {
        const b = new Uint8Array(70 * 512);
        await dev.read(i * 70 * 512, b);
        return b;
      }),
    );
    reads.forEach((b, i) => expect(firstDiff(b, pattern(70 * 512, i))).toBe(-1));
    await dev.close();
  });
});
