import { describe, expect, it } from 'vitest';
import { isVisorError } from '../base/errors.js';
import type { FileHandle } from './block-device.js';
import { MemoryFileSystem } from './memory-file.js';
import { openDisk } from './open.js';
import { DirectoryPool, type PoolStore } from './pool.js';
import { firstDiff, pattern } from './testing.js';

/** The pool over memory files; allocation is the file length (memory files are not sparse). */
function memoryStore(): PoolStore {
  const fs = new MemoryFileSystem();
  return {
    opener: fs,
    path: (n) => `/pool/${n}`,
    list: async () => [...fs.files.keys()].map((p) => p.slice('/pool/'.length)),
    createFile: async (n): Promise<FileHandle> => {
      if (fs.files.has(`/pool/${n}`)) throw new Error('exists');
      return fs.create(`/pool/${n}`);
    },
    remove: async (n) => void fs.files.delete(`/pool/${n}`),
    allocated: async (n) => fs.files.get(`/pool/${n}`)!.size(),
    space: async () => ({ capacity: 1 << 30, available: 1 << 29 }),
  };
}

describe('directory pool', () => {
  it('creates, lists, clones, resizes and deletes volumes', async () => {
    const store = memoryStore();
    const pool = new DirectoryPool(store);
    const a = await pool.create('base.qcow2', 8 << 20);
    expect(a).toMatchObject({ name: 'base.qcow2', format: 'qcow2', capacity: 8 << 20, backing: undefined });
    await pool.create('scratch.img', 1 << 20, 'raw');
    const d = await openDisk(store.opener, store.path('base.qcow2'), { readOnly: false });
    await d.device.write(0, pattern(1 << 20, 1));
    await d.device.close();

    const c = await pool.clone('base.qcow2', 'vm1.qcow2');
    expect(c.backing).toBe('base.qcow2');
    expect(c.capacity).toBe(8 << 20);
    const vm = await openDisk(store.opener, store.path('vm1.qcow2'), { readOnly: true });
    const b = new Uint8Array(1 << 20);
    await vm.device.read(0, b);
    expect(firstDiff(b, pattern(1 << 20, 1))).toBe(-1);
    await vm.device.close();

    expect((await pool.list()).map((v) => v.name)).toEqual(['base.qcow2', 'scratch.img', 'vm1.qcow2']);
    const info = await pool.info();
    expect(info.volumes).toBe(3);
    expect(info.capacity).toBe(1 << 30);
    expect(info.allocation).toBeGreaterThan(1 << 20);

    expect((await pool.resize('vm1.qcow2', 16 << 20)).capacity).toBe(16 << 20);
    expect((await pool.resize('scratch.img', 2 << 20)).capacity).toBe(2 << 20);

    const e = await pool.delete('base.qcow2').catch((x: unknown) => x);
    expect(isVisorError(e, 'NotAllowed')).toBe(true);
    await pool.delete('vm1.qcow2');
    await pool.delete('base.qcow2');
    expect((await pool.list()).map((v) => v.name)).toEqual(['scratch.img']);
  });

  it('rejects names that would escape the directory', async () => {
    const pool = new DirectoryPool(memoryStore());
    for (const n of ['../x', 'a/b', '.hidden', '']) {
      const e = await pool.create(n, 1 << 20).catch((x: unknown) => x);
      expect(isVisorError(e, 'InvalidArgument')).toBe(true);
    }
  });
});
