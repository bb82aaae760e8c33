/**
 * Guest images built from Debian's archive (issue 4). The public surface other layers use:
 * ensureImage / findImage, plus list and remove for `visor image`.
 */
import { agentSourceHash } from '../guest/agent-files.js';
import { join } from 'node:path';
import { VisorError, isVisorError } from '../base/errors.js';
import { cacheRoot, listImageNames, readImage, removeImageDir, type ImageManifest } from './cache.js';
import { machinesUsingImage } from './machines.js';
import { progressFor } from './progress.js';
import { BUILDER_VERSION, RECIPES } from './recipes.js';
import { pullImage, recipeFor, type PullOptions, type PullResult } from './pull.js';

export type { ImageManifest } from './cache.js';
export { pullImage, type PullOptions, type PullResult } from './pull.js';
export { encodeCommand, EXIT_MARKER, INIT_START_MARKER } from './init-script.js';
export { knownImageNames } from './recipes.js';
export { ephemeralDisk, findMachine, keepMachine, listMachines, removeMachine, type KeptMachine } from './machines.js';
export { DEFAULT_ROOT_INIT, ROOT_ARG, ROOTINIT_ARG } from './init-script.js';

export interface GuestImage {
  name: string;
  dir: string;
  kernel: string;
  initrd: string;
  firmware?: string;
  firmwareDynamic?: string;
  /** The configured root disk (a qcow2 base: boot it through an overlay, machines.ts). */
  rootfs?: string;
  append: string;
  manifest: ImageManifest;
}

export function toGuestImage(dir: string, manifest: ImageManifest): GuestImage {
  const img: GuestImage = {
    name: manifest.name,
    dir,
    kernel: join(dir, manifest.files.kernel.name),
    initrd: join(dir, manifest.files.initrd.name),
    // The command line is a run-time default, not part of the built files: take the current
    // recipe's, so a fix there reaches images pulled before it.
    append: RECIPES[manifest.recipe ?? manifest.name]?.append ?? manifest.append,
    manifest,
  };
  if (manifest.files.rootfs) img.rootfs = join(dir, manifest.files.rootfs.name);
  if (manifest.files.firmware) img.firmware = join(dir, manifest.files.firmware.name);
  if (manifest.files.firmwareDynamic) img.firmwareDynamic = join(dir, manifest.files.firmwareDynamic.name);
  return img;
}

/** The cached image, or undefined. Throws CorruptImage when the cache entry is damaged. */
export async function findImage(name: string, env: NodeJS.ProcessEnv = process.env): Promise<GuestImage | undefined> {
  const found = await readImage(cacheRoot(env), name);
  return found && toGuestImage(found.dir, found.manifest);
}

/**
 * The cached image, pulling it first when it is missing or damaged. An image an older visor
 * built (its builder version is behind) is rebuilt, since what the builder puts in changed
 * (for example modules on demand); if that cannot happen now (no network), the old image is
 * used and a warning says so: it still boots.
 */
export async function ensureImage(
  name: string,
  opts: { mirror?: string; progress?: boolean; signal?: AbortSignal; env?: NodeJS.ProcessEnv; keyring?: string | null; warn?: (m: string) => void } = {},
): Promise<GuestImage> {
  const env = opts.env ?? process.env;
  // Unknown names fail before touching the network (a variant is known by its cache entry).
  if (!RECIPES[name] && !(await findImage(name, env).catch(() => undefined))) recipeFor(name);
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`visor: ${m}\n`));
  let stale: GuestImage | undefined;
  try {
    const found = await findImage(name, env);
    // An image built by another builder version (older or newer: its init may speak another
    // contract) or holding another agent (a new agent ships without a builder bump) is rebuilt.
    if (found && found.manifest.builder === BUILDER_VERSION && found.manifest.agent === agentSourceHash()) return found;
    stale = found;
  } catch (err) {
    if (!isVisorError(err, 'CorruptImage')) throw err;
    // pullImage warns and rebuilds a corrupt entry.
  }
  const pull: PullOptions = { progress: progressFor(process.stderr, opts.progress ?? false), env };
  if (opts.mirror) pull.mirror = opts.mirror;
  if (opts.signal) pull.signal = opts.signal;
  if (opts.keyring !== undefined) pull.keyring = opts.keyring;
  if (stale) {
    warn(
      stale.manifest.builder !== BUILDER_VERSION
        ? `image '${name}' was built by ${stale.manifest.builder < BUILDER_VERSION ? 'an older' : 'another'} visor (builder ${stale.manifest.builder}, this one ${BUILDER_VERSION}): rebuilding it`
        : `image '${name}' carries another build of the guest agent than this visor's: rebuilding it`,
    );
  }
  try {
    const res: PullResult = await pullImage(name, pull);
    return toGuestImage(res.dir, res.manifest);
  } catch (err) {
    if (!stale || opts.signal?.aborted) throw err;
    warn(`cannot rebuild image '${name}' now (${err instanceof Error ? err.message : String(err)}); using the cached one, which still boots`);
    return stale;
  }
}

export interface ImageListing {
  name: string;
  status: 'ok' | 'corrupt';
  error?: string;
  kernelRelease?: string;
  packages?: { name: string; version: string }[];
  /** Packages in the root filesystem (Debian images), else the packages the image came from. */
  packageCount?: number;
  /** The recipe (base) the image was built from. */
  base?: string;
  /** Kept machines whose disks sit on this image. */
  machines?: string[];
  size?: number;
  created?: string;
  dir: string;
}

export async function listImages(): Promise<ImageListing[]> {
  const root = cacheRoot();
  const out: ImageListing[] = [];
  for (const name of await listImageNames(root)) {
    try {
      const found = await readImage(root, name);
      if (!found) continue;
      const m = found.manifest;
      out.push({
        name,
        status: 'ok',
        kernelRelease: m.kernelRelease,
        packages: m.packages.map((p) => ({ name: p.name, version: p.version })),
        packageCount: m.rootfs?.packageCount ?? m.packages.length,
        base: m.recipe ?? name,
        machines: (await machinesUsingImage(root, name)).map((k) => k.name),
        size: Object.values(m.files).reduce((s, f) => s + (f?.size ?? 0), 0),
        created: m.created,
        dir: found.dir,
      });
    } catch (err) {
      if (!isVisorError(err, 'CorruptImage')) throw err;
      out.push({ name, status: 'corrupt', error: err.message, dir: join(root, 'images', name) });
    }
  }
  return out;
}

export async function removeImage(name: string): Promise<void> {
  const users = await machinesUsingImage(cacheRoot(), name);
  if (users.length) {
    throw new VisorError('NotAllowed', `image '${name}' is the base of kept machines (${users.map((m) => m.name).join(', ')}); remove them first with \`visor machine rm NAME\``);
  }
  if (!(await removeImageDir(cacheRoot(), name))) {
    throw new VisorError('ImageNotFound', `no cached image '${name}'; \`visor image ls\` lists the cached images`);
  }
}
