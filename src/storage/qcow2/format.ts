import { concatBytes } from '../../base/bytes.js';
import { VisorError } from '../../base/errors.js';

/*
 * The qcow2 on-disk format, as QEMU's docs/interop/qcow2.txt specifies it. All integers are
 * big-endian. Offsets are Numbers: a qcow2 file larger than 2^53 bytes is rejected as absurd.
 */

export const QCOW_MAGIC = 0x514649fb; // "QFI\xfb"
export const QCOW2_HEADER_V2_LENGTH = 72;
export const QCOW2_HEADER_V3_LENGTH = 104;
/** v3 header with the compression_type field (byte 104) padded to 8: what QEMU writes. */
export const QCOW2_HEADER_V3_COMPRESSION_LENGTH = 112;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** QEMU's limits (qcow2.h QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE, QCOW_MAX_SNAPSHOTS). */
export const QCOW_MAX_L1_SIZE = 0x2000000; // bytes
export const QCOW_MAX_REFTABLE_SIZE = 0x800000; // bytes
export const QCOW_MAX_SNAPSHOTS = 65536;
export const QCOW_MAX_SNAPSHOT_EXTRA_DATA = 1024;
export const QCOW_MAX_BACKING_FILE_NAME = 1023;
/** Largest virtual size we accept: 2^53 - 1 bytes keeps every offset an exact Number. */
export const MAX_VIRTUAL_SIZE = Number.MAX_SAFE_INTEGER - 0x1fffff;

// qcow2.txt "Header": incompatible_features bits.
export const QCOW2_INCOMPAT_DIRTY = 1n << 0n;
export const QCOW2_INCOMPAT_CORRUPT = 1n << 1n;
export const QCOW2_INCOMPAT_DATA_FILE = 1n << 2n;
export const QCOW2_INCOMPAT_COMPRESSION = 1n << 3n;
export const QCOW2_INCOMPAT_EXTL2 = 1n << 4n;
export const QCOW2_INCOMPAT_KNOWN = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_COMPRESSION;
// compatible_features
export const QCOW2_COMPAT_LAZY_REFCOUNTS = 1n << 0n;

export const QCOW2_COMPRESSION_TYPE_ZLIB = 0;
export const QCOW2_COMPRESSION_TYPE_ZSTD = 1;

// qcow2.txt "Header extensions"
export const QCOW2_EXT_MAGIC_END = 0x00000000;
export const QCOW2_EXT_MAGIC_BACKING_FORMAT = 0xe2792aca;
export const QCOW2_EXT_MAGIC_FEATURE_TABLE = 0x6803f857;
export const QCOW2_EXT_MAGIC_BITMAPS = 0x23852875;
export const QCOW2_EXT_MAGIC_CRYPTO_HEADER = 0x0537be77;
export const QCOW2_EXT_MAGIC_DATA_FILE = 0x44415441;

// qcow2.txt "Cluster mapping": L1 and L2 entry bits. Entries are kept as two 32-bit halves
// would be awkward; 64-bit entries are held as Numbers for the offset plus separate flags.
export const QCOW_OFLAG_COPIED = 1n << 63n;
export const QCOW_OFLAG_COMPRESSED = 1n << 62n;
export const QCOW_OFLAG_ZERO = 1n;
export const L1E_OFFSET_MASK = 0x00fffffffffffe00n;
export const L2E_OFFSET_MASK = 0x00fffffffffffe00n;
export const L1E_RESERVED_MASK = 0x7f000000000001ffn;
export const L2E_STD_RESERVED_MASK = 0x3f000000000001fen;
export const REFT_OFFSET_MASK = 0xfffffffffffffe00n;

export interface FeatureName {
  type: 'incompatible' | 'compatible' | 'autoclear';
  bit: number;
  name: string;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Parsed from the header extension area and the backing file name field. */
  backingFile: string | undefined;
  backingFormat: string | undefined;
  featureNames: FeatureName[];
  /** Extensions we do not interpret, kept byte-exact so rewriting the header preserves them. */
  unknownExtensions: { type: number; data: Uint8Array }[];
}

const bad = (msg: string) => new VisorError('BadImage', `qcow2: ${msg}`);

