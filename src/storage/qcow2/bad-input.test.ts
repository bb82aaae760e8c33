import { describe, expect, it } from 'vitest';
import { VisorError, isVisorError, type VisorErrorCode } from '../../base/errors.js';
import { MemoryFile, MemoryFileSystem } from '../memory-file.js';
import { createDisk, openDisk } from '../open.js';
import { pattern, rng } from '../testing.js';
import { checkQcow2 } from './check.js';
import { createQcow2 } from './create.js';
import { Qcow2Device } from './device.js';

async function validImage(): Promise<Uint8Array> {
  const f = new MemoryFile();
  await createQcow2(f, { size: 1 << 20, clusterSize: 4096 });
  const d = await Qcow2Device.open(f, { readOnly: false });
  await d.write(0, pattern(64 * 1024, 1));
  await d.writeCompressed(128 * 1024, new Uint8Array(4096).fill(3));
  await d.createSnapshot('s');
  await d.write(8192, pattern(4096, 2));
  await d.writeZeroes(32 * 1024, 8192, false);
  await d.close();
  return f.bytes();
}

function poke(img: Uint8Array, at: number, bytes: number[] | bigint, width = 8): Uint8Array {
  const out = img.slice();
  if (typeof bytes === 'bigint') {
    const v = new DataView(out.buffer);
    if (width === 8) v.setBigUint64(at, bytes);
    else v.setUint32(at, Number(bytes));
  } else out.set(bytes, at);
  return out;
}

async function openErr(img: Uint8Array, readOnly = true): Promise<unknown> {
  try {
    const d = await Qcow2Device.open(new MemoryFile(img), { readOnly });
    const b = new Uint8Array(d.size);
    await d.read(0, b);
    return undefined;
  } catch (e) {
    return e;
  }
}

async function expectCode(img: Uint8Array, code: VisorErrorCode, msg?: RegExp) {
  const e = await openErr(img);
  expect(isVisorError(e, code), String(e)).toBe(true);
  if (msg) expect((e as Error).message).toMatch(msg);
}

