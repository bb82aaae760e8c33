/**
 * Snapshot files through the public API: restore in a fresh process, damaged and foreign
 * files, files from another format version, and disks that changed or went missing. Every
 * failure is a VisorError with a clear code; none crashes the process.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVisorError, Machine } from '../../src/sdk/index.js';
import { counterGuest } from './guest.js';
import { collect, settle } from './support.js';

const ROOT = resolve(__dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'visor-snap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kernel = join(dir, 'counter.img');
writeFileSync(kernel, counterGuest({ ticks: 12, work: 2000, sleepTicks: 10_000, printTime: true }));
const disk = join(dir, 'disk.raw');
const snap = join(dir, 'vm.snap');
let want = '';
let before = '';

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    const vm = (await p) as Machine;
    await vm.kill();
  } catch (err) {
    if (isVisorError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'restored';
}

beforeAll(async () => {
  writeFileSync(disk, Buffer.alloc(1 << 20, 0x5a));
  const config = { kernel, memoryMiB: 16, deterministic: true, disks: [{ path: disk }] };
  const ref = await Machine.create(config);
  const refOut = collect(ref);
  await ref.start();
  await ref.whenStopped();
  want = refOut.text();
  const vm = await Machine.create(config);
  const out = collect(vm);
  // Paused where line 3 is printed: the same point on any host and tier.
  await vm.runUntil({ output: '0000000000000003 ' });
  await settle();
  before = out.text();
  expect(before.split('\n').length).toBeGreaterThanOrEqual(5);
  await vm.snapshot(snap);
  await vm.stop();
}, 60_000);

describe('snapshot files', () => {
  it('restore in a fresh process continues exactly', async () => {
    const script = `import('./src/sdk/index.ts').then(async ({ Machine }) => {
      const vm = await Machine.restore(${JSON.stringify(snap)});
      vm.console.pipe(process.stdout);
      await vm.whenStopped();
    })`;
    const r = await new Promise<{ code: number | null; out: string; err: string }>((res, rej) => {
      const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('error', rej);
      p.on('exit', (code) => res({ code, out, err }));
    });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(before + r.out).toBe(want);
  });

  it('rejects foreign, truncated, damaged and newer files with a clear error', async () => {
    const good = readFileSync(snap);
    const variant = (name: string, bytes: Uint8Array) => {
      const p = join(dir, name);
      writeFileSync(p, bytes);
      return p;
    };
    expect(await failure(Machine.restore(join(dir, 'none.snap')))).toMatch(/^NotFound: no such file/);
    expect(await failure(Machine.restore(kernel))).toMatch(/^BadImage: not a visor snapshot/);
    expect(await failure(Machine.restore(variant('empty.snap', new Uint8Array(0))))).toMatch(/^CorruptImage: .*truncated/);
    expect(await failure(Machine.restore(variant('short.snap', good.subarray(0, good.length - 100))))).toMatch(/^CorruptImage: .*truncated/);
    expect(await failure(Machine.restore(variant('half.snap', good.subarray(0, 60))))).toMatch(/^CorruptImage: /);
    const newer = Buffer.from(good);
    newer.writeUInt32LE(2, 8);
    expect(await failure(Machine.restore(variant('newer.snap', newer)))).toMatch(/^Unsupported: snapshot format version 2/);
    // Flipped bytes in the header, the JSON state, and guest RAM: all caught by checksums.
    for (const at of [20, 40, 200, Math.floor(good.length / 2), good.length - 10]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x10;
      expect(await failure(Machine.restore(variant(`flip${at}.snap`, bad))), `byte ${at}`).toMatch(/^(IntegrityError|CorruptImage): /);
    }
    expect(await failure(Machine.restore(snap))).toBe('restored');
  });

  it('refuses a disk that changed or went missing since the snapshot', async () => {
    appendFileSync(disk, Buffer.alloc(512));
    expect(await failure(Machine.restore(snap))).toMatch(/^IntegrityError: the snapshot's disk .*disk\.raw changed since the snapshot was taken \(size/);
    writeFileSync(disk, Buffer.alloc(1 << 20, 0x5a));
    utimesSync(disk, new Date(), new Date(Date.now() + 5000));
    expect(await failure(Machine.restore(snap))).toMatch(/^IntegrityError: .*modification time/);
    rmSync(disk);
    expect(await failure(Machine.restore(snap))).toMatch(/^NotFound: the snapshot's disk .*disk\.raw is missing/);
  });
});
