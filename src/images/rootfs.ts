/**
 * A Debian root filesystem as an in-memory tree (the ext4 writer's input, src/storage/ext4/
 * tree.ts), built the way debootstrap's first stage leaves a target: every package's data
 * archive unpacked (owners, modes, symlinks, hard links, device nodes as the tar says), and
 * dpkg's database saying each package is unpacked but not configured, so that
 * `dpkg --configure -a` in the guest (the second stage) finishes the job.
 *
 * Paths follow merged /usr (trixie's layout): /bin, /sbin and /lib are symlinks into /usr
 * from the start, and an archive path through such a symlink lands where the symlink points,
 * as it would on disk.
 */
import { createHash } from 'node:crypto';
import { VisorError } from '../base/errors.js';
import { dirNode, fileFromBytes, type Ext4DirNode, type Ext4Meta, type Ext4Node } from '../storage/ext4/tree.js';
import { extractDeb, type DebEntry } from './deb.js';

export const DPKG_DIR = 'var/lib/dpkg';

const dirMeta = (mode = 0o755, mtime = 0): Ext4Meta => ({ mode, uid: 0, gid: 0, mtime });

/** The control archive's members dpkg keeps in /var/lib/dpkg/info/<pkg>.<member>. */
const INFO_MEMBERS = new Set(['preinst', 'postinst', 'prerm', 'postrm', 'config', 'templates', 'triggers', 'shlibs', 'symbols', 'md5sums', 'conffiles']);
const SCRIPTS = new Set(['preinst', 'postinst', 'prerm', 'postrm', 'config']);

export interface UnpackedPackage {
  name: string;
  /** The control file's text (deb-control(5)). */
  control: string;
  /** Members of control.tar by name (control, md5sums, postinst, ...). */
  controlFiles: Map<string, Buffer>;
  /** data.tar's entries in archive order, with file contents. */
  entries: DebEntry[];
}

/** One extra file visor puts into the image (init, agent, configuration). */
export interface ExtraFile {
  path: string;
  kind?: 'file' | 'symlink' | 'dir';
  data?: Uint8Array | string;
  target?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

export class RootTree {
  readonly root: Ext4DirNode;
  /** Package name → the paths its archive created, for dpkg's <pkg>.list. */
  private readonly lists = new Map<string, string[]>();
  private readonly status: string[] = [];
  private readonly available: string[] = [];
  private fileCount = 0;
  private byteCount = 0;

  constructor(readonly mtime = 0) {
    this.root = dirNode(dirMeta(0o755, mtime));
    // Merged /usr (trixie's base-files ships these links; creating them first keeps every
    // archive path that says bin/, sbin/ or lib/ inside /usr, as on a merged system).
    this.mkdirs('usr/bin');
    this.mkdirs('usr/sbin');
    this.mkdirs('usr/lib');
    for (const d of ['bin', 'sbin', 'lib']) this.root.entries.set(d, { kind: 'symlink', target: `usr/${d}`, ...dirMeta(0o777, mtime) });
  }

  get stats(): { files: number; bytes: number; packages: number } {
    return { files: this.fileCount, bytes: this.byteCount, packages: this.lists.size };
  }

  /**
   * The directory holding `path`'s last component, following symlinks in the components
   * before it (relative to their directory, absolute ones from the root), creating missing
   * directories with `meta`. Returns the directory and the final name.
   */
  private parent(path: string, meta: Ext4Meta = dirMeta(0o755, this.mtime)): { dir: Ext4DirNode; name: string } {
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.length === 0) throw new VisorError('BadImage', `rootfs: empty path`);
    const name = parts.pop()!;
    if (name === '..') throw new VisorError('BadImage', `rootfs: path ends in '..': ${path}`);
    return { dir: this.walk(parts, meta, 0), name };
  }

  private walk(parts: string[], meta: Ext4Meta, depth: number): Ext4DirNode {
    if (depth > 40) throw new VisorError('BadImage', `rootfs: too many levels of symbolic links in ${parts.join('/')}`);
    const stack: Ext4DirNode[] = [this.root];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const cur = stack[stack.length - 1]!;
      if (part === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      let next = cur.entries.get(part);
      if (!next) {
        next = dirNode({ ...meta });
        cur.entries.set(part, next);
      }
      if (next.kind === 'symlink') {
        const base = next.target.startsWith('/') ? [] : this.pathOf(stack);
        const resolved = this.walk([...base, ...next.target.split('/'), ...parts.slice(i + 1)], meta, depth + 1);
        return resolved;
      }
      if (next.kind !== 'dir') throw new VisorError('BadImage', `rootfs: ${parts.slice(0, i + 1).join('/')} is a ${next.kind}, not a directory`);
      stack.push(next);
    }
    return stack[stack.length - 1]!;
  }

