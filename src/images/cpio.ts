/**
 * The "new ASCII" (newc) cpio format the Linux kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst). Each entry: the magic
 * "070701", thirteen 8-digit hex fields, the NUL-terminated name padded so the data starts
 * on a 4-byte boundary, then the data padded to 4 bytes. The archive ends with "TRAILER!!!".
 */
import { VisorError } from '../base/errors.js';

export const CPIO_NEWC_MAGIC = '070701';
export const CPIO_TRAILER = 'TRAILER!!!';

// st_mode file types (POSIX <sys/stat.h>).
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;

export type CpioEntry =
  | { type: 'file'; path: string; mode: number; data: Uint8Array }
  | { type: 'dir'; path: string; mode: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; mode: number; major: number; minor: number };

const HEADER_SIZE = 110;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new VisorError('InvalidArgument', `cpio field out of range: ${n}`);
  }
  return n.toString(16).padStart(8, '0');
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Writes a newc archive. Entries are written in the given order: parents before children. */
export function writeCpio(entries: CpioEntry[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const emit = (name: string, mode: number, data: Uint8Array, rdevMajor = 0, rdevMinor = 0, nlink = 1) => {
    const nameBytes = Buffer.from(name + '\0', 'utf8');
    const header =
      CPIO_NEWC_MAGIC + hex8(name === CPIO_TRAILER ? 0 : ino++) + hex8(mode) + hex8(0) + hex8(0) +
      hex8(nlink) + hex8(mtime) + hex8(data.length) + hex8(0) + hex8(0) + hex8(rdevMajor) +
      hex8(rdevMinor) + hex8(nameBytes.length) + hex8(0);
    parts.push(Buffer.from(header, 'latin1'), nameBytes, Buffer.alloc(pad4(HEADER_SIZE + nameBytes.length)));
    parts.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength), Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, '');
    if (path === '' || path.split('/').includes('..')) {
      throw new VisorError('InvalidArgument', `bad cpio path: '${e.path}'`);
    }
    switch (e.type) {
      case 'file': emit(path, S_IFREG | (e.mode & 0o7777), e.data); break;
      case 'dir': emit(path, S_IFDIR | (e.mode & 0o7777), new Uint8Array(0), 0, 0, 2); break;
      case 'symlink': emit(path, S_IFLNK | 0o777, Buffer.from(e.target, 'utf8')); break;
      case 'char': emit(path, S_IFCHR | (e.mode & 0o7777), new Uint8Array(0), e.major, e.minor); break;
    }
  }
  emit(CPIO_TRAILER, 0, new Uint8Array(0), 0, 0, 1);
  return Buffer.concat(parts);
}

export interface CpioRecord {
  path: string;
  mode: number;
  data: Buffer;
  rdevMajor: number;
  rdevMinor: number;
}

/** Reads a newc archive (tests, and `visor image` sanity checks of a cached initramfs). */
export function readCpio(buf: Buffer): CpioRecord[] {
  const out: CpioRecord[] = [];
  let pos = 0;
  for (;;) {
    if (pos + HEADER_SIZE > buf.length) throw new VisorError('CorruptImage', 'cpio archive truncated (no trailer)');
    const magic = buf.toString('latin1', pos, pos + 6);
    if (magic !== CPIO_NEWC_MAGIC) throw new VisorError('CorruptImage', `bad cpio magic at offset ${pos}`);
    const field = (i: number) => parseInt(buf.toString('latin1', pos + 6 + i * 8, pos + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const rdevMajor = field(9);
    const rdevMinor = field(10);
    const nameSize = field(11);
    const nameStart = pos + HEADER_SIZE;
    const path = buf.toString('utf8', nameStart, nameStart + nameSize - 1);
    const dataStart = nameStart + nameSize + pad4(HEADER_SIZE + nameSize);
    if (dataStart + size > buf.length) throw new VisorError('CorruptImage', `cpio entry '${path}' truncated`);
    if (path === CPIO_TRAILER) return out;
    out.push({ path, mode, data: buf.subarray(dataStart, dataStart + size), rdevMajor, rdevMinor });
    pos = dataStart + size + pad4(size);
  }
}
