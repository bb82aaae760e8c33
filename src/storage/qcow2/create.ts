import { VisorError } from '../../base/errors.js';
import type { FileHandle } from '../block-device.js';
import {
  MAX_CLUSTER_BITS,
  MAX_VIRTUAL_SIZE,
  MIN_CLUSTER_BITS,
  QCOW2_COMPRESSION_TYPE_ZLIB,
  QCOW_MAX_L1_SIZE,
  geometry,
  l1SizeFor,
  serializeHeader,
  type Qcow2Header,
} from './format.js';
import { writeEntry } from './refcount.js';

export interface Qcow2CreateOptions {
  size: number;
  /** 2 (compat=0.10) or 3 (compat=1.1, the default, as qemu-img). */
  version?: 2 | 3;
  clusterSize?: number;
  /** log2 of refcount bits; version 2 requires 4. */
  refcountOrder?: number;
  backingFile?: string;
  backingFormat?: 'raw' | 'qcow2';
}

/**
 * Writes an empty qcow2 image into an empty file. Layout: header | refcount table |
 * refcount block(s) | L1 table. The header goes last, so a crash leaves no valid image.
 */
export async function createQcow2(file: FileHandle, o: Qcow2CreateOptions): Promise<void> {
  const version = o.version ?? 3;
  const clusterSize = o.clusterSize ?? 65536;
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new VisorError('InvalidArgument', `qcow2: cluster size ${clusterSize} must be a power of two from 512 to 2 MiB`);
  }
  const refcountOrder = o.refcountOrder ?? 4;
  if (version === 2 && refcountOrder !== 4) throw new VisorError('InvalidArgument', 'qcow2: version 2 images need 16-bit refcounts');
  if (!Number.isInteger(refcountOrder) || refcountOrder < 0 || refcountOrder > 6) throw new VisorError('InvalidArgument', 'qcow2: refcount order must be 0-6');
  if (!Number.isSafeInteger(o.size) || o.size < 0 || o.size % 512 !== 0 || o.size > MAX_VIRTUAL_SIZE) {
    throw new VisorError('InvalidArgument', `qcow2: size ${o.size} must be a non-negative multiple of 512`);
  }
  const g = geometry(clusterBits, refcountOrder);
  const l1Size = l1SizeFor(o.size, g);
  if (l1Size * 8 > QCOW_MAX_L1_SIZE) throw new VisorError('InvalidArgument', `qcow2: ${o.size} bytes is too large for ${clusterSize}-byte clusters`);
  const l1Clusters = Math.ceil((l1Size * 8) / clusterSize);

  // Find a fixed point: enough blocks to count every metadata cluster, enough table for them.
  let blocks = 1;
  let tableClusters = 1;
  for (;;) {
    const total = 1 + tableClusters + blocks + l1Clusters;
    const needBlocks = Math.ceil(total / g.refcountBlockEntries);
    const needTable = Math.ceil((needBlocks * 8) / clusterSize);
    if (needBlocks <= blocks && needTable <= tableClusters) break;
    blocks = Math.max(blocks, needBlocks);
    tableClusters = Math.max(tableClusters, needTable);
  }
  const tableOff = clusterSize;
  const blocksOff = tableOff + tableClusters * clusterSize;
  const l1Off = blocksOff + blocks * clusterSize;
  const total = 1 + tableClusters + blocks + l1Clusters;

  const blockBytes = new Uint8Array(blocks * clusterSize);
  for (let c = 0; c < total; c++) {
    const b = Math.floor(c / g.refcountBlockEntries);
    writeEntry(blockBytes.subarray(b * clusterSize, (b + 1) * clusterSize), c % g.refcountBlockEntries, refcountOrder, 1);
  }
  const table = new Uint8Array(tableClusters * clusterSize);
  const tv = new DataView(table.buffer);
  for (let b = 0; b < blocks; b++) tv.setBigUint64(b * 8, BigInt(blocksOff + b * clusterSize));

  const header: Qcow2Header = {
    version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits,
    size: o.size,
    cryptMethod: 0,
    l1Size,
    l1TableOffset: l1Off,
    refcountTableOffset: tableOff,
    refcountTableClusters: tableClusters,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder,
    headerLength: 0,
    compressionType: QCOW2_COMPRESSION_TYPE_ZLIB,
    backingFile: o.backingFile,
    backingFormat: o.backingFile !== undefined ? o.backingFormat : undefined,
    featureNames: [],
    unknownExtensions: [],
  };
  const hbytes = serializeHeader(header);
  await file.truncate(0);
  await file.write(blocksOff, blockBytes);
  await file.write(tableOff, table);
  await file.truncate(l1Off + l1Clusters * clusterSize);
  await file.write(0, hbytes);
  await file.sync();
}
