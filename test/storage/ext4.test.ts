/**
 * The ext4 writer against Debian's e2fsprogs: trees with every node kind, hard links, xattrs,
 * a 5000-entry directory, large files, deep paths and non-ASCII names are written into a raw
 * file and into a qcow2; `e2fsck -fn` must find nothing, and a debugfs walk must find the
 * tree exactly (ext4-verify.ts). The qcow2 also passes `qemu-img check`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeFileHandle, NodeFileOpener } from '../../src/host/file-handle.js';
import { closeDisk, createDisk, openDisk } from '../../src/storage/open.js';
import { RawDevice } from '../../src/storage/raw.js';
import { dirNode, fileFromBytes, planExt4Size, writeExt4, type Ext4DirNode, type Ext4Meta, type Ext4Node, type Ext4Options } from '../../src/storage/ext4/index.js';
import { HAVE_QEMU_IMG, qemuCheck, qemuImg } from './qemu-img.js';
import { HAVE_E2FSPROGS, SCRATCH, compareWithTree, e2fsck } from './ext4-verify.js';

const dir = mkdtempSync(join(SCRATCH, 'ext4-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const META: Ext4Meta = { mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000 };

/** A file whose content is computed on demand: `gen(block)` gives 4 KiB block `i` (or undefined: zeros). */
function lazyFile(size: number, gen: (block: number) => Uint8Array | undefined, meta: Partial<Ext4Meta> = {}): Ext4Node {
  return {
    kind: 'file', size, ...META, mode: 0o644, ...meta,
    read(offset, length) {
      const out = new Uint8Array(length);
      for (let b = Math.floor(offset / 4096); b * 4096 < offset + length; b++) {
        const data = gen(b);
        if (!data) continue;
        const start = b * 4096;
        const from = Math.max(offset, start);
        const to = Math.min(offset + length, start + 4096);
        out.set(data.subarray(from - start, to - start), from - offset);
      }
      return out;
    },
  };
}

const POOL = (() => {
  const b = new Uint8Array(1 << 16);
  let x = 0x12345678;
  for (let i = 0; i < b.length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    b[i] = x & 0xff;
  }
  return b;
})();

