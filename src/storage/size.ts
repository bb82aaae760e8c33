import { VisorError } from '../base/errors.js';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

/** Parses a size as qemu-img does: a number with an optional K/M/G/T/P suffix (powers of 1024). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTPB]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) throw new VisorError('InvalidArgument', `invalid size '${text}' (examples: 512M, 10G, 1073741824)`);
  const bytes = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(bytes)) throw new VisorError('InvalidArgument', `size '${text}' is not a whole number of bytes or is too large`);
  return bytes;
}

/** 1073741824 → "1 GiB"; exact when possible, else one decimal. */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}
