/**
 * Which Debian mirror to use: `--mirror URL`, else $VISOR_MIRROR, else the host's apt
 * configuration (sources.list(5): deb822 `*.sources` files and one-line `*.list` /
 * `sources.list`). No mirror host name is ever built in: a host without any of these gets
 * an error that says how to name one.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { VisorError } from '../base/errors.js';
import { field, parseDeb822 } from './deb822.js';

export interface MirrorChoice {
  url: string;
  /** Where it came from, for messages and the manifest ("--mirror", "VISOR_MIRROR", a file). */
  from: string;
}

export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  enabled: boolean;
  signedBy?: string;
  file: string;
}

// Debian's release codenames and aliases. A suite outside this set (a vendor repository, an
// Ubuntu release) does not name a Debian archive, so its URI is not a Debian mirror.
const DEBIAN_SUITES = new Set([
  'buzz', 'rex', 'bo', 'hamm', 'slink', 'potato', 'woody', 'sarge', 'etch', 'lenny', 'squeeze',
  'wheezy', 'jessie', 'stretch', 'buster', 'bullseye', 'bookworm', 'trixie', 'forky', 'duke',
  'sid', 'stable', 'testing', 'unstable', 'oldstable', 'oldoldstable', 'experimental',
]);

export function normalizeMirrorUrl(raw: string, from: string): string {
  let u: URL;
  try {
    u = new URL(raw.trim());
  } catch {
    throw new VisorError('InvalidConfig', `${from}: '${raw}' is not a URL (expected http://HOST/PATH or https://HOST/PATH)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new VisorError('InvalidConfig', `${from}: mirror '${raw}' must be an http:// or https:// URL`);
  }
  return u.toString().replace(/\/+$/, '');
}

/** Parses a deb822 `.sources` file. */
export function parseSourcesFile(text: string, file: string): AptSource[] {
  return parseDeb822(text, { comments: true }).map((s) => {
    const words = (name: string) => (field(s, name) ?? '').split(/\s+/).filter(Boolean);
    const signedBy = field(s, 'Signed-By');
    return {
      types: words('Types'),
      uris: words('URIs'),
      suites: words('Suites'),
      components: words('Components'),
      enabled: (field(s, 'Enabled') ?? 'yes').toLowerCase() !== 'no',
      ...(signedBy ? { signedBy } : {}),
      file,
    };
  });
}

/** Parses a one-line-style `sources.list`: `deb [opt=val ...] URI SUITE COMPONENT...`. */
export function parseSourcesList(text: string, file: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    const m = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const opts = new Map((m[2] ?? '').split(/\s+/).filter(Boolean).map((o) => {
      const eq = o.indexOf('=');
      return [o.slice(0, eq), o.slice(eq + 1)] as [string, string];
    }));
    const signedBy = opts.get('signed-by');
    out.push({
      types: [m[1]!],
      uris: [m[3]!],
      suites: [m[4]!],
      components: (m[5] ?? '').split(/\s+/).filter(Boolean),
      enabled: true,
      ...(signedBy ? { signedBy } : {}),
      file,
    });
  }
  return out;
}

function isDebianArchive(s: AptSource, uri: string): boolean {
  if (!s.enabled || !s.types.includes('deb')) return false;
  if (!/^https?:\/\//.test(uri)) return false;
  // The security archive has another layout (dists/SUITE-security) and lacks riscv64 in
  // older releases: never pick it as "the" mirror.
  if (/-security\/?$/.test(uri) || s.suites.some((x) => x.endsWith('-security') || x.includes('/updates'))) return false;
  if (!s.components.includes('main')) return false;
  return s.suites.some((x) => DEBIAN_SUITES.has(x.split('-')[0]!));
}

/** Lists the Debian mirrors named in an apt configuration directory, in apt's file order. */
export async function aptMirrors(aptRoot = '/etc/apt'): Promise<MirrorChoice[]> {
  const files: { path: string; kind: 'deb822' | 'list' }[] = [{ path: join(aptRoot, 'sources.list'), kind: 'list' }];
  try {
    const dir = join(aptRoot, 'sources.list.d');
    for (const name of (await readdir(dir)).sort()) {
      if (name.endsWith('.sources')) files.push({ path: join(dir, name), kind: 'deb822' });
      else if (name.endsWith('.list')) files.push({ path: join(dir, name), kind: 'list' });
    }
  } catch {
    // No sources.list.d: fine.
  }
  const found: MirrorChoice[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await readFile(f.path, 'utf8');
    } catch {
      continue;
    }
    const sources = f.kind === 'deb822' ? parseSourcesFile(text, f.path) : parseSourcesList(text, f.path);
    for (const s of sources) {
      for (const uri of s.uris) {
        if (!isDebianArchive(s, uri)) continue;
        const url = normalizeMirrorUrl(uri, f.path);
        if (!found.some((x) => x.url === url)) found.push({ url, from: f.path });
      }
    }
  }
  return found;
}

/** Picks the mirror: explicit option, then $VISOR_MIRROR, then the host's apt configuration. */
export async function chooseMirror(opts: { mirror?: string; aptRoot?: string; env?: NodeJS.ProcessEnv } = {}): Promise<MirrorChoice> {
  const env = opts.env ?? process.env;
  if (opts.mirror) return { url: normalizeMirrorUrl(opts.mirror, '--mirror'), from: '--mirror' };
  if (env.VISOR_MIRROR) return { url: normalizeMirrorUrl(env.VISOR_MIRROR, 'VISOR_MIRROR'), from: 'VISOR_MIRROR' };
  const aptRoot = opts.aptRoot ?? '/etc/apt';
  const [first] = await aptMirrors(aptRoot);
  if (!first) {
    throw new VisorError(
      'InvalidConfig',
      `no Debian mirror found in ${aptRoot}/sources.list or ${aptRoot}/sources.list.d/*.sources; ` +
        'name one with --mirror URL or the VISOR_MIRROR environment variable (the URL of a Debian archive, the directory that holds dists/ and pool/)',
    );
  }
  return first;
}
