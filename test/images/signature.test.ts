/**
 * InRelease signatures with a throwaway OpenPGP key: a good signature is accepted (mode
 * gpgv), a tampered or foreign one is refused, never silently downgraded.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pullImage } from '../../src/images/pull.js';
import { verifyInRelease } from '../../src/images/release.js';
import { startMirror } from './fixtures.js';

const haveTools = spawnSync('gpg', ['--version']).status === 0 && spawnSync('gpgv', ['--version']).status === 0;
if (!haveTools) {
  if (process.env.CI) throw new Error('gpg and gpgv are required in CI (apt-get install gpg gpgv)');
  console.log('skipping signature tests: gpg or gpgv is not installed');
}

let home = '';
let keyring = '';
const gpg = (args: string[], input?: string) => {
  const r = spawnSync('gpg', ['--homedir', home, '--batch', '--quiet', ...args], { input });
  if (r.status !== 0) throw new Error(`gpg ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

describe.runIf(haveTools)('InRelease signatures', () => {
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'visor-gpg-'));
    gpg(['--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', 'visor test <test@example.invalid>', 'ed25519', 'sign', '0']);
    keyring = join(home, 'test-keyring.gpg');
    await writeFile(keyring, gpg(['--export']));
  });
  afterAll(() => {
    spawnSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent']);
  });

  const sign = (text: string) => gpg(['--pinentry-mode', 'loopback', '--passphrase', '', '--clearsign'], text);

  it('accepts a good signature and parses exactly what gpgv verified', async () => {
    const r = await verifyInRelease(sign('Codename: trixie\nSHA256:\n'), { keyring });
    expect(r).toEqual({ mode: 'gpgv', text: 'Codename: trixie\nSHA256:\n' });
  });

  it('refuses a tampered message and an unsigned one', async () => {
    const tampered = Buffer.from(sign('Codename: trixie\nSHA256:\n').toString().replace('trixie', 'sid!!!'));
    await expect(verifyInRelease(tampered, { keyring })).rejects.toMatchObject({ code: 'IntegrityError', message: expect.stringMatching(/bad or unknown OpenPGP signature; refusing/) });
    await expect(verifyInRelease(Buffer.from('Codename: trixie\n'), { keyring })).rejects.toMatchObject({ code: 'IntegrityError' });
  });

  it('pulls from a signed mirror with mode gpgv, and refuses it under a keyring without that key', async () => {
    const mirror = await startMirror({ inRelease: (text) => sign(text) });
    try {
      const env = { XDG_CACHE_HOME: await mkdtemp(join(tmpdir(), 'visor-cache-')), VISOR_KEYRING: keyring };
      const res = await pullImage('tiny', { mirror: mirror.url, env });
      expect(res.manifest.verification).toEqual({ mode: 'gpgv' });
      const other = join(home, 'empty.gpg');
      await writeFile(other, Buffer.alloc(0));
      await expect(pullImage('tiny', { mirror: mirror.url, env: { ...env, VISOR_KEYRING: other } })).rejects.toMatchObject({ code: 'IntegrityError' });
    } finally {
      await mirror.close();
    }
  });
});
