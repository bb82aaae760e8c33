import { Command } from 'commander';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { isVisorError } from '../../base/errors.js';
import { registerDiskCommands } from './disk.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-cli-disk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `visor ARGS` in-process and returns what it printed. */
async function visor(...args: string[]): Promise<string> {
  const program = new Command('visor').exitOverride();
  registerDiskCommands(program);
  let printed = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
    printed += String(s);
    return true;
  });
  try {
    await program.parseAsync(args, { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  return printed;
}

describe('visor disk / visor pool', () => {
  it('create, info, snapshot, check, convert', async () => {
    const base = join(dir, 'base.raw');
    writeFileSync(base, new Uint8Array(2 << 20).fill(5));
    const img = join(dir, 'a.qcow2');
    await visor('disk', 'create', img, '--backing', 'base.raw', '-F', 'raw');
    const info = JSON.parse(await visor('disk', 'info', img, '--json'));
    expect(info).toMatchObject({ format: 'qcow2', virtualSize: 2 << 20, backingFile: 'base.raw', compat: '1.1' });
    expect(info.backingChain).toEqual([{ file: base, format: 'raw', virtualSize: 2 << 20 }]);

    await visor('disk', 'snapshot', 'create', img, 'clean');
    const snaps = JSON.parse(await visor('disk', 'snapshot', 'list', img, '--json'));
    expect(snaps.map((s: { name: string }) => s.name)).toEqual(['clean']);
    await visor('disk', 'snapshot', 'apply', img, 'clean');
    await visor('disk', 'snapshot', 'delete', img, '1');
    expect(await visor('disk', 'snapshot', 'list', img)).toContain('No snapshots');

    expect(await visor('disk', 'check', img)).toContain('No errors');
    const out = join(dir, 'a-flat.qcow2');
    await visor('disk', 'convert', img, out, '-c');
    const flat = JSON.parse(await visor('disk', 'info', out, '--json'));
    expect(flat.backingChain).toEqual([]);
    expect(flat.virtualSize).toBe(2 << 20);
    expect(await visor('disk', 'info', out)).toContain('virtual size: 2 MiB');
  });

  it('errors are VisorErrors with their exit code', async () => {
    const e = await visor('disk', 'info', join(dir, 'missing.qcow2')).catch((x: unknown) => x);
    expect(isVisorError(e, 'NotFound')).toBe(true);
    const raw = join(dir, 'r.img');
    await visor('disk', 'create', raw, '1M', '-f', 'raw');
    const e2 = await visor('disk', 'snapshot', 'create', raw, 'x').catch((x: unknown) => x);
    expect(isVisorError(e2, 'InvalidArgument')).toBe(true);
  });

  it('pool: create, clone, list, info, resize, delete', async () => {
    const p = join(dir, 'pool');
    await visor('pool', 'init', p);
    await visor('pool', 'create', p, 'golden.qcow2', '16M');
    await visor('pool', 'clone', p, 'golden.qcow2', 'vm1.qcow2');
    const list = JSON.parse(await visor('pool', 'list', p, '--json'));
    expect(list.map((v: { name: string; backing?: string }) => [v.name, v.backing ?? null])).toEqual([
      ['golden.qcow2', null],
      ['vm1.qcow2', 'golden.qcow2'],
    ]);
    const info = JSON.parse(await visor('pool', 'info', p, '--json'));
    expect(info.volumes).toBe(2);
    expect(info.capacity).toBeGreaterThan(info.available);
    await visor('pool', 'resize', p, 'vm1.qcow2', '32M');
    expect(await visor('pool', 'list', p)).toContain('32 MiB');
    const e = await visor('pool', 'delete', p, 'golden.qcow2').catch((x: unknown) => x);
    expect(isVisorError(e, 'NotAllowed')).toBe(true);
    await visor('pool', 'delete', p, 'vm1.qcow2');
    await visor('pool', 'delete', p, 'golden.qcow2');
    expect(JSON.parse(await visor('pool', 'list', p, '--json'))).toEqual([]);
  });
});
