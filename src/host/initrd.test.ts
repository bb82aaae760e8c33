import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { inflateInitrd } from './initrd.js';

describe('inflateInitrd', () => {
  const archive = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);

  it('inflates a gzip\'d initramfs (several members too) and passes anything else through unchanged', () => {
    expect(inflateInitrd(gzipSync(archive), 512 * 2 ** 20)).toEqual(archive);
    const two = Buffer.concat([gzipSync(archive.subarray(0, 5000)), gzipSync(archive.subarray(5000))]);
    expect(inflateInitrd(two, 512 * 2 ** 20)).toEqual(archive);
    expect(inflateInitrd(archive, 512 * 2 ** 20)).toBe(archive); // an uncompressed cpio (or zstd, xz...)
  });

  it('leaves it gzip\'d for a guest so small that the inflated archive would crowd its RAM', () => {
    const gz = gzipSync(archive);
    expect(inflateInitrd(gz, 16 * archive.length)).toEqual(archive);
    expect(inflateInitrd(gz, 16 * archive.length - 1)).toBe(gz);
  });

  it('leaves a damaged gzip stream for the kernel to judge rather than failing the boot', () => {
    const bad = gzipSync(archive);
    bad.fill(0, 20, 40);
    expect(inflateInitrd(bad, 512 * 2 ** 20)).toBe(bad);
  });
});
