/**
 * `visor image pull`: InRelease (signature) → Packages (SHA256 from InRelease) → .debs
 * (SHA256 from Packages) → build → atomic install with a manifest.
 */
import { agentSourceHash } from '../guest/agent-files.js';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { VisorError, isVisorError } from '../base/errors.js';
import { buildImage } from './build.js';
import {
  MANIFEST, validImageName, cacheRoot, downloadsDir, indexDir, installBuild, newBuildDir, readImage, sha256File, sweep, withPullLock,
  type ImageManifest,
} from './cache.js';
import { collect, decompressStream } from './decompress.js';
import { diskFull, downloadFile, fetchBytes, MIRROR_HINT } from './http.js';
import { chooseMirror, type MirrorChoice } from './mirror.js';
import { PackagesIndex, dependsNames, type PackageRecord } from './packages-index.js';
import { formatBytes, silentProgress, type Progress } from './progress.js';
import { BUILDER_VERSION, RECIPES, knownImageNames, type ImageRecipe } from './recipes.js';
import { configureInGuest } from './configure.js';
import { machinesUsingImage } from './machines.js';
import { extractDeb } from './deb.js';
import { ROOTFS_FILE, buildRootfs, fileRef, planRootfs, type RootDiskWriter, type RootfsPlan } from './debian-rootfs.js';
import { PackageUniverse } from './resolver.js';
import { parseRelease, verifyInRelease, type ReleaseFile, type VerifyResult } from './release.js';

export interface PullOptions {
  mirror?: string;
  signal?: AbortSignal;
  progress?: Progress;
  /** Rebuild even when the cached image is up to date. */
  force?: boolean;
  /**
   * Keyring for gpgv; null disables signature checks (tests). Default: $VISOR_KEYRING, else
   * Debian's archive keyring.
   */
  keyring?: string | null;
  /** Where apt's configuration lives (tests). */
  aptRoot?: string;
  env?: NodeJS.ProcessEnv;
  /** Packages added to a Debian image's set (`visor image pull debian --packages gcc,make`). */
  packages?: string[];
  /** The cached name of a variant (default: variantName()). */
  as?: string;
  /** Writes the ext4 root disk (tests and dev scripts inject one; default: visor's writer). */
  rootDiskWriter?: RootDiskWriter;
  /** Configures the written root disk (tests inject one; default: maintainer scripts in a guest). */
  configure?: typeof configureInGuest;
}

export interface PullResult {
  dir: string;
  manifest: ImageManifest;
  /** False when the cached image was already up to date and nothing was downloaded. */
  changed: boolean;
}

let warnedUnverified = false;

export function recipeFor(name: string): ImageRecipe {
  const recipe = RECIPES[name];
  if (!recipe) {
    throw new VisorError('ImageNotFound', `unknown image '${name}'; known images: ${knownImageNames().join(', ')}`);
  }
  return recipe;
}

async function fetchRelease(mirror: MirrorChoice, recipe: ImageRecipe, opts: PullOptions, progress: Progress) {
  const url = `${mirror.url}/dists/${recipe.suite}/InRelease`;
  let data: Buffer;
  try {
    data = await fetchBytes(url, `the ${recipe.suite} release file`, opts.signal);
  } catch (err) {
    if (isVisorError(err, 'NotFound')) {
      throw new VisorError('NetworkError', `${mirror.url} (from ${mirror.from}) has no dists/${recipe.suite}/InRelease: is it a Debian archive that carries ${recipe.suite}? ${MIRROR_HINT}`, { cause: err });
    }
    throw err;
  }
  const env = opts.env ?? process.env;
  const keyring = opts.keyring !== undefined ? opts.keyring : env.VISOR_KEYRING || undefined;
  const verified: VerifyResult = await verifyInRelease(data, { keyring, source: url });
  if (verified.mode === 'hash-chain-only' && !warnedUnverified) {
    warnedUnverified = true;
    progress.warn(`cannot verify the archive's signature: ${verified.reason}. ` +
      'Falling back to the SHA256 chain (InRelease → Packages → .deb): it catches corruption, not a malicious mirror.');
  }
  const release = parseRelease(verified.text);
  if (release.codename !== recipe.suite && release.suite !== recipe.suite) {
    throw new VisorError('IntegrityError', `${url} describes suite '${release.suite}' (${release.codename}), not '${recipe.suite}'; ${MIRROR_HINT}`);
  }
  return { release, verified, sha256: createHash('sha256').update(data).digest('hex') };
}

