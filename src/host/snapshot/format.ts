/**
 * The visor snapshot container: a versioned header, a table of named sections, each with its
 * own CRC-32, then the section payloads. Browser-safe (no node: imports): the host writes and
 * reads the bytes, this module only builds and checks them.
 *
 *   offset  size  field
 *   0       8     magic "VISORSNP"
 *   8       4     format version (SNAPSHOT_FORMAT_VERSION)
 *   12      4     section count
 *   16      4     CRC-32 of the header (this field zero) followed by the section table
 *   20      12    reserved, zero
 *   32      40·n  section table: name (16 bytes ASCII, NUL padded), offset (u64),
 *                 length (u64), CRC-32 of the payload (u32), reserved (u32)
 *   ...           payloads, each at the offset its entry gives
 *
 * All integers little-endian. A snapshot file is untrusted input: decodeSnapshot checks every
 * offset and length against the file before reading and every checksum before returning.
 */
import { VisorError } from '../../base/errors.js';
import { crc32 as jsCrc32 } from './crc32.js';

export const SNAPSHOT_MAGIC = 'VISORSNP';
export const SNAPSHOT_FORMAT_VERSION = 1;
export const HEADER_SIZE = 32;
export const SECTION_ENTRY_SIZE = 40;
export const SECTION_NAME_MAX = 16;
/** A generous bound: the format has a handful of sections; more means a damaged table. */
export const MAX_SECTIONS = 64;

export interface SnapshotSection {
  name: string;
  /** The payload, or its pieces in order (a stored RAM section: views of guest RAM, not copied). */
  data: Uint8Array | readonly Uint8Array[];
}

const pieces = (d: SnapshotSection['data']): readonly Uint8Array[] => (d instanceof Uint8Array ? [d] : d);

export type Crc32 = (data: Uint8Array, crc?: number) => number;

const TWO32 = 0x1_0000_0000;

function corrupt(what: string): VisorError {
  return new VisorError('CorruptImage', `snapshot file is damaged: ${what}`);
}

/**
 * Builds the header and section table for `sections`. Returns the pieces to write in order
 * (header+table, then each payload as given), so a large RAM section is never copied.
 */
export function encodeSnapshot(sections: readonly SnapshotSection[], crc32: Crc32 = jsCrc32): Uint8Array[] {
  if (sections.length > MAX_SECTIONS) throw new VisorError('Internal', `too many snapshot sections (${sections.length})`);
  const names = new Set<string>();
  const tableEnd = HEADER_SIZE + SECTION_ENTRY_SIZE * sections.length;
  const head = new Uint8Array(tableEnd);
  const v = new DataView(head.buffer);
  head.set(new TextEncoder().encode(SNAPSHOT_MAGIC), 0);
  v.setUint32(8, SNAPSHOT_FORMAT_VERSION, true);
  v.setUint32(12, sections.length, true);
  let offset = tableEnd;
  sections.forEach((s, i) => {
    if (!/^[a-z0-9_.-]{1,16}$/.test(s.name) || names.has(s.name)) {
      throw new VisorError('Internal', `bad or duplicate snapshot section name '${s.name}'`);
    }
    names.add(s.name);
    const e = HEADER_SIZE + SECTION_ENTRY_SIZE * i;
    for (let k = 0; k < s.name.length; k++) head[e + k] = s.name.charCodeAt(k);
    v.setUint32(e + 16, offset % TWO32, true);
    v.setUint32(e + 20, Math.floor(offset / TWO32), true);
    let length = 0;
    let crc = 0;
    for (const p of pieces(s.data)) {
      length += p.length;
      crc = crc32(p, crc);
    }
    v.setUint32(e + 24, length % TWO32, true);
    v.setUint32(e + 28, Math.floor(length / TWO32), true);
    v.setUint32(e + 32, crc, true);
    offset += length;
  });
  v.setUint32(16, crc32(head), true);
  return [head, ...sections.flatMap((s) => pieces(s.data))];
}

export interface DecodeOptions {
  crc32?: Crc32;
  /** Skip the payload checksums of these sections (the caller checks them itself, lazily). */
  deferChecks?: readonly string[];
}

export interface DecodedSnapshot {
  version: number;
  sections: Map<string, Uint8Array>;
  /** The checksum each section's table entry claims (for deferred checks). */
  checksums: Map<string, number>;
}

/** A section table entry: where the payload lies in the file and the checksum it claims. */
export interface SectionEntry {
  name: string;
  offset: number;
  length: number;
  crc: number;
}

/**
 * Parses and verifies the header and section table. `head` holds at least the file's first
 * HEADER_SIZE bytes, and the whole table when the file has one (tableBytes says how much that
 * is); `fileLength` is the whole file's. Entries are checked against the file's extent.
 */