/** 4 KiB of pseudo-random bytes unique to (block, seed): a pool slice with both stamped in. */
function stamp(block: number, seed: number): Uint8Array {
  const start = ((block * 7919 + seed * 104729) % 15) * 4096;
  const b = POOL.slice(start, start + 4096);
  const v = new DataView(b.buffer);
  v.setUint32(0, block);
  v.setUint32(2048, seed);
  return b;
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Every node kind, hard links, xattrs in the inode and in a block, deep and non-ASCII paths. */
function mixedTree(): Ext4DirNode {
  const root = dirNode(META);
  const etc = dirNode(META);
  root.entries.set('etc', etc);
  etc.entries.set('hostname', fileFromBytes(text('visor\n'), { ...META, mode: 0o644 }));
  etc.entries.set('shadow', fileFromBytes(text('root:*:19000:0:99999:7:::\n'), { ...META, mode: 0o640, gid: 42 }));
  etc.entries.set('empty', fileFromBytes(new Uint8Array(0), { ...META, mode: 0o600, uid: 1000, gid: 1000 }));
  const bin = dirNode(META);
  root.entries.set('bin', bin);
  const busy = fileFromBytes(stamp(1, 1).subarray(0, 3000), { ...META, mode: 0o4755 });
  bin.entries.set('su', busy);
  bin.entries.set('su-again', busy);
  etc.entries.set('su-hardlink', busy);
  // security.capability as dpkg sets it on ping (vfs_cap_data revision 2: cap_net_raw permitted+effective).
  const cap = new Uint8Array([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  bin.entries.set('ping', fileFromBytes(stamp(2, 2), { ...META, xattrs: { 'security.capability': cap } }));
  bin.entries.set('bigxattr', fileFromBytes(text('x'), { ...META, xattrs: { 'user.comment': stamp(3, 3).subarray(0, 700), 'user.b': text('b'), 'trusted.empty': new Uint8Array(0), 'security.selinux': text('system_u:object_r:bin_t:s0\0') } }));
  bin.entries.set('sh', { kind: 'symlink', target: 'busybox', ...META, mode: 0o777 });
  bin.entries.set('long', { kind: 'symlink', target: '../' + 'very-long-directory-name/'.repeat(8) + 'target', ...META, mode: 0o777 });
  bin.entries.set('exactly60', { kind: 'symlink', target: 'a'.repeat(60), ...META, mode: 0o777 });
  bin.entries.set('exactly59', { kind: 'symlink', target: 'b'.repeat(59), ...META, mode: 0o777 });
  const dev = dirNode(META);
  root.entries.set('dev', dev);
  dev.entries.set('null', { kind: 'chardev', major: 1, minor: 3, ...META, mode: 0o666 });
  dev.entries.set('sda', { kind: 'blockdev', major: 8, minor: 0, ...META, mode: 0o660, gid: 6 });
  dev.entries.set('nvme0n1p300', { kind: 'blockdev', major: 259, minor: 300000, ...META, mode: 0o660, gid: 6 });
  dev.entries.set('initctl', { kind: 'fifo', ...META, mode: 0o600 });
  dev.entries.set('log', { kind: 'socket', ...META, mode: 0o666 });
  const tmp = dirNode({ ...META, mode: 0o1777 });
  root.entries.set('tmp', tmp);
  // Non-ASCII, a 255-byte name, a deep path.
  tmp.entries.set('grüße-日本語-😀', fileFromBytes(text('unicode\n'), { ...META, mode: 0o644, uid: 65534, gid: 65534 }));
  tmp.entries.set('n'.repeat(255), fileFromBytes(text('long name\n'), { ...META, mode: 0o644, uid: 100000, gid: 2 ** 31 }));
  let deep = tmp;
  for (let i = 0; i < 120; i++) {
    const d = dirNode({ ...META, mode: 0o700, mtime: META.mtime + i });
    deep.entries.set(`level-${i}`, d);
    deep = d;
  }
  deep.entries.set('bottom', fileFromBytes(text('deep\n'), { ...META, mode: 0o444 }));
  // Every other block a hole: 1500 extents, more than four leaf blocks hold, so a two-level extent tree.
  const fragmented = new Uint8Array(3000 * 4096);
  for (let b = 0; b < 3000; b += 2) fragmented.set(stamp(b, 5), b * 4096);
  root.entries.set('fragmented', fileFromBytes(fragmented, { ...META, mode: 0o644 }));
  // Over one block of entries: a hash-indexed directory (names with bytes >= 0x80 exercise the signed-char hash).
  const share = dirNode(META);
  root.entries.set('share', share);
  for (let i = 0; i < 400; i++) share.entries.set(`doc-${i}-é${'x'.repeat(i % 40)}`, i % 2 ? busy : fileFromBytes(text(`${i}`), META));
  deep.entries.set('su-deep-link', busy);
  return root;
}

/** 5000 entries in one directory, a file over 128 MiB with holes and (`dense`) one crossing a block group. */
function bigTree(dense: boolean): Ext4DirNode {
  const root = mixedTree();
  const lib = dirNode(META);
  root.entries.set('lib', lib);
  for (let i = 0; i < 5000; i++) {
    const size = (i * 37) % 9000;
    lib.entries.set(`libthing-${i}.so.${i % 7}`, lazyFile(size, (b) => stamp(b, i), { mode: i % 3 ? 0o644 : 0o755, uid: i % 5, gid: i % 11 }));
  }
  // 200 MiB: one stamped block per MiB, the rest zeros (holes, many extents: a tree with a leaf block).
  root.entries.set('sparse.img', lazyFile(200 << 20, (b) => (b % 256 === 5 ? stamp(b, 77) : undefined)));
  // 140 MiB dense: spans a block-group boundary.
  if (dense) root.entries.set('dense.bin', lazyFile(140 << 20, (b) => stamp(b, 99)));
  return root;
}

async function writeRaw(path: string, root: Ext4DirNode, opts: Ext4Options = {}): Promise<number> {
  const size = planExt4Size(root, opts);
  const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'truncate' });
  const dev = await RawDevice.create(fh, size);
  await writeExt4(root, dev, { timestamp: 1_700_000_000, ...opts });
  await dev.close();
  return size;
}

async function writeQcow2(path: string, root: Ext4DirNode, opts: Ext4Options = {}): Promise<void> {
  const size = planExt4Size(root, opts);
  const opener = new NodeFileOpener();
  const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'exclusive' });
  await createDisk(opener, path, fh, { format: 'qcow2', size });
  await fh.close();
  const d = await openDisk(opener, path, { readOnly: false });
  await writeExt4(root, d.device, { timestamp: 1_700_000_000, ...opts });
  await closeDisk(d);
}

