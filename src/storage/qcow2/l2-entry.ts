/**
 * qcow2 L2 table entries (docs/interop/qcow2.txt "Cluster mapping"): decoding and encoding.
 * Its own module so device.ts and check.ts both use it without importing each other.
 */
import type { Geometry } from './format.js';

// qcow2.txt "Cluster mapping", as 32-bit halves so the hot path stays off BigInt.
export const HI_COPIED = 0x80000000;
export const HI_COMPRESSED = 0x40000000;
export const LO_ZERO = 1;
export const HI_OFFSET_MASK = 0x00ffffff; // bits 32-55 of the offset
export const LO_OFFSET_MASK = 0xfffffe00; // bits 9-31

export type ClusterKind = 'unallocated' | 'zero' | 'normal' | 'compressed';

export interface Mapping {
  kind: ClusterKind;
  /** Host byte offset (normal, zero with preallocation, compressed data start); 0 if none. */
  host: number;
  copied: boolean;
  /** Compressed data length in bytes as the descriptor states it (whole sectors). */
  csize: number;
}

export function decodeL2(view: DataView, index: number, g: Geometry): Mapping {
  const hi = view.getUint32(index * 8);
  const lo = view.getUint32(index * 8 + 4);
  if (hi & HI_COMPRESSED) {
    const e = (BigInt(hi) << 32n) | BigInt(lo);
    const host = Number(e & g.cOffsetMask);
    const sectors = Number((e >> BigInt(g.csizeShift)) & BigInt(g.csizeMask)) + 1;
    return { kind: 'compressed', host, copied: false, csize: sectors * 512 - (host & 511) };
  }
  const host = (hi & HI_OFFSET_MASK) * 0x1_0000_0000 + ((lo & LO_OFFSET_MASK) >>> 0);
  const copied = (hi & HI_COPIED) !== 0;
  if (lo & LO_ZERO) return { kind: 'zero', host, copied, csize: 0 };
  return { kind: host === 0 ? 'unallocated' : 'normal', host, copied, csize: 0 };
}

export function encodeStd(host: number, copied: boolean, zero: boolean): [number, number] {
  const hi = Math.floor(host / 0x1_0000_0000) | (copied ? HI_COPIED : 0);
  const lo = (host % 0x1_0000_0000) | (zero ? LO_ZERO : 0);
  return [hi >>> 0, lo >>> 0];
}