async function fetchPackages(root: string, mirror: MirrorChoice, recipe: ImageRecipe, release: ReleaseFile, opts: PullOptions, progress: Progress): Promise<{ index: PackagesIndex; text: string }> {
  const base = `${recipe.component}/binary-${recipe.arch}/Packages`;
  const choice = ['.gz', '.xz', ''].map((ext) => ({ ext, path: base + ext, entry: release.sha256.get(base + ext) })).find((c) => c.entry);
  if (!choice?.entry) {
    throw new VisorError('IntegrityError', `the ${recipe.suite} release file lists no ${base} index for ${recipe.arch}; ${MIRROR_HINT}`);
  }
  const dir = indexDir(root);
  await mkdir(dir, { recursive: true });
  const cached = join(dir, choice.entry.sha256);
  let have = false;
  try {
    have = (await stat(cached)).size === choice.entry.size && (await sha256File(cached)) === choice.entry.sha256;
  } catch {
    have = false;
  }
  if (!have) {
    const dists = `${mirror.url}/dists/${recipe.suite}`;
    // Acquire-By-Hash (DebianRepository/Format): the index by its hash cannot change under
    // us while the mirror updates between our InRelease and Packages requests.
    const byHash = `${dists}/${recipe.component}/binary-${recipe.arch}/by-hash/SHA256/${choice.entry.sha256}`;
    const urls = release.acquireByHash ? [byHash, `${dists}/${choice.path}`] : [`${dists}/${choice.path}`];
    const t = progress.task(`downloading ${choice.path}`, choice.entry.size);
    for (let i = 0; ; i++) {
      try {
        await downloadFile(urls[i]!, cached, { what: choice.path, sha256: choice.entry.sha256, size: choice.entry.size, signal: opts.signal, onProgress: (n) => t.update(n) });
        break;
      } catch (err) {
        if (i + 1 < urls.length && isVisorError(err, 'NotFound')) continue;
        throw err;
      }
    }
    t.finish();
    // Keep only the index we just verified.
    for (const n of await readdir(dir)) if (n !== choice.entry.sha256 && /^[0-9a-f]{64}$/.test(n)) await rm(join(dir, n), { force: true });
  }
  const raw = await readFile(cached);
  let text: string;
  if (choice.ext === '.gz') text = gunzipSync(raw).toString('utf8');
  else if (choice.ext === '.xz') text = (await collect(decompressStream('xz', new Blob([raw]).stream() as ReadableStream<Uint8Array>))).toString('utf8');
  else text = raw.toString('utf8');
  return { index: new PackagesIndex(text), text };
}

function resolvePackages(index: PackagesIndex, recipe: ImageRecipe, mirror: MirrorChoice): { kernel: PackageRecord; busybox: PackageRecord; firmware: PackageRecord | undefined } {
  const need = (name: string, why: string) => {
    const p = index.find(name);
    if (!p) {
      throw new VisorError('NotFound', `package ${name} (${why}) is not in ${recipe.suite}/${recipe.component} for ${recipe.arch} on ${mirror.url}; ${MIRROR_HINT}`);
    }
    return p;
  };
  const meta = need(recipe.kernelMeta, 'the kernel metapackage');
  const kernelName = dependsNames(meta.depends).find((d) => d.startsWith('linux-image-'));
  if (!kernelName) throw new VisorError('NotFound', `${recipe.kernelMeta} ${meta.version} depends on no linux-image package`);
  return {
    kernel: need(kernelName, `the kernel behind ${recipe.kernelMeta}`),
    busybox: need(recipe.busybox, 'busybox'),
    firmware: index.find(recipe.firmware),
  };
}

function upToDate(manifest: ImageManifest, packages: PackageRecord[]): boolean {
  if (manifest.builder !== BUILDER_VERSION || manifest.agent !== agentSourceHash() || manifest.packages.length !== packages.length) return false;
  return packages.every((p) => manifest.packages.some((m) => m.name === p.name && m.version === p.version && m.sha256 === p.sha256));
}

async function fetchDeb(root: string, mirror: MirrorChoice, p: Pick<PackageRecord, 'name' | 'version' | 'size' | 'sha256' | 'filename'>, opts: PullOptions, progress: Progress): Promise<string> {
  const dir = downloadsDir(root);
  await mkdir(dir, { recursive: true });
  const dest = join(dir, `${p.sha256}.deb`);
  try {
    if ((await stat(dest)).size === p.size && (await sha256File(dest)) === p.sha256) return dest;
  } catch {
    // not downloaded yet
  }
  const t = progress.task(`downloading ${p.name} ${p.version}`, p.size);
  await downloadFile(`${mirror.url}/${p.filename}`, dest, { what: `${p.name} ${p.version}`, sha256: p.sha256, size: p.size, signal: opts.signal, onProgress: (n) => t.update(n) });
  t.finish(formatBytes(p.size));
  return dest;
}

