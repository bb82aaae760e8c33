import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VisorError } from '../../base/errors.js';
import { STORED_CODEC } from './ram.js';
import { allocateGuestRam, guestMemoryOf } from '../../cpu/guest-ram.js';
import { MAX_MEMORY_MIB } from '../../machine/ram-size.js';
import { DEFLATE_CODEC, parseSnapshot, readSnapshotFile, startRamLoad, writeSnapshotFile } from './file.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-snapfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** 3 MiB of RAM: runs of present pages, lone pages, a page with one non-zero byte, zero gaps. */
function sampleRam(): Uint8Array {
  const ram = new Uint8Array(3 << 20);
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0);
  for (let p = 0; p < ram.length / 4096; p++) {
    if (p % 7 === 3 || (p > 300 && p < 600)) for (let i = 0; i < 4096; i += 3) ram[p * 4096 + i] = rnd() & 0xff;
  }
  ram[700 * 4096 + 4095] = 1;
  return ram;
}

async function outcome(path: string, size: number): Promise<string> {
  try {
    const snap = await readSnapshotFile(path);
    const ram = new Uint8Array(size);
    await snap.loadRam(ram);
    return 'ok';
  } catch (err) {
    if (err instanceof VisorError) return err.code;
    throw err; // anything else is a bug: damaged files must give a typed error
  }
}

describe('snapshot files: RAM read from the file', () => {
  for (const codec of [STORED_CODEC, DEFLATE_CODEC]) {
    it(`round-trips sparse RAM (${codec.name}), read in place as the whole-file path reads it`, async () => {
      const ram = sampleRam();
      const path = join(dir, `rt-${codec.name}.snap`);
      await writeSnapshotFile(path, { meta: { m: 1 }, machine: { s: [1, 2] }, ram }, codec);
      const snap = await readSnapshotFile(path);
      expect(snap.meta).toEqual({ m: 1 });
      expect(snap.machine).toEqual({ s: [1, 2] });
      const back = new Uint8Array(ram.length);
      await snap.loadRam(back);
      expect(Buffer.compare(back, ram)).toBe(0);
      const whole = new Uint8Array(ram.length);
      await parseSnapshot(new Uint8Array(readFileSync(path))).loadRam(whole);
      expect(Buffer.compare(whole, ram)).toBe(0);
      // The wrong RAM size is a config error, not a damaged file.
      await expect((await readSnapshotFile(path)).loadRam(new Uint8Array(4 << 20))).rejects.toMatchObject({ code: 'InvalidConfig' });
    });
  }

  it('writes stored RAM of more page runs than one writev takes (IOV_MAX), and the file is what it says', async () => {
    // Every other page present: 2048 runs of one page, so the write goes in several batches.
    const ram = new Uint8Array(4096 * 4096);
    for (let p = 0; p < 4096; p += 2) ram.fill((p >> 1) % 255 + 1, p * 4096, p * 4096 + 4096);
    const path = join(dir, 'runs.snap');
    const w = await writeSnapshotFile(path, { meta: {}, machine: {}, ram }, STORED_CODEC);
    expect(w.ram.presentPages).toBe(2048);
    expect(readFileSync(path).length).toBe(w.bytes);
    const back = new Uint8Array(ram.length);
    await (await readSnapshotFile(path)).loadRam(back);
    expect(Buffer.compare(back, ram)).toBe(0);
    // The whole-file decoder checks every section's checksum: the pieces' checksum is the file's.
    const whole = new Uint8Array(ram.length);
    await parseSnapshot(new Uint8Array(readFileSync(path))).loadRam(whole);
    expect(Buffer.compare(whole, ram)).toBe(0);
  });

  it('rejects every damaged or truncated uncompressed file with a typed error', async () => {
    const ram = sampleRam();
    const path = join(dir, 'good.snap');
    await writeSnapshotFile(path, { meta: { m: 1 }, machine: { s: 1 }, ram }, STORED_CODEC);
    const good = readFileSync(path);
    const bad = join(dir, 'bad.snap');
    // Every header and table byte, and bytes all through the RAM section (prefix and pages).
    const positions = [...Array.from({ length: 200 }, (_, i) => i), ...Array.from({ length: 300 }, (_, i) => Math.floor((good.length * (i + 0.5)) / 300))];
    for (const at of positions) {
      const b = Buffer.from(good);
      b[at]! ^= 0x10;
      writeFileSync(bad, b);
      expect(await outcome(bad, ram.length), `byte ${at}`).toMatch(/^(IntegrityError|CorruptImage|BadImage|Unsupported)$/);
    }
    for (const len of [0, 10, 40, good.length - 4096, good.length - 1]) {
      writeFileSync(bad, good.subarray(0, len));
      expect(await outcome(bad, ram.length), `length ${len}`).toMatch(/^(CorruptImage|BadImage)$/);
    }
    // Garbage appended (issue 20): refused, by both readers.
    for (const codec of [STORED_CODEC, DEFLATE_CODEC]) {
      const g = join(dir, `appended-${codec.name}.snap`);
      await writeSnapshotFile(g, { meta: { m: 1 }, machine: { s: 1 }, ram }, codec);
      writeFileSync(g, Buffer.concat([readFileSync(g), Buffer.from('garbage')]));
      expect(await outcome(g, ram.length), codec.name).toBe('CorruptImage');
      expect(() => parseSnapshot(new Uint8Array(readFileSync(g)))).toThrow(/follow the last section/);
    }
    writeFileSync(bad, good);
    expect(await outcome(bad, ram.length)).toBe('ok');
  });

  it('notices a file that changed between reading the table and loading RAM', async () => {
    const ram = sampleRam();
    const path = join(dir, 'changing.snap');
    await writeSnapshotFile(path, { meta: {}, machine: {}, ram }, STORED_CODEC);
    const snap = await readSnapshotFile(path);
    const b = readFileSync(path);
    b[b.length - 100]! ^= 1;
    writeFileSync(path, b);
    await expect(snap.loadRam(new Uint8Array(ram.length))).rejects.toMatchObject({ code: 'IntegrityError' });
  });
});