describe.skipIf(!HAVE_E2FSPROGS)('ext4 writer, checked by e2fsprogs', () => {
  it.each([true, false])('writes every node kind, hard links and xattrs (metadata_csum %s); e2fsck is clean and debugfs sees the tree', async (metadataCsum) => {
    const root = mixedTree();
    const img = join(dir, `mixed-${metadataCsum}.img`);
    await writeRaw(img, root, { metadataCsum });
    const features = spawnSync('dumpe2fs', ['-h', img], { encoding: 'utf8' }).stdout;
    expect(/^Filesystem features:.*metadata_csum/m.test(features)).toBe(metadataCsum);
    expect(spawnSync('debugfs', ['-R', 'htree /share', img], { encoding: 'utf8' }).stdout).toMatch(/Indirect levels: 0/);
    expect(spawnSync('debugfs', ['-R', 'ex /fragmented', img], { encoding: 'utf8' }).stdout).toMatch(/^\s*2\/\s*2\s/m);
    const fsck = e2fsck(img);
    expect(fsck.output).not.toMatch(/Fix\?|Clear\?|Salvage\?|Error/);
    expect(fsck.status, fsck.output).toBe(0);
    expect(await compareWithTree(img, root)).toEqual([]);
    // The comparison notices differences (it is not vacuous): change the tree, not the image.
    const etc = root.entries.get('etc') as Ext4DirNode;
    (etc.entries.get('shadow') as { mode: number }).mode = 0o644;
    etc.entries.set('added', fileFromBytes(text('x'), META));
    (root.entries.get('bin') as Ext4DirNode).entries.delete('su-again');
    const dev = root.entries.get('dev') as Ext4DirNode;
    dev.entries.set('null', { kind: 'chardev', major: 1, minor: 5, ...META, mode: 0o666 });
    const problems = await compareWithTree(img, root);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\/etc\/shadow: mode 100640 != 100644/),
        expect.stringMatching(/^\/etc\/added: missing/),
        expect.stringMatching(/^\/bin\/su-again: in the image, not in the tree/),
        expect.stringMatching(/: links 204 != 203$/),
        expect.stringMatching(/^\/dev\/null: device 0?1:0?3 != 1:5$/),
      ]),
    );
  }, 60_000);

  it('writes a 5000-entry directory and files over 128 MiB (holes stay unallocated) into a raw file', async () => {
    const root = bigTree(true);
    const img = join(dir, 'big.img');
    await writeRaw(img, root, { label: 'visor-root' });
    const fsck = e2fsck(img);
    expect(fsck.status, fsck.output).toBe(0);
    expect(await compareWithTree(img, root)).toEqual([]);
    // The sparse file's 200 stamped blocks take 200 blocks (+ its extent tree), not 51200.
    const stat = spawnSync('debugfs', ['-R', 'stat /sparse.img', img], { encoding: 'utf8' }).stdout;
    const sectors = Number(/Blockcount: (\d+)/.exec(stat)![1]);
    expect(sectors / 8).toBeGreaterThanOrEqual(200);
    expect(sectors / 8).toBeLessThan(210);
    expect(spawnSync('dumpe2fs', ['-h', img], { encoding: 'utf8' }).stdout).toMatch(/Filesystem volume name:\s+visor-root/);
  }, 180_000);

  it.skipIf(!HAVE_QEMU_IMG)('writes straight into a qcow2 that qemu-img checks clean, leaving free space unallocated', async () => {
    const root = bigTree(false);
    const img = join(dir, 'big.qcow2');
    await writeQcow2(img, root, { sizeBytes: 2 * 2 ** 30 });
    expect(qemuCheck(img)).toMatchObject({ corruptions: 0, leaks: 0, checkErrors: 0 });
    // 2 GiB virtual, ~43 MiB written (the 5000 small files, the fragmented file's 64 KiB clusters):
    // the sparse file's holes, the 64 MiB journal and the free blocks stay unallocated.
    expect(statSync(img).size).toBeLessThan(56 << 20);
    const raw = join(dir, 'from-qcow2.img');
    qemuImg('convert', '-O', 'raw', img, raw);
    const fsck = e2fsck(raw);
    expect(fsck.status, fsck.output).toBe(0);
    expect(await compareWithTree(raw, root)).toEqual([]);
  }, 240_000);
});
