/**
 * Sandbox templates: an image booted once until its agent answers, then snapshotted.
 * Sandbox.create restores the template instead of booting (docs/sandbox.md "Templates").
 * A template is keyed by everything that shapes the saved machine: the image's kernel and
 * initrd (path, size, mtime), its root disk (the same), memory, and the agent's source hash; a
 * rebuilt image or agent makes a new one.
 *
 * An image with a root disk ('debian') boots the template on a qcow2 overlay of its own beside
 * the snapshot (`<snapshot>.qcow2`), which stays as the template's disk: it holds what the
 * saved machine's disk held, and nothing writes to it again. Each sandbox restores onto a fresh
 * overlay on it (templateDisk), which RestoreOptions.disks accepts as holding the same
 * (src/host/snapshot/file.ts verifyDisk).
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VisorError } from '../base/errors.js';
import { connectAgent } from '../guest/connect.js';
import { agentSourceHash } from '../guest/agent-files.js';
import { pidAlive } from '../host/pid-alive.js';
import type { ImageResolver } from './config.js';
import { Machine } from './machine.js';

export interface TemplateSpec {
  image: string;
  memoryMiB: number;
}

export interface Template {
  /** The snapshot file. */
  path: string;
  /** The template's root disk (images with one), the backing file of each sandbox's overlay. */
  disk?: string;
  /** ms spent building it now (0: it was cached). */
  builtMs: number;
}

/** The guest's vsock CID in every sandbox (each machine has its own device: no clash). */
export const SANDBOX_CID = 3;
/**
 * Every sandbox has one NIC on a private user network of its own (NAT, DHCP, DNS: src/net/user),
 * already configured in the template; each restore attaches a fresh network with the sandbox's
 * policy (RestoreOptions.netPolicy). The template itself may not reach the host.
 */
export const TEMPLATE_NET = { user: true, hostAccess: false } as const;
/** Seconds the template's guest may take to get its DHCP lease once the agent answers. */
const NET_READY_S = 300;
const NET_READY = `i=0; until ip -4 addr show dev eth0 | grep -q 'inet '; do i=$((i+1)); [ $i -gt ${NET_READY_S} ] && exit 1; sleep 1; done`;
/** How long the template's first boot may take before the agent answers. */
const BOOT_TIMEOUT_MS = 15 * 60_000;

const building = new Map<string, Promise<Template>>();
/** How often a process waiting for another's template build looks again. */
const BUILD_POLL_MS = 500;

/**
 * Runs `build` holding `<path>.lock` (created with link(2), so it appears with the builder's pid
 * in it or not at all), or waits while another live process holds it and returns what that one
 * built. One builder per template across processes: two building a template with a root disk
 * at once would each make its disk at the same path, and the snapshot one of them saved would
 * name the other's disk. A lock whose pid is gone (its builder died) is taken over.
 */
