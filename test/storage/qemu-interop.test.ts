import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeFileHandle, NodeFileOpener } from '../../src/host/file-handle.js';
import { createDisk, openDisk, type DiskFormat } from '../../src/storage/open.js';
import { Qcow2Device } from '../../src/storage/qcow2/device.js';
import { checkQcow2 } from '../../src/storage/qcow2/check.js';
import { firstDiff, pattern, rng } from '../../src/storage/testing.js';
import { HAVE_QEMU_IMG, qemuCheck, qemuImg, qemuIo } from './qemu-img.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-interop-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const opener = new NodeFileOpener();
const MiB = 1 << 20;

async function create(name: string, format: DiskFormat, size: number | undefined, extra: { backing?: string; version?: 2 | 3; clusterSize?: number } = {}) {
  const path = join(dir, name);
  const f = await NodeFileHandle.open(path, { readOnly: false, create: 'truncate' });
  await createDisk(opener, path, f, { format, size, backingFile: extra.backing, version: extra.version, clusterSize: extra.clusterSize });
  await f.close();
  return path;
}

async function readAll(path: string): Promise<Uint8Array> {
  const d = await openDisk(opener, path, { readOnly: true });
  const b = new Uint8Array(d.device.size);
  await d.device.read(0, b);
  await d.device.close();
  return b;
}

function qemuRaw(path: string): Uint8Array {
  const out = `${path}.out.raw`;
  qemuImg('convert', '-O', 'raw', path, out);
  const b = new Uint8Array(readFileSync(out));
  rmSync(out);
  return b;
}

function expectClean(path: string) {
  const c = qemuCheck(path);
  expect(c.corruptions, c.raw).toBe(0);
  expect(c.checkErrors, c.raw).toBe(0);
  expect(c.leaks, c.raw).toBe(0);
}

/** Random writes, zeroes and discards, mirrored in a plain array. */
async function scribble(path: string, ref: Uint8Array, seed: number, ops: number) {
  const d = await openDisk(opener, path, { readOnly: false });
  const r = rng(seed);
  const sectors = ref.length / 512;
  for (let i = 0; i < ops; i++) {
    const len = (1 + Math.floor(r() * 300)) * 512;
    const off = Math.floor(r() * (sectors - len / 512)) * 512;
    const k = r();
    if (k < 0.7) {
      const b = pattern(len, seed + i);
      await d.device.write(off, b);
      ref.set(b, off);
    } else if (k < 0.85) {
      await d.device.discard(off, len);
      ref.fill(0, off, off + len);
    } else {
      await d.device.writeZeroes(off, len, r() < 0.5);
      ref.fill(0, off, off + len);
    }
  }
  await d.device.close();
}

