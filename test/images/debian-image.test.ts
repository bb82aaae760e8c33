/**
 * The full Debian image end to end (issue 15 "Proof"): pull (resolve, download, unpack, ext4,
 * configure in a guest) when it is not cached, then `visor run` boots it from its root disk:
 * python3 runs, apt and dpkg see a configured system, a kept machine's disk survives to the
 * next boot, and the base a kept machine uses cannot be removed.
 *
 * Opt-in (VISOR_BOOT_TESTS=1): the first pull configures ~130 packages in a guest (minutes),
 * then three boots (each a minute or more of guest CPU) make the checks.
 * `apt-get install hello` goes through the guest's user-mode network (an image's default) to
 * the mirror the image was pulled from (the host's apt configuration); VISOR_APT_TESTS=0
 * leaves it out on a machine without that mirror. VISOR_APT_NET_ARGS adds `visor run` flags.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureImage, findMachine } from '../../src/images/index.js';
import { cacheRoot } from '../../src/images/cache.js';

const ENABLED = process.env.VISOR_BOOT_TESTS === '1';
const APT = process.env.VISOR_APT_TESTS !== '0';
const root = fileURLToPath(new URL('../..', import.meta.url));
const TIMEOUT = 60 * 60_000;

function visor(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '-e', `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(args)}))`], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code, out, err }));
  });
}

describe.runIf(ENABLED)('the full Debian image', () => {
  it('pulls and configures, with a root disk and dpkg\'s packages all installed', async () => {
    const img = await ensureImage('debian', { progress: true });
    expect(img.rootfs).toMatch(/rootfs\.qcow2$/);
    expect(img.manifest.rootfs!.packageCount).toBeGreaterThan(100);
  }, TIMEOUT);

  // Three boots check everything (each costs a minute or more of guest CPU): a kept machine's
  // first run (python3), its second (the file it wrote, dpkg, apt's configuration, the user),
  // and an ephemeral run on the base (none of the kept machine's files; apt from the network).
  const name = `t-${process.pid}`;

  it('visor run --keep NAME -- python3 -c ... prints 42 (and writes a file to the kept disk)', async () => {
    const py = await visor(['run', '--image', 'debian', '--keep', name, '--', 'python3', '-c', "import pathlib; pathlib.Path('/root/note').write_text('persisted\\n'); print(6*7)"]);
    expect(py.err).not.toMatch(/visor-init: cannot/);
    expect(py.out.trim(), py.err).toBe('42');
    expect(py.code).toBe(0);
    expect(await findMachine(cacheRoot(), name)).toBeDefined();
  }, TIMEOUT);

  it('visor run --name NAME boots the kept disk again: its file is there, dpkg says every package is installed, apt is configured', async () => {
    // Debian's sh and programs, not busybox's (the init's shell prefers its own applets).
    const st = await visor(['run', '--name', name, '--', 'sh', '-c', "cat /root/note; readlink -f /proc/$$/exe; tar --version | head -n 1; dpkg-query -W -f='${db:Status-Abbrev}\\n' | sort | uniq -c; apt-get check >/dev/null && echo apt-ok; grep -c '^URIs: http' /etc/apt/sources.list.d/debian.sources; id -un"]);
    expect(st.code, st.err).toBe(0);
    expect(st.out).toMatch(/^persisted$/m);
    expect(st.out).toMatch(/^\/usr\/bin\/dash$/m);
    expect(st.out).toMatch(/^tar \(GNU tar\)/m);
    expect(st.out).toMatch(/^\s*\d+ ii \s*$/m);
    expect(st.out).not.toMatch(/ i[UFHW]|^\s*\d+ [^i]/m);
    expect(st.out).toContain('apt-ok');
    expect(st.out).toMatch(/^1$/m);
    expect(st.out).toMatch(/^root$/m);
  }, TIMEOUT);

  it('the base a kept machine uses cannot be removed while it exists', async () => {
    const rm = await visor(['image', 'rm', 'debian']);
    expect(rm.code).not.toBe(0);
    expect(rm.err).toMatch(/kept machines \(t-\d+\)/);
    // A kept machine left behind would block the next pull's rebuild.
    await visor(['machine', 'rm', name]);
    expect(await findMachine(cacheRoot(), name)).toBeUndefined();
  }, TIMEOUT);

  it(`an ephemeral run sees none of the kept machine's files${APT ? '; apt-get update && apt-get install -y hello && hello' : ''}`, async () => {
    const net = (process.env.VISOR_APT_NET_ARGS ?? '').split(' ').filter(Boolean);
    const apt = APT ? '; apt-get update -q && apt-get install -y -q hello >/dev/null && hello' : '';
    const r = await visor(['run', '--image', 'debian', ...net, '--', 'sh', '-c', `test -e /root/note && echo there || echo absent${apt}`]);
    expect(r.out, r.err.slice(-3000)).toMatch(/^absent$/m);
    if (APT) expect(r.out, r.err.slice(-3000)).toContain('Hello, world!');
    expect(r.code).toBe(0);
  }, TIMEOUT);

  it('the next ephemeral run starts from the boot snapshot the last one saved: its own command, the root disk fresh, the host\'s clock', async () => {
    const net = (process.env.VISOR_APT_NET_ARGS ?? '').split(' ').filter(Boolean);
    const from = Math.floor(Date.now() / 1000);
    const r = await visor(['run', '--image', 'debian', '--verbose', ...net, '--', 'sh', '-c', 'command -v hello >/dev/null && echo hello-there || echo no-hello; python3 -c "print(6*7)"; date +%s']);
    expect(r.code, r.err.slice(-3000)).toBe(0);
    expect(r.err).toMatch(/machine created \(restored\)/);
    expect(r.out).toMatch(/^no-hello$/m); // the last run's apt-get install went with its overlay
    expect(r.out).toMatch(/^42$/m);
    const clock = Number(/^(\d{10})$/m.exec(r.out)?.[1]);
    expect(clock).toBeGreaterThanOrEqual(from - 1);
    expect(clock).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 1);
  }, TIMEOUT);

  afterAll(async () => {
    // Even after a failed assertion.
    if (await findMachine(cacheRoot(), name)) await visor(['machine', 'rm', name]);
  }, TIMEOUT);
});
