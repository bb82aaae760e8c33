import { describe, expect, it } from 'vitest';
import { isVisorError } from '../../base/errors.js';
import type { FileHandle } from '../block-device.js';
import { MemoryFile, MemoryFileSystem } from '../memory-file.js';
import { createDisk, openDisk } from '../open.js';
import { firstDiff, pattern, rng } from '../testing.js';
import { checkQcow2 } from './check.js';
import { createQcow2 } from './create.js';
import { Qcow2Device } from './device.js';

async function fresh(size: number, o: { clusterSize?: number; version?: 2 | 3; refcountOrder?: number } = {}) {
  const file = new MemoryFile();
  await createQcow2(file, { size, ...o });
  return { file, dev: await Qcow2Device.open(file, { readOnly: false }) };
}

async function expectClean(dev: Qcow2Device) {
  const r = await checkQcow2(dev, { repair: false });
  expect(r.corruptions + r.leaks + r.leaksPastEnd, r.messages.slice(0, 10).join('\n')).toBe(0);
}

describe('qcow2 property test: random I/O and snapshots against a raw reference', () => {
  for (const [label, opts] of [
    ['v3 64K', {}],
    ['v2 4K', { version: 2 as const, clusterSize: 4096 }],
    ['v3 1K clusters, 8-bit refcounts', { clusterSize: 1024, refcountOrder: 3 }],
  ] as const) {
    it(`contents always equal (${label})`, async () => {
      const seed = Number(process.env.VISOR_SEED ?? 20240601) + label.length;
      const r = rng(seed);
      const size = 3 << 20;
      const { dev } = await fresh(size, opts);
      let ref = new Uint8Array(size);
      const snaps = new Map<string, Uint8Array>();
      const log: string[] = [];
      for (let i = 0; i < 400; i++) {
        const len = (1 + Math.floor(r() * 200)) * 512;
        const off = Math.floor(r() * ((size - len) / 512)) * 512;
        const k = r();
        if (k < 0.55) {
          const b = pattern(len, i);
          await dev.write(off, b);
          ref.set(b, off);
          log.push(`write ${off} ${len}`);
        } else if (k < 0.68) {
          await dev.discard(off, len);
          ref.fill(0, off, off + len);
          log.push(`discard ${off} ${len}`);
        } else if (k < 0.8) {
          const unmap = r() < 0.5;
          await dev.writeZeroes(off, len, unmap);
          ref.fill(0, off, off + len);
          log.push(`zeroes ${off} ${len} ${unmap}`);
        } else if (k < 0.86) {
          const name = `s${i}`;
          await dev.createSnapshot(name);
          snaps.set(name, ref.slice());
          log.push(`snapshot create ${name}`);
        } else if (k < 0.92 && snaps.size > 0) {
          const names = [...snaps.keys()];
          const name = names[Math.floor(r() * names.length)]!;
          await dev.applySnapshot(name);
          ref = snaps.get(name)!.slice();
          log.push(`snapshot apply ${name}`);
        } else if (k < 0.96 && snaps.size > 0) {
          const names = [...snaps.keys()];
          const name = names[Math.floor(r() * names.length)]!;
          await dev.deleteSnapshot(name);
          snaps.delete(name);
          log.push(`snapshot delete ${name}`);
        } else {
          const b = new Uint8Array(len);
          await dev.read(off, b);
          const d = firstDiff(b, ref.subarray(off, off + len));
          expect(d, `seed ${seed} step ${i} read ${off}+${len}; last ops: ${log.slice(-5).join('; ')}`).toBe(-1);
        }
        if (i % 100 === 99) await expectClean(dev);
      }
      const all = new Uint8Array(size);
      await dev.read(0, all);
      expect(firstDiff(all, ref), `seed ${seed}`).toBe(-1);
      for (const [name, want] of snaps) {
        await dev.applySnapshot(name);
        await dev.read(0, all);
        expect(firstDiff(all, want), `seed ${seed} snapshot ${name}`).toBe(-1);
      }
      await expectClean(dev);
    });
  }
});

