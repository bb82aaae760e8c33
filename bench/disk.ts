/**
 * Disk benchmark: sequential MB/s and random 4 KiB IOPS through visor's raw and qcow2
 * devices on host files (queue depth 1, page cache warm, like a guest with cache=writeback).
 * Where qemu-img is installed, `qemu-img bench` runs the same sequential patterns for a ratio.
 * Usage: npx tsx bench/disk.ts [--size MiB] [--ops N] [--dir DIR]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileHandle, NodeFileOpener } from '../src/host/file-handle.js';
import type { BlockDevice } from '../src/storage/block-device.js';
import { createDisk, openDisk, type DiskFormat } from '../src/storage/open.js';
import { rng } from '../src/storage/testing.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
};
const SIZE = Number(arg('size', '256')) << 20;
const OPS = Number(arg('ops', '20000'));
const dir = mkdtempSync(join(arg('dir', tmpdir()), 'visor-bench-'));
const opener = new NodeFileOpener();

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

async function bench(format: DiskFormat) {
  const path = join(dir, `bench.${format}`);
  const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'truncate' });
  await createDisk(opener, path, fh, { format, size: SIZE });
  await fh.close();
  const d = await openDisk(opener, path, { readOnly: false });
  const dev: BlockDevice = d.device;
  const big = new Uint8Array(1 << 20).fill(0x5a);
  const small = new Uint8Array(4096).fill(0xa5);
  const r = rng(1);
  const randOff = () => Math.floor(r() * (SIZE / 4096)) * 4096;

  const seqW = await timed(async () => {
    for (let off = 0; off < SIZE; off += big.length) await dev.write(off, big);
    await dev.flush(); // durable, as qemu-img bench's final flush
  });
  const seqR = await timed(async () => {
    for (let off = 0; off < SIZE; off += big.length) await dev.read(off, big);
  });
  const randR = await timed(async () => {
    for (let i = 0; i < OPS; i++) await dev.read(randOff(), small);
  });
  const randW = await timed(async () => {
    for (let i = 0; i < OPS; i++) await dev.write(randOff(), small);
  });
  await dev.close();
  // Random writes into a fresh image: every write allocates a cluster in qcow2.
  const fh2 = await NodeFileHandle.open(path, { readOnly: false, create: 'truncate' });
  await createDisk(opener, path, fh2, { format, size: SIZE });
  await fh2.close();
  const d2 = await openDisk(opener, path, { readOnly: false });
  const wAlloc = await timed(async () => {
    for (let i = 0; i < OPS / 4; i++) await d2.device.write(randOff(), small);
  });
  await d2.device.close();
  const mb = SIZE / 1e6;
  return {
    format,
    seqWriteMBs: mb / seqW,
    seqReadMBs: mb / seqR,
    randRead4kIops: OPS / randR,
    randWrite4kIops: OPS / randW,
    randWriteAlloc4kIops: OPS / 4 / wAlloc,
  };
}

/** qemu-img bench: sequential, queue depth 1, same buffer sizes. Returns MB/s. */
function qemuBench(format: DiskFormat, write: boolean, bufSize: number, count: number): number | undefined {
  if (spawnSync('qemu-img', ['--version']).status !== 0) return undefined;
  const path = join(dir, `qemu.${format}`);
  execFileSync('qemu-img', ['create', '-q', '-f', format, path, String(SIZE)]);
  if (!write) execFileSync('qemu-img', ['bench', '-q', '-f', format, '-w', '-c', String(SIZE / (1 << 20)), '-s', '1M', '-d', '1', path]);
  const args = ['bench', '-f', format, '-t', 'writeback', '-c', String(count), '-s', String(bufSize), '-d', '1', path];
  if (write) args.splice(1, 0, '-w');
  const t = performance.now();
  execFileSync('qemu-img', args, { stdio: 'pipe' });
  const secs = (performance.now() - t) / 1000;
  rmSync(path);
  return (count * bufSize) / 1e6 / secs;
}

try {
  console.log(`visor disk bench: ${SIZE >> 20} MiB image, ${OPS} random ops, Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'})`);
  for (const fmt of ['raw', 'qcow2'] as const) {
    const b = await bench(fmt);
    const qW = qemuBench(fmt, true, 1 << 20, SIZE >> 20);
    const qR = qemuBench(fmt, false, 1 << 20, SIZE >> 20);
    const q4 = qemuBench(fmt, false, 4096, OPS);
    const ratio = (v: number, q: number | undefined) => (q ? ` (qemu-img bench ${q.toFixed(0)} MB/s, visor/qemu ${(v / q).toFixed(2)})` : '');
    console.log(`${fmt}:`);
    console.log(`  sequential write 1 MiB: ${b.seqWriteMBs.toFixed(0)} MB/s${ratio(b.seqWriteMBs, qW)}`);
    console.log(`  sequential read  1 MiB: ${b.seqReadMBs.toFixed(0)} MB/s${ratio(b.seqReadMBs, qR)}`);
    console.log(`  random read  4 KiB: ${b.randRead4kIops.toFixed(0)} IOPS${q4 ? ` (qemu-img bench sequential 4 KiB reads: ${((q4 * 1e6) / 4096).toFixed(0)} IOPS)` : ''}`);
    console.log(`  random write 4 KiB: ${b.randWrite4kIops.toFixed(0)} IOPS (allocated clusters)`);
    console.log(`  random write 4 KiB into a fresh image: ${b.randWriteAlloc4kIops.toFixed(0)} IOPS`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
