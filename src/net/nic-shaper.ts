/**
 * Per-NIC rate limits and counters, between a NIC and its network. Each direction has a
 * RateLimiter (bytes and packets, Firecracker's token buckets); a frame over the limit waits
 * in a bounded queue until its tokens are there, and is dropped (counted) when the queue is
 * full, as a NIC's ring would. Without limits frames pass straight through.
 */
import type { Clock } from './user/host-sockets.js';
import { RateLimiter, type RateLimit } from './user/rate-limiter.js';
import type { FrameOutput, OffloadMeta } from './user/user-net.js';

export interface NicLimits {
  /** Guest → network. */
  tx?: RateLimit;
  /** Network → guest. */
  rx?: RateLimit;
}

export interface NicCounters {
  txFrames: number;
  txBytes: number;
  rxFrames: number;
  rxBytes: number;
  txRateDrops: number;
  rxRateDrops: number;
  /** Frames that waited for tokens (each direction). */
  txDelayed: number;
  rxDelayed: number;
}

/** Frames one direction may hold while waiting for tokens. */
const MAX_QUEUED = 512;

export type Scheduler = (ms: number, run: () => void) => void;

class Lane {
  private readonly queue: { f: Uint8Array; meta: OffloadMeta | undefined }[] = [];
  private timerSet = false;
  constructor(
    private readonly limiter: RateLimiter | null,
    private readonly out: FrameOutput,
    private readonly schedule: Scheduler,
    private readonly count: (f: Uint8Array) => void,
    private readonly dropped: () => void,
    private readonly delayed: () => void,
  ) {}

  push(f: Uint8Array, meta?: OffloadMeta): void {
    if (!this.limiter) {
      this.count(f);
      this.out(f, meta);
      return;
    }
    if (this.queue.length === 0 && this.limiter.tryPass(f.length)) {
      this.count(f);
      this.out(f, meta);
      return;
    }
    if (this.queue.length >= MAX_QUEUED) {
      this.dropped();
      return;
    }
    this.delayed();
    this.queue.push({ f: f.slice(), meta });
    this.arm();
  }

  /** Releases what the buckets allow now. */
  drain(): void {
    while (this.queue.length && this.limiter!.tryPass(this.queue[0]!.f.length)) {
      const { f, meta } = this.queue.shift()!;
      this.count(f);
      this.out(f, meta);
    }
    this.arm();
  }

  private arm(): void {
    if (this.timerSet || this.queue.length === 0) return;
    this.timerSet = true;
    this.schedule(Math.max(1, this.limiter!.waitMs(this.queue[0]!.f.length)), () => {
      this.timerSet = false;
      this.drain();
    });
  }

  get queued(): number {
    return this.queue.length;
  }
}

export class NicShaper {
  readonly counters: NicCounters = { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0, txRateDrops: 0, rxRateDrops: 0, txDelayed: 0, rxDelayed: 0 };
  private readonly txLane: Lane;
  private readonly rxLane: Lane;

  constructor(
    limits: NicLimits,
    /** Where guest frames go (the network) and where network frames go (the NIC). */
    toNetwork: (f: Uint8Array) => void,
    toGuest: FrameOutput,
    clock: Clock = () => Date.now(),
    schedule: Scheduler = (ms, run) => void setTimeout(run, ms),
  ) {
    const c = this.counters;
    this.txLane = new Lane(
      limits.tx ? new RateLimiter(limits.tx, clock) : null,
      toNetwork,
      schedule,
      (f) => {
        c.txFrames++;
        c.txBytes += f.length;
      },
      () => c.txRateDrops++,
      () => c.txDelayed++,
    );
    this.rxLane = new Lane(
      limits.rx ? new RateLimiter(limits.rx, clock) : null,
      toGuest,
      schedule,
      (f) => {
        c.rxFrames++;
        c.rxBytes += f.length;
      },
      () => c.rxRateDrops++,
      () => c.rxDelayed++,
    );
  }

  /** A frame the guest sent. */
  fromGuest(f: Uint8Array): void {
    this.txLane.push(f);
  }

  /** A frame for the guest (with offload meta, when its network is a user network). */
  toGuest(f: Uint8Array, meta?: OffloadMeta): void {
    this.rxLane.push(f, meta);
  }

  get queued(): { tx: number; rx: number } {
    return { tx: this.txLane.queued, rx: this.rxLane.queued };
  }
}
