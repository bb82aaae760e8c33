import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, readCpio, writeCpio, type CpioEntry } from './cpio.js';

const entries: CpioEntry[] = [
  { type: 'dir', path: 'bin', mode: 0o755 },
  { type: 'file', path: 'bin/busybox', mode: 0o755, data: Buffer.from('busybox!') },
  { type: 'symlink', path: 'bin/sh', target: 'busybox' },
  { type: 'dir', path: 'dev', mode: 0o755 },
  { type: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
  { type: 'file', path: 'init', mode: 0o755, data: Buffer.from('#!/bin/sh\necho hi\n') },
];

describe('cpio newc', () => {
  it('round-trips through our reader with 4-byte alignment', () => {
    const buf = writeCpio(entries);
    expect(buf.length % 4).toBe(0);
    const recs = readCpio(buf);
    expect(recs.map((r) => r.path)).toEqual(entries.map((e) => e.path));
    expect(recs[0]!.mode).toBe(S_IFDIR | 0o755);
    expect(recs[1]!.mode).toBe(S_IFREG | 0o755);
    expect(recs[1]!.data.toString()).toBe('busybox!');
    expect(recs[2]!.mode & 0o170000).toBe(S_IFLNK);
    expect(recs[2]!.data.toString()).toBe('busybox');
    expect(recs[4]).toMatchObject({ mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 });
  });

  it('rejects paths that escape the archive', () => {
    expect(() => writeCpio([{ type: 'dir', path: '../etc', mode: 0o755 }])).toThrow(/bad cpio path/);
  });

  it('is read by GNU cpio', async () => {
    const have = spawnSync('cpio', ['--version']).status === 0;
    if (!have) {
      if (process.env.CI) throw new Error('cpio is required in CI (apt-get install cpio)');
      console.log('skipping: cpio is not installed (apt-get install cpio)');
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'visor-cpio-'));
    await writeFile(join(dir, 'a.cpio'), writeCpio(entries.filter((e) => e.type !== 'char')));
    const listing = execFileSync('cpio', ['-itv', '-F', join(dir, 'a.cpio')], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    expect(listing).toMatch(/bin\/sh -> busybox/);
    execFileSync('cpio', ['-idm', '--no-absolute-filenames', '-F', join(dir, 'a.cpio')], { cwd: dir, stdio: 'ignore' });
    expect(await readFile(join(dir, 'init'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
    expect((await stat(join(dir, 'bin/busybox'))).mode & 0o777).toBe(0o755);
    expect(await readlink(join(dir, 'bin/sh'))).toBe('busybox');
  });
});
