/**
 * Snapshots held in memory instead of a file (issue 16: a fork's children start from one).
 *
 * The metadata and machine state are the JSON a snapshot file's sections hold; RAM is a
 * RamImage in SharedArrayBuffers: every machine restored from it, in any worker, reads the
 * same bytes, and copies a page into its own RAM only when its guest first reaches that page
 * (src/cpu/ram-pager.ts). So a restore copies no RAM up front, and N children of one fork hold
 * one copy of the parent's RAM plus what each has touched since.
 */
import { VisorError } from '../../base/errors.js';
import type { RamImage, RamPager } from '../../cpu/ram-pager.js';
import { RAM_PAGE_SIZE as PAGE_BYTES } from './ram.js';
import { MAX_MEMORY_MIB } from '../../machine/ram-size.js';
import { nativeZeroTest, readSnapshotFile, type ReadSnapshot } from './file.js';

/** A whole machine at an instant, in memory (Machine.snapshotInMemory; Machine.restore takes it). */
export interface MemorySnapshot {
  readonly kind: 'visor-memory-snapshot';
  /** The snapshot file's 'meta' and 'machine' sections (JSON). */
  readonly meta: string;
  readonly machine: string;
  /** Guest RAM (SharedArrayBuffer-backed): page p at byte p * 4096; only present pages are written. */
  readonly ram: Uint8Array;
  /** One byte per RAM page (SharedArrayBuffer-backed): 1 when the page holds data. */
  readonly present: Uint8Array;
  /** How many pages are present. */
  readonly presentPages: number;
}

/** Whether a page of RAM is all zero (file.ts's native comparison). */
export type PageIsZero = (page: number) => boolean;

/**
 * An image of `ram` as it is now: each page that holds anything copied into shared memory.
 * A page `pager` still has pending comes from its image (this machine never touched it): read
 * from there, it stays unfetched here. Synchronous, as a snapshot file's write is: the machine
 * is parked, and nothing may write RAM between the scan and the saved device state.
 */
export function imageOfRam(ram: Uint8Array, isZero: PageIsZero, pager?: RamPager): { ram: Uint8Array; present: Uint8Array; presentPages: number } {
  const pages = Math.floor(ram.length / PAGE_BYTES);
  const out = new Uint8Array(new SharedArrayBuffer(ram.length));
  const present = new Uint8Array(new SharedArrayBuffer(pages));
  let n = 0;
  // Runs of consecutive pages of RAM go over in one copy each.
  let runStart = -1;
  const endRun = (end: number) => {
    if (runStart < 0) return;
    out.set(ram.subarray(runStart * PAGE_BYTES, end * PAGE_BYTES), runStart * PAGE_BYTES);
    runStart = -1;
  };
  for (let p = 0; p < pages; p++) {
    const theirs = pager?.pendingPage(p);
    if (theirs !== undefined) {
      endRun(p);
      out.set(theirs, p * PAGE_BYTES);
    } else if (isZero(p)) {
      endRun(p);
      continue;
    } else if (runStart < 0) {
      runStart = p;
    }
    present[p] = 1;
    n++;
  }
  endRun(pages);
  return { ram: out, present, presentPages: n };
}

/** A MemorySnapshot as the restore reads one: the JSON parsed, RAM as an image to page in from. */
export function readMemorySnapshot(s: MemorySnapshot): ReadSnapshot & { ramImage: RamImage } {
  if (typeof s !== 'object' || s === null || s.kind !== 'visor-memory-snapshot') {
    throw new VisorError('InvalidArgument', 'restore: not a snapshot (give a file path, or what Machine.snapshotInMemory returned)');
  }
  const parse = (what: string, text: unknown): unknown => {
    if (typeof text !== 'string') throw new VisorError('CorruptImage', `in-memory snapshot: '${what}' is not JSON text`);
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new VisorError('CorruptImage', `in-memory snapshot: '${what}' is not valid JSON`, { cause: err });
    }
  };
  if (!(s.ram instanceof Uint8Array) || !(s.present instanceof Uint8Array) || s.ram.length !== s.present.length * PAGE_BYTES) {
    throw new VisorError('CorruptImage', 'in-memory snapshot: its RAM and page map do not match');
  }
  return {
    meta: parse('meta', s.meta),
    machine: parse('machine', s.machine),
    ramImage: { bytes: s.ram, present: s.present },
    loadRam: () => Promise.reject(new VisorError('Internal', 'an in-memory snapshot pages RAM in on demand; it is not loaded whole')),
  };
}

/**
 * A snapshot file read into memory: for restoring it many times in this process (a sandbox
 * template), each restore paging in only what its guest reaches. RAM is read once, into shared
 * memory; its checksums are checked as a file restore checks them.
 */
export async function loadMemorySnapshot(path: string): Promise<MemorySnapshot> {
  const snap = await readSnapshotFile(path);
  const mib = (snap.meta as { config?: { memoryMiB?: unknown } } | null)?.config?.memoryMiB;
  if (typeof mib !== 'number' || !Number.isInteger(mib) || mib < 1 || mib > MAX_MEMORY_MIB) {
    throw new VisorError('CorruptImage', `snapshot ${path}: its metadata names no valid memory size`);
  }
  const ram = new Uint8Array(new SharedArrayBuffer(mib * 2 ** 20));
  await snap.loadRam(ram);
  const zero = nativeZeroTest(ram);
  const pages = ram.length / PAGE_BYTES;
  const present = new Uint8Array(new SharedArrayBuffer(pages));
  let n = 0;
  for (let p = 0; p < pages; p++) {
    if (!zero(ram, p)) {
      present[p] = 1;
      n++;
    }
  }
  return { kind: 'visor-memory-snapshot', meta: JSON.stringify(snap.meta), machine: JSON.stringify(snap.machine), ram, present, presentPages: n };
}
