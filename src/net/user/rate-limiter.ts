/**
 * Token buckets as Firecracker's rate limiter has them: a bucket of `size` tokens refilled
 * evenly over `refillMs`, plus an optional one-time burst spent first. One bucket counts
 * bytes, one packets; a frame passes when both have tokens for it.
 */
import type { Clock } from './host-sockets.js';

export interface BucketConfig {
  /** Tokens the bucket holds when full (bytes or packets). */
  size: number;
  /** Milliseconds to refill an empty bucket completely (the rate is size / refillMs). */
  refillMs: number;
  /** Extra tokens available once, at start (Firecracker's one_time_burst). */
  oneTimeBurst?: number;
}

export class TokenBucket {
  private tokens: number;
  private burst: number;
  private last: number;

  constructor(
    private readonly cfg: BucketConfig,
    private readonly clock: Clock,
  ) {
    this.tokens = cfg.size;
    this.burst = cfg.oneTimeBurst ?? 0;
    this.last = clock();
  }

  private refill(): void {
    const now = this.clock();
    const dt = now - this.last;
    if (dt <= 0) return;
    this.last = now;
    this.tokens = Math.min(this.cfg.size, this.tokens + (dt * this.cfg.size) / this.cfg.refillMs);
  }

  /** True when `n` tokens could be taken now (a frame larger than the bucket passes when full). */
  canTake(n: number): boolean {
    this.refill();
    return this.burst + this.tokens >= Math.min(n, this.cfg.size);
  }

  take(n: number): void {
    const fromBurst = Math.min(this.burst, n);
    this.burst -= fromBurst;
    this.tokens -= n - fromBurst;
  }

  /** Milliseconds until `n` tokens are there (0 if now). */
  waitMs(n: number): number {
    this.refill();
    const missing = Math.min(n, this.cfg.size) - this.burst - this.tokens;
    return missing <= 0 ? 0 : Math.ceil((missing * this.cfg.refillMs) / this.cfg.size);
  }
}

export interface RateLimit {
  /** Bytes per second, with a burst of `bytesBurst` (default one second's worth). */
  bytesPerSec?: number;
  bytesBurst?: number;
  packetsPerSec?: number;
  packetsBurst?: number;
}

/** A byte bucket and a packet bucket together; either may be absent (unlimited). */
export class RateLimiter {
  private readonly bytes: TokenBucket | null;
  private readonly packets: TokenBucket | null;

  constructor(limit: RateLimit, clock: Clock) {
    this.bytes = limit.bytesPerSec ? bucket(limit.bytesPerSec, limit.bytesBurst, clock) : null;
    this.packets = limit.packetsPerSec ? bucket(limit.packetsPerSec, limit.packetsBurst, clock) : null;
  }

  /** Takes the tokens for one frame of `len` bytes if both buckets have them. */
  tryPass(len: number): boolean {
    if (this.bytes && !this.bytes.canTake(len)) return false;
    if (this.packets && !this.packets.canTake(1)) return false;
    this.bytes?.take(len);
    this.packets?.take(1);
    return true;
  }

  waitMs(len: number): number {
    return Math.max(this.bytes?.waitMs(len) ?? 0, this.packets?.waitMs(1) ?? 0);
  }
}

function bucket(perSec: number, burst: number | undefined, clock: Clock): TokenBucket {
  // A bucket of `burst` tokens refilling at perSec: refillMs = burst / perSec seconds.
  const size = Math.max(1, burst ?? perSec);
  return new TokenBucket({ size, refillMs: (size / perSec) * 1000 }, clock);
}
