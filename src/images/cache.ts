/**
 * The image cache: `$XDG_CACHE_HOME/visor` (or `~/.cache/visor`).
 *
 *   images/<name>/manifest.json     what the image is made of (written last)
 *   images/<name>/Image, initramfs.cpio.gz, fw_jump.bin, fw_dynamic.bin
 *   images/.build-<name>-<pid>-<rand>/   an image being built
 *   downloads/<sha256>.deb          packages until the image that needs them is built
 *   index/<sha256>                  the last verified Packages index
 *
 * Consistency: an image directory is only ever created by renaming a complete build
 * directory (manifest included) into place, and removed by renaming it away first. A reader
 * therefore sees a whole image or none; anything half-done lives under a dot-name that the
 * next pull sweeps away.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { VisorError } from '../base/errors.js';
import { pidAlive } from '../host/pid-alive.js';

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  // XDG Base Directory spec: a relative path in XDG_CACHE_HOME is invalid and must be ignored.
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.cache');
  return join(base, 'visor');
}

export const imagesDir = (root: string) => join(root, 'images');
export const downloadsDir = (root: string) => join(root, 'downloads');
export const indexDir = (root: string) => join(root, 'index');

const FileRef = z.strictObject({ name: z.string().regex(/^[A-Za-z0-9._-]+$/), size: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) });

export const ManifestSchema = z.strictObject({
  format: z.literal(1),
  builder: z.number().int(),
  /** sha256 of the guest agent's sources the image carries (src/guest/agent-files.ts); another agent makes it stale. */
  agent: z.string().optional(),
  name: z.string(),
  suite: z.string(),
  arch: z.string(),
  mirror: z.string(),
  created: z.string(),
  verification: z.strictObject({ mode: z.enum(['gpgv', 'hash-chain-only']), reason: z.string().optional() }),
  release: z.strictObject({ date: z.string().optional(), sha256: z.string() }),
  packages: z.array(z.strictObject({ name: z.string(), version: z.string(), sha256: z.string(), size: z.number(), filename: z.string() })),
  kernelRelease: z.string(),
  modules: z.array(z.string()),
  builtinModules: z.array(z.string()),
  skippedSoftdeps: z.array(z.string()),
  append: z.string(),
  files: z.strictObject({ kernel: FileRef, initrd: FileRef, firmware: FileRef.optional(), firmwareDynamic: FileRef.optional(), rootfs: FileRef.optional() }),
  /** The recipe an image was built from (a variant's name differs from it). */
  recipe: z.string().optional(),
  /** A Debian root disk: the packages asked for, how many went in, and what the pull took. */
  rootfs: z.strictObject({
    requested: z.array(z.string()),
    packageCount: z.number().int(),
    files: z.number().int(),
    bytes: z.number().int(),
    seconds: z.strictObject({ download: z.number(), unpack: z.number(), write: z.number(), configure: z.number() }),
    /** CPU seconds of the pull's host process (the guest's CPU included: it runs in a worker). */
    cpuSeconds: z.number().optional(),
    /** The configure step's slowest parts (a package's postinst, a trigger), host wall seconds. */
    slowest: z.array(z.strictObject({ step: z.string(), seconds: z.number() })).optional(),
  }).optional(),
});

export type ImageManifest = z.infer<typeof ManifestSchema>;
export type ManifestFile = z.infer<typeof FileRef>;
export const MANIFEST = 'manifest.json';

function corrupt(name: string, why: string, cause?: unknown): VisorError {
  return new VisorError(
    'CorruptImage',
    `cached image '${name}' is corrupt (${why}); run \`visor image pull ${name}\` to rebuild it, or \`visor image rm ${name}\``,
    cause === undefined ? undefined : { cause },
  );
}

export function validImageName(name: string): boolean {
  return /^[a-z0-9][a-z0-9._-]{0,63}$/.test(name);
}

