/**
 * Chooses the packages of a Debian root filesystem from a `Packages` index, as apt would for
 * `apt-get install --no-install-recommends`: Essential/required packages, the wanted ones, and
 * the closure of their Pre-Depends and Depends (Debian Policy §7.1 relationship syntax,
 * §7.2 alternatives, §7.5 virtual packages, §7.4 Conflicts/Breaks; versions by deb-version(7)).
 *
 * The choice is greedy and deterministic: an OR-group is satisfied by an already chosen
 * package if any alternative is one, else by its first installable alternative (Policy: "the
 * first alternative is the default"); a virtual package by its only provider, else by the
 * provider the seeds or their priority prefer. A candidate that conflicts with (or breaks, or
 * is broken by) a chosen package is skipped. That is what debootstrap's resolver does, plus
 * versions and conflicts, which it ignores.
 */
import { VisorError } from '../base/errors.js';
import { compareVersions } from './packages-index.js';

/** One binary package stanza, with the fields the resolver and the dpkg database need. */
export interface BinaryPackage {
  name: string;
  version: string;
  architecture: string;
  essential: boolean;
  priority: string;
  multiArch: string;
  filename: string;
  size: number;
  sha256: string;
  installedSize: number;
  preDepends: Relation[][];
  depends: Relation[][];
  provides: Relation[];
  conflicts: Relation[];
  breaks: Relation[];
}

export type VersionOp = '<<' | '<=' | '=' | '>=' | '>>';

/** One alternative of a relationship: `name (op version)`. */
export interface Relation {
  name: string;
  op?: VersionOp;
  version?: string;
}

const REL_RE = /^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^\s)]+)\s*\))?\s*(?:\[[^\]]*\])?\s*(?:<[^>]*>\s*)*$/;

/** Parses one alternative; `source` names the package for the error. */
export function parseRelation(text: string, source: string): Relation {
  const m = REL_RE.exec(text.trim());
  if (!m) throw new VisorError('IntegrityError', `Packages index: cannot parse the relation '${text.trim()}' of ${source}`);
  const rel: Relation = { name: m[1]! };
  if (m[2]) {
    // Policy §7.1: the obsolete '<' and '>' mean '<=' and '>='.
    rel.op = m[2] === '<' ? '<=' : m[2] === '>' ? '>=' : (m[2] as VersionOp);
    rel.version = m[3]!;
  }
  return rel;
}

/** A Depends-style field: comma-separated clauses of '|'-separated alternatives. */
export function parseRelations(field: string | undefined, source: string): Relation[][] {
  if (!field) return [];
  return field.split(',').map((c) => c.trim()).filter(Boolean).map((c) => c.split('|').map((a) => parseRelation(a, source)));
}

export function versionSatisfies(version: string, op: VersionOp | undefined, want: string | undefined): boolean {
  if (!op || want === undefined) return true;
  const c = compareVersions(version, want);
  switch (op) {
    case '<<': return c < 0;
    case '<=': return c <= 0;
    case '=': return c === 0;
    case '>=': return c >= 0;
    case '>>': return c > 0;
  }
}

export function formatRelation(r: Relation): string {
  return r.op ? `${r.name} (${r.op} ${r.version})` : r.name;
}

/** Reads the fields of one stanza that matter here (continuation lines joined). */
function stanzaFields(block: string): Map<string, string> {
  const out = new Map<string, string>();
  let key = '';
  for (const line of block.split('\n')) {
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (key) out.set(key, out.get(key)! + '\n' + line);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    key = line.slice(0, colon).toLowerCase();
    out.set(key, line.slice(colon + 1).trim());
  }
  return out;
}

