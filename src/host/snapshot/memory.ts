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
import { imageLayers, type RamImage, type RamPager } from '../../cpu/ram-pager.js';
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
  /** One byte per RAM page (SharedArrayBuffer-backed): 1 when `ram` holds the page. */
  readonly present: Uint8Array;
  /** How many pages `ram` holds. */
  readonly presentPages: number;
  /** The image under this one: pages `ram` does not hold are its (cpu/ram-pager.ts RamImage). */
  readonly base?: RamImage | undefined;
}

/** Whether a page of RAM is all zero (file.ts's native comparison). */
export type PageIsZero = (page: number) => boolean;

/** How imageOfRam may skip reading pages. */
export interface RamSources {
  /** A pager still filling this RAM: its pending pages are its image's, read from there. */
  pager?: RamPager | undefined;
  /** Pages written since RAM last matched `base` (or since boot, without one: cpu/ram-pager.ts writtenPages). */
  written?: Uint8Array | undefined;
  /** The image this RAM matches but for its written pages: the result lies on it. */
  base?: RamImage | undefined;
}

/**
 * An image of `ram` as it is now, in shared memory. On a `base`: only the written pages, on
 * top of it (a page written back to zero is held, as zero). Without one: every page that holds
 * anything; a page `written` says was never written is zero without being read, and a page
 * the pager still has pending is read from its image (it stays unfetched here). Synchronous, as
 * a snapshot file's write is: the machine is parked, and nothing may write RAM between the scan
 * and the saved device state.
 */
export function imageOfRam(ram: Uint8Array, isZero: PageIsZero, from: RamSources = {}): { ram: Uint8Array; present: Uint8Array; presentPages: number; base?: RamImage } {
  const pages = Math.floor(ram.length / PAGE_BYTES);
  const { pager, written, base } = from;
  const onBase = base !== undefined && written !== undefined;
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
    if (onBase) {
      // Not written: the base's page (pending or paged in, or zero in every layer).
      if (written[p] === 0) {
        endRun(p);
        continue;
      }
      if (runStart < 0) runStart = p;
    } else {
      const theirs = pager?.pendingPage(p);
      if (theirs !== undefined) {
        endRun(p);
        out.set(theirs, p * PAGE_BYTES);
      } else if ((written !== undefined && written[p] === 0) || isZero(p)) {
        endRun(p);
        continue;
      } else if (runStart < 0) {
        runStart = p;
      }
    }
    present[p] = 1;
    n++;
  }
  endRun(pages);
  return { ram: out, present, presentPages: n, ...(onBase ? { base } : {}) };
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
  const ramImage: RamImage = { bytes: s.ram, present: s.present, base: s.base };
  try {
    imageLayers(ramImage, s.present instanceof Uint8Array ? s.present.length : 0);
  } catch (err) {
    throw new VisorError('CorruptImage', `in-memory snapshot: ${(err as Error).message}`, { cause: err });
  }
  return {
    meta: parse('meta', s.meta),
    machine: parse('machine', s.machine),
    ramImage,
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
