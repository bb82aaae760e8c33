import { VisorError } from '../base/errors.js';

/** Sector granularity every BlockDevice caller keeps to (see block-device.ts). */
export const SECTOR_SIZE = 512;

/** Rejects unaligned or out-of-range requests before any format code sees them. */
export function checkRange(op: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new VisorError('InvalidArgument', `${op}: offset ${offset} and length ${length} must be non-negative integers`);
  }
  if (offset % SECTOR_SIZE !== 0 || length % SECTOR_SIZE !== 0) {
    throw new VisorError('InvalidArgument', `${op}: offset ${offset} and length ${length} must be multiples of ${SECTOR_SIZE}`);
  }
  if (offset + length > size) {
    throw new VisorError('InvalidArgument', `${op}: range ${offset}+${length} is past the end of the disk (${size} bytes)`);
  }
}

export function checkWritable(op: string, readOnly: boolean): void {
  if (readOnly) throw new VisorError('NotAllowed', `${op}: the disk is open read-only`);
}

/**
 * A promise-chain mutex. Format code mutates shared metadata (L2 tables, refcounts) across
 * awaits, so every request runs alone; raw devices need no lock.
 */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