  /** Names from the root to the last directory of `stack` (for resolving relative links). */
  private pathOf(stack: Ext4DirNode[]): string[] {
    const out: string[] = [];
    for (let i = 1; i < stack.length; i++) {
      for (const [n, node] of stack[i - 1]!.entries) if (node === stack[i]) { out.push(n); break; }
    }
    return out;
  }

  mkdirs(path: string, meta: Ext4Meta = dirMeta(0o755, this.mtime)): Ext4DirNode {
    return this.walk(path.split('/').filter(Boolean), meta, 0);
  }

  lookup(path: string): Ext4Node | undefined {
    const { dir, name } = this.parent(path);
    return dir.entries.get(name);
  }

  /** Puts a node at `path`, replacing a non-directory there (a later package wins, as in dpkg). */
  put(path: string, node: Ext4Node): void {
    const { dir, name } = this.parent(path);
    const have = dir.entries.get(name);
    if (have?.kind === 'dir') {
      if (node.kind === 'dir') {
        // dpkg keeps an existing directory and its contents; the archive's metadata applies.
        Object.assign(have, { mode: node.mode, uid: node.uid, gid: node.gid, mtime: node.mtime });
        return;
      }
      throw new VisorError('BadImage', `rootfs: cannot put a ${node.kind} at ${path}: a directory is there`);
    }
    // A directory in the archive where a symlink to a directory already is (merged /usr):
    // dpkg leaves the symlink.
    if (have?.kind === 'symlink' && node.kind === 'dir') return;
    if (node.kind === 'file') {
      this.fileCount++;
      this.byteCount += node.size;
    }
    dir.entries.set(name, node);
  }

  /** Unpacks one package's data archive and records it in dpkg's database as unpacked. */
  addPackage(pkg: UnpackedPackage): void {
    const list: string[] = ['/.'];
    const byPath = new Map<string, Ext4Node>();
    for (const e of pkg.entries) {
      const meta: Ext4Meta = { mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, mtime: e.mtime };
      let node: Ext4Node;
      switch (e.type) {
        case 'directory': node = dirNode(meta); break;
        case 'file': node = fileFromBytes(e.data ?? new Uint8Array(0), meta); break;
        case 'symlink': node = { kind: 'symlink', target: e.linkname ?? '', ...meta }; break;
        case 'link': {
          // A hard link names an earlier entry of the same archive: the same node object.
          const target = byPath.get(normalize(e.linkname ?? ''));
          if (!target || target.kind === 'dir') throw new VisorError('BadImage', `${pkg.name}: hard link ${e.path} to ${e.linkname}, which the archive has not created as a file`);
          node = target;
          break;
        }
        case 'chardev': case 'blockdev': node = { kind: e.type, major: e.major ?? 0, minor: e.minor ?? 0, ...meta }; break;
        case 'fifo': node = { kind: 'fifo', ...meta }; break;
        default: throw new VisorError('BadImage', `${pkg.name}: ${e.path} has a tar entry type visor does not unpack`);
      }
      this.put(e.path, node);
      byPath.set(e.path, node);
      list.push('/' + e.path);
    }
    this.lists.set(pkg.name, list);
    this.recordInDpkg(pkg);
  }

  private recordInDpkg(pkg: UnpackedPackage): void {
    const info = `${DPKG_DIR}/info`;
    const ctrl = pkg.controlFiles;
    for (const [member, data] of ctrl) {
      if (!INFO_MEMBERS.has(member)) continue;
      this.put(`${info}/${pkg.name}.${member}`, fileFromBytes(data, { mode: SCRIPTS.has(member) ? 0o755 : 0o644, uid: 0, gid: 0, mtime: this.mtime }));
    }
    const listText = this.lists.get(pkg.name)!.join('\n') + '\n';
    this.put(`${info}/${pkg.name}.list`, fileFromBytes(Buffer.from(listText), dirMeta(0o644, this.mtime)));

    // Conffiles carry the hash of what was unpacked: `dpkg --configure` finds no
    // <conffile>.dpkg-new beside them and leaves them, and a later upgrade sees them as
    // unmodified (dpkg's configure.c: "If the .dpkg-new file is no longer there, ignore").
    const conffiles = (ctrl.get('conffiles')?.toString('utf8') ?? '').split('\n').map((l) => l.trim()).filter((l) => l.startsWith('/'));
    const conf: string[] = [];
    for (const c of conffiles) {
      const node = this.lookupQuiet(c.slice(1));
      if (node?.kind !== 'file') continue;
      const data = node.read(0, node.size);
      if (data instanceof Promise) throw new VisorError('Internal', 'rootfs: conffiles must be in memory');
      conf.push(` ${c} ${createHash('md5').update(data).digest('hex')}`);
    }
    const control = pkg.control.replace(/\n+$/, '');
    const lines = control.split('\n');
    // dpkg writes Status right after Package.
    const status = [lines[0]!, 'Status: install ok unpacked', ...lines.slice(1)];
    if (conf.length) status.push('Conffiles:', ...conf);
    this.status.push(status.join('\n'));
    this.available.push(control);
  }

