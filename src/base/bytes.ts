/** Byte helpers shared by every layer (browser-safe: no Node modules). */

/** The pieces one after another in a new array (`total`: their length, when the caller knows it). */
export function concatBytes(parts: readonly Uint8Array[], total = parts.reduce((n, p) => n + p.length, 0)): Uint8Array {
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
