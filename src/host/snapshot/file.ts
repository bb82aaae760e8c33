/**
 * Snapshot files on the host: the container and RAM encoding are format.ts and ram.ts
 * beside it (they load no node: module); this adds node:zlib compression and CRC-32, atomic writes, and disk
 * fingerprints. Sections:
 *   meta     JSON  SnapshotMeta: what visor wrote it, the machine's config, the disks
 *   machine  JSON  VirtState (hart, devices, virtqueues) and the runner's own state
 *   ram      bin   sparse, compressed guest RAM
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writevSync } from 'node:fs';
import { open, realpath, rename, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';
import { crc32 as zlibCrc32, deflateSync, inflate, inflateSync } from 'node:zlib';
import { VisorError } from '../../base/errors.js';
import {
  decodeSnapshot, decodeSnapshotTable, encodeSnapshot, HEADER_SIZE, jsonSection, parseJsonSection, requireSection,
  sectionChecksumError, tableBytes, type DecodedSnapshot,
} from './format.js';
import { allocateGuestRam } from '../../cpu/guest-ram.js';
import type { RamImage } from '../../cpu/ram-pager.js';
import { MAX_MEMORY_MIB } from '../../machine/ram-size.js';
import {
  decodeRamAsync, encodeRamParts, parseRamLayout, RAM_FIXED_BYTES, RAM_PAGE_SIZE, ramPrefixBytes, STORED_CODEC,
  type RamCodec, type RamEncodeStats, type ZeroPageTest,
} from './ram.js';
import { parseHeader, QCOW_MAGIC } from '../../storage/qcow2/format.js';
import { mapFsError } from '../file-handle.js';

/**
 * zlib format (RFC 1950) rather than raw deflate: its Adler-32 catches a damaged chunk that
 * still inflates. Level 1: guest RAM compresses nearly as well as at level 6, much faster.
 */
const inflateAsync = promisify(inflate);

export const DEFLATE_CODEC: RamCodec = {
  id: 1,
  name: 'zlib',
  compress: (raw) => {
    const b = deflateSync(raw, { level: 1 });
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  },
  decompress: (data, rawLength) => {
    // One output chunk of the exact size: zlib then hands it over without a concatenating copy.
    const b = inflateSync(data, { maxOutputLength: rawLength, chunkSize: Math.max(64, rawLength) });
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  },
  // On the libuv thread pool: a restore inflates chunks on every core.
  decompressAsync: async (data, rawLength) => {
    const b = await inflateAsync(data, { maxOutputLength: rawLength, chunkSize: Math.max(64, rawLength) });
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  },
};

export const RAM_CODECS: readonly RamCodec[] = [DEFLATE_CODEC];

const crc32 = (data: Uint8Array, crc?: number) => zlibCrc32(data, crc);

/** Identifies a disk file's content as of the snapshot (issue 7: path, format, fingerprint). */
export interface DiskFingerprint {
  path: string;
  format: 'raw' | 'qcow2';
  readOnly: boolean;
  size: number;
  mtimeMs: number;
  /** SHA-256 of the first MiB (qcow2: with the DIRTY bit cleared). */
  headSha256: string;
  /** qcow2 only: SHA-256 of the header (header_length bytes, DIRTY cleared). */
  qcow2HeaderSha256?: string;
}

const HEAD_BYTES = 1 << 20;
/** qcow2 header (docs/interop/qcow2.txt): incompatible_features at 72, header_length at 100. */
const QCOW2_INCOMPAT_OFFSET = 72;
const QCOW2_HEADER_LENGTH_OFFSET = 100;
const QCOW2_V2_HEADER_LENGTH = 72;

/** Opens `path` for reading; a failure is the VisorError mapFsError gives. */
async function openForReading(path: string) {
  try {
    return await open(path, 'r');
  } catch (err) {
    throw mapFsError(err, path);
  }
}