function u64(view: DataView, off: number, what: string): number {
  const v = view.getBigUint64(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} ${v} is absurdly large`);
  return Number(v);
}

/**
 * Parses and validates the header and its extensions from the first cluster (or the start of
 * the file when it is shorter). Every field that later code turns into an allocation size
 * or a file offset is bounded here.
 */
export function parseHeader(buf: Uint8Array, fileSize: number): Qcow2Header {
  if (buf.length < QCOW2_HEADER_V2_LENGTH || fileSize < QCOW2_HEADER_V2_LENGTH) {
    throw bad(`truncated header (${fileSize} bytes, need at least ${QCOW2_HEADER_V2_LENGTH})`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(0) !== QCOW_MAGIC) throw bad('not a qcow2 image (bad magic)');
  const version = view.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw new VisorError('Unsupported', `qcow2: version ${version} is not supported (only 2 and 3)`);
  }
  const clusterBits = view.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw bad(`cluster_bits ${clusterBits} outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  }
  const clusterSize = 2 ** clusterBits;
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(view, 8, 'backing_file_offset'),
    backingFileSize: view.getUint32(16),
    clusterBits,
    size: u64(view, 24, 'size'),
    cryptMethod: view.getUint32(32),
    l1Size: view.getUint32(36),
    l1TableOffset: u64(view, 40, 'l1_table_offset'),
    refcountTableOffset: u64(view, 48, 'refcount_table_offset'),
    refcountTableClusters: view.getUint32(56),
    nbSnapshots: view.getUint32(60),
    snapshotsOffset: u64(view, 64, 'snapshots_offset'),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: QCOW2_HEADER_V2_LENGTH,
    compressionType: QCOW2_COMPRESSION_TYPE_ZLIB,
    backingFile: undefined,
    backingFormat: undefined,
    featureNames: [],
    unknownExtensions: [],
  };
  if (version === 3) {
    if (buf.length < QCOW2_HEADER_V3_LENGTH) throw bad('truncated version 3 header');
    h.incompatibleFeatures = view.getBigUint64(72);
    h.compatibleFeatures = view.getBigUint64(80);
    h.autoclearFeatures = view.getBigUint64(88);
    h.refcountOrder = view.getUint32(96);
    h.headerLength = view.getUint32(100);
    if (h.headerLength < QCOW2_HEADER_V3_LENGTH || h.headerLength > Math.min(clusterSize, buf.length) || h.headerLength % 8 !== 0) {
      throw bad(`header_length ${h.headerLength} is invalid`);
    }
    if (h.headerLength > 104) h.compressionType = buf[104]!;
  }
  if (h.size > MAX_VIRTUAL_SIZE) throw bad(`virtual size ${h.size} is absurd`);
  if (h.cryptMethod !== 0) throw new VisorError('Unsupported', 'qcow2: encrypted images are not supported');
  if (h.refcountOrder > 6) throw bad(`refcount_order ${h.refcountOrder} > 6`);

  // Header extensions (qcow2.txt "Header extensions"), then the backing file name.
  const extEnd = h.backingFileOffset > 0 ? Math.min(h.backingFileOffset, clusterSize) : clusterSize;
  let off = h.headerLength;
  for (;;) {
    if (off + 8 > Math.min(extEnd, buf.length)) break; // v2 images may have no end marker room
    const type = view.getUint32(off);
    const len = view.getUint32(off + 4);
    if (type === QCOW2_EXT_MAGIC_END) break;
    const dataStart = off + 8;
    if (len > clusterSize || dataStart + len > Math.min(extEnd, buf.length)) throw bad(`header extension 0x${type.toString(16)} overflows the header cluster`);
    const data = buf.subarray(dataStart, dataStart + len);
    switch (type) {
      case QCOW2_EXT_MAGIC_BACKING_FORMAT:
        h.backingFormat = new TextDecoder().decode(data);
        break;
      case QCOW2_EXT_MAGIC_FEATURE_TABLE:
        for (let i = 0; i + 48 <= len; i += 48) {
          const t = data[i]!;
          const nameBytes = data.subarray(i + 2, i + 48);
          const z = nameBytes.indexOf(0);
          h.featureNames.push({
            type: t === 0 ? 'incompatible' : t === 1 ? 'compatible' : 'autoclear',
            bit: data[i + 1]!,
            name: new TextDecoder().decode(z >= 0 ? nameBytes.subarray(0, z) : nameBytes),
          });
        }
        break;
      case QCOW2_EXT_MAGIC_DATA_FILE:
        throw new VisorError('Unsupported', 'qcow2: images with an external data file are not supported');
      case QCOW2_EXT_MAGIC_CRYPTO_HEADER:
        throw new VisorError('Unsupported', 'qcow2: encrypted images are not supported');
      default:
        h.unknownExtensions.push({ type, data: data.slice() });
    }
    off = dataStart + Math.ceil(len / 8) * 8;
  }
  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize > QCOW_MAX_BACKING_FILE_NAME || h.backingFileSize === 0) throw bad(`backing file name length ${h.backingFileSize} is invalid`);
    if (h.backingFileOffset + h.backingFileSize > Math.min(clusterSize, buf.length)) throw bad('backing file name lies outside the header cluster');
    h.backingFile = new TextDecoder().decode(buf.subarray(h.backingFileOffset, h.backingFileOffset + h.backingFileSize));
  }
  return h;
}

