/**
 * Helpers for device snapshot state (issue 7). Saved state is untrusted input (a snapshot
 * file may be damaged or hostile), so every device checks each field before applying any.
 * Binary payloads (frames, bytes for the guest) travel as base64 strings inside the JSON
 * machine state; btoa/atob keep this browser-safe.
 */
import { VisorError } from '../base/errors.js';

export function stateError(device: string, why: string): VisorError {
  return new VisorError('IntegrityError', `virtio-${device} state: ${why}`);
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
export const isU16 = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff;
export const isU32 = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff;
export const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Decodes base64 of at most `maxBytes`; null when it is not a string, not base64 or too long. */
export function fromBase64(v: unknown, maxBytes: number): Uint8Array | null {
  if (typeof v !== 'string' || v.length > Math.ceil(maxBytes / 3) * 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) return null;
  let s: string;
  try {
    s = atob(v);
  } catch {
    return null;
  }
  if (s.length > maxBytes) return null;
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Copies the numeric fields of a saved counters object onto `into` (absent ones stay). */
export function restoreCounters<T extends object>(into: T, saved: unknown, device: string): void {
  if (saved === undefined) return;
  if (!isObject(saved)) throw stateError(device, 'counters');
  for (const k of Object.keys(into) as (keyof T & string)[]) {
    const v = saved[k];
    if (v === undefined) continue;
    if (!isCount(v)) throw stateError(device, `counter ${k}`);
  }
  for (const k of Object.keys(into) as (keyof T & string)[]) {
    if (saved[k] !== undefined) (into as Record<string, unknown>)[k] = saved[k];
  }
}
