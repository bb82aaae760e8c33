/**
 * Checks an ext4 image against the tree it was written from, using Debian's e2fsprogs as the
 * independent reader: `e2fsck -fn` must be clean, and a walk with debugfs (ls -p, stat,
 * ea_list/ea_get, rdump) must show every name, type, mode, owner, size, link count, device
 * number, xattr, symlink target and file content of the tree.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Ext4DirNode, Ext4FileNode, Ext4Node } from '../../src/storage/ext4/index.js';

export const HAVE_E2FSPROGS = spawnSync('e2fsck', ['-V']).status === 0 && spawnSync('debugfs', ['-V']).status === 0;
if (!HAVE_E2FSPROGS) {
  if (process.env.CI) throw new Error('e2fsck/debugfs are missing: CI must install e2fsprogs');
  console.warn('skipping ext4 writer checks: e2fsck/debugfs not found (apt-get install e2fsprogs)');
}

/** Scratch space: tmpfs when there is one (the checks write and read back hundreds of MiB). */
export const SCRATCH = existsSync('/dev/shm') && accessOk('/dev/shm') ? '/dev/shm' : tmpdir();

function accessOk(p: string): boolean {
  try {
    accessSync(p, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function e2fsck(image: string): { status: number | null; output: string } {
  const r = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8' });
  return { status: r.status, output: r.stdout + r.stderr };
}

const TYPE: Record<Ext4Node['kind'], number> = {
  file: 0o100000, dir: 0o040000, symlink: 0o120000, chardev: 0o020000, blockdev: 0o060000, fifo: 0o010000, socket: 0o140000,
};

export async function sha256Of(node: Ext4FileNode): Promise<string> {
  const h = createHash('sha256');
  for (let off = 0; off < node.size; off += 1 << 20) h.update(await node.read(off, Math.min(1 << 20, node.size - off)));
  return h.digest('hex');
}

function linkCount(node: Ext4Node, names: number, isRoot: boolean): number {
  if (node.kind !== 'dir') return names;
  // The writer adds /lost+found when the tree has none.
  let n = isRoot && !node.entries.has('lost+found') ? 3 : 2;
  for (const c of node.entries.values()) if (c.kind === 'dir') n++;
  return n;
}

/** Runs one debugfs script and splits its output into one section per command. */
function debugfsScript(image: string, commands: string[]): string[] {
  const dir = mkdtempSync(join(SCRATCH, 'ext4-script-'));
  try {
    const script = join(dir, 'cmds');
    writeFileSync(script, commands.join('\n') + '\n');
    const r = spawnSync('debugfs', ['-f', script, image], { encoding: 'utf8', maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`debugfs failed: ${r.stderr}`);
    const sections = r.stdout.split(/^debugfs: .*$/m).slice(1);
    if (sections.length !== commands.length) throw new Error(`debugfs: ${sections.length} outputs for ${commands.length} commands`);
    return sections;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const q = (p: string): string => `"${p || '/'}"`;

/** Every difference between the image and the tree, as readable lines (empty when they match). */
export async function compareWithTree(image: string, root: Ext4DirNode): Promise<string[]> {
  const problems: string[] = [];
  // Walk the tree: every path, the first path of each node, and how many names each node has.
  const dirs: [string, Ext4DirNode][] = [];
  const firstPath = new Map<Ext4Node, string>();
  const names = new Map<Ext4Node, number>();
  const stack: [string, Ext4DirNode][] = [['', root]];
  firstPath.set(root, '');
  names.set(root, 1);
  while (stack.length) {
    const [path, dir] = stack.pop()!;
    dirs.push([path, dir]);
    for (const [name, child] of dir.entries) {
      const p = `${path}/${name}`;
      names.set(child, (names.get(child) ?? 0) + 1);
      if (!firstPath.has(child)) {
        firstPath.set(child, p);
        if (child.kind === 'dir') stack.push([p, child]);
      }
    }
  }
  const nodes = [...firstPath.keys()];
  const tmp = mkdtempSync(join(SCRATCH, 'ext4-cmp-'));
  try {
    const xattrFiles: [Ext4Node, string, string][] = [];
    const cmds: string[] = [];
    for (const [p] of dirs) cmds.push(`ls -p ${q(p)}`);
    for (const n of nodes) cmds.push(`stat ${q(firstPath.get(n)!)}`, `ea_list ${q(firstPath.get(n)!)}`);
    for (const n of nodes) {
      for (const name of Object.keys(n.xattrs ?? {})) {
        const f = join(tmp, `xattr-${xattrFiles.length}`);
        xattrFiles.push([n, name, f]);
        cmds.push(`ea_get -f ${f} ${q(firstPath.get(n)!)} ${name}`);
      }
    }
    mkdirSync(join(tmp, 'dump'));
    cmds.push(`rdump / ${join(tmp, 'dump')}`);
    const out = debugfsScript(image, cmds);
    let i = 0;
    const inoOf = new Map<Ext4Node, number>();
    const nodeOfIno = new Map<number, Ext4Node>();
    for (const [path, dir] of dirs) {
      const listed = new Map<string, string[]>();
      for (const line of out[i++]!.split('\n')) {
        const m = /^\/(\d+)\/(\d+)\/(-?\d+)\/(-?\d+)\/(.*)\/(\d*)\/$/.exec(line); // debugfs prints ids as signed
        if (m) listed.set(m[5]!, m.slice(1));
      }
      const expected = new Map(dir.entries);
      for (const name of listed.keys()) {
        if (name === '.' || name === '..' || (path === '' && name === 'lost+found' && !dir.entries.has(name))) continue;
        if (!expected.has(name)) problems.push(`${path}/${name}: in the image, not in the tree`);
      }
      for (const [name, child] of expected) {
        const p = `${path}/${name}`;
        const l = listed.get(name);
        if (!l) {
          problems.push(`${p}: missing from the image`);
          continue;
        }
        const [ino, mode, uid, gid, , size] = l as [string, string, string, string, string, string];
        const wantMode = TYPE[child.kind] | child.mode;
        if (parseInt(mode, 8) !== wantMode) problems.push(`${p}: mode ${mode} != ${wantMode.toString(8)}`);
        if (Number(uid) >>> 0 !== child.uid || Number(gid) >>> 0 !== child.gid) problems.push(`${p}: owner ${uid}:${gid} != ${child.uid}:${child.gid}`);
        if (child.kind === 'file' && Number(size) !== child.size) problems.push(`${p}: size ${size} != ${child.size}`);
        const inum = Number(ino);
        const seen = inoOf.get(child);
        if (seen !== undefined && seen !== inum) problems.push(`${p}: inode ${inum}, but its other name has inode ${seen}`);
        const other = nodeOfIno.get(inum);
        if (other !== undefined && other !== child) problems.push(`${p}: shares inode ${inum} with a different node`);
        inoOf.set(child, inum);
        nodeOfIno.set(inum, child);
      }
    }
    for (const n of nodes) {
      const p = firstPath.get(n)!;
      const stat = out[i++]!;
      const links = /Links: (\d+)/.exec(stat);
      if (!links || Number(links[1]) !== linkCount(n, names.get(n)!, n === root)) problems.push(`${p || '/'}: links ${links?.[1]} != ${linkCount(n, names.get(n)!, n === root)}`);
      if (n.kind === 'chardev' || n.kind === 'blockdev') {
        const dev = /major\/minor number: (\d+):(\d+)/.exec(stat);
        if (!dev || Number(dev[1]) !== n.major || Number(dev[2]) !== n.minor) problems.push(`${p}: device ${dev?.[1]}:${dev?.[2]} != ${n.major}:${n.minor}`);
      }
      const eaNames = [...out[i++]!.matchAll(/^ {2}(\S+) \(\d+\)/gm)].map((m) => m[1]!).sort();
      const want = Object.keys(n.xattrs ?? {}).sort();
      if (eaNames.join(',') !== want.join(',')) problems.push(`${p || '/'}: xattrs [${eaNames}] != [${want}]`);
    }
    for (const [n, name, f] of xattrFiles) {
      i++;
      const got = readFileSync(f);
      if (!got.equals(Buffer.from(n.xattrs![name]!))) problems.push(`${firstPath.get(n)}: xattr ${name} value differs`);
    }
    // Contents and symlink targets from rdump.
    const dumped = join(tmp, 'dump');
    for (const n of nodes) {
      const p = firstPath.get(n)!;
      if ((n.kind === 'file' || n.kind === 'symlink') && !lstatSync(join(dumped, p), { throwIfNoEntry: false })) {
        problems.push(`${p}: rdump did not produce it`);
      } else if (n.kind === 'file') {
        const got = createHash('sha256').update(readFileSync(join(dumped, p))).digest('hex');
        if (got !== (await sha256Of(n))) problems.push(`${p}: content differs`);
      } else if (n.kind === 'symlink') {
        const got = readlinkSync(join(dumped, p));
        if (got !== n.target) problems.push(`${p}: symlink -> ${got} != ${n.target}`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return problems;
}
