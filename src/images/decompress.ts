/**
 * Stream decompression for what Debian ships: xz (data.tar.xz, *.ko.xz), zstd (data.tar.zst,
 * used by some derivatives and allowed by dpkg), gzip (Packages.gz). xz goes through
 * xz-decompress (xz-embedded compiled to WebAssembly, shipped in the npm package), zstd through
 * fzstd (pure JS), gzip through the runtime's native DecompressionStream.
 */
import { Decompress as ZstdDecompress } from 'fzstd';
import xzPkg from 'xz-decompress';
import { VisorError } from '../base/errors.js';

const { XzReadableStream } = xzPkg;

export type Compression = 'xz' | 'zstd' | 'gzip' | 'none';

/** By file-name suffix, as dpkg-deb chooses the member name (deb(5)). */
export function compressionOfName(name: string): Compression {
  if (name.endsWith('.xz')) return 'xz';
  if (name.endsWith('.zst')) return 'zstd';
  if (name.endsWith('.gz')) return 'gzip';
  return 'none';
}

/** By magic number: xz FD 37 7A 58 5A 00, zstd 28 B5 2F FD, gzip 1F 8B. */
export function compressionOfBytes(b: Uint8Array): Compression {
  if (b.length >= 6 && b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58 && b[4] === 0x5a && b[5] === 0x00) return 'xz';
  if (b.length >= 4 && b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return 'zstd';
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  return 'none';
}

function zstdStream(input: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  let out: TransformStreamDefaultController<Uint8Array> | undefined;
  const dec = new ZstdDecompress((chunk) => out!.enqueue(chunk));
  return input.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      start(c) { out = c; },
      transform(chunk) { dec.push(chunk); },
      flush() { dec.push(new Uint8Array(0), true); },
    }),
  );
}

export function decompressStream(kind: Compression, input: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  switch (kind) {
    case 'none': return input;
    case 'gzip': return input.pipeThrough(new DecompressionStream('gzip') as unknown as TransformStream<Uint8Array, Uint8Array>);
    case 'zstd': return zstdStream(input);
    case 'xz': return new XzReadableStream(input);
  }
}

export async function collect(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Decompresses a whole buffer, choosing the codec by magic number. */
export async function decompressBuffer(data: Uint8Array, what = 'data'): Promise<Buffer> {
  const kind = compressionOfBytes(data);
  if (kind === 'none') return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  try {
    return await collect(decompressStream(kind, new Blob([data as Uint8Array<ArrayBuffer>]).stream() as ReadableStream<Uint8Array>));
  } catch (err) {
    throw new VisorError('CorruptImage', `cannot decompress ${what} (${kind}): ${(err as Error).message}`, { cause: err });
  }
}