/** Every installable stanza of a Packages index for `arch` (and `all`). */
export function parseBinaryPackages(text: string, arch: string): BinaryPackage[] {
  const out: BinaryPackage[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    if (!block.trim()) continue;
    const f = stanzaFields(block);
    const name = f.get('package');
    if (!name) continue;
    const a = f.get('architecture') ?? '';
    if (a !== arch && a !== 'all') continue;
    const need = (k: string) => {
      const v = f.get(k);
      if (!v) throw new VisorError('IntegrityError', `Packages index: package ${name} has no ${k} field`);
      return v;
    };
    const filename = need('filename');
    const sha256 = need('sha256');
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new VisorError('IntegrityError', `Packages index: bad SHA256 for ${name}`);
    if (filename.split('/').includes('..') || filename.startsWith('/')) {
      throw new VisorError('IntegrityError', `Packages index: unsafe Filename for ${name}: ${filename}`);
    }
    const flat = (k: string) => parseRelations(f.get(k), name).map((alts) => alts[0]!);
    out.push({
      name,
      version: need('version'),
      architecture: a,
      essential: f.get('essential') === 'yes',
      priority: f.get('priority') ?? 'optional',
      multiArch: f.get('multi-arch') ?? 'no',
      filename,
      size: Number(need('size')),
      sha256,
      installedSize: Number(f.get('installed-size') ?? 0),
      preDepends: parseRelations(f.get('pre-depends'), name),
      depends: parseRelations(f.get('depends'), name),
      provides: flat('provides'),
      conflicts: flat('conflicts'),
      breaks: flat('breaks'),
    });
  }
  return out;
}

export interface ResolveRequest {
  /** Essential: yes and Priority: required packages (debootstrap's base). Default true. */
  base?: boolean;
  /** Packages wanted by name, optionally with a version constraint: `name` or `name=version`. */
  packages: string[];
}

export interface Resolution {
  /** Chosen packages, dependencies before dependents where the graph allows (Pre-Depends first). */
  packages: BinaryPackage[];
  /** Why each package is in: 'base', 'requested', or the package that needed it. */
  reason: Map<string, string>;
}

const PRIORITY_RANK: Record<string, number> = { required: 0, important: 1, standard: 2, optional: 3, extra: 4 };

export class PackageUniverse {
  /** Candidate (highest) version per package name. */
  readonly byName = new Map<string, BinaryPackage>();
  /** Real packages providing each virtual name. */
  readonly providers = new Map<string, { pkg: BinaryPackage; rel: Relation }[]>();

  constructor(packages: BinaryPackage[]) {
    for (const p of packages) {
      const have = this.byName.get(p.name);
      if (!have || compareVersions(p.version, have.version) > 0) this.byName.set(p.name, p);
    }
    for (const p of this.byName.values()) {
      for (const rel of p.provides) {
        const list = this.providers.get(rel.name) ?? [];
        list.push({ pkg: p, rel });
        this.providers.set(rel.name, list);
      }
    }
  }

  static fromIndex(text: string, arch: string): PackageUniverse {
    return new PackageUniverse(parseBinaryPackages(text, arch));
  }

  get size(): number {
    return this.byName.size;
  }

  /** Packages of the candidate set that can satisfy `rel`: the real one, then providers. */
  candidates(rel: Relation): BinaryPackage[] {
    const out: BinaryPackage[] = [];
    const real = this.byName.get(rel.name);
    if (real && versionSatisfies(real.version, rel.op, rel.version)) out.push(real);
    for (const { pkg, rel: prov } of this.providers.get(rel.name) ?? []) {
      // Policy §7.5: an unversioned Provides satisfies only unversioned dependencies.
      if (rel.op && !prov.version) continue;
      if (rel.op && !versionSatisfies(prov.version!, rel.op, rel.version)) continue;
      if (!out.includes(pkg)) out.push(pkg);
    }
    return out;
  }
}

/** True when `p` is (or provides, at a matching version) what `rel` names. */
function matches(p: BinaryPackage, rel: Relation): boolean {
  if (p.name === rel.name) return versionSatisfies(p.version, rel.op, rel.version);
  return p.provides.some((prov) => prov.name === rel.name && (!rel.op || (prov.version !== undefined && versionSatisfies(prov.version, rel.op, rel.version))));
}

/** Does installing `a` beside `b` violate a Conflicts or Breaks of either? */
function clash(a: BinaryPackage, b: BinaryPackage): Relation | undefined {
  if (a === b) return undefined;
  for (const rel of [...a.conflicts, ...a.breaks]) {
    // A package that conflicts with a virtual name it provides itself does not conflict
    // with itself (Policy §7.6.2 "replacing whole packages"); a === b is skipped above.
    if (matches(b, rel)) return rel;
  }
  for (const rel of [...b.conflicts, ...b.breaks]) if (matches(a, rel)) return rel;
  return undefined;
}

function parseRequest(spec: string): Relation {
  const eq = spec.indexOf('=');
  if (eq > 0) return { name: spec.slice(0, eq), op: '=', version: spec.slice(eq + 1) };
  return { name: spec };
}

