import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compressionOfBytes, decompressBuffer } from './decompress.js';

const text = Buffer.from('visor '.repeat(5000));

function tool(cmd: string, args: string[], input: Buffer): Buffer | undefined {
  const r = spawnSync(cmd, args, { input });
  if (r.error || r.status !== 0) {
    if (process.env.CI) throw new Error(`${cmd} is required in CI`);
    console.log(`skipping: ${cmd} is not installed`);
    return undefined;
  }
  return r.stdout;
}

describe('decompression', () => {
  it('gzip', async () => {
    expect(await decompressBuffer(gzipSync(text))).toEqual(text);
  });
  it('xz, as dpkg-deb and the kernel (.ko.xz, crc32 check) write it', async () => {
    for (const check of ['crc64', 'crc32']) {
      const xz = tool('xz', ['-z', '-c', `--check=${check}`], text);
      if (!xz) return;
      expect(compressionOfBytes(xz)).toBe('xz');
      expect(await decompressBuffer(xz)).toEqual(text);
    }
  });
  it('zstd', async () => {
    const zst = tool('zstd', ['-c', '-q'], text);
    if (!zst) return;
    expect(compressionOfBytes(zst)).toBe('zstd');
    expect(await decompressBuffer(zst)).toEqual(text);
  });
  it('reports corrupt input as CorruptImage', async () => {
    const bad = gzipSync(text);
    bad.fill(0x55, 20, 60);
    await expect(decompressBuffer(bad, 'x.gz')).rejects.toMatchObject({ code: 'CorruptImage' });
  });
});