describe('qcow2 metadata', () => {
  it('random reads hit the L2 cache instead of re-reading tables', async () => {
    const { dev } = await fresh(64 << 20);
    for (let off = 0; off < 64 << 20; off += 1 << 20) await dev.write(off, new Uint8Array(4096).fill(1));
    const b = new Uint8Array(4096);
    const before = dev.stats.l2Reads;
    const r = rng(1);
    for (let i = 0; i < 2000; i++) await dev.read(Math.floor(r() * 16383) * 4096, b);
    expect(dev.stats.l2Reads - before).toBe(0);
    expect(dev.stats.l2CacheHits).toBeGreaterThan(2000);
  });

  it('every refcount width from 1 to 64 bits keeps refcounts exact', async () => {
    for (let order = 0; order <= 6; order++) {
      const { dev } = await fresh(1 << 20, { clusterSize: 4096, refcountOrder: order });
      await dev.write(0, pattern(300 * 1024, order));
      await dev.discard(64 * 1024, 64 * 1024);
      if (order > 0) await dev.createSnapshot('a');
      await dev.write(0, pattern(8192, 9));
      await expectClean(dev);
      const b = new Uint8Array(8192);
      await dev.read(0, b);
      expect(firstDiff(b, pattern(8192, 9))).toBe(-1);
    }
  });

  it('refuses a snapshot that would overflow 1-bit refcounts, leaving the image clean', async () => {
    const { dev } = await fresh(1 << 20, { clusterSize: 4096, refcountOrder: 0 });
    await dev.write(0, pattern(64 * 1024, 1));
    const err = await dev.createSnapshot('x').catch((e: unknown) => e);
    expect(isVisorError(err, 'Unsupported')).toBe(true);
    expect(String((err as Error).message)).toMatch(/refcount overflow/);
    expect(dev.listSnapshots()).toEqual([]);
    await expectClean(dev);
  });

  it('repeated snapshot create, apply and delete reuse freed metadata clusters (the file stops growing)', async () => {
    const { dev, file } = await fresh(8 << 20, { clusterSize: 4096 });
    await dev.write(0, pattern(6 << 20, 1));
    const cycle = async (i: number) => {
      await dev.createSnapshot(`c${i}`);
      await dev.write((i % 64) * 65536, pattern(8192, i));
      await dev.applySnapshot(`c${i}`);
      await dev.deleteSnapshot(`c${i}`);
    };
    for (let i = 0; i < 4; i++) await cycle(i);
    const settled = (await file.size()) as number;
    for (let i = 4; i < 40; i++) await cycle(i);
    expect(await file.size()).toBeLessThanOrEqual(settled + 8 * 4096);
    await expectClean(dev);
    const b = new Uint8Array(6 << 20);
    await dev.read(0, b);
    expect(firstDiff(b, pattern(6 << 20, 1))).toBe(-1);
  });

  it('a snapshot operation that fails on an I/O error before its commit leaves the device usable and the image clean', async () => {
    for (const failAt of [1, 2, 3]) {
      const file = new MemoryFile();
      await createQcow2(file, { size: 1 << 20, clusterSize: 4096 });
      let writes = 0;
      let budget = Infinity;
      const flaky: FileHandle = {
        size: () => file.size(),
        read: (o, b) => file.read(o, b),
        write: async (o, d) => {
          if (++writes > budget) throw new Error('EIO');
          await file.write(o, d);
        },
        truncate: (n) => file.truncate(n),
        punchHole: (o, l) => file.punchHole(o, l),
        sync: () => file.sync(),
        close: () => file.close(),
      };
      const dev = await Qcow2Device.open(flaky, { readOnly: false });
      await dev.write(0, pattern(64 * 1024, 1));
      await dev.createSnapshot('keep');
      budget = writes + failAt - 1;
      await expect(dev.deleteSnapshot('keep')).rejects.toThrow('EIO');
      budget = Infinity;
      expect(dev.listSnapshots().map((x) => x.name)).toEqual(['keep']);
      await dev.write(4096, pattern(8192, 2));
      await expectClean(dev);
      const want = pattern(64 * 1024, 1);
      want.set(pattern(8192, 2), 4096);
      const b = new Uint8Array(64 * 1024);
      await dev.read(0, b);
      expect(firstDiff(b, want)).toBe(-1);
      await dev.applySnapshot('keep');
      await dev.read(0, b);
      expect(firstDiff(b, pattern(64 * 1024, 1))).toBe(-1);
      await expectClean(dev);
    }
  });

  it('grows the L1 table on resize and keeps data', async () => {
    const { dev, file } = await fresh(1 << 20, { clusterSize: 512 });
    await dev.write(0, pattern(1 << 20, 3));
    await dev.resize(64 << 20);
    expect(dev.size).toBe(64 << 20);
    await dev.write((64 << 20) - 512, pattern(512, 4));
    await expectClean(dev);
    await dev.close();
    const again = await Qcow2Device.open(file, { readOnly: true });
    const b = new Uint8Array(1 << 20);
    await again.read(0, b);
    expect(firstDiff(b, pattern(1 << 20, 3))).toBe(-1);
    expect(again.size).toBe(64 << 20);
  });

  it('check --repair fixes leaked clusters and wrong COPIED flags', async () => {
    const { dev, file } = await fresh(1 << 20, { clusterSize: 4096 });
    await dev.write(0, pattern(64 * 1024, 1));
    // Leak: raise a refcount nobody references.
    await dev.refs.alloc(1); // refcount 1, referenced by nothing
    const r1 = await checkQcow2(dev, { repair: false });
    expect(r1.leaks + r1.leaksPastEnd).toBe(1);
    const r2 = await checkQcow2(dev, { repair: true });
    expect(r2.repaired.leaks).toBe(1);
    await expectClean(dev);
    await dev.close();
    expect(file.closed).toBe(true);
  });

  it('a dirty image (lazy refcounts crash) gets its refcounts rebuilt when opened read-write', async () => {
    const { dev, file } = await fresh(1 << 20, { clusterSize: 4096 });
    await dev.write(0, pattern(64 * 1024, 1));
    await dev.refs.alloc(1);
    await dev.setIncompatible(1n); // dirty
    await dev.close();
    const again = await Qcow2Device.open(file, { readOnly: false });
    expect(again.header.incompatibleFeatures).toBe(0n);
    await expectClean(again);
  });

  it('backing chain through the memory file system resolves relative names', async () => {
    const fs = new MemoryFileSystem();
    await createDisk(fs, '/a/base.qcow2', fs.create('/a/base.qcow2'), { format: 'qcow2', size: 1 << 20 });
    const base = await openDisk(fs, '/a/base.qcow2', { readOnly: false });
    await base.device.write(0, pattern(1 << 20, 1));
    await base.device.close();
    await createDisk(fs, '/a/b/top.qcow2', fs.create('/a/b/top.qcow2'), { format: 'qcow2', backingFile: '../base.qcow2' });
    const top = await openDisk(fs, '/a/b/top.qcow2', { readOnly: false });
    expect(top.backing?.path).toBe('/a/base.qcow2');
    await top.device.write(4096, pattern(512, 2));
    const b = new Uint8Array(8192);
    await top.device.read(0, b);
    const want = pattern(1 << 20, 1).slice(0, 8192);
    want.set(pattern(512, 2), 4096);
    expect(firstDiff(b, want)).toBe(-1);
  });
});
