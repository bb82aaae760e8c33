/**
 * `pullImage` against a fake Debian mirror on 127.0.0.1: the happy path, the up-to-date
 * path, and each fault the issue names, checking the message and that the cache stays
 * consistent (no image half-built, no stray partial files).
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { cacheRoot, readImage } from '../../src/images/cache.js';
import { readCpio } from '../../src/images/cpio.js';
import { pullImage } from '../../src/images/pull.js';
import { ensureImage } from '../../src/images/index.js';
import { BUILDER_VERSION } from '../../src/images/recipes.js';
import type { Progress } from '../../src/images/progress.js';
import { KREL, fakeKernelImage, fakeRootfsPackages, startMirror, type FakeMirror } from './fixtures.js';
import { configureFailure, type ConfigureInput } from '../../src/images/configure.js';
import { DEBIAN_DEFAULT_PACKAGES } from '../../src/images/recipes.js';
import { existsSync } from 'node:fs';

let mirror: FakeMirror | undefined;
afterEach(async () => {
  await mirror?.close();
  mirror = undefined;
});

async function freshEnv(): Promise<NodeJS.ProcessEnv> {
  return { XDG_CACHE_HOME: await mkdtemp(join(tmpdir(), 'visor-cache-')), HOME: '/nonexistent' };
}

function recorder(): Progress & { warnings: string[]; lines: string[] } {
  const r = {
    warnings: [] as string[],
    lines: [] as string[],
    task: (label: string) => ({ update() {}, finish: () => { r.lines.push(label); } }),
    info: (m: string) => { r.lines.push(m); },
    warn: (m: string) => { r.warnings.push(m); },
  };
  return r;
}

/** Everything in the cache, relative paths, so a test can assert nothing stray is left. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    let names: string[];
    try { names = await readdir(d); } catch { return; }
    for (const n of names) {
      const p = join(d, n);
      try { await walk(p, rel ? `${rel}/${n}` : n); } catch { /* file */ }
      out.push(rel ? `${rel}/${n}` : n);
    }
  };
  await walk(dir, '');
  return out.sort();
}

const debHits = (m: FakeMirror) => [...m.hits].filter(([p]) => p.endsWith('.deb')).reduce((s, [, n]) => s + n, 0);

