/**
 * A BlockDevice in memory for tests, with optional latency so completions arrive out of
 * order and after the notify returns, like real asynchronous storage.
 */
import { VisorError } from '../../base/errors.js';
import type { BlockDevice } from '../../storage/block-device.js';

export class MemoryBlockDevice implements BlockDevice {
  readonly data: Uint8Array;
  flushes = 0;
  discards: [number, number][] = [];
  /** Make the next operations fail (tests of the error path). */
  failNext = 0;
  /** Calls with a bad offset or length: a correct device never makes one (fuzz checks it). */
  invalidCalls = 0;
  /** Milliseconds each operation takes; a function lets tests vary it per call. */
  delay: number | (() => number) = 0;

  constructor(
    readonly size: number,
    readonly readOnly = false,
  ) {
    this.data = new Uint8Array(size);
  }

  private async op(offset: number, length: number): Promise<void> {
    const d = typeof this.delay === 'function' ? this.delay() : this.delay;
    if (d > 0) await new Promise((r) => setTimeout(r, d));
    else await Promise.resolve();
    if (offset % 512 || length % 512 || offset < 0 || offset + length > this.size) this.invalidCalls++;
    if (offset % 512 || length % 512) throw new VisorError('InvalidArgument', `unaligned ${offset}+${length}`);
    if (offset < 0 || offset + length > this.size) throw new VisorError('InvalidArgument', 'out of range');
    if (this.failNext > 0) {
      this.failNext--;
      throw new VisorError('IoError', 'injected failure');
    }
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    await this.op(offset, into.length);
    into.set(this.data.subarray(offset, offset + into.length));
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.op(offset, data.length);
    if (this.readOnly) throw new VisorError('NotAllowed', 'read-only');
    this.data.set(data, offset);
  }
  async flush(): Promise<void> {
    await this.op(0, 0);
    this.flushes++;
  }
  async discard(offset: number, length: number): Promise<void> {
    await this.op(offset, length);
    this.discards.push([offset, length]);
    this.data.fill(0, offset, offset + length);
  }
  async writeZeroes(offset: number, length: number, _mayUnmap: boolean): Promise<void> {
    await this.op(offset, length);
    this.data.fill(0, offset, offset + length);
  }
  async close(): Promise<void> {}
}
