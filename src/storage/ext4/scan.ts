/**
 * First pass over the tree: validates it, numbers the inodes (root 2, lost+found 11, then
 * in walk order, a directory's children together) and gathers each directory's entries.
 */
import { VisorError } from '../../base/errors.js';
import { FIRST_INO, ROOT_INO } from './layout.js';
import { FT_BLK, FT_CHR, FT_DIR, FT_FIFO, FT_REG, FT_SOCK, FT_SYMLINK, type DirEntry } from './directory.js';
import type { Ext4DirNode, Ext4Meta, Ext4Node } from './tree.js';

export interface InodeRecord {
  ino: number;
  node: Ext4Node;
  /** Hard links (names); for directories 2 + subdirectories. */
  links: number;
  /** A path naming it, for error messages. */
  path: string;
  /** Directories: the parent's inode number and the entries (without . and ..). */
  parent?: number;
  entries?: DirEntry[];
  /** Directories: blocks to give it at least (lost+found gets 4 so e2fsck can use it). */
  minBlocks?: number;
}

export interface ScannedTree {
  /** Records by inode number (holes for the reserved inodes other than the root). */
  records: (InodeRecord | undefined)[];
  /** Highest inode number used; every inode from 1 to it is in use. */
  maxIno: number;
}

const FILE_TYPE: Record<Ext4Node['kind'], number> = {
  file: FT_REG,
  dir: FT_DIR,
  symlink: FT_SYMLINK,
  chardev: FT_CHR,
  blockdev: FT_BLK,
  fifo: FT_FIFO,
  socket: FT_SOCK,
};

const LINKS_MAX = 65000;

function checkMeta(m: Ext4Meta, path: string): void {
  const u32 = (x: number): boolean => Number.isInteger(x) && x >= 0 && x < 2 ** 32;
  if (!Number.isInteger(m.mode) || m.mode < 0 || m.mode > 0o7777) {
    throw new VisorError('InvalidArgument', `ext4: ${path}: mode ${m.mode} must be permission bits only (0 to 0o7777, no file type)`);
  }
  if (!u32(m.uid) || !u32(m.gid)) throw new VisorError('InvalidArgument', `ext4: ${path}: uid/gid must be integers from 0 to 2^32-1`);
  if (!Number.isSafeInteger(m.mtime)) throw new VisorError('InvalidArgument', `ext4: ${path}: mtime must be an integer number of seconds`);
}

function checkNode(n: Ext4Node, path: string): void {
  checkMeta(n, path);
  if (n.kind === 'file' && (!Number.isSafeInteger(n.size) || n.size < 0)) throw new VisorError('InvalidArgument', `ext4: ${path}: bad size ${n.size}`);
  if (n.kind === 'symlink') {
    const len = new TextEncoder().encode(n.target).length;
    if (len === 0 || len > 4095) throw new VisorError('InvalidArgument', `ext4: ${path}: symlink target must be 1 to 4095 bytes (got ${len})`);
  }
  if (n.kind === 'chardev' || n.kind === 'blockdev') {
    if (!Number.isInteger(n.major) || n.major < 0 || n.major > 0xfff || !Number.isInteger(n.minor) || n.minor < 0 || n.minor > 0xfffff) {
      throw new VisorError('InvalidArgument', `ext4: ${path}: device ${n.major}:${n.minor} out of range (major < 4096, minor < 2^20)`);
    }
  }
}

const encoder = new TextEncoder();

function checkName(name: string, dirPath: string): Uint8Array {
  const bytes = encoder.encode(name);
  if (bytes.length === 0 || bytes.length > 255 || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new VisorError('InvalidArgument', `ext4: bad name ${JSON.stringify(name)} in ${dirPath || '/'} (1-255 bytes, no '/' or NUL, not . or ..)`);
  }
  return bytes;
}

export function scanTree(root: Ext4Node, timestamp: number): ScannedTree {
  if (root.kind !== 'dir') throw new VisorError('InvalidArgument', 'ext4: the root must be a directory');
  checkNode(root, '/');
  const records: (InodeRecord | undefined)[] = [];
  const byNode = new Map<Ext4Node, InodeRecord>();
  // lost+found: the tree's own (it must be an empty directory) or a fresh 0700 one.
  const given = root.entries.get('lost+found');
  if (given && (given.kind !== 'dir' || given.entries.size > 0)) {
    throw new VisorError('InvalidArgument', 'ext4: /lost+found in the tree must be an empty directory (the writer creates it)');
  }
  const lostFound: Ext4DirNode = given ?? { kind: 'dir', mode: 0o700, uid: 0, gid: 0, mtime: timestamp, entries: new Map() };
  const rootRec: InodeRecord = { ino: ROOT_INO, node: root, links: 2, path: '', parent: ROOT_INO, entries: [] };
  const lfRec: InodeRecord = { ino: FIRST_INO, node: lostFound, links: 2, path: '/lost+found', parent: ROOT_INO, entries: [], minBlocks: 4 };
  records[ROOT_INO] = rootRec;
  records[FIRST_INO] = lfRec;
  byNode.set(root, rootRec);
  byNode.set(lostFound, lfRec);
  checkNode(lostFound, '/lost+found');
  let next = FIRST_INO + 1;
  if (!given) {
    rootRec.entries!.push({ name: encoder.encode('lost+found'), ino: FIRST_INO, type: FT_DIR });
    rootRec.links++;
  }
  const stack: InodeRecord[] = [rootRec];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const node = dir.node as Ext4DirNode;
    const subdirs: InodeRecord[] = [];
    for (const [name, child] of node.entries) {
      const nameBytes = checkName(name, dir.path);
      const path = `${dir.path}/${name}`;
      let rec = byNode.get(child);
      if (rec && child.kind === 'dir' && !(dir === rootRec && child === lostFound)) {
        throw new VisorError('InvalidArgument', `ext4: directory ${rec.path} appears twice (at ${path}); directories cannot be hard-linked`);
      }
      if (rec && child.kind !== 'dir') {
        rec.links++;
        if (rec.links > LINKS_MAX) throw new VisorError('InvalidArgument', `ext4: ${rec.path} has more than ${LINKS_MAX} hard links`);
      } else if (!rec) {
        if (!child || typeof child !== 'object' || !(child.kind in FILE_TYPE)) throw new VisorError('InvalidArgument', `ext4: ${path}: unknown node kind`);
        checkNode(child, path);
        rec = { ino: next++, node: child, links: 1, path };
        if (child.kind === 'dir') {
          rec.links = 2;
          rec.parent = dir.ino;
          rec.entries = [];
          subdirs.push(rec);
        }
        records[rec.ino] = rec;
        byNode.set(child, rec);
      }
      if (child.kind === 'dir') dir.links++;
      dir.entries!.push({ name: nameBytes, ino: rec.ino, type: FILE_TYPE[child.kind] });
    }
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
  }
  // dir_nlink: a directory with too many subdirectories reports 1 link.
  for (const r of records) if (r && r.node.kind === 'dir' && r.links > LINKS_MAX) r.links = 1;
  return { records, maxIno: next - 1 };
}