export function resolve(universe: PackageUniverse, req: ResolveRequest): Resolution {
  const chosen = new Map<string, BinaryPackage>();
  const reason = new Map<string, string>();
  const queue: BinaryPackage[] = [];

  const conflictWith = (p: BinaryPackage) => {
    for (const q of chosen.values()) {
      const rel = clash(p, q);
      if (rel) return { other: q, rel };
    }
    return undefined;
  };
  const add = (p: BinaryPackage, why: string) => {
    if (chosen.has(p.name)) return;
    const c = conflictWith(p);
    if (c) {
      throw new VisorError('DependencyError', `cannot install ${p.name} ${p.version} (${why}): it conflicts with ${c.other.name} ${c.other.version} (${formatRelation(c.rel)}); remove one of them from --packages`);
    }
    chosen.set(p.name, p);
    reason.set(p.name, why);
    queue.push(p);
  };

  // Seeds: requested packages before base ones, so a request wins a conflict with nothing
  // chosen yet and base packages see the request's choices when picking alternatives.
  for (const spec of req.packages) {
    const rel = parseRequest(spec);
    const cands = universe.candidates(rel);
    if (cands.length === 0) {
      const real = universe.byName.get(rel.name);
      throw new VisorError('DependencyError', real
        ? `package ${rel.name}: the archive has version ${real.version}, not ${rel.version}; ask for ${rel.name} without a version`
        : `package ${rel.name} is not in the archive's index for this suite and architecture; check the name (apt-cache search on a Debian machine) or drop it from --packages`);
    }
    add(cands[0]!, 'requested');
  }
  if (req.base !== false) {
    const base = [...universe.byName.values()].filter((p) => p.essential || p.priority === 'required').sort((a, b) => a.name.localeCompare(b.name));
    for (const p of base) if (!chosen.has(p.name) && !conflictWith(p)) add(p, 'base');
  }

  const satisfiedBy = (alts: Relation[]) => {
    for (const rel of alts) for (const p of chosen.values()) if (matches(p, rel)) return p;
    return undefined;
  };
  const pick = (alts: Relation[]): BinaryPackage | undefined => {
    for (const rel of alts) {
      const cands = universe.candidates(rel).filter((p) => !conflictWith(p));
      if (cands.length === 0) continue;
      if (cands.length === 1 || cands[0]!.name === rel.name) return cands[0];
      // Several providers of a virtual package: the most important, then by name.
      return [...cands].sort((a, b) => (PRIORITY_RANK[a.priority] ?? 9) - (PRIORITY_RANK[b.priority] ?? 9) || a.name.localeCompare(b.name))[0];
    }
    return undefined;
  };

  while (queue.length) {
    const p = queue.shift()!;
    for (const alts of [...p.preDepends, ...p.depends]) {
      if (satisfiedBy(alts)) continue;
      const q = pick(alts);
      if (!q) {
        const wanted = alts.map(formatRelation).join(' | ');
        const near = alts.map((r) => universe.byName.get(r.name)).filter(Boolean).map((x) => `${x!.name} ${x!.version}`);
        throw new VisorError('DependencyError',
          `cannot resolve ${p.name} ${p.version} (${reason.get(p.name)}): it depends on ${wanted}, which ` +
          (near.length ? `the archive has only as ${near.join(', ')} or which conflicts with a chosen package` : 'no package in the archive provides') +
          `; the index may be mid-update (pull again later) or drop the package that needs it from --packages`);
      }
      add(q, p.name);
    }
  }

  return { packages: installOrder([...chosen.values()], universe), reason };
}

/**
 * Dependencies before dependents (depth-first over Pre-Depends then Depends, cycles broken
 * where they close), starting from the names in sorted order so the order is stable.
 */
function installOrder(pkgs: BinaryPackage[], _universe: PackageUniverse): BinaryPackage[] {
  const set = new Map(pkgs.map((p) => [p.name, p]));
  const out: BinaryPackage[] = [];
  const state = new Map<string, 1 | 2>();
  const visit = (p: BinaryPackage) => {
    if (state.get(p.name)) return;
    state.set(p.name, 1);
    for (const alts of [...p.preDepends, ...p.depends]) {
      for (const rel of alts) {
        const q = [...set.values()].find((x) => matches(x, rel));
        if (q) {
          visit(q);
          break;
        }
      }
    }
    state.set(p.name, 2);
    out.push(p);
  };
  for (const p of [...pkgs].sort((a, b) => a.name.localeCompare(b.name))) visit(p);
  return out;
}
