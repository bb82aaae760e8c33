/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as in zlib and PNG), slicing-by-8 so a
 * snapshot's RAM section checks at several hundred MB/s in plain JavaScript. Browser-safe: the
 * same code verifies snapshots in the in-browser build.
 */
const POLY = 0xedb88320;

const T = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? POLY ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let s = 1; s < 8; s++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[s * 256 + n] = c;
    }
  }
  return t;
})();

/** CRC-32 of `data`, continuing from `crc` (the CRC of what came before, 0 to start). */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc;
  let i = 0;
  const n = data.length;
  const t = T;
  // Bytes until 4-byte alignment of the underlying buffer, then 8 bytes at a time.
  while (i < n && ((data.byteOffset + i) & 3) !== 0) c = t[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8);
  const words = (n - i) >>> 3;
  if (words > 0) {
    const w = new Int32Array(data.buffer, data.byteOffset + i, words * 2);
    for (let k = 0; k < w.length; k += 2) {
      // Little-endian host assumed (every JS engine we target); the tables index by byte.
      const a = w[k]! ^ c;
      const b = w[k + 1]!;
      c =
        t[7 * 256 + (a & 0xff)]! ^ t[6 * 256 + ((a >>> 8) & 0xff)]! ^ t[5 * 256 + ((a >>> 16) & 0xff)]! ^ t[4 * 256 + (a >>> 24)]! ^
        t[3 * 256 + (b & 0xff)]! ^ t[2 * 256 + ((b >>> 8) & 0xff)]! ^ t[256 + ((b >>> 16) & 0xff)]! ^ t[b >>> 24]!;
    }
    i += words * 8;
  }
  while (i < n) c = t[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
