/**
 * Guest RAM in a snapshot: sparse (all-zero pages are left out, a bitmap says which pages are
 * present) and compressed in chunks of up to RAM_CHUNK_PAGES present pages, so a 512 MiB guest
 * that uses 80 MiB stores about that much before compression. The codec is injected: the host
 * layer brings node:zlib, a browser build could bring another.
 *
 *   u32 version (1)   u32 page size (4096)   u32 page count   u32 codec id
 *   u32 chunk count   u32 present pages
 *   bitmap: ceil(page count / 8) bytes, bit i of byte j = page 8j+i present, padded to 4
 *   chunk table: per chunk u32 present pages in it, u32 compressed length
 *   chunk payloads, back to back
 */
import { VisorError } from '../../base/errors.js';

export const RAM_SECTION_VERSION = 1;
export const RAM_PAGE_SIZE = 4096;
export const RAM_CHUNK_PAGES = 256;

export interface RamCodec {
  /** Stored in the section; 0 is reserved for "stored uncompressed". */
  readonly id: number;
  readonly name: string;
  compress(raw: Uint8Array): Uint8Array;
  /** Must return exactly `rawLength` bytes or throw. */
  decompress(data: Uint8Array, rawLength: number): Uint8Array;
  /** The same off the calling thread, when the platform can (decodeRamAsync uses it). */
  decompressAsync?(data: Uint8Array, rawLength: number): Promise<Uint8Array>;
}

/** No compression: the fastest restore, the largest file. */
export const STORED_CODEC: RamCodec = {
  id: 0,
  name: 'stored',
  compress: (raw) => raw.slice(),
  decompress: (data, rawLength) => {
    if (data.length !== rawLength) throw new Error(`stored chunk is ${data.length} bytes, expected ${rawLength}`);
    return data;
  },
};

const FIXED = 24;

function corrupt(what: string, cause?: unknown): VisorError {
  return new VisorError('CorruptImage', `snapshot RAM section is damaged: ${what}`, cause === undefined ? undefined : { cause });
}

/**
 * Whether a page of guest RAM is all zero. The scan covers all of RAM (a 256 MiB guest that
 * touched 40 MiB is mostly zero pages, each read to its end), so it is most of a snapshot's
 * CPU: the host layer passes a native comparison (file.ts); this is the portable one.
 */
export type ZeroPageTest = (ram: Uint8Array, page: number) => boolean;

function isZeroPage(words: Int32Array, first: number): boolean {
  // OR eight words at a time and test once: about twice as fast as a test per word.
  const end = first + RAM_PAGE_SIZE / 4;
  let acc = 0;
  for (let i = first; i < end; i += 8) {
    acc |= words[i]! | words[i + 1]! | words[i + 2]! | words[i + 3]! | words[i + 4]! | words[i + 5]! | words[i + 6]! | words[i + 7]!;
  }
  return acc === 0;
}

export interface RamEncodeStats {
  pages: number;
  presentPages: number;
  bytes: number;
}

