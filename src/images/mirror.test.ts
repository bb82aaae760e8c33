import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { aptMirrors, chooseMirror, parseSourcesList } from './mirror.js';

// Host names here are placeholders under .invalid / .example (RFC 2606), not mirrors.
async function aptDir(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'visor-apt-'));
  await mkdir(join(root, 'sources.list.d'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(root, name), text);
  return root;
}

describe('mirror discovery', () => {
  it('reads deb822 .sources, skipping security, vendor repos, disabled and non-deb stanzas', async () => {
    const root = await aptDir({
      'sources.list.d/a-vendor.sources': 'Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n',
      'sources.list.d/debian.sources': [
        '# comment', 'Types: deb-src', 'URIs: http://src.example/debian', 'Suites: bookworm', 'Components: main', '',
        'Types: deb', 'URIs: http://off.example/debian', 'Suites: bookworm', 'Components: main', 'Enabled: no', '',
        'Types: deb', '# http://snapshot.example/x', 'URIs: http://mirror.example/debian/', 'Suites: bookworm bookworm-updates', 'Components: main', 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg', '',
        'Types: deb', 'URIs: http://mirror.example/debian-security', 'Suites: bookworm-security', 'Components: main', '',
      ].join('\n'),
      'sources.list.d/x.sources.disabled': 'Types: deb\nURIs: http://ignored.example/debian\nSuites: sid\nComponents: main\n',
    });
    expect(await aptMirrors(root)).toEqual([{ url: 'http://mirror.example/debian', from: join(root, 'sources.list.d/debian.sources') }]);
  });

  it('reads one-line sources.list with options', async () => {
    expect(parseSourcesList('deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian trixie main contrib # c\n#deb http://x.example/d sid main\n', 'f')).toEqual([
      { types: ['deb'], uris: ['http://m.example/debian'], suites: ['trixie'], components: ['main', 'contrib'], enabled: true, signedBy: '/k.gpg', file: 'f' },
    ]);
    const root = await aptDir({ 'sources.list': 'deb http://m.example/debian bookworm main\ndeb http://m.example/debian-security bookworm-security main\n' });
    expect((await chooseMirror({ aptRoot: root, env: {} })).url).toBe('http://m.example/debian');
  });

  it('prefers --mirror, then VISOR_MIRROR, and explains when there is none', async () => {
    const root = await aptDir({});
    expect(await chooseMirror({ mirror: 'http://a.example/debian/', aptRoot: root, env: { VISOR_MIRROR: 'http://b.example/d' } })).toEqual({ url: 'http://a.example/debian', from: '--mirror' });
    expect(await chooseMirror({ aptRoot: root, env: { VISOR_MIRROR: 'http://b.example/d' } })).toEqual({ url: 'http://b.example/d', from: 'VISOR_MIRROR' });
    await expect(chooseMirror({ aptRoot: root, env: {} })).rejects.toThrow(/--mirror URL or the VISOR_MIRROR/);
    await expect(chooseMirror({ mirror: 'ftp://x.example/', env: {} })).rejects.toMatchObject({ code: 'InvalidConfig' });
    await expect(chooseMirror({ mirror: 'not a url', env: {} })).rejects.toMatchObject({ code: 'InvalidConfig' });
  });
});