describe('startRamLoad (a restoring worker fills RAM while it loads the runner)', () => {
  it('fills guest RAM of the size the metadata names, and declines an implausible size', async () => {
    const ram = new Uint8Array(16 << 20);
    ram.set(sampleRam(), 5 << 20);
    const path = join(dir, 'preload.snap');
    for (const codec of [STORED_CODEC, DEFLATE_CODEC]) {
      await writeSnapshotFile(path, { meta: { config: { memoryMiB: 16 } }, machine: {}, ram }, codec);
      const loaded = await startRamLoad(await readSnapshotFile(path));
      expect(loaded).toBeDefined();
      expect(guestMemoryOf(loaded!)).toBeDefined(); // in a WebAssembly.Memory: the JIT can run on it
      expect(Buffer.compare(loaded!, ram), codec.name).toBe(0);
    }
    for (const memoryMiB of [undefined, '16', 1.5, 0, 4096]) {
      await writeSnapshotFile(path, { meta: { config: { memoryMiB } }, machine: {}, ram }, STORED_CODEC);
      expect(startRamLoad(await readSnapshotFile(path)), String(memoryMiB)).toBeUndefined();
    }
    // A size that disagrees with the RAM section: the load fails (the runner reports it).
    await writeSnapshotFile(path, { meta: { config: { memoryMiB: 32 } }, machine: {}, ram }, STORED_CODEC);
    await expect(startRamLoad(await readSnapshotFile(path))).rejects.toMatchObject({ code: 'InvalidConfig' });
  });

  it(`round-trips the largest RAM (${MAX_MEMORY_MIB} MiB), pages past 2 GiB and 3 GiB included`, async () => {
    const bytes = MAX_MEMORY_MIB * 2 ** 20;
    const ram = allocateGuestRam(bytes);
    const spots = [0, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 4095, 3 * 2 ** 30 + 12345, bytes - 4096, bytes - 1];
    spots.forEach((off, i) => { ram[off] = 0x5a ^ i; });
    const path = join(dir, 'max.snap');
    const written = await writeSnapshotFile(path, { meta: { config: { memoryMiB: MAX_MEMORY_MIB } }, machine: {}, ram }, DEFLATE_CODEC);
    // The pages holding the spots, and no other: 2^31 and 2^31 + 4095 share one, so do the last two.
    expect(written.ram).toMatchObject({ pages: bytes / 4096, presentPages: 5 });
    const loaded = await startRamLoad(await readSnapshotFile(path));
    expect(loaded).toBeDefined();
    expect(guestMemoryOf(loaded!)).toBeDefined();
    expect(loaded!.length).toBe(bytes);
    expect(spots.map((off) => loaded![off])).toEqual(spots.map((_, i) => 0x5a ^ i));
  }, 300_000); // a few CPU-s: the encoder scans 3.9 GB of (mostly untouched) RAM for zero pages
});
