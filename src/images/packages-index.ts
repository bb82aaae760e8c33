/**
 * Debian `Packages` indices (https://wiki.debian.org/DebianRepository/Format "Packages
 * Indices") and dpkg's version ordering (deb-version(7)).
 */
import { VisorError } from '../base/errors.js';
import { field, parseDeb822, type Stanza } from './deb822.js';

export interface PackageRecord {
  name: string;
  version: string;
  architecture: string;
  filename: string;
  size: number;
  sha256: string;
  depends: string;
}

/** Indexes a Packages file by package name; only the stanzas asked about are fully parsed. */
export class PackagesIndex {
  private readonly raw = new Map<string, string[]>();

  constructor(text: string) {
    // Splitting on blank lines and reading just the first line keeps a 50 MB index cheap.
    for (const block of text.split(/\n\s*\n/)) {
      const m = /^Package:\s*(\S+)/m.exec(block);
      if (!m) continue;
      const list = this.raw.get(m[1]!);
      if (list) list.push(block);
      else this.raw.set(m[1]!, [block]);
    }
  }

  get size(): number {
    return this.raw.size;
  }

  /** The highest version of a package, or undefined when the index does not have it. */
  find(name: string): PackageRecord | undefined {
    const blocks = this.raw.get(name);
    if (!blocks) return undefined;
    const records = blocks.map((b) => toRecord(parseDeb822(b)[0]!, name));
    records.sort((a, b) => compareVersions(b.version, a.version));
    return records[0];
  }
}

function toRecord(s: Stanza, name: string): PackageRecord {
  const need = (f: string) => {
    const v = field(s, f);
    if (!v) throw new VisorError('IntegrityError', `Packages index: package ${name} has no ${f} field`);
    return v;
  };
  const sha256 = need('SHA256');
  const filename = need('Filename');
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new VisorError('IntegrityError', `Packages index: bad SHA256 for ${name}`);
  if (filename.split('/').includes('..') || filename.startsWith('/')) {
    throw new VisorError('IntegrityError', `Packages index: unsafe Filename for ${name}: ${filename}`);
  }
  return {
    name,
    version: need('Version'),
    architecture: field(s, 'Architecture') ?? '',
    filename,
    size: Number(need('Size')),
    sha256,
    depends: field(s, 'Depends') ?? '',
  };
}

/** Package names of a Depends field, first alternative of each clause, without versions. */
export function dependsNames(depends: string): string[] {
  return depends
    .split(',')
    .map((clause) => clause.split('|')[0]!.trim().replace(/\s*\(.*\)\s*$/, '').replace(/:\S+$/, '').trim())
    .filter(Boolean);
}

// deb-version(7): [epoch:]upstream[-revision]; compare epoch numerically, then upstream and
// revision with the dpkg algorithm: alternate non-digit runs (where '~' sorts before
// everything, even the end, and letters before non-letters) and digit runs (numerically).
function order(c: string): number {
  if (c === '~') return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let diff = 0;
    while ((i < a.length && !/\d/.test(a[i]!)) || (j < b.length && !/\d/.test(b[j]!))) {
      const ac = i < a.length && !/\d/.test(a[i]!) ? order(a[i]!) : 0;
      const bc = j < b.length && !/\d/.test(b[j]!) ? order(b[j]!) : 0;
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === '0') i++;
    while (b[j] === '0') j++;
    while (i < a.length && /\d/.test(a[i]!) && j < b.length && /\d/.test(b[j]!)) {
      if (!diff) diff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && /\d/.test(a[i]!)) return 1;
    if (j < b.length && /\d/.test(b[j]!)) return -1;
    if (diff) return diff;
  }
  return 0;
}

export function compareVersions(a: string, b: string): number {
  const split = (v: string) => {
    const colon = v.indexOf(':');
    const epoch = colon >= 0 ? Number(v.slice(0, colon)) : 0;
    const rest = colon >= 0 ? v.slice(colon + 1) : v;
    const dash = rest.lastIndexOf('-');
    return { epoch, upstream: dash >= 0 ? rest.slice(0, dash) : rest, revision: dash >= 0 ? rest.slice(dash + 1) : '' };
  };
  const x = split(a);
  const y = split(b);
  if (x.epoch !== y.epoch) return x.epoch - y.epoch;
  return compareFragment(x.upstream, y.upstream) || compareFragment(x.revision, y.revision);
}