/** Layout facts derived from the header, computed once. */
export interface Geometry {
  clusterBits: number;
  clusterSize: number;
  l2Entries: number;
  l2Bits: number;
  refcountOrder: number;
  refcountBits: number;
  refcountBlockEntries: number;
  refcountBlockBits: number;
  /** Compressed descriptors (qcow2.txt "Compressed Clusters Descriptor"): x = 62 - (cluster_bits - 8). */
  csizeShift: number;
  csizeMask: number;
  cOffsetMask: bigint;
}

export function geometry(clusterBits: number, refcountOrder: number): Geometry {
  const clusterSize = 2 ** clusterBits;
  const refcountBits = 2 ** refcountOrder;
  const csizeShift = 62 - (clusterBits - 8);
  return {
    clusterBits,
    clusterSize,
    l2Entries: clusterSize / 8,
    l2Bits: clusterBits - 3,
    refcountOrder,
    refcountBits,
    refcountBlockEntries: (clusterSize * 8) / refcountBits,
    refcountBlockBits: clusterBits + 3 - refcountOrder,
    csizeShift,
    csizeMask: (1 << (clusterBits - 8)) - 1,
    cOffsetMask: (1n << BigInt(csizeShift)) - 1n,
  };
}

/** Entries of the L1 table needed to map `size` bytes. */
export function l1SizeFor(size: number, g: Geometry): number {
  const perL2 = g.clusterSize * g.l2Entries;
  return Math.ceil(size / perL2);
}

/** Serializes the fixed part of the header plus extensions and backing file name into one cluster. */
export function serializeHeader(h: Qcow2Header): Uint8Array {
  const clusterSize = 2 ** h.clusterBits;
  const buf = new Uint8Array(clusterSize);
  const view = new DataView(buf.buffer);
  view.setUint32(0, QCOW_MAGIC);
  view.setUint32(4, h.version);
  view.setUint32(20, h.clusterBits);
  view.setBigUint64(24, BigInt(h.size));
  view.setUint32(32, h.cryptMethod);
  view.setUint32(36, h.l1Size);
  view.setBigUint64(40, BigInt(h.l1TableOffset));
  view.setBigUint64(48, BigInt(h.refcountTableOffset));
  view.setUint32(56, h.refcountTableClusters);
  view.setUint32(60, h.nbSnapshots);
  view.setBigUint64(64, BigInt(h.snapshotsOffset));
  let off = QCOW2_HEADER_V2_LENGTH;
  if (h.version === 3) {
    view.setBigUint64(72, h.incompatibleFeatures);
    view.setBigUint64(80, h.compatibleFeatures);
    view.setBigUint64(88, h.autoclearFeatures);
    view.setUint32(96, h.refcountOrder);
    view.setUint32(100, QCOW2_HEADER_V3_COMPRESSION_LENGTH);
    buf[104] = h.compressionType;
    off = QCOW2_HEADER_V3_COMPRESSION_LENGTH;
    h.headerLength = off;
  }
  const putExt = (type: number, data: Uint8Array) => {
    const padded = Math.ceil(data.length / 8) * 8;
    if (off + 8 + padded + 8 > clusterSize) throw new VisorError('InvalidArgument', 'qcow2: header extensions do not fit in one cluster');
    view.setUint32(off, type);
    view.setUint32(off + 4, data.length);
    buf.set(data, off + 8);
    off += 8 + padded;
  };
  if (h.backingFormat !== undefined) putExt(QCOW2_EXT_MAGIC_BACKING_FORMAT, new TextEncoder().encode(h.backingFormat));
  if (h.version === 3) putExt(QCOW2_EXT_MAGIC_FEATURE_TABLE, featureTable());
  for (const e of h.unknownExtensions) putExt(e.type, e.data);
  off += 8; // end-of-extensions marker (already zero)
  if (h.backingFile !== undefined) {
    const name = new TextEncoder().encode(h.backingFile);
    if (name.length > QCOW_MAX_BACKING_FILE_NAME || off + name.length > clusterSize) {
      throw new VisorError('InvalidArgument', `qcow2: backing file name is too long (${name.length} bytes)`);
    }
    buf.set(name, off);
    h.backingFileOffset = off;
    h.backingFileSize = name.length;
    off += name.length;
  } else {
    h.backingFileOffset = 0;
    h.backingFileSize = 0;
  }
  view.setBigUint64(8, BigInt(h.backingFileOffset));
  view.setUint32(16, h.backingFileSize);
  return buf.subarray(0, off);
}

