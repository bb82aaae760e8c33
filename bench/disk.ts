/**
 * Disk benchmark: sequential MB/s and random 4 KiB IOPS through visor's raw and qcow2
 * devices on host files (queue depth 1, page cache warm, like a guest with cache=writeback).
 * Where qemu-img is installed, `qemu-img bench` runs the same sequential patterns for a ratio.
 * Then internal snapshot create/apply/delete on a fully written qcow2 image (visor's
 * CPU time, and `qemu-img snapshot` on a copy of the same image, CPU time from bash's time).
 * Usage: npx tsx bench/disk.ts [--size MiB] [--ops N] [--dir DIR] [--snapshots-only]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileHandle, NodeFileOpener } from '../src/host/file-handle.js';
import type { BlockDevice } from '../src/storage/block-device.js';
import { createDisk, openDisk, type DiskFormat } from '../src/storage/open.js';
import { Qcow2Device } from '../src/storage/qcow2/device.js';
import { rng } from '../src/storage/testing.js';
import { benchArg } from './args.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string): string => benchArg(name, def);
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

/** CPU and wall milliseconds of one async step in this process. */
async function cpuMs(fn: () => Promise<unknown>): Promise<{ cpu: number; wall: number }> {
  const c = process.cpuUsage();
  const t = performance.now();
  await fn();
  const d = process.cpuUsage(c);
  return { cpu: (d.user + d.system) / 1000, wall: performance.now() - t };
}

/** One qemu-img command's CPU and wall milliseconds (bash's time: user+sys of the child). */
function qemuMs(args: string[]): { cpu: number; wall: number } {
  const r = spawnSync('bash', ['-c', 'TIMEFORMAT="%3U %3S %3R"; time qemu-img "$@" >/dev/null', 'bash', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${r.stderr}`);
  const [u, sy, w] = r.stderr.trim().split('\n').at(-1)!.split(' ').map(Number);
  return { cpu: (u! + sy!) * 1000, wall: w! * 1000 };
}

/**
 * Snapshot operations on a fully written image: their cost should follow the metadata
 * (L2 tables, refcount blocks), not the data.
 */
async function snapshotBench(): Promise<void> {
  const path = join(dir, 'snap.qcow2');
  const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'truncate' });
  await createDisk(opener, path, fh, { format: 'qcow2', size: SIZE });
  await fh.close();
  let dev = await Qcow2Device.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
  const big = new Uint8Array(1 << 20).fill(0x5a);
  for (let off = 0; off < SIZE; off += big.length) await dev.write(off, big);
  await dev.close();
  const qpath = join(dir, 'snap-qemu.qcow2');
  copyFileSync(path, qpath);
  dev = await Qcow2Device.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
  const r = rng(2);
  const small = new Uint8Array(4096).fill(1);
  const diverge = async (d: Qcow2Device) => {
    for (let i = 0; i < 256; i++) await d.write(Math.floor(r() * (SIZE / 4096)) * 4096, small);
  };
  const steps: [string, () => Promise<unknown>, string[]][] = [
    ['create a', () => dev.createSnapshot('a'), ['snapshot', '-c', 'a', qpath]],
    ['create b', async () => (await diverge(dev), dev.createSnapshot('b')), ['snapshot', '-c', 'b', qpath]],
    ['apply a', () => dev.applySnapshot('a'), ['snapshot', '-a', 'a', qpath]],
    ['delete b', () => dev.deleteSnapshot('b'), ['snapshot', '-d', 'b', qpath]],
    ['delete a', () => dev.deleteSnapshot('a'), ['snapshot', '-d', 'a', qpath]],
  ];
  const hasQemu = spawnSync('qemu-img', ['--version']).status === 0;
  const start = hasQemu ? qemuMs(['--version']) : undefined;
  console.log(`qcow2 internal snapshots, ${SIZE >> 20} MiB fully written, 64 KiB clusters (ms: CPU / wall):`);
  for (const [name, fn, qargs] of steps) {
    const v = await cpuMs(fn);
    let q = '';
    if (hasQemu) {
      const m = qemuMs(qargs);
      q = `; qemu-img snapshot ${m.cpu.toFixed(0)} / ${m.wall.toFixed(0)}`;
    }
    console.log(`  ${name}: visor ${v.cpu.toFixed(1)} / ${v.wall.toFixed(1)}${q}`);
  }
  if (start) console.log(`  (qemu-img --version alone: ${start.cpu.toFixed(0)} / ${start.wall.toFixed(0)}; the visor 'create b' row includes 256 random 4 KiB writes)`);
  await dev.close();
}

try {
  if (!argv.includes('--snapshots-only')) await ioBench();
  await snapshotBench();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

async function ioBench(): Promise<void> {
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
}
