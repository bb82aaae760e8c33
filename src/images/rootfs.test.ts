import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import type { Ext4Node } from '../storage/ext4/tree.js';
import { buildAr } from './ar.js';
import { extractDeb } from './deb.js';
import { DPKG_DIR, RootTree, readDebPackage, walkTree } from './rootfs.js';

type Entry = Partial<tar.Header> & { name: string; data?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((res, rej) => { pack.on('data', (c: unknown) => { chunks.push(c as Buffer); }); pack.on('end', res); pack.on('error', rej); });
  for (const { data, ...h } of entries) pack.entry({ ...h, mtime: new Date(1_700_000_000_000) }, data ?? '');
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function deb(name: string, data: Entry[], control: Record<string, string> = {}): Promise<Buffer> {
  const ctl = await tarOf([
    { name: './control', data: `Package: ${name}\nVersion: 1.0-1\nArchitecture: riscv64\nMaintainer: t <t@example.org>\nDescription: test\n` },
    ...Object.entries(control).map(([n, d]): Entry => ({ name: `./${n}`, data: d, mode: n.endsWith('inst') || n.startsWith('post') || n.startsWith('pre') ? 0o755 : 0o644 })),
  ]);
  return Buffer.from(buildAr([
    { name: 'debian-binary', data: Buffer.from('2.0\n') },
    { name: 'control.tar.gz', data: gzipSync(ctl) },
    { name: 'data.tar.gz', data: gzipSync(await tarOf(data)) },
  ]));
}

const dir = mkdtempSync(join(tmpdir(), 'visor-rootfs-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const DATA: Entry[] = [
  { name: './', type: 'directory', mode: 0o755 },
  { name: './bin/', type: 'directory', mode: 0o755 },
  { name: './bin/tool', data: '#!/bin/sh\necho tool\n', mode: 0o755 },
  { name: './bin/tool-alias', type: 'link', linkname: './bin/tool' },
  { name: './etc/', type: 'directory', mode: 0o755 },
  { name: './etc/tool.conf', data: 'setting=1\n', mode: 0o644 },
  { name: './usr/', type: 'directory', mode: 0o755 },
  { name: './usr/bin/', type: 'directory', mode: 0o755 },
  { name: './usr/bin/su-ish', data: 'x', mode: 0o4755, uid: 0, gid: 0 },
  { name: './usr/bin/crontab-ish', data: 'y', mode: 0o2755, uid: 0, gid: 102, gname: 'crontab' },
  { name: './usr/bin/tool-link', type: 'symlink', linkname: '../../bin/tool' },
  { name: './var/', type: 'directory', mode: 0o755 },
  { name: './var/spool/', type: 'directory', mode: 0o1733, uid: 1, gid: 2 },
  { name: './dev/', type: 'directory', mode: 0o755 },
  { name: './dev/null-ish', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
  { name: './dev/disk-ish', type: 'block-device', mode: 0o660, devmajor: 254, devminor: 0, gid: 6 },
  { name: './dev/pipe-ish', type: 'fifo', mode: 0o600 },
];

describe('unpacking packages into a tree', async () => {
  const path = join(dir, 'tool.deb');
  writeFileSync(path, await deb('tool', DATA, { conffiles: '/etc/tool.conf\n', postinst: '#!/bin/sh\nexit 0\n', preinst: '#!/bin/sh\n', md5sums: 'abc  bin/tool\n' }));
  const pkg = await readDebPackage(path, 'tool');
  const tree = new RootTree(1_700_000_000);
  tree.addPackage(pkg);
  tree.finishDpkg();

  it('every entry of the tar listing is in the tree with its type, mode, owner and target', async () => {
    const listing = await extractDeb(path, () => true);
    expect(listing.length).toBe(DATA.length - 1); // './' itself is the root
    for (const e of listing) {
      const node = tree.lookup(e.path)!;
      expect(node, e.path).toBeDefined();
      // bin/ is merged into usr/bin: the archive's directory stays the symlink.
      if (e.path === 'bin') { expect(node.kind).toBe('symlink'); continue; }
      const kind = { file: 'file', directory: 'dir', symlink: 'symlink', link: 'file', chardev: 'chardev', blockdev: 'blockdev', fifo: 'fifo', other: '?' }[e.type];
      expect(node.kind, e.path).toBe(kind);
      if (e.type !== 'link') {
        expect(node.mode, e.path).toBe(e.mode);
        expect([node.uid, node.gid], e.path).toEqual([e.uid, e.gid]);
        expect(node.mtime, e.path).toBe(1_700_000_000);
      }
      if (node.kind === 'symlink') expect(node.target).toBe(e.linkname);
      if (node.kind === 'chardev' || node.kind === 'blockdev') expect([node.major, node.minor]).toEqual([e.major, e.minor]);
      if (node.kind === 'file' && e.data) expect(Buffer.from(await node.read(0, node.size))).toEqual(e.data);
    }
  });

  it('follows merged /usr and keeps hard links as one node', () => {
    expect(tree.root.entries.get('bin')).toMatchObject({ kind: 'symlink', target: 'usr/bin' });
    const usrBin = (tree.root.entries.get('usr') as Extract<Ext4Node, { kind: 'dir' }>).entries.get('bin') as Extract<Ext4Node, { kind: 'dir' }>;
    expect(usrBin.entries.get('tool')).toBe(usrBin.entries.get('tool-alias'));
    expect(usrBin.entries.get('su-ish')).toMatchObject({ mode: 0o4755 });
    expect(tree.lookup('var/spool')).toMatchObject({ kind: 'dir', mode: 0o1733, uid: 1, gid: 2 });
  });

  it('records the package as unpacked in dpkg\'s database, with its scripts, list and conffile hashes', async () => {
    const text = async (p: string) => {
      const n = tree.lookup(p);
      if (n?.kind !== 'file') throw new Error(`${p} is not a file`);
      return Buffer.from(await n.read(0, n.size)).toString('utf8');
    };
    const status = await text(`${DPKG_DIR}/status`);
    expect(status).toMatch(/^Package: tool\nStatus: install ok unpacked\nVersion: 1\.0-1\n/);
    const md5 = createHash('md5').update('setting=1\n').digest('hex');
    expect(status).toContain(`Conffiles:\n /etc/tool.conf ${md5}\n`);
    const list = (await text(`${DPKG_DIR}/info/tool.list`)).trim().split('\n');
    expect(list[0]).toBe('/.');
    expect(list).toContain('/usr/bin/su-ish');
    expect(list).toContain('/bin/tool');
    expect(tree.lookup(`${DPKG_DIR}/info/tool.postinst`)).toMatchObject({ kind: 'file', mode: 0o755 });
    expect(tree.lookup(`${DPKG_DIR}/info/tool.md5sums`)).toMatchObject({ kind: 'file', mode: 0o644 });
    expect(tree.lookup(`${DPKG_DIR}/info/tool.control`)).toBeUndefined(); // dpkg keeps control in status, not info/
    expect(await text(`${DPKG_DIR}/available`)).toMatch(/^Package: tool\nVersion/);
    expect(tree.lookup(`${DPKG_DIR}/updates`)).toMatchObject({ kind: 'dir' });
  });

  it('lists every path once, sorted, from walkTree', () => {
    const paths = [...walkTree(tree.root)].map(([p]) => p);
    expect(new Set(paths).size).toBe(paths.length);
    expect(paths).toContain('usr/bin/tool-link');
  });

  it('refuses a package whose control file names another package, and a dangling hard link', async () => {
    await expect(readDebPackage(path, 'other')).rejects.toMatchObject({ code: 'IntegrityError' });
    const bad = join(dir, 'bad.deb');
    writeFileSync(bad, await deb('bad', [{ name: './x', type: 'link', linkname: './nowhere' }]));
    const t = new RootTree();
    expect(() => t.addPackage({ name: 'bad', control: 'Package: bad\n', controlFiles: new Map(), entries: [{ path: 'x', type: 'link', linkname: './nowhere', mode: 0o644, uid: 0, gid: 0, mtime: 0 }] }))
      .toThrow(/bad: hard link x to \.\/nowhere/);
  });
});
