/**
 * Stable MAC addresses: the same VM name always gets the same address, so guest network
 * configuration (DHCP leases, udev names) survives restarts. Addresses are locally
 * administered unicast (first octet x2, IEEE 802 §8.2.2), so they never collide with
 * vendor-assigned ones.
 */
export function stableMac(name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  // Two FNV-1a 32-bit hashes with different offsets give 40 usable bits.
  const h1 = fnv1a(bytes, 0x811c9dc5);
  const h2 = fnv1a(bytes, 0x050c5d1f);
  return Uint8Array.of(0x02, h1 & 0xff, (h1 >>> 8) & 0xff, (h1 >>> 16) & 0xff, (h1 >>> 24) & 0xff, h2 & 0xff);
}

/** A random locally administered unicast address from `fill` (the host's entropy). */
export function randomMac(fill: (b: Uint8Array) => void = defaultFill): Uint8Array {
  const b = new Uint8Array(6);
  fill(b);
  b[0] = (b[0]! & 0xfc) | 0x02; // unicast, locally administered
  return b;
}

function defaultFill(b: Uint8Array): void {
  crypto.getRandomValues(b);
}

export function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Parses "aa:bb:cc:dd:ee:ff"; returns null if malformed. */
export function parseMac(s: string): Uint8Array | null {
  const m = /^([0-9a-f]{2})(?::([0-9a-f]{2})){5}$/i.test(s) ? s.split(':') : null;
  return m ? Uint8Array.from(m.map((x) => parseInt(x, 16))) : null;
}

function fnv1a(bytes: Uint8Array, seed: number): number {
  let h = seed >>> 0;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}
