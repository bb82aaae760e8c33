/**
 * Sandboxes on the full Debian image (issue 16: "works on the full Debian image and on tiny"),
 * through visor-agent in the Debian root. The template boots once on a root disk of its own,
 * which then stays read-only under every sandbox's overlay; a fork's children get copies of
 * the parent's overlay as the snapshot saw it. What these check is what a disk adds to the
 * tiny image's sandboxes (test/sdk/sandbox-guest.test.ts covers every method there): Debian's
 * programs run, files land on the root disk, sandboxes and forks never see each other's
 * writes, the template's disk never changes, and a sandbox's overlay goes with it.
 *
 * Opt-in (VISOR_GUEST_TESTS=1); the Debian image must be pulled (`visor image pull debian`).
 * In CI it runs after the Debian image's end-to-end test, which pulls it.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheRoot } from '../../src/images/cache.js';
import { findImage } from '../../src/images/index.js';
import { CommandExitError, Sandbox } from '../../src/sdk/index.js';
import { ensureTemplate } from '../../src/sdk/sandbox-template.js';

const ENABLED = process.env.VISOR_GUEST_TESTS === '1';
let skip: string | undefined = ENABLED ? undefined : 'set VISOR_GUEST_TESTS=1 to run sandboxes on the Debian image';
if (ENABLED && !(await findImage('debian'))) {
  if (process.env.CI) throw new Error('test/sdk/sandbox-debian.test.ts: the Debian image is not in the cache (run test/images/debian-image.test.ts first, or visor image pull debian)');
  skip = 'the Debian image is not pulled (visor image pull debian)';
}
if (skip) console.log(`test/sdk/sandbox-debian.test.ts skipped: ${skip}`);
const T = 10 * 60_000;

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
/** This process's sandbox overlays (src/images/machines.ts names them .run-<pid>-<hex>.qcow2). */
const overlays = () => readdirSync(join(cacheRoot(), 'machines')).filter((n) => n.startsWith(`.run-${process.pid}-`));

describe.skipIf(skip !== undefined)('Sandbox on debian', () => {
  let sbx: Sandbox;
  let templateDisk: string;
  let templateSha: string;
  beforeAll(async () => {
    sbx = await Sandbox.create({ image: 'debian' });
    const tpl = await ensureTemplate({ image: 'debian', memoryMiB: 256 });
    templateDisk = tpl.disk!;
    templateSha = sha256(templateDisk);
  }, 30 * 60_000);
  afterAll(async () => {
    await sbx?.kill();
  });

  it("runs Debian's programs, as root and as a user from Debian's passwd", { timeout: T }, async () => {
    const r = await sbx.commands.run('cat /etc/debian_version; python3 -c "import sys; print(sys.version_info[0] * 14)"; readlink -f /bin/sh');
    expect(r.stdout).toMatch(/^\d+[.\d]*\n42\n\/usr\/bin\/dash\n$/);
    expect((await sbx.commands.run('id -un; echo $HOME', { user: 'nobody', cwd: '/' })).stdout).toBe('nobody\n/nonexistent\n');
    const e = await sbx.commands.run('python3 -c "import sys; sys.exit(5)"').catch((x) => x);
    expect(e).toBeInstanceOf(CommandExitError);
    expect(e.result.exitCode).toBe(5);
  });

  it('files land on the root disk: written, read back byte for byte, seen by the guest', { timeout: T }, async () => {
    const bytes = new Uint8Array(3 << 20).map((_, i) => (i * 2654435761) >>> 24);
    await sbx.files.write('/root/blob.bin', bytes);
    const back = await sbx.files.read('/root/blob.bin', { format: 'bytes' });
    expect(Buffer.compare(Buffer.from(back), Buffer.from(bytes))).toBe(0);
    const guestSum = (await sbx.commands.run('sha256sum /root/blob.bin; findmnt -no SOURCE,FSTYPE /')).stdout;
    expect(guestSum).toContain(createHash('sha256').update(bytes).digest('hex'));
    expect(guestSum).toMatch(/\/dev\/vda\S* +ext4/);
  });

  it("a second sandbox starts from the template: none of the first one's files", { timeout: T }, async () => {
    await sbx.files.write('/root/only-in-first', 'first');
    const other = await Sandbox.create({ image: 'debian' });
    try {
      expect(await other.files.exists('/root/only-in-first')).toBe(false);
      expect(await other.files.exists('/root/blob.bin')).toBe(false);
      await other.files.write('/root/only-in-second', 'second');
      expect(await sbx.files.exists('/root/only-in-second')).toBe(false);
    } finally {
      await other.kill();
    }
  });

  it("fork: each child has the parent's disk as of the fork, and none sees another's later writes", { timeout: T }, async () => {
    await sbx.commands.run('echo before > /root/before-fork && sync');
    const [a, b] = await sbx.fork({ count: 2 });
    try {
      await sbx.files.write('/root/parent-after', 'p');
      await a!.files.write('/root/child-a', 'a');
      for (const [who, s] of [['parent', sbx], ['a', a!], ['b', b!]] as const) {
        const names = (await s.files.list('/root')).map((e) => e.name);
        expect(names, who).toContain('before-fork');
        expect(names.includes('parent-after'), who).toBe(who === 'parent');
        expect(names.includes('child-a'), who).toBe(who === 'a');
      }
      expect(await b!.files.read('/root/before-fork')).toBe('before\n');
      // A child's own address: the new MAC the host gave its NIC, and a lease for it.
      const mac = (await b!.commands.run('cat /sys/class/net/eth0/address')).stdout.trim();
      expect(mac).toBe(b!.machine.config.nets[0]!.mac);
      expect((await b!.commands.run('ip -4 -o addr show dev eth0')).stdout).toMatch(/inet 10\.0\.2\.\d+\//);
    } finally {
      await Promise.all([a?.kill(), b?.kill()]);
    }
  });

  it('pause/resume with writes between keeps every file', { timeout: T }, async () => {
    for (let i = 0; i < 5; i++) {
      await sbx.files.write(`/root/cycle-${i}`, `cycle ${i}`);
      await sbx.pause();
      await sbx.resume();
    }
    expect((await sbx.commands.run('cat /root/cycle-*')).stdout).toBe('cycle 0cycle 1cycle 2cycle 3cycle 4');
  });

  it("the template's disk never changes, and each sandbox's overlay goes with it", { timeout: T }, async () => {
    expect(sha256(templateDisk)).toBe(templateSha);
    expect(overlays().length).toBeGreaterThanOrEqual(1); // this sandbox's
    await sbx.kill();
    for (let i = 0; i < 20 && overlays().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(overlays()).toEqual([]);
  });
});