/** Encodes guest RAM (its length a multiple of 4096 and 4-byte aligned) as one array. */
export function encodeRam(ram: Uint8Array, codec: RamCodec, stats?: RamEncodeStats, isZero?: ZeroPageTest): Uint8Array {
  const parts = encodeRamParts(ram, codec, stats, isZero);
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Encodes guest RAM as the section's pieces in order: the header, bitmap and chunk table, then
 * the chunks. Stored (uncompressed) chunks are views of `ram` itself, one per run of
 * consecutive pages: nothing is copied, so the caller must write them before guest RAM can
 * change (file.ts writes them synchronously). Copying a 60 MiB section into a fresh buffer
 * cost ~190 ms of page faults and copying per fork on this host.
 */
export function encodeRamParts(ram: Uint8Array, codec: RamCodec, stats?: RamEncodeStats, isZero?: ZeroPageTest): Uint8Array[] {
  if (ram.length % RAM_PAGE_SIZE !== 0 || ram.byteOffset % 4 !== 0) throw new VisorError('Internal', 'RAM must be whole 4 KiB pages');
  const pages = ram.length / RAM_PAGE_SIZE;
  const words = new Int32Array(ram.buffer, ram.byteOffset, ram.length / 4);
  const bitmapBytes = (Math.ceil(pages / 8) + 3) & ~3;
  const bitmap = new Uint8Array(bitmapBytes);
  const present: number[] = [];
  for (let p = 0; p < pages; p++) {
    if (!(isZero ? isZero(ram, p) : isZeroPage(words, p * (RAM_PAGE_SIZE / 4)))) {
      bitmap[p >> 3]! |= 1 << (p & 7);
      present.push(p);
    }
  }
  const payload: Uint8Array[] = [];
  const chunkPages: number[] = [];
  const chunkBytes: number[] = [];
  const stored = codec.id === STORED_CODEC.id;
  const buf = stored ? undefined : new Uint8Array(RAM_CHUNK_PAGES * RAM_PAGE_SIZE);
  for (let i = 0; i < present.length; i += RAM_CHUNK_PAGES) {
    const n = Math.min(RAM_CHUNK_PAGES, present.length - i);
    if (!buf) {
      for (let k = 0; k < n;) {
        const first = present[i + k]!;
        let run = 1;
        while (k + run < n && present[i + k + run] === first + run) run++;
        payload.push(ram.subarray(first * RAM_PAGE_SIZE, (first + run) * RAM_PAGE_SIZE));
        k += run;
      }
      chunkBytes.push(n * RAM_PAGE_SIZE);
    } else {
      for (let k = 0; k < n; k++) {
        const p = present[i + k]!;
        buf.set(ram.subarray(p * RAM_PAGE_SIZE, (p + 1) * RAM_PAGE_SIZE), k * RAM_PAGE_SIZE);
      }
      const c = codec.compress(buf.subarray(0, n * RAM_PAGE_SIZE));
      payload.push(c);
      chunkBytes.push(c.length);
    }
    chunkPages.push(n);
  }
  const tableBytes = 8 * chunkPages.length;
  const head = new Uint8Array(FIXED + bitmapBytes + tableBytes);
  const v = new DataView(head.buffer);
  v.setUint32(0, RAM_SECTION_VERSION, true);
  v.setUint32(4, RAM_PAGE_SIZE, true);
  v.setUint32(8, pages, true);
  v.setUint32(12, codec.id, true);
  v.setUint32(16, chunkPages.length, true);
  v.setUint32(20, present.length, true);
  head.set(bitmap, FIXED);
  let t = FIXED + bitmapBytes;
  chunkPages.forEach((n, i) => {
    v.setUint32(t, n, true);
    v.setUint32(t + 4, chunkBytes[i]!, true);
    t += 8;
  });
  if (stats) {
    stats.pages = pages;
    stats.presentPages = present.length;
    stats.bytes = head.length + chunkBytes.reduce((a, b) => a + b, 0);
  }
  return [head, ...payload];
}

export interface RamLayout {
  codec: RamCodec;
  present: number[];
  /** Per chunk: present pages in it, payload offset and length in the section. */
  chunks: { pages: number; off: number; len: number }[];
}

/** Checks the whole section's structure against `ram` before a byte of RAM is written. */
function parseRam(section: Uint8Array, ram: Uint8Array, codecs: readonly RamCodec[]): RamLayout {
  return parseRamLayout(section, section.length, ram.length, codecs);
}

/**
 * How many bytes of the section's start parseRamLayout needs (fixed header, bitmap, chunk
 * table), from its first RAM_FIXED_BYTES; bounded by `sectionLength` (a damaged header then
 * fails the layout checks, not an allocation).
 */
export function ramPrefixBytes(fixed: Uint8Array, sectionLength: number): number {
  if (fixed.length < FIXED) return Math.min(FIXED, sectionLength);
  const v = new DataView(fixed.buffer, fixed.byteOffset, fixed.byteLength);
  const bitmapBytes = (Math.ceil(v.getUint32(8, true) / 8) + 3) & ~3;
  return Math.min(sectionLength, FIXED + bitmapBytes + 8 * v.getUint32(16, true));
}
export const RAM_FIXED_BYTES = FIXED;

/**
 * The section's structure, checked against a RAM of `ramLength` bytes, from its first bytes
 * (`prefix`: at least ramPrefixBytes of them) and its whole length: chunk offsets are relative
 * to the section's start, so a reader can fetch payloads from a file straight to their place.
 */
export function parseRamLayout(section: Uint8Array, sectionLength: number, ramLength: number, codecs: readonly RamCodec[]): RamLayout {
  if (section.length < FIXED || sectionLength < FIXED) throw corrupt('truncated header');
  const v = new DataView(section.buffer, section.byteOffset, section.byteLength);
  const version = v.getUint32(0, true);
  if (version !== RAM_SECTION_VERSION) throw new VisorError('Unsupported', `snapshot RAM section version ${version}: this visor reads ${RAM_SECTION_VERSION}`);
  if (v.getUint32(4, true) !== RAM_PAGE_SIZE) throw corrupt(`page size ${v.getUint32(4, true)}`);
  const pages = v.getUint32(8, true);
  if (pages * RAM_PAGE_SIZE !== ramLength) {
    throw new VisorError('InvalidConfig', `snapshot RAM is ${(pages * RAM_PAGE_SIZE) / 2 ** 20} MiB but the machine has ${ramLength / 2 ** 20} MiB`);
  }
  const codecId = v.getUint32(12, true);
  const codec = codecId === 0 ? STORED_CODEC : codecs.find((c) => c.id === codecId);
  if (!codec) throw new VisorError('Unsupported', `snapshot RAM uses compression codec ${codecId}, which this visor does not have`);
  const chunkCount = v.getUint32(16, true);
  const presentCount = v.getUint32(20, true);
  const bitmapBytes = (Math.ceil(pages / 8) + 3) & ~3;
  const tableEnd = FIXED + bitmapBytes + 8 * chunkCount;
  if (presentCount > pages || chunkCount !== Math.ceil(presentCount / RAM_CHUNK_PAGES) || section.length < tableEnd || sectionLength < tableEnd) {
    throw corrupt('inconsistent page or chunk counts');
  }
  const bitmap = section.subarray(FIXED, FIXED + bitmapBytes);
  const present: number[] = [];
  for (let p = 0; p < pages; p++) if (bitmap[p >> 3]! & (1 << (p & 7))) present.push(p);
  if (present.length !== presentCount) throw corrupt('the page bitmap disagrees with the page count');
  const chunks: RamLayout['chunks'] = [];
  let d = tableEnd;
  let seen = 0;
  for (let i = 0; i < chunkCount; i++) {
    const n = v.getUint32(FIXED + bitmapBytes + 8 * i, true);
    const len = v.getUint32(FIXED + bitmapBytes + 8 * i + 4, true);
    const expect = Math.min(RAM_CHUNK_PAGES, presentCount - seen);
    if (n !== expect || d + len > sectionLength) throw corrupt(`chunk ${i} (truncated?)`);
    chunks.push({ pages: n, off: d, len });
    seen += n;
    d += len;
  }
  if (d !== sectionLength) throw corrupt('trailing bytes after the last chunk');
  return { codec, present, chunks };
}

/** Copies one decompressed chunk's pages to their places; runs of consecutive pages in one go. */
function placeChunk(ram: Uint8Array, raw: Uint8Array, present: number[], first: number, n: number, i: number): void {
  if (raw.length !== n * RAM_PAGE_SIZE) throw corrupt(`chunk ${i} decompresses to ${raw.length} bytes`);
  let k = 0;
  while (k < n) {
    const page = present[first + k]!;
    let run = 1;
    while (k + run < n && present[first + k + run] === page + run) run++;
    ram.set(raw.subarray(k * RAM_PAGE_SIZE, (k + run) * RAM_PAGE_SIZE), page * RAM_PAGE_SIZE);
    k += run;
  }
}

/**
 * Validates the section's structure against `ram`, then fills `ram` with it. `ram` must be
 * all zero on entry (fresh RAM is): absent pages are not written.
 */
export function decodeRam(section: Uint8Array, ram: Uint8Array, codecs: readonly RamCodec[]): void {
  const { codec, present, chunks } = parseRam(section, ram, codecs);
  let seen = 0;
  chunks.forEach((c, i) => {
    let raw: Uint8Array;
    try {
      raw = codec.decompress(section.subarray(c.off, c.off + c.len), c.pages * RAM_PAGE_SIZE);
    } catch (err) {
      throw corrupt(`chunk ${i} does not decompress`, err);
    }
    placeChunk(ram, raw, present, seen, c.pages, i);
    seen += c.pages;
  });
}

/**
 * decodeRam with the codec's asynchronous decompression, `parallel` chunks at a time: on Node
 * zlib runs those on the libuv thread pool, so a restore uses every core. Falls back to the
 * synchronous path when the codec has no async form.
 */
export async function decodeRamAsync(section: Uint8Array, ram: Uint8Array, codecs: readonly RamCodec[], parallel = 4): Promise<void> {
  const { codec, present, chunks } = parseRam(section, ram, codecs);
  const decompressAsync = codec.decompressAsync;
  if (!decompressAsync) {
    decodeRam(section, ram, codecs);
    return;
  }
  const starts: number[] = [];
  let seen = 0;
  for (const c of chunks) {
    starts.push(seen);
    seen += c.pages;
  }
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) {
      const i = next++;
      const c = chunks[i]!;
      let raw: Uint8Array;
      try {
        raw = await decompressAsync(section.subarray(c.off, c.off + c.len), c.pages * RAM_PAGE_SIZE);
      } catch (err) {
        throw corrupt(`chunk ${i} does not decompress`, err);
      }
      placeChunk(ram, raw, present, starts[i]!, c.pages, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker));
}
