import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { PackageUniverse, parseBinaryPackages, parseRelations, resolve, versionSatisfies, type BinaryPackage } from './resolver.js';

// A trimmed copy of trixie's riscv64 main/binary-riscv64/Packages: every stanza the default
// resolution (and gcc, make, hello, systemd) looks at, with the fields the resolver reads.
const FIXTURE = new URL('../../test/images/fixtures/trixie-riscv64-Packages.gz', import.meta.url);
const text = gunzipSync(readFileSync(FIXTURE)).toString('utf8');
const universe = PackageUniverse.fromIndex(text, 'riscv64');
const DEFAULT = ['apt', 'bash', 'ca-certificates', 'curl', 'iproute2', 'procps', 'python3', 'dhcpcd-base', 'less'];

const h = (c: string) => c.repeat(64);
function stanza(name: string, fields: Record<string, string> = {}): string {
  const f = { Version: '1.0', Architecture: 'riscv64', Filename: `pool/${name}.deb`, Size: '1', SHA256: h('a'), ...fields };
  return [`Package: ${name}`, ...Object.entries(f).map(([k, v]) => `${k}: ${v}`)].join('\n');
}
const tiny = (...s: string[]) => PackageUniverse.fromIndex(s.join('\n\n') + '\n', 'riscv64');
const names = (pkgs: BinaryPackage[]) => pkgs.map((p) => p.name);

describe('relations', () => {
  it('parses versions, alternatives, arch qualifiers and restriction lists', () => {
    expect(parseRelations('libc6 (>= 2.38), perl:any | perl-base (>> 5.1) [riscv64], foo (< 2)', 'x')).toEqual([
      [{ name: 'libc6', op: '>=', version: '2.38' }],
      [{ name: 'perl' }, { name: 'perl-base', op: '>>', version: '5.1' }],
      [{ name: 'foo', op: '<=', version: '2' }],
    ]);
    expect(() => parseRelations('libc6 (>= 2.38', 'pkgname')).toThrow(/relation 'libc6 \(>= 2.38' of pkgname/);
  });

  it('compares versions as deb-version(7) says', () => {
    expect(versionSatisfies('1:2.0-1', '>>', '3.0')).toBe(true); // epoch wins
    expect(versionSatisfies('1.0~rc1', '<<', '1.0')).toBe(true);
    expect(versionSatisfies('2.38-1', '>=', '2.38')).toBe(true);
    expect(versionSatisfies('2.38', '=', '2.38-0')).toBe(true); // an absent revision compares as "0"
    expect(versionSatisfies('2.38', '>>', '2.38')).toBe(false);
  });
});

