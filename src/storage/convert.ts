import type { BlockDevice } from './block-device.js';
import { Qcow2Device } from './qcow2/device.js';

/**
 * Copies every byte of `src` into a freshly created `dst` of at least the same size. Chunks
 * that read as zeros are skipped (a fresh image already reads as zeros), so outputs stay sparse.
 * With `compress`, a qcow2 destination stores each non-zero cluster deflate-compressed.
 */
export async function convertDisk(src: BlockDevice, dst: BlockDevice, opts: { compress?: boolean } = {}): Promise<{ bytesWritten: number }> {
  const chunk = opts.compress && dst instanceof Qcow2Device ? dst.clusterSize : 1 << 20;
  const buf = new Uint8Array(chunk);
  let written = 0;
  for (let off = 0; off < src.size; off += chunk) {
    const n = Math.min(chunk, src.size - off);
    const b = n === chunk ? buf : buf.subarray(0, n);
    await src.read(off, b);
    if (isZero(b)) continue;
    if (opts.compress && dst instanceof Qcow2Device) await dst.writeCompressed(off, b);
    else await dst.write(off, b);
    written += n;
  }
  await dst.flush();
  return { bytesWritten: written };
}

function isZero(b: Uint8Array): boolean {
  const words = new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}
