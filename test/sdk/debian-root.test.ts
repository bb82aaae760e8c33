/**
 * The SDK boots the full Debian image's root disk as `visor run` does (issue 15):
 * `Machine.create({ image: 'debian' })` gets its own overlay on the cached base, the
 * initramfs switches to it, and the overlay is gone once the machine stops.
 *
 * Opt-in (VISOR_BOOT_TESTS=1); the image is pulled when it is not cached (minutes).
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeCommand, ensureImage } from '../../src/images/index.js';
import { Machine } from '../../src/sdk/index.js';
import { collect, waitFor } from './support.js';

const ENABLED = process.env.VISOR_BOOT_TESTS === '1';
if (!ENABLED) console.log('test/sdk/debian-root.test.ts skipped: set VISOR_BOOT_TESTS=1 (boots the full Debian image)');
const TIMEOUT = 60 * 60_000;

describe.runIf(ENABLED)('Machine.create({ image: "debian" })', () => {
  it('boots the root disk: python3 runs, dpkg is configured, and the overlay is deleted at exit', { timeout: TIMEOUT }, async () => {
    const img = await ensureImage('debian', { progress: true });
    const cmd = encodeCommand(['sh', '-c', "python3 -c 'print(6*7)'; dpkg-query -W -f='${db:Status-Abbrev}\\n' python3; findmnt -no SOURCE,FSTYPE /"]);
    const vm = await Machine.create({ image: 'debian', memoryMiB: 1024, append: `${img.append} ${cmd}` });
    const disk = vm.config.disks[0]!.path;
    expect(disk).toMatch(/\.run-\d+-[0-9a-f]{8}\.qcow2$/);
    expect(existsSync(disk)).toBe(true);
    const out = collect(vm);
    await vm.start();
    await waitFor(() => /VISOR_EXIT=\d+/.test(out.text()), TIMEOUT);
    const text = out.text().replace(/\r/g, '');
    expect(text).toMatch(/^42$/m);
    expect(text).toMatch(/^ii $/m);
    expect(text).toMatch(/^\/dev\/vda ext4$/m);
    expect(text).toMatch(/VISOR_EXIT=0/);
    await vm.whenStopped();
    await waitFor(() => !existsSync(disk), 10_000);
  });
});