export function decodeSnapshotTable(head: Uint8Array, fileLength: number, crc32: Crc32 = jsCrc32): { version: number; entries: SectionEntry[] } {
  if (fileLength < HEADER_SIZE || head.length < HEADER_SIZE) {
    // As much of the magic as there is decides whether this is a short snapshot or something else.
    if (fileLength === 0 || hasMagic(head)) throw corrupt(`truncated (${fileLength} bytes, the header alone is ${HEADER_SIZE})`);
    throw notSnapshot();
  }
  if (!hasMagic(head)) throw notSnapshot();
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const version = v.getUint32(8, true);
  if (version !== SNAPSHOT_FORMAT_VERSION) {
    throw new VisorError('Unsupported', `snapshot format version ${version}: this visor reads version ${SNAPSHOT_FORMAT_VERSION}`);
  }
  const count = v.getUint32(12, true);
  if (count > MAX_SECTIONS) throw corrupt(`section count ${count}`);
  const tableEnd = tableBytes(head);
  if (fileLength < tableEnd || head.length < tableEnd) throw corrupt('truncated inside the section table');
  const check = head.slice(0, tableEnd);
  new DataView(check.buffer).setUint32(16, 0, true);
  if (crc32(check) !== v.getUint32(16, true)) {
    throw new VisorError('IntegrityError', 'snapshot header checksum mismatch: the file is damaged');
  }
  const names = new Set<string>();
  const entries: SectionEntry[] = [];
  for (let i = 0; i < count; i++) {
    const e = HEADER_SIZE + SECTION_ENTRY_SIZE * i;
    let name = '';
    for (let k = 0; k < SECTION_NAME_MAX && head[e + k] !== 0; k++) name += String.fromCharCode(head[e + k]!);
    if (!/^[a-z0-9_.-]{1,16}$/.test(name) || names.has(name)) throw corrupt(`bad section name in entry ${i}`);
    names.add(name);
    const offset = v.getUint32(e + 16, true) + v.getUint32(e + 20, true) * TWO32;
    const length = v.getUint32(e + 24, true) + v.getUint32(e + 28, true) * TWO32;
    if (offset < tableEnd || offset + length > fileLength) {
      throw corrupt(`section '${name}' lies outside the file (truncated?): ${offset}+${length} > ${fileLength}`);
    }
    entries.push({ name, offset, length, crc: v.getUint32(e + 32, true) });
  }
  // The writer ends the file with its last section: bytes after it are not ours (a file
  // appended to, or two files run together).
  const end = entries.reduce((m, e) => Math.max(m, e.offset + e.length), tableEnd);
  if (fileLength > end) throw corrupt(`${fileLength - end} bytes follow the last section`);
  return { version, entries };
}

/** Bytes of header and section table, from the header's section count (bounded by MAX_SECTIONS). */
export function tableBytes(header: Uint8Array): number {
  const count = new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(12, true);
  return HEADER_SIZE + SECTION_ENTRY_SIZE * Math.min(count, MAX_SECTIONS);
}

export function sectionChecksumError(name: string): VisorError {
  return new VisorError('IntegrityError', `snapshot section '${name}' checksum mismatch: the file is damaged`);
}

/** Parses and verifies a whole snapshot file. Sections are views into `file`, not copies. */
export function decodeSnapshot(file: Uint8Array, opts: DecodeOptions = {}): DecodedSnapshot {
  const crc32 = opts.crc32 ?? jsCrc32;
  const { version, entries } = decodeSnapshotTable(file, file.length, crc32);
  const sections = new Map<string, Uint8Array>();
  const checksums = new Map<string, number>();
  const deferred = new Set(opts.deferChecks ?? []);
  for (const e of entries) {
    const data = file.subarray(e.offset, e.offset + e.length);
    if (!deferred.has(e.name) && crc32(data) !== e.crc) throw sectionChecksumError(e.name);
    sections.set(e.name, data);
    checksums.set(e.name, e.crc);
  }
  return { version, sections, checksums };
}

/** Whether the file starts with the magic (or with as much of it as the file holds). */
function hasMagic(file: Uint8Array): boolean {
  for (let i = 0; i < Math.min(8, file.length); i++) if (file[i] !== SNAPSHOT_MAGIC.charCodeAt(i)) return false;
  return true;
}

function notSnapshot(): VisorError {
  return new VisorError('BadImage', 'not a visor snapshot (bad magic)');
}

/** A section that must be there. */
export function requireSection(snap: DecodedSnapshot, name: string): Uint8Array {
  const s = snap.sections.get(name);
  if (!s) throw corrupt(`section '${name}' is missing`);
  return s;
}

/** JSON sections: state objects with named fields. */
export function jsonSection(name: string, value: unknown): SnapshotSection {
  return { name, data: new TextEncoder().encode(JSON.stringify(value)) };
}

export function parseJsonSection(snap: DecodedSnapshot, name: string): unknown {
  const data = requireSection(snap, name);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (err) {
    throw new VisorError('CorruptImage', `snapshot section '${name}' is not valid JSON`, { cause: err });
  }
}
