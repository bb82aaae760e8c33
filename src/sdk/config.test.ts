import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VisorError } from '../base/errors.js';
import { defaultAccel, parseMachineConfig, resolveMachineConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const kernel = join(dir, 'Image');
writeFileSync(kernel, 'k');

async function error(input: unknown): Promise<VisorError> {
  try {
    await resolveMachineConfig(input);
  } catch (err) {
    expect(err).toBeInstanceOf(VisorError);
    return err as VisorError;
  }
  throw new Error('accepted');
}

describe('machine config', () => {
  it('fills defaults and makes paths absolute', async () => {
    const c = await resolveMachineConfig({ kernel, memoryMiB: 64 });
    expect(c).toMatchObject({ kernel, memoryMiB: 64, bios: 'builtin', rng: true, deterministic: false, disks: [], nets: [], name: 'vm' });
    expect(c.append).toContain('console=ttyS0');
  });

  it('rejects unknown keys, bad sizes and missing files, naming the field', async () => {
    const e1 = await error({ kernel, memoryMib: 64 });
    expect(e1.code).toBe('InvalidConfig');
    expect(e1.message).toMatch(/memoryMib: unknown key/);
    expect((await error({ kernel, memoryMiB: 8 })).message).toMatch(/memoryMiB/);
    expect((await error({ kernel, memoryMiB: 100.5 })).message).toMatch(/memoryMiB/);
    expect((await error({ kernel, disks: [{ path: join(dir, 'nope.img') }] })).message).toMatch(/disks\.0\.path: no such readable file/);
    expect((await error({ kernel, disks: [{ path: kernel, format: 'vmdk' }] })).message).toMatch(/disks\.0\.format/);
    expect((await error({ kernel, disks: [{ path: kernel, readonly: true }] })).message).toMatch(/disks\.0\.readonly: unknown key/);
    expect((await error({ kernel: join(dir, 'missing') })).message).toMatch(/kernel: no such readable file/);
    expect((await error({ kernel, initrd: join(dir, 'missing') })).message).toMatch(/initrd: no such readable file/);
    expect((await error({ kernel, nets: [{ switch: 'a b' }] })).message).toMatch(/nets\.0\.switch/);
    expect((await error({ kernel, image: 'debian' })).message).toMatch(/image: give an image or a kernel/);
    expect((await error({})).message).toMatch(/kernel: required/);
    expect((await error('nope')).code).toBe('InvalidConfig');
  });

  it('resolves an image through the injected resolver', async () => {
    const c = await resolveMachineConfig({ image: 'tiny' }, async (name) => {
      expect(name).toBe('tiny');
      return { kernel, append: 'quiet' };
    });
    expect(c.kernel).toBe(kernel);
    expect(c.append).toBe('quiet');
    expect(parseMachineConfig({ deterministic: true }).deterministic).toBe(true);
  });

  it('picks the execution tier: the config, else VISOR_ACCEL, else the default; rejects others', async () => {
    expect((await resolveMachineConfig({ kernel, accel: 'jit' })).accel).toBe('jit');
    expect((await resolveMachineConfig({ kernel, accel: 'interp' })).accel).toBe('interp');
    expect(defaultAccel({ VISOR_ACCEL: 'jit' })).toBe('jit');
    expect(defaultAccel({ VISOR_ACCEL: 'interp' })).toBe('interp');
    expect(['interp', 'jit']).toContain(defaultAccel({}));
    expect(defaultAccel({ VISOR_ACCEL: 'bogus' })).toBe(defaultAccel({}));
    expect(() => parseMachineConfig({ kernel, accel: 'kvm' })).toThrow(/machine config: accel: /);
  });
});
