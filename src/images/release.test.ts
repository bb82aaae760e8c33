import { describe, expect, it } from 'vitest';
import { clearsignedText, parseRelease, verifyInRelease } from './release.js';

const release = `Origin: Debian
Suite: stable
Codename: trixie
Date: Sat, 01 Jun 2030 00:00:00 UTC
Acquire-By-Hash: yes
MD5Sum:
 0123456789abcdef0123456789abcdef 10 main/binary-riscv64/Packages
SHA256:
 ${'a'.repeat(64)}   54322586 main/binary-riscv64/Packages
 ${'b'.repeat(64)}    9385284 main/binary-riscv64/Packages.xz
`;

describe('Release files', () => {
  it('parses suite, codename and the SHA256 table', () => {
    const r = parseRelease(release);
    expect(r).toMatchObject({ suite: 'stable', codename: 'trixie', acquireByHash: true });
    expect(r.sha256.get('main/binary-riscv64/Packages.xz')).toEqual({ sha256: 'b'.repeat(64), size: 9385284 });
    expect(r.sha256.size).toBe(2);
  });

  it('extracts the clear-signed body and undoes dash-escaping', () => {
    const signed = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nA: 1\n- -----x\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n`;
    expect(clearsignedText(signed)).toBe('A: 1\n-----x\n');
    expect(() => clearsignedText('-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nA: 1\n')).toThrow(/no signature block/);
  });

  it('falls back to the hash chain only when told to, or when the keyring is missing, and says why', async () => {
    expect(await verifyInRelease(Buffer.from(release), { keyring: null })).toMatchObject({ mode: 'hash-chain-only', reason: 'signature checking is disabled' });
    const r = await verifyInRelease(Buffer.from(release), { keyring: '/nonexistent/keyring.gpg' });
    expect(r.mode).toBe('hash-chain-only');
    expect(r.reason).toMatch(/gpgv is not installed|keyring \/nonexistent\/keyring.gpg is missing/);
  });
});
