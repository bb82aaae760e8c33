import { crc32 as zlibCrc32, deflateSync, inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { isVisorError } from '../../base/errors.js';
import { crc32 } from './crc32.js';
import { decodeSnapshot, encodeSnapshot, HEADER_SIZE, jsonSection, parseJsonSection, SECTION_ENTRY_SIZE } from './format.js';
import { decodeRam, encodeRam, RAM_CHUNK_PAGES, STORED_CODEC, type RamCodec } from './ram.js';

const deflate: RamCodec = {
  id: 1,
  name: 'deflate',
  compress: (raw) => new Uint8Array(deflateSync(raw, { level: 1 })),
  decompress: (d) => new Uint8Array(inflateSync(d)),
};

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isVisorError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

describe('crc32', () => {
  it('matches the check value and zlib on odd lengths and offsets', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const buf = new Uint8Array(10_007);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 2654435761) >>> 24;
    for (const [a, b] of [[0, 10_007], [1, 9_000], [3, 4], [5, 5], [7, 1030]]) {
      const s = buf.subarray(a!, b!);
      expect(crc32(s)).toBe(zlibCrc32(s));
    }
    expect(crc32(buf.subarray(100), crc32(buf.subarray(0, 100)))).toBe(zlibCrc32(buf));
  });
});

describe('snapshot container', () => {
  const sections = [jsonSection('meta', { a: 1, b: 'x' }), { name: 'blob', data: new Uint8Array([1, 2, 3, 4, 5]) }];
  const file = concat(encodeSnapshot(sections));

  it('round-trips named sections', () => {
    const snap = decodeSnapshot(file);
    expect(snap.version).toBe(1);
    expect(parseJsonSection(snap, 'meta')).toEqual({ a: 1, b: 'x' });
    expect([...snap.sections.get('blob')!]).toEqual([1, 2, 3, 4, 5]);
    expect(decodeSnapshot(file, { crc32: zlibCrc32 }).sections.size).toBe(2);
  });

  it('names each kind of damage', () => {
    expect(code(() => decodeSnapshot(new TextEncoder().encode('#!/bin/sh\necho this is not a snapshot\n')))).toBe('BadImage');
    expect(code(() => decodeSnapshot(file.subarray(0, 20)))).toBe('CorruptImage');
    expect(code(() => decodeSnapshot(file.subarray(0, HEADER_SIZE + 10)))).toBe('CorruptImage');
    expect(code(() => decodeSnapshot(file.subarray(0, file.length - 1)))).toBe('CorruptImage');
    const newer = file.slice();
    newer[8] = 2;
    expect(code(() => decodeSnapshot(newer))).toBe('Unsupported');
    // Every single flipped byte is caught, wherever it is.
    for (let i = 8; i < file.length; i++) {
      if (i === 8) continue; // the version field reports Unsupported, checked above
      const bad = file.slice();
      bad[i]! ^= 0x40;
      expect(code(() => decodeSnapshot(bad)), `byte ${i}`).not.toBe('no error');
    }
    const payload = file.slice();
    payload[HEADER_SIZE + 2 * SECTION_ENTRY_SIZE + 3]! ^= 1;
    expect(code(() => decodeSnapshot(payload))).toBe('IntegrityError');
    expect(code(() => parseJsonSection(decodeSnapshot(file), 'missing'))).toBe('CorruptImage');
  });
});

describe('RAM section', () => {
  function guestRam(pages: number): Uint8Array {
    const ram = new Uint8Array(pages * 4096);
    // A few scattered pages, one run longer than a chunk, and a page with one byte at its end.
    for (let p = 3; p < 3 + RAM_CHUNK_PAGES + 10; p++) ram.fill(p & 0xff || 1, p * 4096, p * 4096 + 100);
    ram[600 * 4096 + 4095] = 9;
    ram.set(new TextEncoder().encode('hello'), 1000 * 4096 + 17);
    return ram;
  }

  for (const codec of [STORED_CODEC, deflate]) {
    it(`stores only non-zero pages and restores them exactly (${codec.name})`, () => {
      const ram = guestRam(1024);
      const stats = { pages: 0, presentPages: 0, bytes: 0 };
      const enc = encodeRam(ram, codec, stats);
      expect(stats).toMatchObject({ pages: 1024, presentPages: RAM_CHUNK_PAGES + 10 + 2 });
      const back = new Uint8Array(ram.length);
      decodeRam(enc, back, [deflate]);
      expect(Buffer.compare(back, ram)).toBe(0);
    });
  }

  it('finds a page whose only non-zero byte is at any offset', () => {
    // Page p holds one byte in word p (byte p & 3): every word position of the unrolled test.
    const ram = new Uint8Array(1024 * 4096);
    for (let p = 0; p < 1024; p++) ram[p * 4096 + p * 4 + (p & 3)] = 0x80;
    const stats = { pages: 0, presentPages: 0, bytes: 0 };
    encodeRam(ram, STORED_CODEC, stats);
    expect(stats.presentPages).toBe(1024);
    const injected = { pages: 0, presentPages: 0, bytes: 0 };
    const enc = encodeRam(ram, STORED_CODEC, injected, (r, p) => r.subarray(p * 4096, (p + 1) * 4096).every((b) => b === 0));
    expect(injected.presentPages).toBe(1024);
    const back = new Uint8Array(ram.length);
    decodeRam(enc, back, []);
    expect(Buffer.compare(back, ram)).toBe(0);
  });

  it('rejects a size mismatch, an unknown codec and damaged chunks', () => {
    const ram = guestRam(1024);
    const enc = encodeRam(ram, deflate);
    expect(code(() => decodeRam(enc, new Uint8Array(2048 * 4096), [deflate]))).toBe('InvalidConfig');
    expect(code(() => decodeRam(enc, new Uint8Array(ram.length), []))).toBe('Unsupported');
    expect(code(() => decodeRam(enc.subarray(0, enc.length - 5), new Uint8Array(ram.length), [deflate]))).toBe('CorruptImage');
    const bad = enc.slice();
    bad[bad.length - 30]! ^= 0xff;
    expect(code(() => decodeRam(bad, new Uint8Array(ram.length), [deflate]))).toBe('CorruptImage');
    const bitmap = enc.slice();
    bitmap[24 + 100]! ^= 1;
    expect(code(() => decodeRam(bitmap, new Uint8Array(ram.length), [deflate]))).toBe('CorruptImage');
  });
});

describe('RAM section, asynchronous decoding', () => {
  it('gives the same RAM as the synchronous path, and rejects a damaged chunk', async () => {
    const { decodeRamAsync } = await import('./ram.js');
    const { inflate } = await import('node:zlib');
    const asyncCodec: RamCodec = {
      ...deflate,
      decompressAsync: (d) => new Promise((res, rej) => inflate(d, (err, b) => (err ? rej(err) : res(new Uint8Array(b))))),
    };
    const ram = new Uint8Array(2048 * 4096);
    for (let p = 0; p < 2048; p += 3) ram.fill(p & 0xff, p * 4096 + 7, p * 4096 + 900);
    const enc = encodeRam(ram, asyncCodec);
    const back = new Uint8Array(ram.length);
    await decodeRamAsync(enc, back, [asyncCodec], 3);
    expect(Buffer.compare(back, ram)).toBe(0);
    const bad = enc.slice();
    bad[bad.length - 40]! ^= 0xff;
    await expect(decodeRamAsync(bad, new Uint8Array(ram.length), [asyncCodec])).rejects.toMatchObject({ code: 'CorruptImage' });
  });
});
