import { MAX_MEMORY_MIB } from '../machine/ram-size.js';
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

  it('gives unnamed machines random locally administered MACs, named ones stable MACs (issue 20)', async () => {
    const two = [{ switch: 'lab' }, { switch: 'lab2' }];
    const a = await resolveMachineConfig({ kernel, nets: two });
    const b = await resolveMachineConfig({ kernel, nets: two });
    const macs = [...a.nets, ...b.nets].map((n) => n.mac!);
    expect(new Set(macs).size).toBe(4);
    for (const m of macs) {
      expect(m).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      expect(parseInt(m.slice(0, 2), 16) & 0x03).toBe(0x02); // unicast, locally administered
    }
    const n1 = await resolveMachineConfig({ kernel, name: 'web', nets: two });
    const n2 = await resolveMachineConfig({ kernel, name: 'web', nets: two });
    expect(n1.nets).toEqual(n2.nets);
    expect(n1.nets[0]!.mac).not.toBe(n1.nets[1]!.mac);
  });

  it('resolves user networks: publish spellings, firewall entries, the DHCP argument', async () => {
    const c = await resolveMachineConfig({ kernel, nets: [{ user: true, publish: ['8080:80', '0.0.0.0:5353:53/udp', { hostPort: 2222, guestPort: 22 }], firewall: ['deny out:tcp:10.0.0.0/8:1-1024'], hostAccess: false, rateLimit: { rx: { bytesPerSec: 1_000_000 } } }, { switch: 'lab' }] });
    expect(c.nets[0]).toEqual({
      user: null,
      publish: [
        { proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 },
        { proto: 'udp', hostAddress: '0.0.0.0', hostPort: 5353, guestPort: 53 },
        { proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 2222, guestPort: 22 },
      ],
      firewall: ['deny out:tcp:10.0.0.0/8:1-1024'],
      hostAccess: false,
      rateLimit: { rx: { bytesPerSec: 1_000_000 } },
      mac: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/),
    });
    expect(c.nets[1]).toEqual({ switch: 'lab', mac: expect.any(String) });
    expect(c.append).toMatch(/ visor\.dhcp=1$/);
    // A static address wins; switch-only machines never ask DHCP.
    expect((await resolveMachineConfig({ kernel, append: 'console=ttyS0 visor.ip=10.0.2.15/24', nets: [{ user: 'lab' }] })).append).not.toMatch(/dhcp/);
    expect((await resolveMachineConfig({ kernel, nets: [{ switch: 'lab' }] })).append).not.toMatch(/dhcp/);
    expect((await error({ kernel, nets: [{ user: true, publish: ['80'] }] })).message).toMatch(/nets\.0/);
    expect((await error({ kernel, nets: [{ user: true, firewall: ['deny sideways:tcp:any'] }] })).message).toMatch(/nets\.0/);
    expect((await error({ kernel, nets: [{ user: 'a b' }] })).message).toMatch(/nets\.0/);
  });

  it('rejects unknown keys, bad sizes and missing files, naming the field', async () => {
    const e1 = await error({ kernel, memoryMib: 64 });
    expect(e1.code).toBe('InvalidConfig');
    expect(e1.message).toMatch(/memoryMib: unknown key/);
    expect((await error({ kernel, memoryMiB: 8 })).message).toMatch(/memoryMiB/);
    expect((await error({ kernel, memoryMiB: 100.5 })).message).toMatch(/memoryMiB/);
    expect((await error({ kernel, memoryMiB: MAX_MEMORY_MIB + 1 })).message).toMatch(new RegExp(`memoryMiB: must be from 16 to ${MAX_MEMORY_MIB} MiB`));
    expect((await error({ kernel, disks: [{ path: join(dir, 'nope.img') }] })).message).toMatch(/disks\.0\.path: no such readable file/);
    expect((await error({ kernel, disks: [{ path: kernel, format: 'vmdk' }] })).message).toMatch(/disks\.0\.format/);
    expect((await error({ kernel, disks: [{ path: kernel, readonly: true }] })).message).toMatch(/disks\.0\.readonly: unknown key/);
    expect((await error({ kernel: join(dir, 'missing') })).message).toMatch(/kernel: no such readable file/);
    const small = await error({ image: 'tiny', memoryMiB: 64 });
    expect(small.code).toBe('InvalidConfig');
    expect(small.message).toMatch(/needs at least 96 MiB/);
    const asDisk = await error({ kernel, disks: [{ path: dir }] }); // issue 20: was an IoError from the worker
    expect(asDisk.code).toBe('InvalidConfig');
    expect(asDisk.message).toMatch(/disks\.0\.path: .* is a directory/);
    expect((await error({ kernel, initrd: join(dir, 'missing') })).message).toMatch(/initrd: no such readable file/);
    expect((await error({ kernel, nets: [{ switch: 'a b' }] })).message).toMatch(/nets\.0\.switch/);
    expect((await error({ kernel, image: 'debian' })).message).toMatch(/image: give an image or a kernel/);
    expect((await error({})).message).toMatch(/kernel: required/);
    expect((await error('nope')).code).toBe('InvalidConfig');
    expect((await error({ kernel, vsock: { cid: 2, path: 'v.sock' } })).message).toMatch(/vsock\.cid/);
    expect((await error({ kernel, vsock: { path: 'v.sock', port: 1 } })).message).toMatch(/vsock\.port: unknown key/);
    expect((await error({ kernel, balloon: 'yes' })).message).toMatch(/balloon/);
    const eight = Array.from({ length: 6 }, () => ({ path: kernel }));
    expect((await error({ kernel, disks: eight, balloon: true, vsock: { path: 'v' } })).message).toMatch(/8 virtio slots/);
  });

  it('takes a balloon and a vsock (CID 3 unless given, path made absolute)', async () => {
    const c = await resolveMachineConfig({ kernel, balloon: true, vsock: { path: 'v.sock' } });
    expect(c.balloon).toBe(true);
    expect(c.vsock).toEqual({ cid: 3, path: join(process.cwd(), 'v.sock') });
    const d = await resolveMachineConfig({ kernel, vsock: { cid: 42, path: '/tmp/x' } });
    expect(d.vsock?.cid).toBe(42);
    expect(d.balloon).toBeUndefined();
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

  it('console and agent: serial and no agent for a kernel of your own, the agent for an image', async () => {
    const own = await resolveMachineConfig({ kernel });
    expect(own).toMatchObject({ console: 'serial', agent: false });
    const img = await resolveMachineConfig({ image: 'tiny' }, async () => ({ kernel, append: 'console=ttyS0 quiet' }));
    expect(img).toMatchObject({ console: 'serial', agent: true, append: 'console=ttyS0 quiet' });
    const hvc = await resolveMachineConfig({ kernel, console: 'virtio', append: 'console=ttyS0' });
    expect(hvc.append).toBe('console=ttyS0 visor.console=hvc0');
    expect((await resolveMachineConfig({ kernel, console: 'virtio', append: 'visor.console=hvc0 x' })).append).toBe('visor.console=hvc0 x');
    expect((await error({ kernel, console: 'hvc' })).message).toMatch(/console/);
    expect((await error({ kernel, agent: 'yes' })).message).toMatch(/agent/);
    const seven = Array.from({ length: 7 }, () => ({ path: kernel }));
    expect((await resolveMachineConfig({ kernel, disks: seven })).disks).toHaveLength(7);
    expect((await error({ kernel, disks: seven, agent: true })).message).toMatch(/8 virtio slots \(agent: false frees one\)/);
  });

  it('an image with a root disk: the machine\'s overlay is vda, the initramfs is told to switch to it; init systemd', async () => {
    const disposed: string[] = [];
    const resolver = async () => ({ kernel, append: 'console=ttyS0', rootDisk: { path: kernel, dispose: async () => { disposed.push('root'); } } });
    const disposers: (() => Promise<void>)[] = [];
    const c = await resolveMachineConfig({ image: 'debian', disks: [{ path: kernel, readOnly: true }] }, resolver, disposers);
    expect(c.disks).toEqual([{ path: kernel, format: 'qcow2', readOnly: false }, { path: kernel, readOnly: true }]);
    expect(c.append).toBe('console=ttyS0 visor.root=/dev/vda');
    await Promise.all(disposers.map((d) => d()));
    expect(disposed).toEqual(['root']);
    const sd = await resolveMachineConfig({ image: 'debian', init: 'systemd' }, resolver);
    expect(sd.append).toBe('console=ttyS0 visor.root=/dev/vda visor.init=/lib/systemd/systemd');
    await expect(resolveMachineConfig({ image: 'tiny', init: 'systemd' }, async () => ({ kernel }))).rejects.toThrow(/init: needs an image with a root disk \(debian\); 'tiny' has none/);
    expect((await error({ kernel, init: 'upstart' })).message).toMatch(/init/);
  });

  it('picks the execution tier: the config, else VISOR_ACCEL, else the default; rejects others', async () => {
    expect((await resolveMachineConfig({ kernel, accel: 'jit' })).accel).toBe('jit');
    expect((await resolveMachineConfig({ kernel, accel: 'interp' })).accel).toBe('interp');
    expect(defaultAccel({ VISOR_ACCEL: 'jit' })).toBe('jit');
    expect(defaultAccel({ VISOR_ACCEL: 'interp' })).toBe('interp');
    expect(defaultAccel({})).toBe('jit');
    expect(defaultAccel({ VISOR_ACCEL: 'bogus' })).toBe(defaultAccel({}));
    expect(() => parseMachineConfig({ kernel, accel: 'kvm' })).toThrow(/machine config: accel: /);
  });
});