/** The feature name table QEMU writes, so `qemu-img info` names our bits. */
function featureTable(): Uint8Array {
  const names: [number, number, string][] = [
    [0, 0, 'dirty bit'],
    [0, 1, 'corrupt bit'],
    [0, 2, 'external data file'],
    [0, 3, 'compression type'],
    [0, 4, 'extended L2 entries'],
    [1, 0, 'lazy refcounts'],
    [2, 0, 'bitmaps'],
    [2, 1, 'raw external data'],
  ];
  const out = new Uint8Array(names.length * 48);
  names.forEach(([t, b, n], i) => {
    out[i * 48] = t;
    out[i * 48 + 1] = b;
    out.set(new TextEncoder().encode(n), i * 48 + 2);
  });
  return out;
}

// qcow2.txt "Snapshots": one table entry.
export interface SnapshotEntry {
  l1TableOffset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  vmStateSize: number;
  /** From extra data; absent in old v2 entries (then the image's size applies). */
  diskSize: number | undefined;
  icount: bigint;
  extraData: Uint8Array;
}

export function parseSnapshotTable(buf: Uint8Array, count: number): SnapshotEntry[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: SnapshotEntry[] = [];
  let off = 0;
  for (let i = 0; i < count; i++) {
    if (off + 40 > buf.length) throw bad(`snapshot table truncated at entry ${i}`);
    const idLen = view.getUint16(off + 12);
    const nameLen = view.getUint16(off + 14);
    const extraLen = view.getUint32(off + 36);
    if (extraLen > QCOW_MAX_SNAPSHOT_EXTRA_DATA) throw bad(`snapshot ${i}: extra data size ${extraLen} is too large`);
    const end = off + 40 + extraLen + idLen + nameLen;
    if (end > buf.length) throw bad(`snapshot table truncated at entry ${i}`);
    const extra = buf.slice(off + 40, off + 40 + extraLen);
    const ev = new DataView(extra.buffer);
    const l1TableOffset = u64(view, off, `snapshot ${i} l1_table_offset`);
    const dec = new TextDecoder();
    out.push({
      l1TableOffset,
      l1Size: view.getUint32(off + 8),
      dateSec: view.getUint32(off + 16),
      dateNsec: view.getUint32(off + 20),
      vmClockNsec: view.getBigUint64(off + 24),
      vmStateSize: view.getUint32(off + 32),
      diskSize: extraLen >= 16 ? u64(ev, 8, `snapshot ${i} disk size`) : undefined,
      icount: extraLen >= 24 ? ev.getBigUint64(16) : 0xffffffffffffffffn,
      extraData: extra,
      id: dec.decode(buf.subarray(off + 40 + extraLen, off + 40 + extraLen + idLen)),
      name: dec.decode(buf.subarray(off + 40 + extraLen + idLen, end)),
    });
    off = Math.ceil(end / 8) * 8;
  }
  return out;
}

export function serializeSnapshotTable(entries: SnapshotEntry[]): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const s of entries) {
    const id = enc.encode(s.id);
    const name = enc.encode(s.name);
    // Version 3 requires at least 16 bytes of extra data (vm_state_size_large, disk_size).
    const extra = new Uint8Array(Math.max(24, s.extraData.length));
    extra.set(s.extraData);
    const ev = new DataView(extra.buffer);
    ev.setBigUint64(0, BigInt(s.vmStateSize));
    if (s.diskSize !== undefined) ev.setBigUint64(8, BigInt(s.diskSize));
    ev.setBigUint64(16, BigInt.asUintN(64, s.icount));
    const len = Math.ceil((40 + extra.length + id.length + name.length) / 8) * 8;
    const e = new Uint8Array(len);
    const v = new DataView(e.buffer);
    v.setBigUint64(0, BigInt(s.l1TableOffset));
    v.setUint32(8, s.l1Size);
    v.setUint16(12, id.length);
    v.setUint16(14, name.length);
    v.setUint32(16, s.dateSec);
    v.setUint32(20, s.dateNsec);
    v.setBigUint64(24, s.vmClockNsec);
    v.setUint32(32, s.vmStateSize);
    v.setUint32(36, extra.length);
    e.set(extra, 40);
    e.set(id, 40 + extra.length);
    e.set(name, 40 + extra.length + id.length);
    parts.push(e);
  }
  return concatBytes(parts);
}
