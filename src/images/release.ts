/**
 * Debian's Release/InRelease files (https://wiki.debian.org/DebianRepository/Format
 * "Release files"), and verifying InRelease's OpenPGP clear signature with `gpgv`.
 *
 * Trust chain: InRelease (signed) → SHA256 of the Packages index → SHA256 of each .deb.
 * Where `gpgv` or Debian's keyring is missing, visor says so once and relies on the hash
 * chain alone, which still catches corruption but not a malicious mirror.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VisorError } from '../base/errors.js';
import { field, parseDeb822 } from './deb822.js';

export const DEFAULT_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export interface ReleaseFile {
  suite?: string;
  codename?: string;
  date?: string;
  acquireByHash: boolean;
  /** Index path relative to dists/SUITE/ → its SHA256 and size. */
  sha256: Map<string, { sha256: string; size: number }>;
}

export function parseRelease(text: string): ReleaseFile {
  const [s] = parseDeb822(text);
  if (!s) throw new VisorError('IntegrityError', 'Release file is empty');
  const sums = field(s, 'SHA256');
  if (!sums) throw new VisorError('IntegrityError', 'Release file has no SHA256 field');
  const sha256 = new Map<string, { sha256: string; size: number }>();
  for (const line of sums.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 3) continue;
    const [hash, size, path] = parts as [string, string, string];
    if (/^[0-9a-f]{64}$/.test(hash) && /^\d+$/.test(size)) sha256.set(path, { sha256: hash, size: Number(size) });
  }
  return {
    suite: field(s, 'Suite'),
    codename: field(s, 'Codename'),
    date: field(s, 'Date'),
    acquireByHash: field(s, 'Acquire-By-Hash')?.toLowerCase() === 'yes',
    sha256,
  };
}

/**
 * The signed text of a clear-signed message (RFC 4880 §7): the lines between the armor
 * header block and the signature, with dash-escaping ("- ") undone. Only used where gpgv is
 * unavailable; with gpgv we parse the text gpgv itself emits as verified.
 */
export function clearsignedText(text: string): string {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  const begin = lines.indexOf('-----BEGIN PGP SIGNED MESSAGE-----');
  if (begin < 0) return text; // a plain Release file
  let i = begin + 1;
  while (i < lines.length && lines[i] !== '') i++; // armor headers ("Hash: SHA256")
  const end = lines.indexOf('-----BEGIN PGP SIGNATURE-----', i);
  if (end < 0) throw new VisorError('IntegrityError', 'InRelease: clear-signed message has no signature block');
  return lines.slice(i + 1, end).map((l) => (l.startsWith('- ') ? l.slice(2) : l)).join('\n') + '\n';
}

export type VerifyMode = 'gpgv' | 'hash-chain-only';

export interface VerifyResult {
  mode: VerifyMode;
  /** The text to parse: what gpgv verified, or the clear-signed body. */
  text: string;
  /** Why the signature could not be checked (hash-chain-only). */
  reason?: string;
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}

async function findOnPath(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = join(dir || '.', cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Verifies an InRelease file. `keyring: null` disables signature checking (hash chain only).
 * A present-but-bad signature is always an IntegrityError: we never fall back on failure,
 * only on absence of the tools.
 */
export async function verifyInRelease(data: Buffer, opts: { keyring?: string | null; source?: string } = {}): Promise<VerifyResult> {
  const source = opts.source ?? 'InRelease';
  const keyring = opts.keyring === undefined ? DEFAULT_KEYRING : opts.keyring;
  const gpgv = await findOnPath('gpgv');
  let reason: string | undefined;
  if (keyring === null) reason = 'signature checking is disabled';
  else if (!gpgv) reason = 'gpgv is not installed (apt-get install gpgv)';
  else if (!existsSync(keyring)) reason = `the keyring ${keyring} is missing (apt-get install debian-archive-keyring)`;
  if (reason) return { mode: 'hash-chain-only', text: clearsignedText(data.toString('utf8')), reason };

  const dir = await mkdtemp(join(tmpdir(), 'visor-gpgv-'));
  try {
    const input = join(dir, 'InRelease');
    const output = join(dir, 'Release');
    await writeFile(input, data);
    // --output writes exactly the text the signature covers; parsing that (not our own
    // reading of the armor) means nothing unsigned can slip into what we trust.
    const { code, stderr } = await run(gpgv!, ['--keyring', keyring!, '--output', output, input]);
    if (code !== 0) {
      throw new VisorError(
        'IntegrityError',
        `${source}: bad or unknown OpenPGP signature; refusing to use this mirror.\n` +
          `gpgv said: ${stderr.trim().split('\n').slice(-3).join(' | ')}\n` +
          'If the mirror is trustworthy but newer than your keyring, update debian-archive-keyring; otherwise use another --mirror.',
      );
    }
    return { mode: 'gpgv', text: await readFile(output, 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