export async function buildLocked<T>(path: string, cached: () => Promise<T | undefined>, build: () => Promise<T>): Promise<T> {
  const lock = `${path}.lock`;
  const mine = `${lock}.${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(mine, String(process.pid));
  try {
    for (;;) {
      try {
        await link(mine, lock);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number(await readFile(lock, 'utf8').catch(() => 'NaN'));
      if (Number.isInteger(holder) && holder > 0 && !pidAlive(holder)) {
        await rm(lock, { force: true }); // its builder died: take over
        continue;
      }
      await new Promise((r) => setTimeout(r, BUILD_POLL_MS));
      const done = await cached();
      if (done) return done;
    }
  } finally {
    await rm(mine, { force: true });
  }
  try {
    return (await cached()) ?? (await build()); // another process may have finished just before
  } finally {
    await rm(lock, { force: true });
  }
}

async function fileId(p: string): Promise<string> {
  const s = await stat(p);
  return `${p}:${s.size}:${s.mtimeMs}`;
}

/** A private directory for a machine's vsock socket (Unix socket paths must stay short). */
export async function socketDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'visor-sbx-'));
}

export async function ensureTemplate(spec: TemplateSpec): Promise<Template> {
  const { ensureImage } = await import('../images/index.js');
  const { cacheRoot } = await import('../images/cache.js');
  const img = await ensureImage(spec.image);
  // v: the saved machine's format. 5: the vsock device's state lists its streams (version 2),
  // which an older visor cannot read; each version's templates live in files of their own.
  const key = createHash('sha256')
    .update(JSON.stringify({ v: 5, net: TEMPLATE_NET, image: spec.image, memoryMiB: spec.memoryMiB, kernel: await fileId(img.kernel), initrd: await fileId(img.initrd), rootfs: img.rootfs ? await fileId(img.rootfs) : null, append: img.append, agent: agentSourceHash() }))
    .digest('hex')
    .slice(0, 24);
  const dir = join(cacheRoot(), 'templates');
  const path = join(dir, `${spec.image}-${spec.memoryMiB}-${key}.snap`);
  // The template's own root disk, kept with the snapshot (see the top of this file).
  const disk = img.rootfs ? `${path}.qcow2` : undefined;
  const known = building.get(path);
  if (known) return known;
  const cached = async (): Promise<Template | undefined> => {
    try {
      await stat(path);
      if (disk) await stat(disk);
      return { path, ...(disk ? { disk } : {}), builtMs: 0 };
    } catch {
      return undefined; // not built yet (or its disk is gone: built again)
    }
  };
  const p = (async (): Promise<Template> => {
    const have = await cached();
    if (have) return have;
    await mkdir(dir, { recursive: true });
    return buildLocked(path, cached, async (): Promise<Template> => {
      const t0 = performance.now();
      const sock = await socketDir();
      let resolveImage: ImageResolver | undefined;
      if (disk && img.rootfs) {
        // A disk half-made by a process that died: made again. A snapshot left without its
        // disk goes first, so that nobody takes the two for a template meanwhile (cached()).
        await rm(path, { force: true });
        await rm(disk, { force: true });
        const { createOverlay } = await import('../images/machines.js');
        await createOverlay(img.rootfs, disk);
        resolveImage = async () => ({ kernel: img.kernel, initrd: img.initrd, append: img.append, rootDisk: { path: disk } });
      }
      const vm = await Machine.create(
        { image: spec.image, memoryMiB: spec.memoryMiB, nets: [TEMPLATE_NET], vsock: { cid: SANDBOX_CID, path: join(sock, 'v.sock') } },
        resolveImage ? { resolveImage } : {},
      );
      let saved = false;
      try {
        await vm.start();
        const stopped = new AbortController();
        vm.once('state', (s) => s === 'stopped' && stopped.abort());
        const c = await connectAgent(join(sock, 'v.sock'), { timeoutMs: BOOT_TIMEOUT_MS, signal: stopped.signal });
        // The guest's DHCP client goes to the background when its lease is slow (a loaded host):
        // wait for eth0's address, so that every sandbox starts with its network up.
        const wait = c.session.exec(
          { argv: ['/bin/sh', '-c', NET_READY], env: [], cwd: '', user: 'root', stdin: false },
          { onStdout: () => {}, onStderr: () => {} },
        );
        const up = await wait.exited;
        if (up.exitCode !== 0) throw new VisorError('GuestGone', `template ${spec.image}: the guest's network did not come up (no DHCP lease on eth0 within ${NET_READY_S} s)`);
        // The agent answers: the guest is ready. Save it without our connection (a restored
        // guest would reset it anyway) — writeSnapshotFile is atomic, so racing processes are fine.
        c.socket.destroy();
        await vm.pause();
        await vm.snapshot(path);
        saved = true;
        return { path, ...(disk ? { disk } : {}), builtMs: performance.now() - t0 };
      } finally {
        await vm.kill().catch(() => {});
        await rm(sock, { recursive: true, force: true });
        // Read-only from now on: sandboxes read it through their overlays, nothing writes it.
        if (disk) await (saved ? chmod(disk, 0o444) : rm(disk, { force: true })).catch(() => {});
      }
    });
  })();
  building.set(path, p);
  p.catch(() => building.delete(path));
  return p;
}
