/**
 * The ext4 writer's output in a real kernel: a tree written by writeExt4 straight into a
 * qcow2 is attached to a visor guest (image 'tiny', Debian's kernel) as /dev/vda, mounted
 * read-write; the guest lists modes, owners, link counts and device numbers, hashes files,
 * counts a 5000-entry directory, then creates, renames and deletes files and unmounts. On the
 * host the qcow2 must then pass `qemu-img check`, and `e2fsck -fn` must find the filesystem
 * the kernel left behind clean. Boots a kernel (a CPU-minute or more), so it runs only with
 * VISOR_GUEST_TESTS=1.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeFileHandle, NodeFileOpener } from '../../src/host/file-handle.js';
import { ensureImage } from '../../src/images/index.js';
import { closeDisk, createDisk, openDisk } from '../../src/storage/open.js';
import { dirNode, fileFromBytes, planExt4Size, writeExt4, type Ext4Meta } from '../../src/storage/ext4/index.js';
import { VirtioBlk } from '../../src/virtio/blk/device.js';
import { VirtioMmioTransport } from '../../src/virtio/mmio/transport.js';
import { runGuest } from '../virtio/guest-vm.js';
import { HAVE_QEMU_IMG, qemuCheck, qemuImg } from './qemu-img.js';
import { HAVE_E2FSPROGS, SCRATCH, e2fsck } from './ext4-verify.js';

const enabled = process.env.VISOR_GUEST_TESTS === '1';
if (!enabled) console.log('skipping the ext4 writer guest test: set VISOR_GUEST_TESTS=1 (boots the tiny image, a minute or more)');

const META: Ext4Meta = { mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// Paths the guest stats: `stat -c` prints octal mode with type bits (%f is hex), uid, gid, links, major, minor (hex).
const STATS = ['/etc/passwd', '/bin/su', '/bin/su2', '/bin/sh', '/bin/long-link', '/dev/null', '/dev/vdz', '/dev/fifo', '/tmp', '/ünï/grüße', '/lib'];
const SCRIPT = `
set -e
for p in ${STATS.map((p) => `"/mnt${p}"`).join(' ')}; do echo "STAT $(stat -c '%n %f %u %g %h %t %T' "$p")"; done
echo "LINK $(readlink /mnt/bin/long-link)"
echo "LIBCOUNT $(ls /mnt/lib | wc -l)"
echo "HASH $(sha256sum /mnt/data/blob | cut -d' ' -f1)"
echo "HOLEHASH $(sha256sum /mnt/data/holes | cut -d' ' -f1)"
echo "DEEP $(cat /mnt/a/b/c/d/e/f/g/h/i/j/deep.txt)"
# Read-write: the journal is replayed-clean, allocation works, directories grow.
mkdir /mnt/new && yes visor | head -c 3000000 > /mnt/new/file && mv /mnt/etc/passwd /mnt/new/passwd
for i in $(seq 1 300); do echo $i > /mnt/lib/added-$i; done
rm /mnt/lib/libthing-10.so /mnt/bin/su2
echo "LIBCOUNT_AFTER $(ls /mnt/lib | wc -l) $(cat /mnt/lib/added-150) $(cat /mnt/lib/libthing-4999.so)"
sync
umount /mnt && echo UMOUNTED
dmesg | grep -i 'ext4' | sed 's/^/DMESG /'
`;

describe.runIf(enabled)('ext4 writer output in a guest', () => {
  it('mounts read-write in Debian\'s kernel with modes, owners, links and contents intact; stays fsck-clean after use', { timeout: 1_800_000 }, async () => {
    if (!HAVE_E2FSPROGS || !HAVE_QEMU_IMG) throw new Error('e2fsprogs and qemu-img are required (apt-get install e2fsprogs qemu-utils)');
    const img = await ensureImage('tiny', { progress: false });
    const dir = mkdtempSync(join(SCRATCH, 'ext4-guest-'));
    try {
      const root = dirNode(META);
      const etc = dirNode(META);
      const bin = dirNode(META);
      const dev = dirNode(META);
      const lib = dirNode(META);
      const data = dirNode(META);
      root.entries.set('etc', etc).set('bin', bin).set('dev', dev).set('lib', lib).set('data', data);
      root.entries.set('tmp', dirNode({ ...META, mode: 0o1777 }));
      root.entries.set('run.sh', fileFromBytes(text(SCRIPT), META));
      etc.entries.set('passwd', fileFromBytes(text('root:x:0:0:root:/root:/bin/sh\n'), { ...META, mode: 0o644 }));
      const su = fileFromBytes(text('#!/bin/sh\necho su\n'), { ...META, mode: 0o4755, gid: 5 });
      bin.entries.set('su', su).set('su2', su);
      bin.entries.set('sh', { kind: 'symlink', target: 'busybox', ...META, mode: 0o777 });
      const longTarget = '/usr/lib/' + 'long-directory-name/'.repeat(5) + 'x';
      bin.entries.set('long-link', { kind: 'symlink', target: longTarget, ...META, mode: 0o777 });
      bin.entries.set('ping', fileFromBytes(text('ping'), { ...META, xattrs: { 'security.capability': new Uint8Array([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) } }));
      dev.entries.set('null', { kind: 'chardev', major: 1, minor: 3, ...META, mode: 0o666 });
      dev.entries.set('vdz', { kind: 'blockdev', major: 254, minor: 300, ...META, mode: 0o660, gid: 6 });
      dev.entries.set('fifo', { kind: 'fifo', ...META, mode: 0o600, uid: 1000, gid: 1000 });
      for (let i = 0; i < 5000; i++) lib.entries.set(`libthing-${i}.so`, fileFromBytes(text(`lib ${i}\n`), { ...META, mode: 0o644 }));
      const blob = Uint8Array.from({ length: 5_000_000 }, (_, i) => (i * 2654435761) >>> 24);
      data.entries.set('blob', fileFromBytes(blob, { ...META, mode: 0o600, uid: 1234, gid: 4321 }));
      const holes = new Uint8Array(3 << 20);
      holes.fill(0x5a, 1 << 20, (1 << 20) + 10);
      data.entries.set('holes', fileFromBytes(holes, META));
      let deep = root;
      for (const c of 'abcdefghij') {
        const d = dirNode(META);
        deep.entries.set(c, d);
        deep = d;
      }
      deep.entries.set('deep.txt', fileFromBytes(text('bottom'), META));
      const uni = dirNode(META);
      root.entries.set('ünï', uni);
      uni.entries.set('grüße', fileFromBytes(text('hallo'), { ...META, mode: 0o640, uid: 7, gid: 8 }));

      const path = join(dir, 'fs.qcow2');
      const opener = new NodeFileOpener();
      const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'exclusive' });
      await createDisk(opener, path, fh, { format: 'qcow2', size: planExt4Size(root, { freeBytes: 64 << 20 }) });
      await fh.close();
      const disk = await openDisk(opener, path, { readOnly: false });
      await writeExt4(root, disk.device, { freeBytes: 64 << 20, timestamp: 1_700_000_000 });

      const r = await runGuest(img, {
        // The script is read into memory first: a shell reading it from /mnt would keep /mnt busy.
        command: ['sh', '-c', 'mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo MOUNTED && sh -c "$(cat /mnt/run.sh)"'],
        memoryMiB: 256,
        append: 'initcall_blacklist=jent_mod_init',
        timeoutMs: 1_500_000,
        attach: (vm) => vm.attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: new VirtioBlk({ disk: disk.device }), ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })),
      });
      await closeDisk(disk);
      const out = r.output;
      const line = (tag: string): string | undefined => new RegExp(`^${tag} (.*)$`, 'm').exec(out)?.[1];
      expect(r.status, out).toBe(0);
      expect(out).toContain('MOUNTED');
      const stat = (p: string): string | undefined => new RegExp(`^STAT /mnt${p} (.*)$`, 'm').exec(out)?.[1];
      // mode (hex, with type bits), uid, gid, links, major, minor (hex)
      expect(stat('/etc/passwd')).toBe('81a4 0 0 1 0 0');
      expect(stat('/bin/su')).toBe('89ed 0 5 2 0 0');
      expect(stat('/bin/su2')).toBe('89ed 0 5 2 0 0');
      expect(stat('/bin/sh')).toBe('a1ff 0 0 1 0 0');
      expect(stat('/bin/long-link')).toBe('a1ff 0 0 1 0 0');
      expect(stat('/dev/null')).toBe('21b6 0 0 1 1 3');
      expect(stat('/dev/vdz')).toBe('61b0 0 6 1 fe 12c');
      expect(stat('/dev/fifo')).toBe('1180 1000 1000 1 0 0');
      expect(stat('/tmp')).toBe('43ff 0 0 2 0 0');
      expect(stat('/ünï/grüße')).toBe('81a0 7 8 1 0 0');
      expect(stat('/lib')).toBe('41ed 0 0 2 0 0');
      expect(line('LINK')).toBe(longTarget);
      expect(line('LIBCOUNT')).toBe('5000');
      expect(line('HASH')).toBe(sha256(blob));
      expect(line('HOLEHASH')).toBe(sha256(holes));
      expect(line('DEEP')).toBe('bottom');
      expect(line('LIBCOUNT_AFTER')).toBe('5299 150 lib 4999');
      expect(out).toContain('UMOUNTED');
      expect(out).not.toMatch(/^DMESG .*(error|corrupt|warning)/im);

      expect(qemuCheck(path)).toMatchObject({ corruptions: 0, leaks: 0, checkErrors: 0 });
      const raw = join(dir, 'after.img');
      qemuImg('convert', '-O', 'raw', path, raw);
      const fsck = e2fsck(raw);
      expect(fsck.status, fsck.output).toBe(0);
      // What the guest did is there: the moved file, the grown (indexed) directory.
      const ls = spawnSync('debugfs', ['-R', 'ls -p /new', raw], { encoding: 'utf8' }).stdout;
      expect(ls).toMatch(/\/100644\/0\/0\/passwd\/30\//);
      expect(ls).toMatch(/\/file\/3000000\//);
      expect(spawnSync('debugfs', ['-R', 'ls /lib', raw], { encoding: 'utf8' }).stdout).toContain('added-300');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
