import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { inflateInitrd } from './initrd.js';

describe('inflateInitrd', () => {
  const archive = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);

  it('inflates a gzip\'d initramfs (several members too) and passes anything else through unchanged', () => {
    expect(inflateInitrd(gzipSync(archive))).toEqual(archive);
    const two = Buffer.concat([gzipSync(archive.subarray(0, 5000)), gzipSync(archive.subarray(5000))]);
    expect(inflateInitrd(two)).toEqual(archive);
    expect(inflateInitrd(archive)).toBe(archive); // an uncompressed cpio (or zstd, xz...)
  });

  it('leaves a damaged gzip stream for the kernel to judge rather than failing the boot', () => {
    const bad = gzipSync(archive);
    bad.fill(0, 20, 40);
    expect(inflateInitrd(bad)).toBe(bad);
  });
});