describe.skipIf(!HAVE_QEMU_IMG)('qemu-img interop', () => {
  for (const [label, extra] of [
    ['v3, 64 KiB clusters', {}],
    ['v2 (compat 0.10)', { version: 2 as const }],
    ['v3, 4 KiB clusters', { clusterSize: 4096 }],
  ] as const) {
    it(`images visor writes (${label}) pass qemu-img check and convert identically`, async () => {
      const path = await create(`w-${label.replace(/\W+/g, '_')}.qcow2`, 'qcow2', 24 * MiB, extra);
      expectClean(path);
      const ref = new Uint8Array(24 * MiB);
      const seed = 1000 + label.length;
      await scribble(path, ref, seed, 200);
      expectClean(path);
      expect(firstDiff(qemuRaw(path), ref), `seed ${seed}`).toBe(-1);
      expect(qemuImg('info', '--output=json', path)).toContain(extra.version === 2 ? '"compat": "0.10"' : '"compat": "1.1"');
    });
  }

  it('grows the refcount table past its first cluster and stays clean', async () => {
    // 512-byte clusters: one refcount block covers 256 clusters, the table 64 blocks.
    const path = await create('grow.qcow2', 'qcow2', 16 * MiB, { clusterSize: 512 });
    const ref = new Uint8Array(16 * MiB);
    const d = await openDisk(opener, path, { readOnly: false });
    for (let off = 0; off < 16 * MiB; off += 64 * 1024) {
      const b = pattern(64 * 1024, off);
      await d.device.write(off, b);
      ref.set(b, off);
    }
    await d.device.close();
    expectClean(path);
    expect(firstDiff(qemuRaw(path), ref)).toBe(-1);
    expect(firstDiff(await readAll(path), ref)).toBe(-1);
  });

  it('a visor backing chain (qcow2 on qcow2 on raw, relative names) reads like qemu-img', async () => {
    const base = await create('chain-base.raw', 'raw', 8 * MiB);
    writeFileSync(base, pattern(8 * MiB, 5));
    const mid = await create('chain-mid.qcow2', 'qcow2', undefined, { backing: 'chain-base.raw' });
    const top = await create('chain-top.qcow2', 'qcow2', undefined, { backing: 'chain-mid.qcow2' });
    const ref = pattern(8 * MiB, 5);
    await scribble(mid, ref, 7, 40);
    await scribble(top, ref, 8, 40);
    expectClean(mid);
    expectClean(top);
    expect(firstDiff(qemuRaw(top), ref)).toBe(-1);
    expect(firstDiff(await readAll(top), ref)).toBe(-1);
    const info = JSON.parse(qemuImg('info', '--backing-chain', '--output=json', top)) as { filename: string; format: string }[];
    expect(info.map((i) => i.format)).toEqual(['qcow2', 'qcow2', 'raw']);
  });

  it('reads images qemu-img and qemu-io wrote: backing chain, zero clusters, compressed (zlib and zstd), snapshots', async () => {
    const base = join(dir, 'q-base.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '8M');
    qemuIo(base, 'write -P 0x11 0 3M', 'write -P 0x22 5M 1M');
    const top = join(dir, 'q-top.qcow2');
    qemuImg('create', '-f', 'qcow2', '-b', 'q-base.qcow2', '-F', 'qcow2', top);
    qemuIo(top, 'write -P 0x33 1M 64k', 'write -z 2M 128k', 'discard 5M 64k', 'write -P 0x44 7M 4k');
    expect(firstDiff(await readAll(top), qemuRaw(top))).toBe(-1);

    for (const ctype of ['zlib', 'zstd']) {
      const src = join(dir, `q-src-${ctype}.raw`);
      const data = new Uint8Array(6 * MiB);
      // Compressible but not trivial: text-like runs plus some random clusters.
      const r = rng(42);
      for (let i = 0; i < data.length; i++) data[i] = i % 4096 < 3000 ? 97 + ((i >> 7) % 26) : Math.floor(r() * 256);
      writeFileSync(src, data);
      const c = join(dir, `q-comp-${ctype}.qcow2`);
      qemuImg('convert', '-c', '-O', 'qcow2', '-o', `compression_type=${ctype}`, src, c);
      expect(qemuImg('info', c)).toContain(`compression type: ${ctype}`);
      expect(firstDiff(await readAll(c), data), ctype).toBe(-1);
    }

    const s = join(dir, 'q-snap.qcow2');
    qemuImg('create', '-f', 'qcow2', s, '4M');
    qemuIo(s, 'write -P 0x01 0 1M');
    qemuImg('snapshot', '-c', 'one', s);
    qemuIo(s, 'write -P 0x02 512k 1M');
    qemuImg('snapshot', '-c', 'two', s);
    qemuIo(s, 'write -P 0x03 3M 512k');
    const current = qemuRaw(s);
    expect(firstDiff(await readAll(s), current)).toBe(-1);
    const dev = await Qcow2Device.open(await NodeFileHandle.open(s, { readOnly: false }), { readOnly: false });
    expect(dev.listSnapshots().map((x) => x.name)).toEqual(['one', 'two']);
    await dev.applySnapshot('one');
    await dev.deleteSnapshot('two');
    expect(dev.listSnapshots().map((x) => x.name)).toEqual(['one']);
    const one = new Uint8Array(4 * MiB);
    await dev.read(0, one);
    const want = new Uint8Array(4 * MiB).fill(1, 0, MiB);
    expect(firstDiff(one, want)).toBe(-1);
    const ours = await checkQcow2(dev, { repair: false });
    expect(ours.corruptions + ours.leaks, ours.messages.join('\n')).toBe(0);
    await dev.close();
    expectClean(s);
    expect(firstDiff(qemuRaw(s), want)).toBe(-1);
  });

  for (const opts of ['compat=0.10', 'cluster_size=512', 'cluster_size=2M', 'refcount_bits=1', 'refcount_bits=64', 'compat=1.1,lazy_refcounts=on', 'preallocation=metadata']) {
    it(`reads and writes a qemu-img image created with -o ${opts}`, async () => {
      const path = join(dir, `q-opt-${opts.replace(/\W+/g, '_')}.qcow2`);
      qemuImg('create', '-f', 'qcow2', '-o', opts, path, '6M');
      qemuIo(path, 'write -P 0x21 0 1M', 'write -P 0x22 3M 700k', 'write -z 256k 128k');
      const ref = qemuRaw(path);
      expect(firstDiff(await readAll(path), ref)).toBe(-1);
      await scribble(path, ref, opts.length, 60);
      expectClean(path);
      expect(firstDiff(qemuRaw(path), ref), opts).toBe(-1);
    });
  }

  it('opens an image right after qemu-img snapshot -c (the last table entry is unpadded, issue 20)', async () => {
    const path = join(dir, 'q-fresh-snap.qcow2');
    qemuImg('create', '-f', 'qcow2', path, '64M');
    qemuImg('snapshot', '-c', 's', path);
    // The table is the last thing in the file and its single entry is not a multiple of 8 long.
    expect(statSync(path).size % 8).not.toBe(0);
    const dev = await Qcow2Device.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
    expect(dev.listSnapshots().map((x) => x.name)).toEqual(['s']);
    await dev.write(0, new Uint8Array(65536).fill(7));
    await dev.createSnapshot('t');
    await dev.deleteSnapshot('s');
    await dev.close();
    const check = qemuCheck(path);
    expect(check.corruptions + check.leaks + check.checkErrors, check.raw).toBe(0);
    expect(qemuImg('snapshot', '-l', path)).toContain(' t ');
  });

  it('repairs a dirty lazy-refcounts image that QEMU abandoned (qemu-io abort)', async () => {
    const path = join(dir, 'q-dirty.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'lazy_refcounts=on', path, '4M');
    try {
      qemuIo(path, 'write -P 0x55 0 1M', 'abort');
    } catch {
      // abort kills qemu-io: expected
    }
    expect(JSON.parse(qemuImg('info', '--output=json', '-U', path))['dirty-flag']).toBe(true);
    const d = await openDisk(opener, path, { readOnly: false });
    const b = new Uint8Array(MiB);
    await d.device.read(0, b);
    expect(firstDiff(b, new Uint8Array(MiB).fill(0x55))).toBe(-1);
    await d.device.close();
    expectClean(path);
    expect(JSON.parse(qemuImg('info', '--output=json', path))['dirty-flag']).toBe(false);
  });

  it('visor check finds the corruption qemu-img finds, and its repair satisfies qemu-img', async () => {
    const path = await create('v-corrupt.qcow2', 'qcow2', 4 * MiB);
    const dev = await Qcow2Device.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
    await dev.write(0, pattern(256 * 1024, 3));
    const m = await dev.lookup(1);
    await dev.refs.update(m.host, 65536, -1); // referenced, refcount 0: corruption
    const ours = await checkQcow2(dev, { repair: false });
    await dev.close();
    const theirs = qemuCheck(path);
    expect(theirs.corruptions).toBeGreaterThan(0);
    expect(ours.corruptions).toBe(theirs.corruptions);
    const fix = await Qcow2Device.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
    await checkQcow2(fix, { repair: true });
    await fix.close();
    expectClean(path);
    const want = new Uint8Array(4 * MiB);
    want.set(pattern(256 * 1024, 3));
    expect(firstDiff(qemuRaw(path), want)).toBe(-1);
  });

  it('refuses extended L2 images by name', async () => {
    const path = join(dir, 'q-extl2.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'extended_l2=on', path, '1M');
    const e = await openDisk(opener, path, { readOnly: true }).catch((x: unknown) => x);
    expect(String(e)).toMatch(/extended L2/);
  });

  it('snapshots visor creates are listed and applied by qemu-img', async () => {
    const path = await create('v-snap.qcow2', 'qcow2', 4 * MiB);
    const dev = await Qcow2Device.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
    await dev.write(0, new Uint8Array(MiB).fill(0xaa));
    await dev.createSnapshot('first');
    await dev.write(512 * 1024, new Uint8Array(MiB).fill(0xbb));
    await dev.createSnapshot('second');
    await dev.write(0, new Uint8Array(4096).fill(0xcc));
    await dev.createSnapshot('third');
    await dev.deleteSnapshot('second');
    await dev.close();
    expectClean(path);
    const list = qemuImg('snapshot', '-l', path);
    expect(list).toContain('first');
    expect(list).toContain('third');
    expect(list).not.toContain('second');
    qemuImg('snapshot', '-a', 'first', path);
    expectClean(path);
    const want = new Uint8Array(4 * MiB).fill(0xaa, 0, MiB);
    expect(firstDiff(qemuRaw(path), want)).toBe(-1);
    expect(firstDiff(await readAll(path), want)).toBe(-1);
  });

  it('many snapshot operations leave no leaks, and qemu-img reads every snapshot as visor wrote it', async () => {
    const size = 4 * MiB;
    const path = await create('v-many-snap.qcow2', 'qcow2', size, { clusterSize: 4096 });
    const dev = await Qcow2Device.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
    const r = rng(61);
    let ref = new Uint8Array(size);
    const snaps = new Map<string, Uint8Array>();
    const names = () => [...snaps.keys()];
    for (let i = 0; i < 120; i++) {
      const k = r();
      if (k < 0.55 || snaps.size === 0) {
        const len = (1 + Math.floor(r() * 64)) * 512;
        const off = Math.floor(r() * ((size - len) / 512)) * 512;
        const b = pattern(len, i);
        if (r() < 0.8) {
          await dev.write(off, b);
          ref.set(b, off);
        } else {
          await dev.discard(off, len);
          ref.fill(0, off, off + len);
        }
      }
      if (k >= 0.55 && k < 0.75 && snaps.size < 5) {
        await dev.createSnapshot(`n${i}`);
        snaps.set(`n${i}`, ref.slice());
      } else if (k >= 0.75 && k < 0.88 && snaps.size > 0) {
        const n = names()[Math.floor(r() * snaps.size)]!;
        await dev.applySnapshot(n);
        ref = snaps.get(n)!.slice();
      } else if (k >= 0.88 && snaps.size > 0) {
        const n = names()[Math.floor(r() * snaps.size)]!;
        await dev.deleteSnapshot(n);
        snaps.delete(n);
      }
    }
    await dev.close();
    expectClean(path);
    expect(firstDiff(qemuRaw(path), ref)).toBe(-1);
    for (const [n, want] of snaps) {
      const out = `${path}.${n}.raw`;
      qemuImg('convert', '-O', 'raw', '-l', `snapshot.name=${n}`, path, out);
      expect(firstDiff(new Uint8Array(readFileSync(out)), want), `snapshot ${n}`).toBe(-1);
      rmSync(out);
    }
  });

  it('compressed clusters visor writes read back through qemu-img', async () => {
    const path = await create('v-comp.qcow2', 'qcow2', 2 * MiB);
    const dev = await Qcow2Device.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
    const want = new Uint8Array(2 * MiB);
    for (let c = 0; c < 32; c++) {
      const b = new Uint8Array(65536);
      for (let i = 0; i < b.length; i++) b[i] = (i % 97) ^ c;
      await dev.writeCompressed(c * 65536, b);
      want.set(b, c * 65536);
    }
    // Overwrite part of one compressed cluster: copy-on-write into a normal cluster.
    await dev.write(65536 * 3 + 4096, new Uint8Array(512).fill(7));
    want.fill(7, 65536 * 3 + 4096, 65536 * 3 + 4608);
    await dev.close();
    expectClean(path);
    expect(qemuImg('check', path)).toMatch(/compressed clusters/);
    expect(firstDiff(qemuRaw(path), want)).toBe(-1);
    expect(firstDiff(await readAll(path), want)).toBe(-1);
  });
});