/**
 * Reads and checks a cached image: undefined when there is none, CorruptImage when its
 * manifest is unreadable or a file is missing or has the wrong size. `deep` also re-hashes.
 */
export async function readImage(root: string, name: string, deep = false): Promise<{ dir: string; manifest: ImageManifest } | undefined> {
  if (!validImageName(name)) return undefined;
  const dir = join(imagesDir(root), name);
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw corrupt(name, `cannot read its manifest: ${(err as Error).message}`, err);
    try {
      await stat(dir);
    } catch {
      return undefined; // no image at all
    }
    throw corrupt(name, 'its manifest is missing');
  }
  let manifest: ImageManifest;
  try {
    manifest = ManifestSchema.parse(JSON.parse(text));
  } catch (err) {
    throw corrupt(name, 'its manifest is not valid', err);
  }
  if (manifest.name !== name) throw corrupt(name, `its manifest names '${manifest.name}'`);
  for (const f of Object.values(manifest.files)) {
    if (!f) continue;
    const p = join(dir, f.name);
    let st;
    try {
      st = await stat(p);
    } catch {
      throw corrupt(name, `${f.name} is missing`);
    }
    if (st.size !== f.size) throw corrupt(name, `${f.name} has ${st.size} bytes, the manifest says ${f.size}`);
    if (deep && (await sha256File(p)) !== f.sha256) throw corrupt(name, `${f.name} does not match its SHA256`);
  }
  return { dir, manifest };
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export async function listImageNames(root: string): Promise<string[]> {
  try {
    return (await readdir(imagesDir(root))).filter((n) => !n.startsWith('.')).sort();
  } catch {
    return [];
  }
}

const tag = () => `${process.pid}-${randomBytes(4).toString('hex')}`;

export async function newBuildDir(root: string, name: string): Promise<string> {
  await mkdir(imagesDir(root), { recursive: true });
  const dir = join(imagesDir(root), `.build-${name}-${tag()}`);
  await mkdir(dir);
  return dir;
}

/** Moves a complete build directory into place, replacing any previous image of that name. */
export async function installBuild(root: string, name: string, buildDir: string): Promise<string> {
  const dest = join(imagesDir(root), name);
  const old = join(imagesDir(root), `.old-${name}-${tag()}`);
  let moved = false;
  try {
    await rename(dest, old);
    moved = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await rename(buildDir, dest);
  if (moved) await rm(old, { recursive: true, force: true });
  return dest;
}

/**
 * One pull of an image at a time per cache (two `visor run`s, or parallel tests, may ask at
 * once): the loser waits, then finds the winner's image up to date. A lock whose process is
 * gone is stale and taken over.
 */
export async function withPullLock<T>(root: string, name: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const lock = join(root, `pull-${name}.lock`);
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(await readFile(lock, 'utf8').catch(() => ''));
      if (!owner || !pidAlive(owner)) {
        await rm(lock, { force: true });
        continue;
      }
      if (signal?.aborted) throw new VisorError('NetworkError', `pull of ${name}: cancelled while waiting for another pull`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

export async function removeImageDir(root: string, name: string): Promise<boolean> {
  if (!validImageName(name)) return false;
  const dest = join(imagesDir(root), name);
  const trash = join(imagesDir(root), `.old-${name}-${tag()}`);
  try {
    await rename(dest, trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  await rm(trash, { recursive: true, force: true });
  return true;
}

/**
 * Removes what interrupted pulls left: build and trash directories of processes that are
 * gone, and partial downloads. Those of live processes (a concurrent pull) stay.
 */
export async function sweep(root: string): Promise<void> {
  for (const dir of [imagesDir(root), downloadsDir(root), indexDir(root)]) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      const m = /^(?:\.build-.+|\.old-.+|.+\.part)-(\d+)-[0-9a-f]{8}$/.exec(n);
      if (m && !pidAlive(Number(m[1]))) await rm(join(dir, n), { recursive: true, force: true });
    }
  }
}
