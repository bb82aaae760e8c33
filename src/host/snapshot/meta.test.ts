import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isVisorError } from '../../base/errors.js';
import type { VmSpec } from '../../vm/spec.js';
import { snapshotMeta, validateSnapshot, VISOR_VERSION } from './meta.js';

const spec: VmSpec = {
  name: 'vm', kernel: '/k', append: 'console=ttyS0', bios: 'builtin', memoryMiB: 64, disks: [{ path: '/d.img', readOnly: false }],
  nets: [], rng: true, deterministic: true, accel: 'interp', console: 'serial', agent: false,
};
const disk = { path: '/d.img', format: 'raw' as const, readOnly: false, size: 1, mtimeMs: 2, headSha256: 'ab' };
const machine = { runner: { version: 1, executed: 40_000, deterministic: true, rngState: [1, 2, 3, 4] }, board: { version: 1 } };

function why(meta: unknown, m: unknown = machine): string {
  try {
    validateSnapshot({ meta, machine: m });
  } catch (err) {
    return isVisorError(err) ? `${err.code}: ${err.message}` : `not a VisorError: ${String(err)}`;
  }
  return 'valid';
}

describe('snapshot metadata', () => {
  it('carries the version package.json has', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(VISOR_VERSION).toBe(pkg.version);
    expect(snapshotMeta(spec, [disk]).visorVersion).toBe(pkg.version);
  });

  it('accepts what a snapshot writes, and older snapshots without the newer fields', () => {
    const meta = snapshotMeta(spec, [disk]);
    const json = JSON.parse(JSON.stringify(meta)) as typeof meta;
    expect(validateSnapshot({ meta: json, machine }).meta.config).toEqual(spec);
    const { accel: _a, console: _c, agent: _g, ...old } = spec;
    expect(why({ ...json, config: old })).toBe('valid');
  });

  it('refuses malformed sections with CorruptImage naming the place', () => {
    const meta = JSON.parse(JSON.stringify(snapshotMeta(spec, [disk]))) as Record<string, unknown>;
    expect(why({ format: 'other' })).toMatch(/^CorruptImage: snapshot: meta section is not visor snapshot metadata/);
    expect(why({ ...meta, config: { ...spec, memoryMiB: 'lots' } })).toMatch(/^CorruptImage: .*meta section is malformed at config\.memoryMiB/);
    expect(why({ ...meta, config: { ...spec, vsock: { cid: 2, path: '/v' } } })).toMatch(/at config\.vsock\.cid/);
    expect(why({ ...meta, disks: [] })).toMatch(/^CorruptImage: snapshot: disk fingerprints do not match the disks/);
    expect(why({ ...meta, disks: [{ ...disk, path: '/other' }] })).toMatch(/disk fingerprints do not match/);
    expect(why(meta, { ...machine, runner: { ...machine.runner, executed: -1 } })).toMatch(/machine section is malformed at runner\.executed/);
    expect(why(meta, { ...machine, runner: { ...machine.runner, rngState: [1, 2, 3] } })).toMatch(/at runner\.rngState/);
    expect(why(meta, { ...machine, runner: { ...machine.runner, deterministic: false } })).toMatch(/deterministic differs/);
    expect(why(meta, { ...machine, board: [] })).toMatch(/at board/);
    expect(why(meta, null)).toMatch(/^CorruptImage: snapshot: the machine section is malformed/);
  });
});
