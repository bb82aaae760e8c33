/**
 * Snapshot files on the host: the container and RAM encoding are src/machine/snapshot/
 * (browser-safe); this adds node:zlib compression and CRC-32, atomic writes, and disk
 * fingerprints. Sections:
 *   meta     JSON  SnapshotMeta: what visor wrote it, the machine's config, the disks
 *   machine  JSON  VirtState (hart, devices, virtqueues) and the runner's own state
 *   ram      bin   sparse, compressed guest RAM
 */
import { createHash } from 'node:crypto';
import { open, rename, rm, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { crc32 as zlibCrc32, deflateSync, inflate, inflateSync } from 'node:zlib';
import { VisorError } from '../base/errors.js';
import {
  decodeSnapshot, encodeSnapshot, jsonSection, parseJsonSection, requireSection, type DecodedSnapshot,
} from '../machine/snapshot/format.js';
import { allocateGuestRam } from '../cpu/guest-ram.js';
import { decodeRamAsync, encodeRam, type RamCodec, type RamEncodeStats } from '../machine/snapshot/ram.js';
import { QCOW_MAGIC } from '../storage/qcow2/format.js';
import { mapFsError } from './file-handle.js';

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

export async function fingerprintDisk(path: string, format: 'raw' | 'qcow2', readOnly: boolean): Promise<DiskFingerprint> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw mapFsError(err, path);
  }
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

/** Checks that a disk is still what the snapshot saw; the error says what changed. */
export async function verifyDisk(saved: DiskFingerprint): Promise<void> {
  let now: DiskFingerprint;
  try {
    now = await fingerprintDisk(saved.path, saved.format, saved.readOnly);
  } catch (err) {
    if (err instanceof VisorError && err.code === 'NotFound') {
      throw new VisorError('NotFound', `the snapshot's disk ${saved.path} is missing`, { cause: err });
    }
    throw err;
  }
  const changed: string[] = [];
  if (now.size !== saved.size) changed.push(`size ${saved.size} -> ${now.size}`);
  if (now.qcow2HeaderSha256 !== saved.qcow2HeaderSha256) changed.push('qcow2 header');
  if (now.headSha256 !== saved.headSha256) changed.push('first MiB');
  if (now.mtimeMs !== saved.mtimeMs) changed.push(`modification time ${new Date(saved.mtimeMs).toISOString()} -> ${new Date(now.mtimeMs).toISOString()}`);
  if (changed.length > 0) {
    throw new VisorError('IntegrityError', `the snapshot's disk ${saved.path} changed since the snapshot was taken (${changed.join(', ')}); restoring would corrupt it`);
  }
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

/** Writes a snapshot atomically: to a temporary file beside `path`, fsynced, then renamed. */
export async function writeSnapshotFile(path: string, c: SnapshotContents, codec: RamCodec = DEFLATE_CODEC): Promise<WrittenSnapshot> {
  const ramStats: RamEncodeStats = { pages: 0, presentPages: 0, bytes: 0 };
  const ram = encodeRam(c.ram, codec, ramStats);
  const parts = encodeSnapshot([jsonSection('meta', c.meta), jsonSection('machine', c.machine), { name: 'ram', data: ram }], crc32);
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  let bytes = 0;
  try {
    const fh = await open(tmp, 'w');
    try {
      for (const p of parts) {
        await fh.write(p);
        bytes += p.length;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err instanceof VisorError ? err : mapFsError(err, path);
  }
  return { bytes, ram: ramStats };
}

export interface ReadSnapshot {
  meta: unknown;
  machine: unknown;
  /** Fills fresh (all-zero) guest RAM. */
  loadRam(ram: Uint8Array): Promise<void>;
}

/** Reads and verifies a snapshot file (checksums, structure); RAM is decoded on demand. */
export async function readSnapshotFile(path: string): Promise<ReadSnapshot> {
  return parseSnapshot(await readSnapshotBytes(path));
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
  // 2048: VirtMachine's MAX_MEMORY_MIB (not imported: this runs before the board's modules load).
  if (typeof mib !== 'number' || !Number.isInteger(mib) || mib < 1 || mib > 2048) return undefined;
  const ram = allocateGuestRam(mib * 2 ** 20);
  const p = snap.loadRam(ram).then(() => ram);
  p.catch(() => {}); // awaited (and reported) by the runner; not unhandled meanwhile
  return p;
}