/** The cached name of a variant: `debian --packages gcc,make` is `debian-gcc-make`. */
export function variantName(recipe: string, packages: string[]): string {
  return `${recipe}-${[...packages].sort().join('-')}`.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').slice(0, 64);
}

/**
 * Pulls (or refreshes) an image into the cache. `name` is a recipe, or a variant built
 * before (its manifest names the recipe and the packages); `opts.packages` on a recipe with
 * a root filesystem builds a variant, cached as `opts.as` or `variantName()`.
 */
export async function pullImage(name: string, opts: PullOptions = {}): Promise<PullResult> {
  const progress = opts.progress ?? silentProgress;
  const root = cacheRoot(opts.env);
  let recipe = RECIPES[name];
  let target = name;
  let extra = opts.packages ?? [];
  if (recipe && extra.length) {
    if (!recipe.rootfs) throw new VisorError('InvalidArgument', `image '${name}' has no root filesystem to add packages to; use --packages with debian`);
    target = opts.as ?? variantName(name, extra);
  } else if (!recipe) {
    const found = await readImage(root, name).catch(() => undefined);
    const base = found?.manifest.recipe !== undefined ? RECIPES[found.manifest.recipe] : undefined;
    if (!found || !base?.rootfs) recipeFor(name); // throws ImageNotFound with the known names
    recipe = base!;
    extra = [...(found!.manifest.rootfs?.requested ?? []).filter((p) => !base!.rootfs!.packages.includes(p)), ...extra];
  }
  if (!validImageName(target)) throw new VisorError('InvalidArgument', `'${target}' is not a valid image name (lower-case letters, digits, '.', '_', '-'; up to 64)`);
  try {
    await mkdir(root, { recursive: true });
  } catch (err) {
    throw wrapFs(err, root);
  }
  const o = { ...opts, packages: extra };
  return withPullLock(root, target, () => pullLocked(target, recipe!, root, o, progress), opts.signal);
}