  private lookupQuiet(path: string): Ext4Node | undefined {
    try {
      return this.lookup(path);
    } catch {
      return undefined;
    }
  }

  /** Writes /var/lib/dpkg's files (status, available and the empty ones dpkg expects). */
  finishDpkg(): void {
    const f = (path: string, text: string) => this.put(`${DPKG_DIR}/${path}`, fileFromBytes(Buffer.from(text), dirMeta(0o644, this.mtime)));
    f('status', this.status.map((s) => s + '\n').join('\n'));
    f('available', this.available.map((s) => s + '\n').join('\n'));
    f('diversions', '');
    f('statoverride', '');
    for (const d of ['updates', 'triggers', 'alternatives', 'parts']) this.mkdirs(`${DPKG_DIR}/${d}`);
    this.put(`${DPKG_DIR}/lock`, fileFromBytes(new Uint8Array(0), dirMeta(0o640, this.mtime)));
    this.put(`${DPKG_DIR}/triggers/Unincorp`, fileFromBytes(new Uint8Array(0), dirMeta(0o644, this.mtime)));
  }

  /** Adds visor's own files (and the hook's, such as the guest agent). */
  addExtra(files: ExtraFile[]): void {
    for (const x of files) {
      const meta: Ext4Meta = { mode: x.mode ?? (x.kind === 'dir' ? 0o755 : 0o644), uid: x.uid ?? 0, gid: x.gid ?? 0, mtime: this.mtime };
      const path = normalize(x.path);
      if (x.kind === 'symlink') this.put(path, { kind: 'symlink', target: x.target ?? '', ...meta, mode: 0o777 });
      else if (x.kind === 'dir') this.mkdirs(path, meta);
      else {
        const data = typeof x.data === 'string' ? Buffer.from(x.data) : x.data ?? new Uint8Array(0);
        const { dir, name } = this.parent(path);
        dir.entries.set(name, fileFromBytes(data, meta)); // replaces whatever a package put there
      }
    }
  }

  /** The packages' file lists, for tests. */
  listOf(name: string): string[] | undefined {
    return this.lists.get(name);
  }
}

function normalize(p: string): string {
  return p.replace(/^\.?\/+/, '').replace(/\/+$/, '');
}

/** Every path of a tree with its node, depth first, sorted by name (tests, listings). */
export function* walkTree(dir: Ext4DirNode, prefix = ''): Generator<[string, Ext4Node]> {
  for (const name of [...dir.entries.keys()].sort()) {
    const node = dir.entries.get(name)!;
    const p = prefix ? `${prefix}/${name}` : name;
    yield [p, node];
    if (node.kind === 'dir') yield* walkTree(node, p);
  }
}

/** Reads a .deb's control and data archives (everything in memory: a base system is ~150 MiB). */
export async function readDebPackage(path: string, name: string): Promise<UnpackedPackage> {
  const ctrlEntries = await extractDeb(path, (_p, type) => type === 'file', 'control');
  const controlFiles = new Map<string, Buffer>();
  for (const e of ctrlEntries) if (e.data && !e.path.includes('/')) controlFiles.set(e.path, e.data);
  const control = controlFiles.get('control')?.toString('utf8');
  if (!control || !/^Package:\s*\S+/.test(control)) throw new VisorError('BadImage', `${name}: ${path} has no control file`);
  const got = /^Package:\s*(\S+)/.exec(control)![1];
  if (got !== name) throw new VisorError('IntegrityError', `${path} is package ${got}, expected ${name}`);
  const entries = await extractDeb(path, () => true);
  return { name, control, controlFiles, entries };
}