export async function fingerprintDisk(path: string, format: 'raw' | 'qcow2', readOnly: boolean): Promise<DiskFingerprint> {
  const fh = await openForReading(path);
  try {
    const st = await fh.stat();
    const head = new Uint8Array(Math.min(HEAD_BYTES, st.size));
    await fh.read(head, 0, head.length, 0);
    const fp: DiskFingerprint = { path, format, readOnly, size: st.size, mtimeMs: st.mtimeMs, headSha256: '' };
    const v = new DataView(head.buffer);
    if (format === 'qcow2' && head.length >= QCOW2_V2_HEADER_LENGTH && v.getUint32(0) === QCOW_MAGIC) {
      // The DIRTY bit (incompatible_features bit 0) flips when an image is opened and closed
      // cleanly; it says nothing about the data.
      if (v.getUint32(4) >= 3 && head.length >= QCOW2_HEADER_LENGTH_OFFSET + 4) {
        head[QCOW2_INCOMPAT_OFFSET + 7]! &= ~1;
        const len = Math.min(head.length, v.getUint32(QCOW2_HEADER_LENGTH_OFFSET));
        fp.qcow2HeaderSha256 = sha256(head.subarray(0, len));
      } else {
        fp.qcow2HeaderSha256 = sha256(head.subarray(0, QCOW2_V2_HEADER_LENGTH));
      }
    }
    fp.headSha256 = sha256(head);
    return fp;
  } finally {
    await fh.close();
  }
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Where a fingerprint and the disk it names differ (size, qcow2 header, first MiB; mtime when `withMtime`). */
function differences(saved: DiskFingerprint, now: DiskFingerprint, withMtime: boolean): string[] {
  const changed: string[] = [];
  if (now.size !== saved.size) changed.push(`size ${saved.size} -> ${now.size}`);
  if (now.qcow2HeaderSha256 !== saved.qcow2HeaderSha256) changed.push('qcow2 header');
  if (now.headSha256 !== saved.headSha256) changed.push('first MiB');
  if (withMtime && now.mtimeMs !== saved.mtimeMs) changed.push(`modification time ${new Date(saved.mtimeMs).toISOString()} -> ${new Date(now.mtimeMs).toISOString()}`);
  return changed;
}

/** A disk's size as the guest sees it: a qcow2 header's virtual size, a raw file's length. */
async function virtualSize(path: string, format: 'raw' | 'qcow2'): Promise<number> {
  const fh = await openForReading(path);
  try {
    const st = await fh.stat();
    if (format === 'raw') return st.size;
    const head = new Uint8Array(Math.min(QCOW2_PEEK_BYTES, st.size));
    await fh.read(head, 0, head.length, 0);
    return parseHeader(head, st.size).size;
  } finally {
    await fh.close();
  }
}

const QCOW2_PEEK_BYTES = 2 << 20;
/** The largest L1 table an empty overlay's check reads (QEMU's own limit on L1 tables). */
const MAX_L1_BYTES = 32 << 20;

/**
 * Why `standIn` is not a fresh qcow2 overlay on the saved disk (its backing file is that disk,
 * no cluster of its own, the same virtual size), or undefined when it is one: such a disk holds
 * exactly what the saved disk holds, so a template's disk can stay read-only under the
 * overlays of many sandboxes (src/sdk/sandbox-template.ts).
 */
async function notAnEmptyOverlay(saved: DiskFingerprint, standIn: string): Promise<string | undefined> {
  const fh = await openForReading(standIn);
  let h: ReturnType<typeof parseHeader>;
  try {
    const st = await fh.stat();
    const head = new Uint8Array(Math.min(QCOW2_PEEK_BYTES, st.size));
    await fh.read(head, 0, head.length, 0);
    if (head.length < 4 || new DataView(head.buffer).getUint32(0) !== QCOW_MAGIC) return 'not a qcow2 overlay';
    h = parseHeader(head, st.size);
    if (h.backingFile === undefined) return 'no backing file';
    const l1Bytes = h.l1Size * 8;
    if (l1Bytes > MAX_L1_BYTES || h.l1TableOffset + l1Bytes > st.size) return 'an L1 table out of bounds';
    const l1 = new Uint8Array(l1Bytes);
    await fh.read(l1, 0, l1Bytes, h.l1TableOffset);
    if (l1.some((b) => b !== 0)) return 'clusters of its own (it was written)';
  } finally {
    await fh.close();
  }
  const backing = isAbsolute(h.backingFile) ? h.backingFile : join(dirname(standIn), h.backingFile);
  const [a, b] = await Promise.all([realpath(backing).catch(() => backing), realpath(saved.path).catch(() => saved.path)]);
  if (a !== b) return `its backing file is ${backing}, not ${saved.path}`;
  if (h.backingFormat !== undefined && h.backingFormat !== saved.format) return `its backing format is ${h.backingFormat}, not ${saved.format}`;
  const size = await virtualSize(saved.path, saved.format);
  if (h.size !== size) return `its virtual size is ${h.size}, the saved disk's ${size}`;
  return undefined;
}

/**
 * Checks that a disk is still what the snapshot saw; the error says what changed. A stand-in
 * (another file restored in the saved disk's place) must hold what the saved disk held: the
 * same size, qcow2 header and first MiB, or be a fresh qcow2 overlay on the saved disk, which
 * itself then passes the same comparison.
 */
export async function verifyDisk(saved: DiskFingerprint, standIn?: string): Promise<void> {
  const path = standIn ?? saved.path;
  const what = standIn === undefined ? `the snapshot's disk ${path}` : `${path}, standing in for the snapshot's disk ${saved.path},`;
  const fingerprint = async (p: string, label: string) => {
    try {
      return await fingerprintDisk(p, saved.format, saved.readOnly);
    } catch (err) {
      if (err instanceof VisorError && err.code === 'NotFound') throw new VisorError('NotFound', `${label} is missing`, { cause: err });
      throw err;
    }
  };
  const now = await fingerprint(path, what);
  // A stand-in is another file: its own modification time, the same bytes where they are compared.
  let changed = differences(saved, now, standIn === undefined);
  if (changed.length > 0 && standIn !== undefined) {
    const why = await notAnEmptyOverlay(saved, standIn);
    if (why === undefined) {
      // An overlay: the saved disk under it must hold what it held (its own mtime may move: closing it clears the DIRTY bit).
      changed = differences(saved, await fingerprint(saved.path, `the snapshot's disk ${saved.path} (under ${standIn})`), false);
      if (changed.length === 0) return;
      throw new VisorError('IntegrityError', `the snapshot's disk ${saved.path}, the backing file of ${standIn}, changed since the snapshot was taken (${changed.join(', ')}); restoring would corrupt it`);
    }
    changed.push(`and it is not an empty overlay on it: ${why}`);
  }
  if (changed.length > 0) {
    const why = standIn === undefined ? 'changed since the snapshot was taken' : 'does not hold what the snapshot\'s disk held';
    throw new VisorError('IntegrityError', `${what} ${why} (${changed.join(', ')}); restoring would corrupt it`);
  }
}

const ZERO_PAGE = new Uint8Array(RAM_PAGE_SIZE);

/** encodeRam's zero-page test as one memcmp per page (~5 times faster than a JS loop over 256 MiB). */
export function nativeZeroTest(ram: Uint8Array): ZeroPageTest {
  const b = Buffer.from(ram.buffer, ram.byteOffset, ram.length);
  return (_ram, page) => b.compare(ZERO_PAGE, 0, RAM_PAGE_SIZE, page * RAM_PAGE_SIZE, (page + 1) * RAM_PAGE_SIZE) === 0;
}

export interface SnapshotContents {
  meta: unknown;
  machine: unknown;
  ram: Uint8Array;
}

export interface WrittenSnapshot {
  bytes: number;
  ram: RamEncodeStats;
}

/**
 * Writes a snapshot atomically: to a temporary file beside `path`, fsynced, then renamed.
 * Synchronously: stored RAM goes from guest RAM to the file without a copy (encodeRamParts),
 * and a device may write guest RAM (a frame arriving) as soon as this thread yields, which
 * would put a different RAM in the file than its checksum and the saved device state expect.
 * The machine is parked meanwhile, so blocking its thread costs it nothing.
 */
export async function writeSnapshotFile(path: string, c: SnapshotContents, codec: RamCodec = DEFLATE_CODEC): Promise<WrittenSnapshot> {
  const ramStats: RamEncodeStats = { pages: 0, presentPages: 0, bytes: 0 };
  const ram = encodeRamParts(c.ram, codec, ramStats, nativeZeroTest(c.ram));
  const parts = encodeSnapshot([jsonSection('meta', c.meta), jsonSection('machine', c.machine), { name: 'ram', data: ram }], crc32);
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  let bytes = 0;
  try {
    const fd = openSync(tmp, 'w');
    try {
      bytes = writeAllSync(fd, parts);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err instanceof VisorError ? err : mapFsError(err, path);
  }
  return { bytes, ram: ramStats };
}

/** writev of every part, in batches the kernel takes (IOV_MAX), resuming after short writes. */
function writeAllSync(fd: number, parts: readonly Uint8Array[]): number {
  let total = 0;
  let i = 0;
  let skip = 0; // bytes of parts[i] already written
  while (i < parts.length) {
    const batch: Uint8Array[] = [];
    for (let k = i; k < parts.length && batch.length < WRITEV_MAX; k++) batch.push(k === i && skip > 0 ? parts[k]!.subarray(skip) : parts[k]!);
    let n = writevSync(fd, batch);
    if (n <= 0) throw new VisorError('IoError', 'writing the snapshot: the file system took no bytes');
    total += n;
    // Advance past what was written (a short write stops inside a part).
    while (i < parts.length && n >= parts[i]!.length - skip) {
      n -= parts[i]!.length - skip;
      skip = 0;
      i++;
    }
    skip += n;
  }
  return total;
}

/** Linux's IOV_MAX. */
const WRITEV_MAX = 1024;

export interface ReadSnapshot {
  meta: unknown;
  machine: unknown;
  /** Fills fresh (all-zero) guest RAM. */
  loadRam(ram: Uint8Array): Promise<void>;
  /** RAM to page in on demand instead (an in-memory snapshot, memory.ts): loadRam is not used. */
  ramImage?: RamImage;
}

/**
 * Reads and verifies a snapshot file (checksums, structure); RAM is decoded on demand. RAM
 * stored uncompressed is not read here: loadRam reads it from the file straight to its place
 * in guest RAM (one readv per chunk) and checks the section's CRC-32 over it there, so a
 * restore neither holds the file in memory nor copies it. A compressed section is read whole.
 */
export async function readSnapshotFile(path: string): Promise<ReadSnapshot> {
  let fh;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new VisorError('InvalidArgument', `${path} is not a file`);
    fh = await open(path, 'r');
  } catch (err) {
    throw err instanceof VisorError ? err : mapFsError(err, path);
  }
  try {
    const size = (await fh.stat()).size;
    const at = async (offset: number, length: number): Promise<Uint8Array> => {
      const b = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
      let off = 0;
      while (off < b.length) {
        const { bytesRead } = await fh.read(b, off, b.length - off, offset + off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      return off < b.length ? b.subarray(0, off) : b;
    };
    const header = await at(0, HEADER_SIZE);
    const head = header.length < HEADER_SIZE ? header : await at(0, tableBytes(header));
    const { version, entries } = decodeSnapshotTable(head, size, crc32);
    const sections = new Map<string, Uint8Array>();
    let ramEntry: (typeof entries)[number] | undefined;
    let ramLoad: ((dest: Uint8Array) => Promise<void>) | undefined;
    for (const e of entries) {
      if (e.name === 'ram') {
        const fixed = await at(e.offset, Math.min(RAM_FIXED_BYTES, e.length));
        const codecId = fixed.length >= RAM_FIXED_BYTES ? new DataView(fixed.buffer).getUint32(12, true) : -1;
        if (codecId === STORED_CODEC.id) {
          const prefix = await at(e.offset, ramPrefixBytes(fixed, e.length));
          ramEntry = e;
          ramLoad = (dest) => loadStoredRam(path, size, e, prefix, dest);
          continue;
        }
      }
      const data = await at(e.offset, e.length);
      if (crc32(data) !== e.crc) throw sectionChecksumError(e.name);
      sections.set(e.name, data);
    }
    const snap: DecodedSnapshot = { version, sections, checksums: new Map() };
    const meta = parseJsonSection(snap, 'meta');
    const machine = parseJsonSection(snap, 'machine');
    if (ramEntry && ramLoad) return { meta, machine, loadRam: ramLoad };
    const ram = requireSection(snap, 'ram');
    return { meta, machine, loadRam: (dest) => decodeRamAsync(ram, dest, RAM_CODECS) };
  } finally {
    await fh.close();
  }
}

/**
 * Fills fresh guest RAM from an uncompressed RAM section in the file at `path`: each chunk's
 * pages straight from the file to their places, then the section's CRC-32 over the prefix and
 * the placed pages in file order. The file is opened again (no handle is held between reading
 * the table and loading RAM); should it have changed meanwhile, the checksum says so.
 */
async function loadStoredRam(path: string, size: number, e: { name: string; offset: number; length: number; crc: number }, prefix: Uint8Array, dest: Uint8Array): Promise<void> {
  const fh = await openForReading(path);
  try {
    let layout;
    try {
      layout = parseRamLayout(prefix, e.length, dest.length, RAM_CODECS);
    } catch (err) {
      // The checksum is only known once all pages are read: before blaming the machine's size
      // or the codec, make sure the section is intact (a damaged file says so, as it would
      // had the whole file been checked first).
      let crc = 0;
      for (let off = 0; off < e.length; off += 1 << 20) {
        const b = new Uint8Array(Math.min(1 << 20, e.length - off));
        const { bytesRead } = await fh.read(b, 0, b.length, e.offset + off);
        crc = crc32(b.subarray(0, bytesRead), crc);
      }
      if (crc !== e.crc) throw sectionChecksumError(e.name);
      throw err;
    }
    if ((await fh.stat()).size !== size) throw new VisorError('IntegrityError', `snapshot ${path} changed while it was being restored`);
    // Per chunk, the runs of consecutive pages: one view of guest RAM each, filled by one readv.
    const chunkViews: Uint8Array[][] = [];
    let first = 0;
    for (const [i, c] of layout.chunks.entries()) {
      if (c.len !== c.pages * RAM_PAGE_SIZE) {
        throw new VisorError('CorruptImage', `snapshot RAM section is damaged: stored chunk ${i} is ${c.len} bytes, expected ${c.pages * RAM_PAGE_SIZE}`);
      }
      const views: Uint8Array[] = [];
      for (let k = 0; k < c.pages;) {
        const page = layout.present[first + k]!;
        let run = 1;
        while (k + run < c.pages && layout.present[first + k + run] === page + run) run++;
        views.push(dest.subarray(page * RAM_PAGE_SIZE, (page + run) * RAM_PAGE_SIZE));
        k += run;
      }
      chunkViews.push(views);
      first += c.pages;
    }
    // Several chunks in flight: the copies (and first touches of guest RAM) run on the libuv
    // pool's threads side by side. All reads end before the handle closes (allSettled).
    let next = 0;
    let failed = false;
    const reader = async () => {
      while (!failed && next < chunkViews.length) {
        const i = next++;
        const views = chunkViews[i]!;
        const c = layout.chunks[i]!;
        let done = 0;
        while (done < c.len) {
          // readv may stop short: resume from the first view not yet full.
          let skip = done;
          const rest: Uint8Array[] = [];
          for (const v of views) {
            if (skip >= v.length) skip -= v.length;
            else {
              rest.push(skip > 0 ? v.subarray(skip) : v);
              skip = 0;
            }
          }
          const { bytesRead } = await fh.readv(rest, e.offset + c.off + done);
          if (bytesRead === 0) {
            failed = true;
            throw new VisorError('CorruptImage', `snapshot RAM section is damaged: truncated in chunk ${i}`);
          }
          done += bytesRead;
        }
      }
    };
    const results = await Promise.allSettled(Array.from({ length: 4 }, reader));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    // The section's checksum, in file order: its prefix, then each chunk's pages.
    let crc = crc32(prefix);
    for (const views of chunkViews) for (const v of views) crc = crc32(v, crc);
    if (crc !== e.crc) throw sectionChecksumError(e.name);
  } finally {
    await fh.close();
  }
}

/** A snapshot file's bytes (in a buffer of their own, so they can be transferred to a worker). */
export async function readSnapshotBytes(path: string): Promise<Uint8Array> {
  let file: Uint8Array;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new VisorError('InvalidArgument', `${path} is not a file`);
    const fh = await open(path, 'r');
    try {
      file = new Uint8Array(st.size);
      let off = 0;
      while (off < file.length) {
        const { bytesRead } = await fh.read(file, off, file.length - off, off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      if (off < file.length) file = file.subarray(0, off);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw err instanceof VisorError ? err : mapFsError(err, path);
  }
  return file;
}

export function parseSnapshot(file: Uint8Array): ReadSnapshot {
  const snap: DecodedSnapshot = decodeSnapshot(file, { crc32 });
  const ram = requireSection(snap, 'ram');
  return {
    meta: parseJsonSection(snap, 'meta'),
    machine: parseJsonSection(snap, 'machine'),
    loadRam: (dest) => decodeRamAsync(ram, dest, RAM_CODECS),
  };
}

/**
 * Allocates guest RAM of the size the snapshot's metadata names and starts filling it, so a
 * restoring worker inflates RAM (on the libuv pool) while it still loads the rest of visor.
 * Undefined when the metadata names no plausible size: the runner's validation reports that.
 * The result is only a head start: MachineRunner.restore still validates everything.
 */
export function startRamLoad(snap: ReadSnapshot): Promise<Uint8Array> | undefined {
  const mib = (snap.meta as { config?: { memoryMiB?: unknown } } | null)?.config?.memoryMiB;
  // ram-size.ts imports nothing: reading it loads none of the board's modules.
  if (typeof mib !== 'number' || !Number.isInteger(mib) || mib < 1 || mib > MAX_MEMORY_MIB) return undefined;
  const ram = allocateGuestRam(mib * 2 ** 20);
  const p = snap.loadRam(ram).then(() => ram);
  p.catch(() => {}); // awaited (and reported) by the runner; not unhandled meanwhile
  return p;
}
