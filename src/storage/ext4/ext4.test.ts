/**
 * Unit tests of the ext4 writer's pieces and its input checks, in memory. The on-disk result
 * is checked against e2fsprogs and the kernel in test/storage/ext4*.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { isVisorError } from '../../base/errors.js';
import { MemoryFile } from '../memory-file.js';
import { RawDevice } from '../raw.js';
import { directoryBlocks, packDirectory, FT_REG } from './directory.js';
import { buildExtentTree, extentTreeBlocks, ExtentList, EXTENT_MAGIC } from './extents.js';
import { computeGeometry, groupHasSuper, BLOCKS_PER_GROUP } from './layout.js';
import { dirNode, fileFromBytes, planExt4Size, writeExt4, type Ext4Meta, type Ext4Node, type Ext4Options } from './index.js';
import { encodeXattrs, xattrEntryHash } from './xattr.js';

const META: Ext4Meta = { mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

async function writeToMemory(root: Ext4Node, opts: Ext4Options = {}): Promise<{ bytes: Uint8Array; summary: Awaited<ReturnType<typeof writeExt4>> }> {
  const size = planExt4Size(root, opts);
  const file = new MemoryFile();
  const dev = await RawDevice.create(file, size);
  const summary = await writeExt4(root, dev, opts);
  const bytes = new Uint8Array(size);
  await dev.read(0, bytes);
  return { bytes, summary };
}

async function rejects(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(isVisorError(err), String(err)).toBe(true);
  expect((err as { code: string }).code).toBe(code);
  expect((err as Error).message).toMatch(message);
}

describe('layout', () => {
  it('keeps superblock backups in groups 0, 1 and powers of 3, 5 and 7 (sparse_super)', () => {
    const groups = Array.from({ length: 130 }, (_, g) => g).filter(groupHasSuper);
    expect(groups).toEqual([0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125]);
  });

  it('drops a last group too small for its own metadata', () => {
    const g = computeGeometry(BLOCKS_PER_GROUP + 40, 1000);
    expect(g.groupCount).toBe(1);
    expect(g.blocksCount).toBe(BLOCKS_PER_GROUP);
    const h = computeGeometry(3 * BLOCKS_PER_GROUP + 5000, 100_000);
    expect(h.groupCount).toBe(4);
    expect(h.inodesPerGroup % 16).toBe(0);
    expect(h.inodesCount).toBeGreaterThanOrEqual(100_000);
    // Group 2 has no backup: its bitmaps start the group.
    expect(h.groups[2]!.blockBitmap).toBe(2 * BLOCKS_PER_GROUP);
    expect(h.groups[3]!.blockBitmap).toBe(3 * BLOCKS_PER_GROUP + 1 + h.gdtBlocks);
  });
});

describe('extents', () => {
  it('merges contiguous blocks and splits at the 32768-block extent limit', () => {
    const l = new ExtentList();
    for (let i = 0; i < 40_000; i++) l.add(i, 1000 + i);
    l.add(40_001, 50_000);
    expect(l.extents).toEqual([
      { logical: 0, physical: 1000, length: 32768 },
      { logical: 32768, physical: 33768, length: 7232 },
      { logical: 40_001, physical: 50_000, length: 1 },
    ]);
  });

  it('keeps four extents in the inode and puts more under index levels', () => {
    const four = buildExtentTree(Array.from({ length: 4 }, (_, i) => ({ logical: 2 * i, physical: 100 + 2 * i, length: 1 })), () => {
      throw new Error('no block needed');
    });
    const v = new DataView(four.iblock.buffer);
    expect([v.getUint16(0, true), v.getUint16(2, true), v.getUint16(4, true), v.getUint16(6, true)]).toEqual([EXTENT_MAGIC, 4, 4, 0]);
    let next = 5000;
    const many = Array.from({ length: 1000 }, (_, i) => ({ logical: 2 * i, physical: 100 + 2 * i, length: 1 }));
    const t = buildExtentTree(many, () => next++);
    expect(t.nodes.map((n) => n.block)).toEqual([5000, 5001, 5002]);
    expect(extentTreeBlocks(1000)).toBe(3);
    const root = new DataView(t.iblock.buffer);
    expect([root.getUint16(2, true), root.getUint16(6, true)]).toEqual([3, 1]); // 3 entries, depth 1
    expect(root.getUint32(12 + 12, true)).toBe(2 * 340); // second index starts at logical block 680
    const leaf = new DataView(t.nodes[2]!.data.buffer);
    expect([leaf.getUint16(0, true), leaf.getUint16(2, true), leaf.getUint16(4, true), leaf.getUint16(6, true)]).toEqual([EXTENT_MAGIC, 1000 - 680, 340, 0]);
    expect(extentTreeBlocks(340 * 340 + 1)).toBe(341 + 2); // 341 leaves, 2 index blocks
  });
});

describe('directories', () => {
  it('packs entries so rec_len chains cover each block exactly, as directoryBlocks predicts', () => {
    const names = Array.from({ length: 3000 }, (_, i) => text(`name-${'x'.repeat(i % 200)}-${i}`));
    const blocks = packDirectory(12, 2, names.map((name, i) => ({ name, ino: 100 + i, type: FT_REG })));
    expect(blocks.length).toBe(directoryBlocks(names.map((n) => n.length)));
    let seen = 0;
    for (const b of blocks) {
      const v = new DataView(b.buffer);
      let off = 0;
      while (off < 4096) {
        const rec = v.getUint16(off + 4, true);
        expect(rec).toBeGreaterThanOrEqual(8 + b[off + 6]!);
        if (v.getUint32(off, true) !== 0) seen++;
        off += rec;
      }
      expect(off).toBe(4096);
    }
    expect(seen).toBe(3002); // with . and ..
  });
});

describe('xattrs', () => {
  it('keeps a security.capability in the inode and spills large sets to a block', () => {
    const cap = new Uint8Array(20).fill(1);
    const small = encodeXattrs({ 'security.capability': cap }, '/bin/ping');
    expect(small.inline).toBeDefined();
    expect(small.block).toBeUndefined();
    const big = encodeXattrs({ 'user.a': new Uint8Array(300), 'security.capability': cap }, '/x');
    expect(big.block).toBeDefined();
    const v = new DataView(big.block!.buffer);
    expect(v.getUint32(0, true)).toBe(0xea020000);
    // Sorted by name index: security (6) after user (1).
    expect(big.block![32 + 1]).toBe(1);
  });

  it('hashes entries as the kernel does (name rotate-5, value words rotate-16)', () => {
    expect(xattrEntryHash(text('a'), new Uint8Array(0))).toBe(0x61);
    expect(xattrEntryHash(text('ab'), new Uint8Array(0))).toBe(((0x61 << 5) ^ 0x62) >>> 0);
    expect(xattrEntryHash(text('a'), new Uint8Array([1, 0, 0, 0]))).toBe(((0x61 << 16) ^ 1) >>> 0);
  });

  it('rejects unknown namespaces and POSIX ACLs, and sets too large for a block', () => {
    expect(() => encodeXattrs({ 'os2.x': text('1') }, '/f')).toThrow(/namespace/);
    expect(() => encodeXattrs({ 'system.posix_acl_access': text('1') }, '/f')).toThrow(/ACLs/);
    expect(() => encodeXattrs({ 'system.data': text('1') }, '/f')).toThrow(/not supported/);
    expect(() => encodeXattrs({ 'user.big': new Uint8Array(5000) }, '/f')).toThrow(/at most/);
  });
});

describe('writeExt4', () => {
  const tree = (): Ext4Node => {
    const root = dirNode(META);
    const f = fileFromBytes(text('hello\n'.repeat(2000)), { ...META, mode: 0o644 });
    root.entries.set('a', f).set('b', f);
    root.entries.set('d', dirNode(META, new Map<string, Ext4Node>([['s', { kind: 'symlink', target: 'a', ...META }]])));
    return root;
  };

  it('is deterministic: the same tree and options give the same bytes', async () => {
    const a = await writeToMemory(tree(), { timestamp: 5 });
    const b = await writeToMemory(tree(), { timestamp: 5 });
    expect(Buffer.compare(Buffer.from(a.bytes), Buffer.from(b.bytes))).toBe(0);
    expect(a.summary.inodesUsed).toBe(5); // root, lost+found, a/b (one inode), d, s
    expect(a.summary.freeInodes).toBe(a.summary.inodesCount - 14); // inodes 1-14 (1-10 reserved)
    // The superblock's magic and counts.
    const sb = new DataView(a.bytes.buffer, 1024, 1024);
    expect(sb.getUint16(56, true)).toBe(0xef53);
    expect(sb.getUint32(12, true)).toBe(a.summary.freeBlocks);
  });

  it('rejects bad trees with errors that name the path', async () => {
    const dev = await RawDevice.create(new MemoryFile(), 64 << 20);
    const d = dirNode(META);
    const small = { sizeBytes: 32 << 20, journalBytes: 4 << 20 };
    await rejects(writeExt4(dirNode(META, new Map([['x', d], ['y', d]])), dev, small), 'InvalidArgument', /\/x appears twice.*\/y/);
    await rejects(writeExt4(dirNode(META, new Map([['a/b', d]])), dev, small), 'InvalidArgument', /bad name "a\/b"/);
    await rejects(writeExt4(dirNode(META, new Map([['f', fileFromBytes(text('x'), { ...META, mode: 0o100644 })]])), dev, small), 'InvalidArgument', /\/f: mode/);
    await rejects(writeExt4(dirNode(META, new Map<string, Ext4Node>([['s', { kind: 'symlink', target: '', ...META }]])), dev, small), 'InvalidArgument', /\/s: symlink target/);
    const liar: Ext4Node = { kind: 'file', size: 10, ...META, read: () => new Uint8Array(3) };
    await rejects(writeExt4(dirNode(META, new Map([['liar', liar]])), dev, small), 'InvalidArgument', /\/liar: read\(0, 10\) returned 3 bytes/);
    await rejects(writeExt4(tree(), dev, { blockSize: 1024 }), 'Unsupported', /block size 1024/);
    await rejects(writeExt4(tree(), dev, { sizeBytes: 128 << 20 }), 'InvalidArgument', /target holds/);
    const big = dirNode(META, new Map([['big', fileFromBytes(new Uint8Array(37 << 20).fill(1), META)]]));
    await rejects(writeExt4(big, dev, { sizeBytes: 40 << 20 }), 'InvalidArgument', /is full/);
  });

  it('reports progress in file bytes, ending at the total', async () => {
    const calls: [number, number][] = [];
    const { summary } = await writeToMemory(tree(), { onProgress: (done, total) => calls.push([done, total]) });
    expect(calls.length).toBe(1); // one file inode (a and b are one)
    expect(calls[0]).toEqual([summary.dataBytes, 12_000]);
  });

  it('fits the content in planExt4Size when no block is zero', async () => {
    const root = dirNode(META);
    for (let i = 0; i < 200; i++) root.entries.set(`f${i}`, fileFromBytes(new Uint8Array(4096 * (i % 13) + 17).fill(0xaa), META));
    const { summary } = await writeToMemory(root, { freeBytes: 0, journalBytes: 4 << 20 });
    expect(summary.freeBlocks).toBeGreaterThanOrEqual(0);
    expect(summary.dataBytes).toBe([...Array(200).keys()].reduce((s, i) => s + 4096 * (i % 13) + 17, 0));
  });
});

describe('crc32c', () => {
  it('matches the Castagnoli check value (with the usual inversions added around the raw update)', async () => {
    const { crc32c } = await import('./crc32c.js');
    expect((crc32c(0xffffffff, new TextEncoder().encode('123456789')) ^ 0xffffffff) >>> 0).toBe(0xe3069283);
  });
});