async function pullLocked(name: string, recipe: ImageRecipe, root: string, opts: PullOptions, progress: Progress): Promise<PullResult> {
  try {
    await sweep(root);
  } catch (err) {
    throw wrapFs(err, root);
  }
  const mirror = await chooseMirror({ mirror: opts.mirror, aptRoot: opts.aptRoot, env: opts.env });
  progress.info(`mirror: ${mirror.url} (from ${mirror.from})`);

  const { release, verified, sha256: releaseSha } = await fetchRelease(mirror, recipe, opts, progress);
  const { index, text } = await fetchPackages(root, mirror, recipe, release, opts, progress);
  const pkgs = resolvePackages(index, recipe, mirror);
  const list = [pkgs.kernel, pkgs.busybox, ...(pkgs.firmware ? [pkgs.firmware] : [])];
  let plan: RootfsPlan | undefined;
  if (recipe.rootfs) {
    const t = progress.task('resolving packages');
    plan = planRootfs(PackageUniverse.fromIndex(text, recipe.arch), [...recipe.rootfs.packages, ...(opts.packages ?? [])]);
    t.finish(`${plan.packages.length} packages, ${formatBytes(plan.packages.reduce((n, p) => n + p.size, 0))} to download`);
    list.push(...plan.packages.map((p) => ({ name: p.name, version: p.version, architecture: p.architecture, filename: p.filename, size: p.size, sha256: p.sha256, depends: '' })));
  }

  let existing: Awaited<ReturnType<typeof readImage>>;
  try {
    existing = await readImage(root, name);
  } catch (err) {
    if (!isVisorError(err, 'CorruptImage')) throw err;
    progress.warn(`${err.message.split(';')[0]}: rebuilding it`);
  }
  if (existing && !opts.force && upToDate(existing.manifest, list)) {
    progress.info(`${name} is up to date (Linux ${existing.manifest.kernelRelease})`);
    return { dir: existing.dir, manifest: existing.manifest, changed: false };
  }
  const users = await machinesUsingImage(root, name);
  if (existing && users.length) {
    throw new VisorError('NotAllowed', `image '${name}' has changed in the archive, but kept machines use its base (${users.map((m) => m.name).join(', ')}): remove them (visor machine rm NAME) or pull a variant under another name (--as NAME)`);
  }

  const tDownload = performance.now();
  const cpu0 = process.cpuUsage();
  const rootDebs = new Map<string, string>();
  if (plan) {
    // A few downloads at once: most .debs are small, and one connection idles between them.
    const queue = [...plan.packages];
    const total = queue.reduce((n, p) => n + p.size, 0);
    const t = progress.task(`downloading ${queue.length} packages`, total);
    let done = 0;
    const quiet = { ...progress, task: () => ({ update() {}, finish() {} }) };
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let p = queue.shift(); p; p = queue.shift()) {
        rootDebs.set(p.name, await fetchDeb(root, mirror, p, opts, quiet));
        done += p.size;
        t.update(done);
      }
    }));
    t.finish(formatBytes(total));
  }
  const kernelDeb = await fetchDeb(root, mirror, pkgs.kernel, opts, progress);
  const busyboxDeb = await fetchDeb(root, mirror, pkgs.busybox, opts, progress);
  const firmwareDeb = pkgs.firmware ? await fetchDeb(root, mirror, pkgs.firmware, opts, progress) : undefined;

  let buildDir: string | undefined;
  try {
    buildDir = await newBuildDir(root, name);
    const built = await buildImage({ kernelDeb, busyboxDeb, ...(firmwareDeb ? { firmwareDeb } : {}), outDir: buildDir, modules: recipe.modules, progress });
    let rootfs: ImageManifest['rootfs'];
    const files: ImageManifest['files'] = { ...built.files };
    if (plan) {
      const download = (performance.now() - tDownload) / 1000;
      const busybox = (await extractDeb(busyboxDeb, (p, type) => type === 'file' && /^(usr\/)?bin\/busybox$/.test(p)))[0]?.data;
      if (!busybox) throw new VisorError('BadImage', `${busyboxDeb} has no bin/busybox`);
      const writer = opts.rootDiskWriter ?? (await defaultRootDiskWriter());
      const r = await buildRootfs({ plan, debs: rootDebs, busybox, mirror: mirror.url, suite: recipe.suite, component: recipe.component, outDir: buildDir, writer, progress });
      const conf = await (opts.configure ?? configureInGuest)({
        kernel: join(buildDir, built.files.kernel.name), initrd: join(buildDir, built.files.initrd.name), append: recipe.append,
        disk: join(buildDir, ROOTFS_FILE), packageCount: plan.packages.length, progress, ...(opts.signal ? { signal: opts.signal } : {}),
      });
      files.rootfs = await fileRef(buildDir, ROOTFS_FILE);
      rootfs = {
        requested: plan.requested, packageCount: plan.packages.length, files: r.files, bytes: r.bytes,
        seconds: { download, unpack: r.times.unpack, write: r.times.write, configure: conf.seconds },
        cpuSeconds: cpuSecondsSince(cpu0), slowest: conf.slowest,
      };
    }
    const manifest: ImageManifest = {
      format: 1,
      builder: BUILDER_VERSION,
      agent: agentSourceHash(),
      name,
      suite: recipe.suite,
      arch: recipe.arch,
      mirror: mirror.url,
      created: new Date().toISOString(),
      verification: { mode: verified.mode, ...(verified.reason ? { reason: verified.reason } : {}) },
      release: { ...(release.date ? { date: release.date } : {}), sha256: releaseSha },
      packages: list.map((p) => ({ name: p.name, version: p.version, sha256: p.sha256, size: p.size, filename: p.filename })),
      kernelRelease: built.kernelRelease,
      modules: built.modules,
      builtinModules: built.builtinModules,
      skippedSoftdeps: built.skippedSoftdeps,
      append: recipe.append,
      files,
      recipe: recipe.name,
      ...(rootfs ? { rootfs } : {}),
    };
    // The manifest is written last: a build directory without one is never installed.
    await writeFile(join(buildDir, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
    const dir = await installBuild(root, name, buildDir);
    buildDir = undefined;
    // The packages are in the image now; keeping 100+ MiB of .debs would only cost disk.
    for (const deb of [kernelDeb, busyboxDeb, firmwareDeb, ...rootDebs.values()]) if (deb) await rm(deb, { force: true });
    progress.info(`${name}: Linux ${built.kernelRelease} ready in ${dir}`);
    return { dir, manifest, changed: true };
  } catch (err) {
    throw wrapFs(err, root);
  } finally {
    if (buildDir) await rm(buildDir, { recursive: true, force: true });
  }
}

function cpuSecondsSince(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1e6;
}

function wrapFs(err: unknown, root: string): unknown {
  if (err instanceof VisorError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return diskFull(`the image cache ${root}`, err);
  if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
    return new VisorError('IoError', `cannot write the image cache ${root} (${code}); set XDG_CACHE_HOME to a writable directory`, { cause: err });
  }
  return err;
}

/** visor's own ext4 writer into a qcow2 image (src/storage/ext4/). */
async function defaultRootDiskWriter(): Promise<RootDiskWriter> {
  const { writeRootDisk } = await import('./root-disk.js');
  return writeRootDisk;
}
