import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildAr, parseAr, readArFile } from './ar.js';

describe('ar', () => {
  const members = [
    { name: 'debian-binary', data: Buffer.from('2.0\n') },
    { name: 'odd', data: Buffer.from('abc') }, // odd size: padded to an even offset
    { name: 'data.tar.xz', data: Buffer.from('payload') },
  ];

  it('round-trips members, in memory and on disk', async () => {
    const ar = buildAr(members);
    const parsed = parseAr(ar);
    expect(parsed.map((m) => m.name)).toEqual(['debian-binary', 'odd', 'data.tar.xz']);
    for (const [i, m] of parsed.entries()) expect(Buffer.from(ar.subarray(m.offset, m.offset + m.size))).toEqual(members[i]!.data);
    const file = join(await mkdtemp(join(tmpdir(), 'visor-ar-')), 'x.deb');
    await writeFile(file, ar);
    expect(await readArFile(file)).toEqual(parsed);
  });

  it('rejects bad magic and truncation with BadImage', () => {
    expect(() => parseAr(Buffer.from('!<arch>X'))).toThrow(/not an ar archive/);
    const ar = buildAr(members);
    expect(() => parseAr(ar.subarray(0, ar.length - 3))).toThrow(expect.objectContaining({ code: 'BadImage' }));
  });
});