describe('resolver on trixie riscv64 data', () => {
  const res = resolve(universe, { packages: DEFAULT });
  const chosen = new Map(res.packages.map((p) => [p.name, p]));

  it('takes every Essential and required package, the requested ones, and their closure', () => {
    const base = [...universe.byName.values()].filter((p) => p.essential || p.priority === 'required');
    expect(base.length).toBeGreaterThan(25);
    for (const p of base) expect(chosen.has(p.name), p.name).toBe(true);
    for (const n of DEFAULT) expect(chosen.get(n), n).toBeDefined();
    for (const n of ['libc6', 'python3.13-minimal', 'libcurl4t64', 'libapt-pkg7.0', 'openssl']) expect(chosen.has(n), n).toBe(true);
    // Nothing outside the closure: no Recommends (apt recommends ca-certificates, but gpgv's
    // providers etc. must not sneak in), no second provider of anything.
    expect(chosen.has('systemd')).toBe(false);
    expect(chosen.has('gcc')).toBe(false);
  });

  it('satisfies every Depends and Pre-Depends of every chosen package with a matching version', () => {
    for (const p of res.packages) {
      for (const alts of [...p.preDepends, ...p.depends]) {
        const ok = alts.some((rel) => universe.candidates(rel).some((c) => chosen.get(c.name) === c));
        expect(ok, `${p.name}: ${alts.map((r) => r.name).join(' | ')}`).toBe(true);
      }
    }
  });

  it('orders dependencies before dependents, Pre-Depends included', () => {
    const pos = new Map(res.packages.map((p, i) => [p.name, i]));
    // dpkg Pre-Depends on libzstd1 and friends; bash Pre-Depends on libtinfo6; python3 needs python3.13.
    expect(pos.get('libzstd1')!).toBeLessThan(pos.get('dpkg')!);
    expect(pos.get('libtinfo6')!).toBeLessThan(pos.get('bash')!);
    expect(pos.get('python3.13')!).toBeLessThan(pos.get('python3')!);
    expect(pos.get('libc6')!).toBeLessThan(pos.get('coreutils')!);
  });

  it('keeps the first alternative when it is installable (base-passwd | adduser in apt)', () => {
    expect(res.reason.get('base-passwd')).toBe('base');
    const apt = universe.byName.get('apt')!;
    expect(apt.depends.some((alts) => alts.length === 2 && alts[0]!.name === 'base-passwd' && alts[1]!.name === 'adduser')).toBe(true);
  });

  it('chooses a provider for a virtual package', () => {
    // base-files depends on awk, provided by gawk, mawk (required) and original-awk;
    // iproute2 on debconf (>= 0.5) | debconf-2.0. Alone, without the base set, the most
    // important provider wins.
    const awk = names(resolve(universe, { base: false, packages: ['base-files'] }).packages);
    expect(awk).toContain('mawk');
    expect(awk).not.toContain('gawk');
    expect(awk).not.toContain('original-awk');
    expect(universe.providers.get('awk')!.map((p) => p.pkg.name).sort()).toEqual(['gawk', 'mawk', 'original-awk']);
    // With gcc and make: a bigger closure that still holds together.
    const withGcc = resolve(universe, { packages: [...DEFAULT, 'gcc', 'make'] });
    const n = new Set(names(withGcc.packages));
    expect(n.has('gcc-14')).toBe(true);
    expect(n.has('make')).toBe(true);
    expect(n.has('cdebconf')).toBe(false);
  });

  it('names the missing package and what to do', () => {
    expect(() => resolve(universe, { packages: ['no-such-package'] })).toThrow(/package no-such-package is not in the archive's index.*--packages/);
    expect(() => resolve(universe, { packages: ['bash=0.1'] })).toThrow(/the archive has version 5\..*not 0\.1/);
  });
});

describe('resolver rules on small indices', () => {
  it('uses a virtual package only through a versioned Provides when the dependency is versioned', () => {
    const u = tiny(
      stanza('app', { Depends: 'virt (>= 2)' }),
      stanza('old-prov', { Provides: 'virt' }),
      stanza('new-prov', { Provides: 'virt (= 3)' }),
    );
    expect(names(resolve(u, { base: false, packages: ['app'] }).packages)).toEqual(['new-prov', 'app']);
  });

  it('skips an alternative that conflicts with a chosen package', () => {
    const u = tiny(
      stanza('app', { Depends: 'a | b' }),
      stanza('a', { Conflicts: 'base-thing' }),
      stanza('b'),
      stanza('base-thing', { Priority: 'required' }),
    );
    expect(names(resolve(u, { packages: ['app'] }).packages).sort()).toEqual(['app', 'b', 'base-thing']);
  });

  it('treats Breaks like Conflicts and honours versions in them', () => {
    const u = tiny(
      stanza('app', { Depends: 'lib (>= 1)' }),
      stanza('lib', { Version: '2', Breaks: 'app (<< 0.5)' }),
    );
    expect(names(resolve(u, { base: false, packages: ['app'] }).packages)).toEqual(['lib', 'app']);
    const bad = tiny(stanza('app', { Depends: 'lib' }), stanza('lib', { Breaks: 'app (<< 2)' }));
    expect(() => resolve(bad, { base: false, packages: ['app'] })).toThrow(/cannot resolve app 1\.0.*depends on lib/);
  });

  it('reports an unresolvable dependency with the package that needs it', () => {
    const u = tiny(stanza('app', { Depends: 'libfoo (>= 9)' }), stanza('libfoo', { Version: '1' }));
    expect(() => resolve(u, { base: false, packages: ['app'] })).toThrow(/cannot resolve app 1\.0 \(requested\): it depends on libfoo \(>= 9\), which the archive has only as libfoo 1/);
  });

  it('takes the highest version of a package listed twice and ignores other architectures', () => {
    const u = tiny(stanza('p', { Version: '1' }), stanza('p', { Version: '1:0.1' }), stanza('q', { Architecture: 'amd64' }));
    expect(u.byName.get('p')!.version).toBe('1:0.1');
    expect(u.byName.has('q')).toBe(false);
    expect(parseBinaryPackages(stanza('q', { Architecture: 'all' }), 'riscv64')).toHaveLength(1);
  });
});
