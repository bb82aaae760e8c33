/**
 * Disk I/O limits: operations per second and bytes per second, as token buckets the way
 * Firecracker's block rate limiter has them (one bucket counts operations, one bytes; a
 * bucket holds `burst` tokens and refills at the rate). A request takes its tokens when it
 * arrives and waits until both buckets are out of debt, so requests keep their order and the
 * long-run rate is the limit however large each request is (a request bigger than the
 * bucket is not refused, it just waits longer). Wraps any BlockDevice: virtio-blk, and so
 * the guest, sees a slower disk, never an error.
 *
 * Browser-safe: time comes from an injected clock and sleep (default performance.now and
 * setTimeout, which both a browser and a worker thread have).
 */
import { VisorError } from '../base/errors.js';
import type { BlockDevice } from './block-device.js';

export interface DiskLimits {
  /** Requests per second: each read, write, flush, discard or write-zeroes is one. */
  iops?: number;
  /** Bytes read plus written per second. */
  bytesPerSec?: number;
  /** Operations the bucket holds when full (default a tenth of a second's worth, at least 1). */
  iopsBurst?: number;
  /** Bytes the bucket holds when full (default a tenth of a second's worth, at least 4 KiB). */
  bytesBurst?: number;
}

export interface ThrottleCounters {
  /** Requests that had to wait for tokens. */
  throttled: number;
  /** Total time requests waited, milliseconds. */
  waitedMs: number;
}

export interface ThrottleTimer {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realTimer: ThrottleTimer = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/** A token bucket that may go into debt: `take` answers how long until it is paid off. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  /** @param perMs refill rate, tokens per millisecond; @param size tokens when full. */
  constructor(
    private readonly perMs: number,
    private readonly size: number,
    now: number,
  ) {
    this.tokens = size;
    this.last = now;
  }

  /** Takes `n` tokens now; returns the milliseconds until the balance is back at zero. */
  take(n: number, now: number): number {
    if (now > this.last) {
      this.tokens = Math.min(this.size, this.tokens + (now - this.last) * this.perMs);
      this.last = now;
    }
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : -this.tokens / this.perMs;
  }
}

/** Checks limits from outside (a machine spec): positive finite numbers where given. */
export function checkDiskLimits(l: DiskLimits): DiskLimits {
  for (const [k, v] of Object.entries(l)) {
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) {
      throw new VisorError('InvalidArgument', `disk limits: ${k} must be a positive number, got ${String(v)}`);
    }
  }
  return l;
}

/**
 * One budget: the buckets and their counters. Several devices may share one (a machine's
 * disks together get the machine's limit).
 */
export class DiskThrottle {
  readonly counters: ThrottleCounters = { throttled: 0, waitedMs: 0 };
  private readonly ops: TokenBucket | null;
  private readonly bytes: TokenBucket | null;

  constructor(
    readonly limits: DiskLimits,
    private readonly timer: ThrottleTimer = realTimer,
  ) {
    checkDiskLimits(limits);
    const now = timer.now();
    this.ops = limits.iops ? new TokenBucket(limits.iops / 1000, limits.iopsBurst ?? Math.max(1, limits.iops / 10), now) : null;
    this.bytes = limits.bytesPerSec ? new TokenBucket(limits.bytesPerSec / 1000, limits.bytesBurst ?? Math.max(4096, limits.bytesPerSec / 10), now) : null;
  }

  /** Waits until a request's tokens are there (both buckets charged at once, in arrival order). */
  async admit(byteCount: number): Promise<void> {
    const now = this.timer.now();
    const wait = Math.max(this.ops?.take(1, now) ?? 0, byteCount > 0 ? (this.bytes?.take(byteCount, now) ?? 0) : 0);
    if (wait <= 0) return;
    this.counters.throttled++;
    this.counters.waitedMs += wait;
    await this.timer.sleep(wait);
  }
}

/** A BlockDevice whose requests pass through a DiskThrottle first. */
export class ThrottledDevice implements BlockDevice {
  readonly throttle: DiskThrottle;

  constructor(
    private readonly inner: BlockDevice,
    throttle: DiskThrottle | DiskLimits,
    timer?: ThrottleTimer,
  ) {
    this.throttle = throttle instanceof DiskThrottle ? throttle : new DiskThrottle(throttle, timer);
  }

  get counters(): ThrottleCounters {
    return this.throttle.counters;
  }

  get size(): number {
    return this.inner.size;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  private admit(byteCount: number): Promise<void> {
    return this.throttle.admit(byteCount);
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    await this.admit(into.length);
    return this.inner.read(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.admit(data.length);
    return this.inner.write(offset, data);
  }

  async flush(): Promise<void> {
    await this.admit(0);
    return this.inner.flush();
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.admit(0);
    return this.inner.discard(offset, length);
  }

  async writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    await this.admit(0);
    return this.inner.writeZeroes(offset, length, mayUnmap);
  }

  /** Closing is not throttled: shutdown must not wait for a slow disk's budget. */
  close(): Promise<void> {
    return this.inner.close();
  }
}
