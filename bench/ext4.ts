/**
 * ext4 writer benchmark: a Debian-sized tree (default ~400 MB in 30 000 files: many small
 * files, a few large ones, 3000-entry directories, symlinks, hard links, xattrs) written by
 * writeExt4 straight into a fresh qcow2 on a host file. Reports MB/s of file content (wall
 * time and process CPU time, qcow2 creation and the final flush included) and the qcow2's
 * size. File contents are generated on demand (a pool slice with the block number stamped
 * in), so the tree costs almost nothing to produce. With --check, qemu-img and e2fsck check
 * the result (not timed).
 * Usage: npx tsx bench/ext4.ts [--files N] [--mb MB] [--dir DIR] [--check]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileHandle, NodeFileOpener } from '../src/host/file-handle.js';
import { closeDisk, createDisk, openDisk } from '../src/storage/open.js';
import { dirNode, planExt4Size, writeExt4, type Ext4DirNode, type Ext4Meta, type Ext4Node } from '../src/storage/ext4/index.js';
import { rng } from '../src/storage/testing.js';
import { benchArg } from './args.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string): string => benchArg(name, def);
const FILES = Number(arg('files', '30000'));
const TOTAL = Number(arg('mb', '400')) * 1e6;
const dir = mkdtempSync(join(arg('dir', tmpdir()), 'visor-bench-ext4-'));

const POOL = new Uint8Array(1 << 20);
{
  const r = rng(7);
  for (let i = 0; i < POOL.length; i++) POOL[i] = Math.floor(r() * 256);
}

function file(size: number, seed: number, meta: Ext4Meta): Ext4Node {
  return {
    kind: 'file', size, ...meta,
    read(offset, length) {
      // Whole pool slices: cheap to produce, never all-zero, different per file.
      const start = (seed * 4096 + offset) % (POOL.length - length > 0 ? POOL.length - length : 1);
      const out = length <= POOL.length - start ? POOL.slice(start, start + length) : new Uint8Array(length).fill(seed & 0xff | 1);
      out[0] = seed & 0xff;
      return out;
    },
  };
}

/** Sizes like a Debian root: 96% small files (about 2 KB median), 4% large ones carrying most bytes. */
function buildTree(): { root: Ext4DirNode; bytes: number } {
  const r = rng(42);
  const meta: Ext4Meta = { mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000 };
  const root = dirNode(meta);
  const usr = dirNode(meta);
  root.entries.set('usr', usr);
  const large = Math.max(1, Math.round(FILES * 0.04));
  const smallSizes = Array.from({ length: FILES - large }, () => Math.floor(200 + r() * r() * 16000));
  const smallBytes = smallSizes.reduce((a, b) => a + b, 0);
  const largeEach = Math.max(0, (TOTAL - smallBytes) / large);
  let bytes = 0;
  let dirIndex = 0;
  let current = dirNode(meta);
  const prev: Ext4Node[] = [];
  for (let i = 0; i < FILES; i++) {
    if (current.entries.size >= (dirIndex % 10 === 0 ? 3000 : 150)) {
      usr.entries.set(`dir-${dirIndex++}`, current);
      current = dirNode(meta);
    }
    const size = i < large ? Math.floor(largeEach * (0.5 + r())) : smallSizes[i - large]!;
    const m: Ext4Meta = { ...meta, mode: i % 7 === 0 ? 0o755 : 0o644 };
    if (i % 500 === 1) m.xattrs = { 'security.capability': new Uint8Array(20).fill(1) };
    const node = file(size, i, m);
    current.entries.set(`file-${i}.so`, node);
    bytes += size;
    prev.push(node);
    if (i % 100 === 3) current.entries.set(`link-${i}`, { kind: 'symlink', target: `file-${i}.so`, ...meta, mode: 0o777 });
    if (i % 1000 === 5) current.entries.set(`hard-${i}`, prev[i - 1]!);
  }
  usr.entries.set(`dir-${dirIndex}`, current);
  return { root, bytes };
}

const { root, bytes } = buildTree();
const path = join(dir, 'root.qcow2');
const opener = new NodeFileOpener();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const size = planExt4Size(root, {});
const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'exclusive' });
await createDisk(opener, path, fh, { format: 'qcow2', size });
await fh.close();
const disk = await openDisk(opener, path, { readOnly: false });
const summary = await writeExt4(root, disk.device, { timestamp: 1_700_000_000 });
await closeDisk(disk);
const wall = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const cpuS = (cpu.user + cpu.system) / 1e6;
console.log(`tree: ${FILES} files + dirs/links (${summary.inodesUsed} inodes), ${(bytes / 1e6).toFixed(0)} MB of content`);
console.log(`filesystem: ${(summary.sizeBytes / 2 ** 20).toFixed(0)} MiB, ${summary.blocksCount} blocks, ${summary.freeBlocks} free`);
console.log(`writeExt4 into qcow2: ${wall.toFixed(2)} s wall, ${cpuS.toFixed(2)} s CPU -> ${(bytes / 1e6 / wall).toFixed(0)} MB/s (wall), ${(bytes / 1e6 / cpuS).toFixed(0)} MB/s (CPU)`);
console.log(`qcow2 file: ${(statSync(path).size / 2 ** 20).toFixed(0)} MiB; host ${cpus()[0]?.model ?? '?'}, Node ${process.version}`);
if (argv.includes('--check')) {
  const check = spawnSync('qemu-img', ['check', path], { encoding: 'utf8' });
  console.log(`qemu-img check: exit ${check.status} ${check.stdout.trim().split('\n').pop()}`);
  const raw = join(dir, 'root.raw');
  spawnSync('qemu-img', ['convert', '-O', 'raw', path, raw]);
  const fsck = spawnSync('e2fsck', ['-fn', raw], { encoding: 'utf8' });
  console.log(`e2fsck -fn: exit ${fsck.status}: ${fsck.stdout.trim().split('\n').pop()}`);
}
rmSync(dir, { recursive: true, force: true });
