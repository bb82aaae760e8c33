import { describe, expect, it } from 'vitest';
import { PackagesIndex, compareVersions, dependsNames } from './packages-index.js';

describe('dpkg version order', () => {
  it.each([
    ['1.0', '1.0', 0], ['1.0~rc1', '1.0', -1], ['1:0.1', '2.0', 1], ['1.0-1', '1.0-1+b1', -1],
    ['6.12.107-1', '6.12.9-1', 1], ['1.0a', '1.0', 1], ['1.0+', '1.0a', 1], ['2.30-1', '2.3-1', 1], ['1.0-2', '1.0-10', -1],
  ])('%s vs %s', (a, b, sign) => {
    expect(Math.sign(compareVersions(a, b))).toBe(sign);
    expect(Math.sign(compareVersions(b, a))).toBe(sign === 0 ? 0 : -sign);
  });
});

describe('Packages index', () => {
  const h = (c: string) => c.repeat(64);
  const text = [
    `Package: busybox-static\nVersion: 1:1.36-1\nFilename: pool/b/old.deb\nSize: 10\nSHA256: ${h('a')}\n`,
    `Package: busybox-static\nVersion: 1:1.37-1\nFilename: pool/b/new.deb\nSize: 11\nSHA256: ${h('b')}\nDescription: x\n more\n`,
    `Package: linux-image-riscv64\nVersion: 6.12-1\nDepends: linux-image-6.12-riscv64 (= 6.12-1), foo | bar\nFilename: pool/l/l.deb\nSize: 1\nSHA256: ${h('c')}\n`,
    `Package: evil\nVersion: 1\nFilename: ../../etc/passwd\nSize: 1\nSHA256: ${h('d')}\n`,
  ].join('\n');

  it('finds the highest version and parses Depends', () => {
    const idx = new PackagesIndex(text);
    expect(idx.find('busybox-static')).toMatchObject({ version: '1:1.37-1', filename: 'pool/b/new.deb', size: 11, sha256: h('b') });
    expect(idx.find('nope')).toBeUndefined();
    expect(dependsNames(idx.find('linux-image-riscv64')!.depends)).toEqual(['linux-image-6.12-riscv64', 'foo']);
  });

  it('refuses a Filename that leaves the archive', () => {
    expect(() => new PackagesIndex(text).find('evil')).toThrow(expect.objectContaining({ code: 'IntegrityError' }));
  });
});
