import { mkdtempSync, rmSync, writeFileSync, utimesSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VisorError } from '../base/errors.js';
import { NodeFileHandle, NodeFileOpener } from '../host/file-handle.js';
import { fingerprintDisk, verifyDisk } from '../host/snapshot/file.js';
import { ephemeralDisk } from '../images/machines.js';
import { closeDisk, createDisk, openDisk } from '../storage/open.js';
import { bootArgsLine, bootSnapshotPath, bootWaitAppend, MAX_ARGS_LINE, pruneBootSnapshots } from './boot-snapshot.js';
import type { MachineConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-bootsnap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('boot snapshots: the VISOR_ARGS line', () => {
  it('carries the time in whole seconds, the entropy in hex and the arguments, on one line', () => {
    const line = bootArgsLine(['visor.cmd=WyJ0cnVlIl0='], 1_700_000_123_456, new Uint8Array([0, 1, 0xab, 0xff]));
    expect(line).toBe('VISOR_ARGS 1700000123 0001abff visor.cmd=WyJ0cnVlIl0=\n');
    expect(bootArgsLine([], 5000, new Uint8Array(2))).toBe('VISOR_ARGS 5 0000\n');
  });

  it('fresh entropy each time by default', () => {
    const a = bootArgsLine([])!.trim().split(' ')[2];
    const b = bootArgsLine([])!.trim().split(' ')[2];
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(a).not.toBe(b);
  });

  it('refuses what the guest could not read whole: a line too long, words with spaces', () => {
    expect(bootArgsLine([`visor.cmd=${'A'.repeat(MAX_ARGS_LINE)}`])).toBeUndefined();
    expect(() => bootArgsLine(['two words'])).toThrow(TypeError);
    expect(() => bootArgsLine([''])).toThrow(TypeError);
  });

  it('the waiting command line adds visor.bootwait=1', () => {
    expect(bootWaitAppend('console=ttyS0 quiet')).toBe('console=ttyS0 quiet visor.bootwait=1');
  });
});

describe('boot snapshots: which file serves which machine', () => {
  const img = { dir, kernel: join(dir, 'Image'), initrd: join(dir, 'initrd'), rootfs: join(dir, 'rootfs.qcow2') };
  writeFileSync(img.kernel, 'kernel');
  writeFileSync(img.initrd, 'initrd');
  writeFileSync(img.rootfs, 'rootfs');
  const base: MachineConfig = {
    kernel: img.kernel, initrd: img.initrd, append: 'quiet visor.bootwait=1', memoryMiB: 512,
    disks: [{ path: '/tmp/.run-1-aaaa.qcow2', readOnly: false, format: 'qcow2' }], nets: [{ user: true }],
  };

  it('one file for runs that differ only in what a restore sets anew (disk path, forwards, firewall, tier)', async () => {
    const p = await bootSnapshotPath(img, base);
    expect(p.startsWith(join(dir, 'boot-'))).toBe(true);
    expect(await bootSnapshotPath(img, {
      ...base, accel: 'interp', disks: [{ path: '/tmp/.run-2-bbbb.qcow2', readOnly: false, format: 'qcow2' }],
      nets: [{ user: true, publish: ['8080:80'], firewall: ['deny out:tcp:0.0.0.0/0'], hostAccess: false }],
    })).toBe(p);
  });

  it('another file when the machine or the image differs', async () => {
    const p = await bootSnapshotPath(img, base);
    expect(await bootSnapshotPath(img, { ...base, memoryMiB: 1024 })).not.toBe(p);
    expect(await bootSnapshotPath(img, { ...base, append: 'quiet visor.bootwait=1 visor.ip=10.0.2.15/24' })).not.toBe(p);
    expect(await bootSnapshotPath(img, { ...base, nets: [] })).not.toBe(p);
    expect(await bootSnapshotPath(img, { ...base, stdio: 'virtio' })).not.toBe(p);
    // A rebuilt image (same path, new contents) is another machine.
    writeFileSync(img.initrd, 'initrd, rebuilt');
    expect(await bootSnapshotPath(img, base)).not.toBe(p);
  });

  it('keeps the newest few per image and the one just saved', async () => {
    const d = mkdtempSync(join(dir, 'prune-'));
    const names = ['boot-a.snap', 'boot-b.snap', 'boot-c.snap', 'boot-d.snap', 'boot-e.snap', 'boot-f.snap'];
    names.forEach((n, i) => {
      writeFileSync(join(d, n), n);
      utimesSync(join(d, n), 1000 + i, 1000 + i);
    });
    writeFileSync(join(d, 'rootfs.qcow2'), 'not a snapshot');
    await pruneBootSnapshots(d, join(d, 'boot-a.snap')); // the oldest, but just saved
    const left = names.filter((n) => existsSync(join(d, n)));
    expect(left).toEqual(['boot-a.snap', 'boot-d.snap', 'boot-e.snap', 'boot-f.snap']);
    expect(existsSync(join(d, 'rootfs.qcow2'))).toBe(true);
  });
});

describe('restoring onto a stand-in disk (RestoreOptions.disks)', () => {
  it('a fresh overlay on the same base stands in for another; one that was written to does not', async () => {
    const opener = new NodeFileOpener();
    const basePath = join(dir, 'base.qcow2');
    const fh = await NodeFileHandle.open(basePath, { readOnly: false, create: 'exclusive' });
    await createDisk(opener, basePath, fh, { format: 'qcow2', size: 64 << 20 });
    await fh.close();
    const root = mkdtempSync(join(dir, 'cache-'));
    const saved = await ephemeralDisk(root, basePath);
    const fresh = await ephemeralDisk(root, basePath);
    const fp = await fingerprintDisk(saved.path, 'qcow2', false);
    await saved.dispose(); // the saved machine's overlay went with its run
    await expect(verifyDisk(fp, fresh.path)).resolves.toBeUndefined();
    // Without a stand-in, the saved path itself is looked for.
    await expect(verifyDisk(fp)).rejects.toMatchObject({ code: 'NotFound' });

    const d = await openDisk(opener, fresh.path, { readOnly: false, format: 'qcow2' });
    await d.device.write(1 << 20, new Uint8Array(4096).fill(7));
    await d.device.flush();
    await closeDisk(d);
    const err = await verifyDisk(fp, fresh.path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VisorError);
    expect((err as VisorError).code).toBe('IntegrityError');
    expect((err as VisorError).message).toMatch(/standing in for the snapshot's disk .* does not hold what the snapshot's disk held/);
    await fresh.dispose();
  });
});

describe('restoring onto an empty overlay of the saved disk (sandbox templates)', () => {
  it('an overlay on the saved disk stands in for it; not once written, nor when the saved disk changed', async () => {
    const opener = new NodeFileOpener();
    const root = mkdtempSync(join(dir, 'tpl-'));
    const basePath = join(root, 'base.qcow2');
    const fh = await NodeFileHandle.open(basePath, { readOnly: false, create: 'exclusive' });
    await createDisk(opener, basePath, fh, { format: 'qcow2', size: 64 << 20 });
    await fh.close();
    // The template's disk: written by its boot, then saved with the machine.
    const tpl = await ephemeralDisk(root, basePath);
    const write = async (path: string, at: number, fill: number) => {
      const d = await openDisk(opener, path, { readOnly: false, format: 'qcow2' });
      await d.device.write(at, new Uint8Array(4096).fill(fill));
      await d.device.flush();
      await closeDisk(d);
    };
    await write(tpl.path, 2 << 20, 1);
    const fp = await fingerprintDisk(tpl.path, 'qcow2', false);
    const a = await ephemeralDisk(root, tpl.path);
    const b = await ephemeralDisk(root, tpl.path);
    await expect(verifyDisk(fp, a.path)).resolves.toBeUndefined();
    await expect(verifyDisk(fp, b.path)).resolves.toBeUndefined();

    // An overlay on another disk (the base under the template) holds something else.
    const other = await ephemeralDisk(root, basePath);
    await expect(verifyDisk(fp, other.path)).rejects.toThrow(/not an empty overlay on it: its backing file is .*base\.qcow2/);

    // A sandbox's overlay once written: its own clusters.
    await write(a.path, 0, 9);
    await expect(verifyDisk(fp, a.path)).rejects.toThrow(/clusters of its own/);

    // The template's disk written after the snapshot: every overlay on it is refused.
    await write(tpl.path, 0, 2);
    const err = await verifyDisk(fp, b.path).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'IntegrityError' });
    expect((err as Error).message).toMatch(/the backing file of .* changed since the snapshot was taken \(.*first MiB/);
    for (const d of [tpl, a, b, other]) await d.dispose();
  });
});
