/*
 * Compressed clusters (qcow2.txt "Compressed Clusters Descriptor"). zlib clusters are raw
 * deflate streams (no zlib header, QEMU uses window bits -12); zstd clusters are zstd frames.
 *
 * Why pako and fzstd: storage is an inner layer that must also run in a browser, so it
 * cannot import node:zlib. pako is zlib ported to JS (widely used, maintained, typed) and,
 * unlike fflate, lets us set windowBits: QEMU inflates with a 4 KiB window (-12), so a
 * stream written with zlib's default 32 KiB window would fail in QEMU. fzstd is a small,
 * maintained pure-JS zstd decoder that decodes into a caller-given buffer (bounded
 * allocation). visor writes deflate only (issue 6), so no zstd encoder is needed.
 */
import { Inflate, deflateRaw } from 'pako';
import { decompress as zstdDecompress } from 'fzstd';
import { VisorError } from '../../base/errors.js';
import { QCOW2_COMPRESSION_TYPE_ZLIB, QCOW2_COMPRESSION_TYPE_ZSTD } from './format.js';

const corrupt = (msg: string) => new VisorError('CorruptImage', `qcow2: compressed cluster: ${msg}`);

/**
 * Decompresses one cluster into `out` (exactly one cluster long). `data` may carry trailing
 * bytes past the stream: the descriptor counts whole sectors. Throws CorruptImage unless the
 * stream yields exactly one cluster, as QEMU requires.
 */
export function decompressCluster(type: number, data: Uint8Array, out: Uint8Array): void {
  let produced: Uint8Array;
  try {
    if (type === QCOW2_COMPRESSION_TYPE_ZLIB) {
      produced = inflateBounded(data, out);
    } else if (type === QCOW2_COMPRESSION_TYPE_ZSTD) {
      // fzstd decodes every frame it finds and would read the padding (or the next packed
      // cluster) as another frame: cut the input at the end of the first frame.
      produced = zstdDecompress(data.subarray(0, zstdFrameLength(data)), out);
    } else {
      throw new VisorError('Unsupported', `qcow2: compression type ${type} is not supported`);
    }
  } catch (err) {
    if (err instanceof VisorError) throw err;
    throw corrupt(`cannot decompress: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (produced.length !== out.length) throw corrupt(`decompressed to ${produced.length} bytes, expected ${out.length}`);
  if (produced.buffer !== out.buffer || produced.byteOffset !== out.byteOffset) out.set(produced);
}

/** RFC 8878 §3.1.1: the byte length of the zstd frame at the start of `d`. */
export function zstdFrameLength(d: Uint8Array): number {
  if (d.length < 6 || d[0] !== 0x28 || d[1] !== 0xb5 || d[2] !== 0x2f || d[3] !== 0xfd) throw corrupt('bad zstd frame magic');
  const fhd = d[4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const dictIdFlag = fhd & 3;
  let pos = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][dictIdFlag]!;
  pos += fcsFlag === 0 ? singleSegment : 1 << fcsFlag;
  // §3.1.1.2 blocks: 3-byte little-endian header, Last_Block in bit 0.
  for (;;) {
    if (pos + 3 > d.length) throw corrupt('zstd frame truncated');
    const bh = d[pos]! | (d[pos + 1]! << 8) | (d[pos + 2]! << 16);
    pos += 3;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) throw corrupt('reserved zstd block type');
    pos += type === 1 ? 1 : size; // RLE blocks carry one byte
    if (pos > d.length) throw corrupt('zstd frame truncated');
    if (bh & 1) break;
  }
  return pos + (checksum ? 4 : 0);
}

/**
 * Inflates into `out`, never producing more than out.length bytes (a hostile stream could
 * expand 1000-fold), and stops at the end of the stream so trailing sector padding is ignored.
 * The window is 15 bits: a superset of QEMU's 12, so other writers' clusters read too.
 */
function inflateBounded(data: Uint8Array, out: Uint8Array): Uint8Array {
  let n = 0;
  let overflow = false;
  const inf = new Inflate({ raw: true, windowBits: 15, chunkSize: Math.min(out.length, 65536) });
  inf.onData = (chunk: Uint8Array) => {
    if (n + chunk.length > out.length) {
      overflow = true;
      throw corrupt('decompresses to more than one cluster');
    }
    out.set(chunk, n);
    n += chunk.length;
  };
  inf.onEnd = () => undefined;
  inf.push(data, true);
  if (overflow) throw corrupt('decompresses to more than one cluster');
  if (!inf.ended || (inf.err !== 0 && inf.err !== 1)) throw corrupt(`deflate stream is invalid (${inf.msg || 'truncated'})`);
  return out.subarray(0, n);
}

/**
 * Raw deflate of one cluster with a 4 KiB window (QEMU qcow2_compress uses windowBits -12
 * and its decompressor cannot follow longer distances), or undefined when it saves nothing.
 */
export function compressCluster(data: Uint8Array): Uint8Array | undefined {
  const c = deflateRaw(data, { level: 6, windowBits: 12 });
  return c.length < data.length ? c : undefined;
}
