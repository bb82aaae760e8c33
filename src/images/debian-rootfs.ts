/**
 * The full Debian image (issue 15): resolve the package set, download and verify the .debs,
 * unpack them into a tree with dpkg's database (rootfs.ts), write it as ext4 straight into a
 * qcow2 base (the ext4 writer, src/storage/ext4/), then configure the packages once inside a
 * visor guest (configure.ts). The caller builds into a temporary directory and renames it
 * into place only when all of that succeeded.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { VisorError } from '../base/errors.js';
import type { Ext4Node } from '../storage/ext4/tree.js';
import type { ManifestFile } from './cache.js';
import { readDebPackage, RootTree, type ExtraFile } from './rootfs.js';
import { resolve, type BinaryPackage, type PackageUniverse } from './resolver.js';
import { rootFiles } from './root-init.js';
import { agentFiles } from '../guest/agent-files.js';
import type { Progress } from './progress.js';
import { formatBytes } from './progress.js';

export const ROOTFS_FILE = 'rootfs.qcow2';

/** Writes a tree as an ext4 filesystem into a new qcow2 image at `path`. */
export type RootDiskWriter = (root: Ext4Node & { kind: 'dir' }, path: string, opts: { freeBytes: number; label: string }) => Promise<void>;

/**
 * Files other parts of visor install into every Debian image (the guest agent, issue 17):
 * path → contents. Registered at start-up; `/usr/lib/visor/visor-agent`, when present, is
 * what init starts instead of the shell agent.
 */
const extraFileProviders: (() => ExtraFile[] | Promise<ExtraFile[]>)[] = [];
export function registerRootfsExtraFiles(provider: () => ExtraFile[] | Promise<ExtraFile[]>): void {
  extraFileProviders.push(provider);
}

export interface RootfsPlan {
  packages: BinaryPackage[];
  required: string[];
  requested: string[];
}

export function planRootfs(universe: PackageUniverse, requested: string[]): RootfsPlan {
  const res = resolve(universe, { packages: requested });
  const required = res.packages.filter((p) => p.essential || p.priority === 'required').map((p) => p.name);
  return { packages: res.packages, required, requested };
}

export interface RootfsBuildInput {
  plan: RootfsPlan;
  /** Package name → verified .deb path. */
  debs: Map<string, string>;
  busybox: Uint8Array;
  mirror: string;
  suite: string;
  component: string;
  outDir: string;
  writer: RootDiskWriter;
  progress: Progress;
  /** Free space left in the filesystem for the user (default 1 GiB: qcow2 keeps it thin). */
  freeBytes?: number;
}

export interface RootfsBuildResult {
  file: ManifestFile;
  files: number;
  bytes: number;
  times: { unpack: number; write: number };
}

export async function buildRootfs(input: RootfsBuildInput): Promise<RootfsBuildResult> {
  const { plan, progress } = input;
  const t0 = performance.now();
  const tree = new RootTree(Math.floor(Date.now() / 1000));
  const total = plan.packages.reduce((s, p) => s + p.size, 0);
  const t = progress.task(`unpacking ${plan.packages.length} packages`, total);
  let done = 0;
  for (const p of plan.packages) {
    const deb = input.debs.get(p.name);
    if (!deb) throw new VisorError('Internal', `no .deb for ${p.name}`);
    try {
      tree.addPackage(await readDebPackage(deb, p.name));
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new VisorError('BadImage', `cannot unpack ${p.name} ${p.version}: ${why}; pull again (the download is re-verified), or report the package`, { cause: err });
    }
    done += p.size;
    t.update(done);
  }
  tree.finishDpkg();
  const extras: ExtraFile[] = rootFiles({
    mirror: input.mirror, suite: input.suite, component: input.component, busybox: input.busybox,
    order: plan.packages.map((p) => p.name), required: plan.required, agent: agentFiles()[0]!.data,
  });
  for (const provide of extraFileProviders) extras.push(...(await provide()));
  tree.addExtra(extras);
  const st = tree.stats;
  t.finish(`${st.files} files, ${formatBytes(st.bytes)}`);
  const unpack = (performance.now() - t0) / 1000;

  const t1 = performance.now();
  const w = progress.task('writing the ext4 root filesystem');
  const path = join(input.outDir, ROOTFS_FILE);
  await input.writer(tree.root, path, { freeBytes: input.freeBytes ?? 1 << 30, label: 'visor-root' });
  const size = (await stat(path)).size;
  w.finish(`${formatBytes(size)} qcow2`);
  return { file: { name: ROOTFS_FILE, size, sha256: '' }, files: st.files, bytes: st.bytes, times: { unpack, write: (performance.now() - t1) / 1000 } };
}

/** SHA256 of a file, for the manifest (after configuration changed the image). */
export async function fileRef(dir: string, name: string): Promise<ManifestFile> {
  const { createReadStream } = await import('node:fs');
  const h = createHash('sha256');
  for await (const c of createReadStream(join(dir, name))) h.update(c as Buffer);
  return { name, size: (await stat(join(dir, name))).size, sha256: h.digest('hex') };
}
