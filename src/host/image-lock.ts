/**
 * Disk image locking, compatible with QEMU's (block/file-posix.c): Linux open file description
 * (OFD) byte-range locks, taken with fcntl(F_OFD_SETLK) through the `fs-native-extensions`
 * addon (its npm tarball carries the prebuilt binary; Node has no fcntl of its own).
 *
 * QEMU describes what a user of an image does with four permission bits and locks one byte
 * per bit, always with a shared (read) lock:
 *   byte 100 + bit   "I use this permission"
 *   byte 200 + bit   "I do not let anyone else have this permission"
 * Before using an image it takes its own bytes, then checks that nobody else holds a byte
 * that conflicts: 200 + bit for every permission it wants, 100 + bit for every permission
 * it does not share. visor does the same, so visor and QEMU refuse each other, and two
 * visor users of one file (another process, or the same disk given twice) refuse each other
 * too: OFD locks belong to an open file, not to a process. The locks go away when the file
 * is closed, or when the process dies.
 *
 * Profiles (as QEMU's for a read-write disk and a read-only one or a backing file):
 *   write: uses CONSISTENT_READ, WRITE, RESIZE; shares CONSISTENT_READ, WRITE_UNCHANGED
 *   read:  uses CONSISTENT_READ;               shares CONSISTENT_READ, WRITE_UNCHANGED
 * so readers share with readers, and a writer excludes everyone else.
 * docs/storage-locking.md says why this way and what it cannot do.
 */
import { createRequire } from 'node:module';
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { VisorError } from '../base/errors.js';

export const LOCK_PERM_BASE = 100;
export const LOCK_SHARED_BASE = 200;

/** QEMU's BlockPermission bits (include/block/block-common.h), in bit order. */
export const BLK_PERM_CONSISTENT_READ = 1 << 0;
export const BLK_PERM_WRITE = 1 << 1;
export const BLK_PERM_WRITE_UNCHANGED = 1 << 2;
export const BLK_PERM_RESIZE = 1 << 3;
const PERM_BITS = 4;
const PERM_NAMES = ['consistent read', 'write', 'write unchanged', 'resize'];

export type LockMode = 'read' | 'write';

const PROFILES: Record<LockMode, { perm: number; shared: number }> = {
  write: { perm: BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE | BLK_PERM_RESIZE, shared: BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED },
  read: { perm: BLK_PERM_CONSISTENT_READ, shared: BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED },
};

interface LockAddon {
  tryLock(fd: number, offset: number, length: number, opts: { shared?: boolean }): boolean;
  unlock(fd: number, offset: number, length: number): void;
}

let addon: LockAddon | null | undefined;
function lockAddon(): LockAddon | null {
  if (addon === undefined) {
    // Elsewhere the package locks whole files (flock on macOS): not QEMU's scheme.
    if (process.platform !== 'linux') return (addon = null);
    try {
      addon = createRequire(import.meta.url)('fs-native-extensions') as LockAddon;
    } catch {
      addon = null; // no prebuilt binary for this platform: images go unlocked (documented)
    }
  }
  return addon;
}

/** Whether byte-range locks can be taken here (the addon loaded). */
export function imageLocksAvailable(): boolean {
  return lockAddon() !== null;
}

const isConflict = (err: unknown) => {
  const code = (err as { code?: string }).code;
  return code === 'EAGAIN' || code === 'EACCES';
};

/**
 * Locks the image open on `fd` for `mode`, or throws InUse naming the holder. A file system
 * that does not support OFD locks (some network file systems) leaves the image unlocked,
 * as QEMU's locking=auto does.
 */
export function lockImage(fd: number, path: string, mode: LockMode): void {
  const fx = lockAddon();
  if (!fx) return;
  const { perm, shared } = PROFILES[mode];
  const fileId = lockFileId(path);
  const held = new Set<number>();
  try {
    // Our own bytes first (as QEMU: then two users starting at once both see each other).
    for (let i = 0; i < PERM_BITS; i++) {
      const bit = 1 << i;
      if (perm & bit) held.add(LOCK_PERM_BASE + i);
      if (!(shared & bit)) held.add(LOCK_SHARED_BASE + i);
    }
    for (const off of held) {
      if (!fx.tryLock(fd, off, 1, { shared: true })) throw conflict(path, off, mode, fd);
    }
    // Then what others hold: someone who does not share a permission we want, or who uses
    // one we do not share.
    for (let i = 0; i < PERM_BITS; i++) {
      const bit = 1 << i;
      if (perm & bit && !nobodyElseHolds(fx, fd, LOCK_SHARED_BASE + i, held, fileId)) throw conflict(path, LOCK_SHARED_BASE + i, mode, fd);
      if (!(shared & bit) && !nobodyElseHolds(fx, fd, LOCK_PERM_BASE + i, held, fileId)) throw conflict(path, LOCK_PERM_BASE + i, mode, fd);
    }
  } catch (err) {
    for (const off of held) {
      try {
        fx.unlock(fd, off, 1);
      } catch {
        /* closing the file drops them anyway */
      }
    }
    if (err instanceof VisorError) throw err;
    if (isConflict(err)) throw conflict(path, -1, mode, fd);
    // ENOLCK, EINVAL, EOPNOTSUPP: this file system takes no OFD locks; go on unlocked.
  }
}