describe('pullImage with a fake mirror', () => {
  it('builds the image: kernel, initramfs with init/busybox/modules in dependency order, firmware, manifest', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    const progress = recorder();
    const res = await pullImage('tiny', { mirror: mirror.url, env, keyring: null, progress });
    expect(res.changed).toBe(true);
    expect(progress.warnings).toHaveLength(1);
    expect(progress.warnings[0]).toMatch(/cannot verify the archive's signature: signature checking is disabled/);

    const m = res.manifest;
    expect(m).toMatchObject({ name: 'tiny', suite: 'trixie', arch: 'riscv64', mirror: mirror.url, kernelRelease: KREL, verification: { mode: 'hash-chain-only' } });
    expect(m.packages.map((p) => `${p.name} ${p.version}`)).toEqual([`linux-image-${KREL} 6.1.0-1`, 'busybox-static 1:1.36.1-9', 'opensbi 1.5-1']);
    expect(m.modules).toEqual(['virtio_mmio', 'virtio_blk', 'failover', 'net_failover', 'virtio_net', 'virtio_rng', 'virtio_balloon',
      'vsock', 'vmw_vsock_virtio_transport_common', 'vmw_vsock_virtio_transport', 'crc32c_generic', 'jbd2', 'mbcache', 'crc16', 'ext4']);
    expect(m.builtinModules).toEqual(['virtio']);

    expect(await readFile(join(res.dir, 'Image'))).toEqual(fakeKernelImage());
    expect((await readFile(join(res.dir, 'fw_jump.bin'), 'utf8'))).toBe('fw_jump');
    expect((await readFile(join(res.dir, 'fw_dynamic.bin'), 'utf8'))).toBe('fw_dynamic');
    const cpio = readCpio(gunzipSync(await readFile(join(res.dir, 'initramfs.cpio.gz'))));
    const paths = cpio.map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['init', 'bin/busybox', 'bin/sh', 'dev/console', `lib/modules/${KREL}/ext4.ko`, `lib/modules/${KREL}/visor.order`,
      `lib/modules/${KREL}/visor.alias`, `lib/modules/${KREL}/visor.deps`, 'lib/visor/modprobe', 'etc/filesystems']));
    expect(paths).not.toContain(`lib/modules/${KREL}/unrelated.ko`);
    expect(cpio.find((e) => e.path === `lib/modules/${KREL}/visor.order`)!.data.toString()).toBe(m.modules.join('\n') + '\n');
    // On-demand loading: ext4's sequence (soft deps first), and aliases (jbd2 asks for crypto-crc32c).
    const text = (path: string) => cpio.find((e) => e.path === path)!.data.toString();
    expect(text(`lib/modules/${KREL}/visor.deps`)).toMatch(/^ext4 crc32c_generic jbd2 mbcache crc16 ext4$/m);
    expect(text(`lib/modules/${KREL}/visor.alias`)).toMatch(/^crypto-crc32c crc32c_generic$/m);
    // Modules are stored decompressed: busybox insmod cannot read .ko.xz.
    expect(cpio.find((e) => e.path === `lib/modules/${KREL}/ext4.ko`)!.data.subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
    // Parents precede children, so the kernel can create each path.
    for (const [i, p] of paths.entries()) if (p.includes('/')) expect(paths.indexOf(p.slice(0, p.lastIndexOf('/')))).toBeLessThan(i);

    // The packages are not kept once built; the cache holds the image and the verified index.
    const files = await tree(cacheRoot(env));
    expect(files.filter((f) => f.startsWith('downloads/'))).toEqual([]);
    expect(files.filter((f) => f.includes('.part') || f.includes('.build-') || f.includes('.old-'))).toEqual([]);
    expect(await readImage(cacheRoot(env), 'tiny', true)).toBeDefined();
  });

  it('does no download when up to date (only InRelease is fetched), and rebuilds when forced', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    await pullImage('tiny', { mirror: mirror.url, env, keyring: null });
    const before = new Map(mirror.hits);
    const res = await pullImage('tiny', { mirror: mirror.url, env, keyring: null });
    expect(res.changed).toBe(false);
    const newHits = [...mirror.hits].filter(([p, n]) => n !== (before.get(p) ?? 0)).map(([p]) => p);
    expect(newHits).toEqual(['/debian/dists/trixie/InRelease']);
    const forced = await pullImage('tiny', { mirror: mirror.url, env, keyring: null, force: true });
    expect(forced.changed).toBe(true);
    expect(debHits(mirror)).toBe(6); // 3 packages, twice; the Packages index came from the cache
  });

  it('rejects an unknown image name before touching the network', async () => {
    const env = await freshEnv();
    await expect(pullImage('windows', { mirror: 'http://127.0.0.1:9', env })).rejects.toMatchObject({
      code: 'ImageNotFound', message: expect.stringMatching(/unknown image 'windows'; known images: tiny, debian/),
    });
  });

  it('reports an unreachable mirror with what to do, leaving no image', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
    });
    const env = await freshEnv();
    const err = await pullImage('tiny', { mirror: `http://127.0.0.1:${port}/debian`, env, keyring: null }).catch((e) => e);
    expect(err).toMatchObject({ code: 'NetworkError' });
    expect(err.message).toMatch(/cannot fetch .* \(ECONNREFUSED\).*--mirror URL or VISOR_MIRROR/);
    expect(await tree(join(cacheRoot(env), 'images'))).toEqual([]);
  });

  it('explains a mirror without the suite (HTTP 404 on InRelease)', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    const err = await pullImage('tiny', { mirror: mirror.url.replace(/\/debian$/, '/ubuntu'), env, keyring: null }).catch((e) => e);
    expect(err).toMatchObject({ code: 'NetworkError' });
    expect(err.message).toMatch(/has no dists\/trixie\/InRelease.*--mirror/);
  });

  it('refuses a package whose SHA256 does not match the index, keeping nothing of it', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    const path = [...mirror.files.keys()].find((p) => p.includes('busybox-static'))!;
    const good = mirror.files.get(path)!;
    const bad = Buffer.from(good);
    bad[bad.length - 1] ^= 0xff;
    mirror.files.set(path, bad);
    const err = await pullImage('tiny', { mirror: mirror.url, env, keyring: null }).catch((e) => e);
    expect(err).toMatchObject({ code: 'IntegrityError' });
    expect(err.message).toMatch(/busybox-static 1:1.36.1-9: SHA256 mismatch .*retry later, or .*--mirror/);
    const files = await tree(cacheRoot(env));
    expect(files.filter((f) => f.startsWith('images/') || f.includes('.part'))).toEqual([]);
    // A later pull from a healthy mirror reuses the verified kernel download and succeeds.
    mirror.files.set(path, good);
    const kernelHits = () => [...mirror!.hits].filter(([p]) => p.includes('linux-image-6')).reduce((s, [, n]) => s + n, 0);
    const before = kernelHits();
    expect((await pullImage('tiny', { mirror: mirror.url, env, keyring: null })).changed).toBe(true);
    expect(kernelHits()).toBe(before);
  });

  it('leaves no partial file or image when a download is interrupted, and recovers on the next pull', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    let cut = true;
    mirror.fault = (path, _req, res) => {
      if (!cut || !path.includes('linux-image-6')) return false;
      const body = mirror!.files.get(path)!;
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, body.length >> 1));
      setTimeout(() => res.socket?.destroy(), 20);
      return true;
    };
    const err = await pullImage('tiny', { mirror: mirror.url, env, keyring: null }).catch((e) => e);
    expect(err).toMatchObject({ code: 'NetworkError' });
    expect(err.message).toMatch(/download interrupted after \d+ bytes; run the pull again/);
    const files = await tree(cacheRoot(env));
    expect(files.filter((f) => f.startsWith('images/') || f.includes('.part'))).toEqual([]);
    cut = false;
    expect((await pullImage('tiny', { mirror: mirror.url, env, keyring: null })).changed).toBe(true);
  });

  it('detects a corrupt cache entry, says how to fix it, and a pull rebuilds it', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    const { dir } = await pullImage('tiny', { mirror: mirror.url, env, keyring: null });
    await writeFile(join(dir, 'initramfs.cpio.gz'), 'truncated');
    await expect(readImage(cacheRoot(env), 'tiny')).rejects.toMatchObject({
      code: 'CorruptImage', message: expect.stringMatching(/initramfs.cpio.gz has 9 bytes.*visor image pull tiny/),
    });
    const progress = recorder();
    const res = await pullImage('tiny', { mirror: mirror.url, env, keyring: null, progress });
    expect(res.changed).toBe(true);
    expect(progress.warnings.join('\n')).toMatch(/cached image 'tiny' is corrupt.*rebuilding it/);
    expect(await readImage(cacheRoot(env), 'tiny', true)).toBeDefined();

    await writeFile(join(dir, 'manifest.json'), '{"format": 1, "name": "tiny"');
    await expect(readImage(cacheRoot(env), 'tiny')).rejects.toMatchObject({ code: 'CorruptImage', message: expect.stringMatching(/manifest is not valid/) });
  });

  it('ensureImage rebuilds an image an older builder made, and uses it (with a warning) when it cannot', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    const { dir } = await pullImage('tiny', { mirror: mirror.url, env, keyring: null });
    const manifestPath = join(dir, 'manifest.json');
    const m = JSON.parse(await readFile(manifestPath, 'utf8'));
    await writeFile(manifestPath, JSON.stringify({ ...m, builder: 1 }));
    const warnings: string[] = [];
    const warn = (w: string) => warnings.push(w);
    const offline = await ensureImage('tiny', { mirror: 'http://127.0.0.1:9/debian', env, keyring: null, warn });
    expect(offline.manifest.builder).toBe(1);
    expect(warnings).toEqual([
      expect.stringMatching(/image 'tiny' was built by an older visor \(builder 1, this one \d+\): rebuilding it/),
      expect.stringMatching(/cannot rebuild image 'tiny' now \(cannot fetch .*--mirror URL.*\); using the cached one, which still boots/),
    ]);
    const rebuilt = await ensureImage('tiny', { mirror: mirror.url, env, keyring: null, warn });
    expect(rebuilt.manifest.builder).toBe(BUILDER_VERSION);
    expect((await ensureImage('tiny', { mirror: 'http://127.0.0.1:9/debian', env, keyring: null, warn })).manifest.builder).toBe(BUILDER_VERSION);
    expect(warnings).toHaveLength(3);
  });

  it('serialises concurrent pulls of one cache: one builds, the other finds it up to date', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    const [a, b] = await Promise.all([
      pullImage('tiny', { mirror: mirror.url, env, keyring: null }),
      pullImage('tiny', { mirror: mirror.url, env, keyring: null }),
    ]);
    expect([a.changed, b.changed].sort()).toEqual([false, true]);
    expect(debHits(mirror)).toBe(3);
    expect((await tree(cacheRoot(env))).filter((f) => f.endsWith('.lock'))).toEqual([]);
  });

  it('debian: a package the index lacks is a DependencyError naming it and what to do, and nothing is cached', async () => {
    mirror = await startMirror();
    const env = await freshEnv();
    const err = await pullImage('debian', { mirror: mirror.url, env, keyring: null }).catch((e) => e);
    expect(err).toMatchObject({ code: 'DependencyError', message: expect.stringMatching(/package apt is not in the archive's index.*--packages/) });
    expect(await readImage(cacheRoot(env), 'debian')).toBeUndefined();
    await expect(pullImage('tiny', { mirror: mirror.url, env, keyring: null, packages: ['gcc'] })).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(pullImage('debian-nothing', { mirror: mirror.url, env, keyring: null })).rejects.toMatchObject({ code: 'ImageNotFound' });
  });

  it('debian: an unresolvable dependency names the package that needs it and what to do; nothing is cached', async () => {
    const extra = await fakeRootfsPackages(DEBIAN_DEFAULT_PACKAGES);
    extra.get('curl')!.depends = 'libcurl9 (>= 9.0)';
    mirror = await startMirror({ extra });
    const env = await freshEnv();
    const err = await pullImage('debian', { mirror: mirror.url, env, keyring: null }).catch((e) => e);
    expect(err).toMatchObject({ code: 'DependencyError', message: expect.stringMatching(/cannot resolve curl 1\.0 \(requested\): it depends on libcurl9 \(>= 9\.0\), which no package in the archive provides;.*drop the package that needs it from --packages/) });
    expect(debHits(mirror)).toBe(0);
    expect((await tree(cacheRoot(env))).filter((f) => f.startsWith('images/'))).toEqual([]);
  });

  it('debian: a failed maintainer script is an error naming the package and what to do; nothing is cached', async () => {
    mirror = await startMirror({ extra: await fakeRootfsPackages(DEBIAN_DEFAULT_PACKAGES) });
    const env = await freshEnv();
    let disk: string | undefined;
    // The guest's side is faked: dpkg's console output for curl's postinst failing.
    const configure = async (input: ConfigureInput): Promise<never> => {
      disk = input.disk;
      expect(existsSync(disk)).toBe(true); // the ext4 root disk was written and is what a guest would boot
      throw configureFailure('Setting up curl (1.0) ...\ndpkg: error processing package curl (--configure):\n installed curl package post-installation script subprocess returned error exit status 2\nErrors were encountered while processing:\n curl\n', 'dpkg --configure -a', 1);
    };
    const err = await pullImage('debian', { mirror: mirror.url, env, keyring: null, configure }).catch((e) => e);
    expect(err).toMatchObject({ code: 'BadImage', message: expect.stringMatching(/maintainer script of curl failed .*exit status 2.*nothing was cached; leave curl .* out of --packages/s) });
    expect(disk).toBeDefined();
    expect(existsSync(disk!)).toBe(false);
    expect(await readImage(cacheRoot(env), 'debian')).toBeUndefined();
    expect((await tree(cacheRoot(env))).filter((f) => f.startsWith('images/'))).toEqual([]);
  });

  it('debian: a pull interrupted while configuring leaves no image and no build directory', async () => {
    mirror = await startMirror({ extra: await fakeRootfsPackages(DEBIAN_DEFAULT_PACKAGES) });
    const env = await freshEnv();
    const ac = new AbortController();
    const configure = (input: ConfigureInput) => new Promise<never>((_, reject) => {
      input.signal!.addEventListener('abort', () => reject(new Error('the guest was stopped')));
      ac.abort(); // Ctrl-C in the middle of the configure step
    });
    await expect(pullImage('debian', { mirror: mirror.url, env, keyring: null, configure, signal: ac.signal })).rejects.toThrow(/the guest was stopped/);
    expect(await readImage(cacheRoot(env), 'debian')).toBeUndefined();
    expect((await tree(cacheRoot(env))).filter((f) => f.startsWith('images/'))).toEqual([]);
    // The next pull starts over and builds it.
    const ok = await pullImage('debian', { mirror: mirror.url, env, keyring: null, configure: async () => ({ seconds: 0, slowest: [], log: '' }) });
    expect(ok.manifest.rootfs?.packageCount).toBe(DEBIAN_DEFAULT_PACKAGES.length);
  });
});