describe('qcow2 bad input: a clear error, never a crash', () => {
  it('truncated or foreign headers', async () => {
    const img = await validImage();
    await expectCode(img.slice(0, 10), 'BadImage', /truncated/);
    await expectCode(img.slice(0, 71), 'BadImage', /truncated/);
    await expectCode(poke(img, 0, [0, 0, 0, 0]), 'BadImage', /magic/);
    await expectCode(poke(img, 4, 4n, 4), 'Unsupported', /version 4/);
    await expectCode(poke(img, 20, 30n, 4), 'BadImage', /cluster_bits/);
    await expectCode(poke(img, 100, 9999n, 4), 'BadImage', /header_length/);
    await expectCode(poke(img, 32, 1n, 4), 'Unsupported', /encrypted/);
  });

  it('tables pointing outside the file and absurd sizes', async () => {
    const img = await validImage();
    await expectCode(poke(img, 40, 1n << 40n), 'CorruptImage', /L1 table lies outside/);
    await expectCode(poke(img, 40, 12345n), 'CorruptImage', /L1 table offset/);
    await expectCode(poke(img, 24, 1n << 62n), 'BadImage', /absurd/);
    await expectCode(poke(img, 24, 1n << 50n), 'CorruptImage', /too small/);
    await expectCode(poke(img, 36, 0xffffffffn, 4), 'BadImage', /too large/);
    await expectCode(poke(img, 48, 1n << 45n), 'CorruptImage', /refcount table/);
    await expectCode(poke(img, 56, 100000n, 4), 'BadImage', /refcount table/);
    await expectCode(poke(img, 60, 0xffffffffn, 4), 'BadImage', /snapshots/);
    await expectCode(poke(img, 64, 1n << 44n), 'CorruptImage', /snapshot table/);
    await expectCode(poke(img, 96, 7n, 4), 'BadImage', /refcount_order/);
  });

  it('an L2 table pointing outside the file is reported on access', async () => {
    const img = await validImage();
    const l1Off = Number(new DataView(img.buffer).getBigUint64(40));
    const bad = poke(img, l1Off, (1n << 63n) | (1n << 40n));
    await expectCode(bad, 'CorruptImage', /outside the file/);
  });

  it('a write through metadata pointing at the header marks the image corrupt', async () => {
    const img = await validImage();
    const v = new DataView(img.buffer);
    const l1Off = Number(v.getBigUint64(40));
    const l2Off = Number(v.getBigUint64(l1Off) & 0x00fffffffffffe00n);
    // L2 entry 20 -> the active L1 table's cluster, COPIED: a write there would destroy it.
    const f = new MemoryFile(poke(img, l2Off + 20 * 8, (1n << 63n) | BigInt(l1Off)));
    const d = await Qcow2Device.open(f, { readOnly: false });
    const e = await d.write(20 * 4096, new Uint8Array(512)).catch((x: unknown) => x);
    expect(isVisorError(e, 'CorruptImage')).toBe(true);
    expect((await Qcow2Device.open(new MemoryFile(f.bytes()), { readOnly: false }).catch((x: unknown) => x)) instanceof VisorError).toBe(true);
    const ro = await Qcow2Device.open(new MemoryFile(f.bytes()), { readOnly: true });
    expect(ro.header.incompatibleFeatures & 2n).toBe(2n);
  });

  it('extended L2 entries and unknown incompatible features are refused by name', async () => {
    const img = await validImage();
    await expectCode(poke(img, 72, 1n << 4n), 'Unsupported', /extended L2/);
    await expectCode(poke(img, 72, 1n << 40n), 'Unsupported', /bit 40/);
  });

  it('backing chain loops end with an error', async () => {
    const fs = new MemoryFileSystem();
    await createDisk(fs, '/a.qcow2', fs.create('/a.qcow2'), { format: 'qcow2', size: 1 << 20 });
    await createDisk(fs, '/b.qcow2', fs.create('/b.qcow2'), { format: 'qcow2', backingFile: 'a.qcow2' });
    // Rewrite a's header to name b as its backing file: a -> b -> a.
    const a = fs.files.get('/a.qcow2')!;
    const name = new TextEncoder().encode('b.qcow2');
    await a.write(4000, name);
    const hv = new Uint8Array(12);
    new DataView(hv.buffer).setBigUint64(0, 4000n);
    new DataView(hv.buffer).setUint32(8, name.length);
    await a.write(8, hv);
    const e = await openDisk(fs, '/b.qcow2', { readOnly: true }).catch((x: unknown) => x);
    expect(isVisorError(e, 'BadImage')).toBe(true);
    expect((e as Error).message).toMatch(/loop/);
  });

  it('fuzz: mutated images open, read and write with VisorErrors only', async () => {
    const seed = Number(process.env.VISOR_SEED ?? 7);
    const r = rng(seed);
    const img = await validImage();
    let errors = 0;
    for (let iter = 0; iter < 250; iter++) {
      const m = img.slice();
      const flips = 1 + Math.floor(r() * 6);
      for (let k = 0; k < flips; k++) {
        // Mostly metadata: header, refcount table/blocks, L1 and L2 tables live in the first clusters.
        const at = r() < 0.7 ? Math.floor(r() * Math.min(m.length, 8 * 4096)) : Math.floor(r() * m.length);
        m[at] = r() < 0.5 ? Math.floor(r() * 256) : m[at]! ^ (1 << Math.floor(r() * 8));
      }
      const img2 = r() < 0.15 ? m.subarray(0, Math.floor(r() * m.length)) : m;
      try {
        const d = await Qcow2Device.open(new MemoryFile(img2), { readOnly: r() < 0.5 });
        const b = new Uint8Array(Math.min(d.size, 1 << 20));
        await d.read(0, b);
        if (!d.readOnly) {
          await d.write(Math.floor(r() * (b.length / 512 - 16)) * 512, pattern(8192, iter));
          await d.discard(0, 8192);
          if (d.listSnapshots().length) await d.applySnapshot(d.listSnapshots()[0]!.id);
        }
        await checkQcow2(d, { repair: !d.readOnly && r() < 0.5 });
        await d.close();
      } catch (e) {
        errors++;
        if (!(e instanceof VisorError)) throw new Error(`seed ${seed} iteration ${iter}: non-VisorError ${(e as Error).stack}`);
      }
    }
    expect(errors).toBeGreaterThan(10);
  });
});
