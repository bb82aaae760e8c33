/**
 * Machine disks on Debian images: a qcow2 overlay whose backing file is the image's cached,
 * read-only base (`images/<image>/rootfs.qcow2`).
 *
 *   machines/<name>/disk.qcow2      a kept machine's overlay (`visor run --keep NAME`)
 *   machines/<name>/machine.json    which image and base it was made from
 *   machines/.run-<pid>-<rand>.qcow2  an ephemeral run's overlay, deleted at exit (and swept
 *                                   when its process is gone)
 *
 * A base a kept machine uses is never removed or replaced under it: `visor image rm` and a
 * re-pull of that image refuse, naming the machines.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { VisorError } from '../base/errors.js';
import { NodeFileHandle, NodeFileOpener } from '../host/file-handle.js';
import { createDisk } from '../storage/open.js';
import { imagesDir, validImageName } from './cache.js';
import { pidAlive } from '../host/pid-alive.js';

export const machinesDir = (root: string) => join(root, 'machines');

const MachineMeta = z.strictObject({ name: z.string(), image: z.string(), base: z.string(), created: z.string() });
export type KeptMachine = z.infer<typeof MachineMeta> & { disk: string };

/** A fresh qcow2 overlay at `dest` (which must not exist) on `base`, named by the path as given. */
export async function createOverlay(base: string, dest: string): Promise<void> {
  const opener = new NodeFileOpener();
  const fh = await NodeFileHandle.open(dest, { readOnly: false, create: 'exclusive' });
  try {
    await createDisk(opener, dest, fh, { format: 'qcow2', backingFile: base, backingFormat: 'qcow2' });
  } finally {
    await fh.close();
  }
}

/** An overlay for one run, deleted by `dispose()` (call it however the run ends). */
/** A new name for one run's disk (`.run-<pid>-<hex>.qcow2`: swept by ephemeralDisk once the pid is gone). */
async function runDiskPath(root: string): Promise<string> {
  await mkdir(machinesDir(root), { recursive: true });
  return join(machinesDir(root), `.run-${process.pid}-${randomBytes(4).toString('hex')}.qcow2`);
}

export async function ephemeralDisk(root: string, base: string): Promise<{ path: string; dispose: () => Promise<void> }> {
  const path = await runDiskPath(root);
  // Overlays of runs whose process is gone (killed before it could delete them).
  for (const n of await readdir(machinesDir(root))) {
    const m = /^\.(?:run|new)-(?:.*-)?(\d+)-[0-9a-f]{8}(?:\.qcow2)?$/.exec(n);
    if (m && !pidAlive(Number(m[1]))) await rm(join(machinesDir(root), n), { recursive: true, force: true });
  }
  await createOverlay(base, path);
  return { path, dispose: () => rm(path, { force: true }) };
}

/**
 * A copy of `src` for one run, named and swept as ephemeralDisk's overlays are: a fork's child's
 * root disk (src/sdk/sandbox.ts). A reflink where the filesystem can make one.
 */
export async function ephemeralCopy(root: string, src: string): Promise<{ path: string; dispose: () => Promise<void> }> {
  const path = await runDiskPath(root);
  try {
    await copyFile(src, path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
  } catch (err) {
    await rm(path, { force: true });
    throw err;
  }
  return { path, dispose: () => rm(path, { force: true }) };
}

export async function findMachine(root: string, name: string): Promise<KeptMachine | undefined> {
  if (!validImageName(name)) return undefined;
  const dir = join(machinesDir(root), name);
  let text: string;
  try {
    text = await readFile(join(dir, 'machine.json'), 'utf8');
  } catch {
    return undefined;
  }
  try {
    return { ...MachineMeta.parse(JSON.parse(text)), disk: join(dir, 'disk.qcow2') };
  } catch (err) {
    throw new VisorError('CorruptImage', `kept machine '${name}' has an unreadable machine.json in ${dir}; remove that directory to forget it`, { cause: err });
  }
}

/** Creates a kept machine's overlay (`--keep NAME`); refuses a name that exists. */
export async function keepMachine(root: string, name: string, image: string, base: string): Promise<KeptMachine> {
  if (!validImageName(name)) throw new VisorError('InvalidArgument', `--keep ${name}: a machine name is lower-case letters, digits, '.', '_' and '-' (up to 64)`);
  if (await findMachine(root, name)) throw new VisorError('NotAllowed', `a kept machine named '${name}' exists; boot it with --name ${name}, or choose another name`);
  await mkdir(machinesDir(root), { recursive: true });
  const tmp = join(machinesDir(root), `.new-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  try {
    await createOverlay(base, join(tmp, 'disk.qcow2'));
    const meta = { name, image, base, created: new Date().toISOString() };
    await writeFile(join(tmp, 'machine.json'), JSON.stringify(meta, null, 2) + '\n');
    await rename(tmp, join(machinesDir(root), name));
    return { ...meta, disk: join(machinesDir(root), name, 'disk.qcow2') };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

export async function listMachines(root: string): Promise<KeptMachine[]> {
  let names: string[];
  try {
    names = (await readdir(machinesDir(root))).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
  const out: KeptMachine[] = [];
  for (const n of names.sort()) {
    const m = await findMachine(root, n).catch(() => undefined);
    if (m) out.push(m);
  }
  return out;
}

/** Kept machines whose overlay sits on a base inside image `name`'s directory. */
export async function machinesUsingImage(root: string, name: string): Promise<KeptMachine[]> {
  const dir = join(imagesDir(root), name) + '/';
  return (await listMachines(root)).filter((m) => m.base.startsWith(dir));
}

export async function removeMachine(root: string, name: string): Promise<boolean> {
  if (!(await findMachine(root, name))) return false;
  await rm(join(machinesDir(root), name), { recursive: true, force: true });
  return true;
}

