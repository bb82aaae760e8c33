import { describe, expect, it } from 'vitest';
import { isVisorError } from '../base/errors.js';
import { MemoryFile } from './memory-file.js';
import { convertDisk } from './convert.js';
import { RawDevice } from './raw.js';
import { Qcow2Device } from './qcow2/device.js';
import { createQcow2 } from './qcow2/create.js';
import { formatSize, parseSize } from './size.js';
import { firstDiff, pattern } from './testing.js';

describe('sizes', () => {
  it('parses qemu-img style sizes', () => {
    expect(parseSize('512')).toBe(512);
    expect(parseSize('64K')).toBe(65536);
    expect(parseSize('10G')).toBe(10 * 2 ** 30);
    expect(parseSize('1.5M')).toBe(1.5 * 2 ** 20);
    expect(parseSize('2GiB')).toBe(2 * 2 ** 30);
    for (const bad of ['', 'x', '-1', '1X', '0.3']) expect(isVisorError((() => { try { parseSize(bad); } catch (e) { return e; } })(), 'InvalidArgument')).toBe(true);
    expect(formatSize(10 * 2 ** 30)).toBe('10 GiB');
    expect(formatSize(1536)).toBe('1.5 KiB');
  });
});

describe('convert', () => {
  it('raw → compressed qcow2 → raw keeps every byte and skips zeros', async () => {
    const src = await RawDevice.create(new MemoryFile(), 4 << 20);
    await src.write(0, pattern(1 << 20, 1));
    await src.write(3 << 20, new Uint8Array(65536).fill(9));
    const qf = new MemoryFile();
    await createQcow2(qf, { size: 4 << 20 });
    const q = await Qcow2Device.open(qf, { readOnly: false });
    const r = await convertDisk(src, q, { compress: true });
    expect(r.bytesWritten).toBe((1 << 20) + 65536);
    expect(await qf.size()).toBeLessThan(1 << 20); // compressed and sparse
    const out = await RawDevice.create(new MemoryFile(), 4 << 20);
    await convertDisk(q, out);
    const a = new Uint8Array(4 << 20);
    const b = new Uint8Array(4 << 20);
    await src.read(0, a);
    await out.read(0, b);
    expect(firstDiff(a, b)).toBe(-1);
  });
});