/**
 * True when no other open file holds `off`. F_OFD_GETLK is not in the addon, so: an
 * exclusive lock on the byte through our own open file succeeds exactly when nobody else
 * holds it (our own shared lock on it is converted, not conflicting); then put it back.
 * A read-only file cannot take an exclusive lock (EBADF): then /proc/locks tells, counting
 * our own lock on the byte out.
 */
function nobodyElseHolds(fx: LockAddon, fd: number, off: number, held: Set<number>, fileId: string | undefined): boolean {
  try {
    if (!fx.tryLock(fd, off, 1, { shared: false })) return false;
  } catch (err) {
    if ((err as { code?: string }).code !== 'EBADF' || fileId === undefined) throw err;
    return procLocksOn(fileId, off) <= (held.has(off) ? 1 : 0);
  }
  if (held.has(off)) fx.tryLock(fd, off, 1, { shared: true });
  else fx.unlock(fd, off, 1);
  return true;
}

/** "MAJ:MIN:INODE" as /proc/locks spells a file (hex device numbers, decimal inode). */
function lockFileId(path: string): string | undefined {
  try {
    const st = statSync(path);
    const major = Math.floor(st.dev / 256) & 0xfff;
    const minor = (st.dev & 0xff) | (Math.floor(st.dev / 4096) & ~0xff);
    return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`;
  } catch {
    return undefined;
  }
}

const LOCK_LINE = /^(?:lock:\s+)?\d+:\s+\S+\s+\S+\s+\S+\s+-?\d+\s+([0-9a-f]+:[0-9a-f]+:\d+)\s+(\d+)\s+(\d+|EOF)/gm;

/** How many locks on the file cover byte `off` (every process's; blocked waiters are "->" lines and do not match). */
function procLocksOn(fileId: string, off: number): number {
  let text: string;
  try {
    text = readFileSync('/proc/locks', 'utf8');
  } catch {
    return 0;
  }
  let n = 0;
  for (const m of text.matchAll(LOCK_LINE)) {
    if (m[1] === fileId && Number(m[2]) <= off && (m[3] === 'EOF' || off <= Number(m[3]))) n++;
  }
  return n;
}

function conflict(path: string, off: number, mode: LockMode, fd: number): VisorError {
  const who = lockHolders(path, off, fd);
  const what = off >= LOCK_SHARED_BASE ? `keeps "${PERM_NAMES[off - LOCK_SHARED_BASE]}" to itself` : off >= LOCK_PERM_BASE ? `uses "${PERM_NAMES[off - LOCK_PERM_BASE]}"` : 'holds it';
  const holder = who.length > 0 ? who.join(', ') : 'another process';
  return new VisorError(
    'InUse',
    `disk image ${path} is in use: ${holder} ${what}, so it cannot be opened ${mode === 'write' ? 'for writing' : 'read-only'} as well (stop the other user, or attach the image read-only in both)`,
  );
}

/**
 * Who holds lock byte `off` of `path` (any lock byte when off is -1): /proc/PID/fdinfo lists
 * each open file's locks ("lock: 1: OFDLCK ADVISORY READ -1 MAJ:MIN:INODE START END"), and
 * the entry names the process. Best effort: processes of other users are not readable.
 */
export function lockHolders(path: string, off: number, ownFd = -1): string[] {
  const id = lockFileId(path);
  if (id === undefined) return [];
  const found = new Set<string>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fdinfo`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      if (Number(pid) === process.pid && Number(fd) === ownFd) continue;
      let info: string;
      try {
        info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      } catch {
        continue;
      }
      if (!info.includes(id)) continue;
      for (const m of info.matchAll(LOCK_LINE)) {
        if (m[1] !== id) continue;
        const start = Number(m[2]);
        const end = m[3] === 'EOF' ? Infinity : Number(m[3]);
        if (off >= 0 ? start <= off && off <= end : end >= LOCK_PERM_BASE && start < LOCK_SHARED_BASE + PERM_BITS) {
          found.add(describeProcess(pid));
        }
      }
    }
  }
  return [...found];
}

function describeProcess(pid: string): string {
  if (Number(pid) === process.pid) return `this process (pid ${pid}: the same image attached twice?)`;
  let name = '?';
  try {
    name = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    const exe = readlinkSync(`/proc/${pid}/exe`);
    if (/\/node$/.test(exe) && name !== 'visor') {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => /visor/.test(a))) name = 'visor';
    }
  } catch {
    /* the process may have ended meanwhile */
  }
  return `pid ${pid} (${name})`;
}
