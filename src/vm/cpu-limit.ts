/**
 * A machine's CPU limit (p % of one host core), kept by the driver's loop (driver.ts): after
 * each busy slice it asks how long to rest so that the CPU the machine's thread has used stays
 * at p % of the wall time that passed.
 *
 * The CPU used is the thread's own CPU time when the host can tell (`CpuClock`: on Linux the
 * worker reads it from /proc/thread-self, src/host/thread-cpu.ts), so time the thread spent
 * waiting for a core on a busy host is not charged to it: a machine limited to 25 % gets 25 %
 * of a core whenever the host has that to give, and whatever it can get below that (it never
 * rests then). Without a clock (other hosts) the busy slices' wall time stands in for it, which
 * charges the waits too: on a busy host such a machine gets less than its limit.
 *
 * The accounting is a balance, not per slice: `debt` is CPU used beyond p % of the wall time
 * since the limit was set, so the coarse steps of a tick-based clock (10 ms) and rests cut
 * short (a wake-up) even out. Credit from idle time is capped at BURST_MS, so a machine idle
 * for a minute cannot then run unlimited for 15 seconds.
 */

/** Milliseconds of CPU time this thread has used (monotonic; any origin). */
export type CpuClock = () => number;

/** Most credit (CPU milliseconds) a machine keeps from time it did not use. */
export const BURST_MS = 50;

export class CpuLimiter {
  private percentValue = 100;
  private debt = 0;
  private lastCpu = 0;
  private lastWall = 0;
  /** Busy wall time counted so far (the stand-in for CPU time without a clock). */
  private busyMs = 0;

  /**
   * @param clock the thread's CPU time, or undefined to count busy slices' wall time.
   * @param now wall time in milliseconds.
   */
  constructor(
    private readonly clock: CpuClock | undefined,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get percent(): number {
    return this.percentValue;
  }

  /** Sets the limit (1-100; 100: none) and starts the balance afresh. */
  set(percent: number): void {
    this.percentValue = percent;
    this.debt = 0;
    this.lastCpu = this.used();
    this.lastWall = this.now();
  }

  private used(): number {
    return this.clock ? this.clock() : this.busyMs;
  }

  /**
   * After a busy slice of `busyMs` wall milliseconds: how many milliseconds to rest (0: go on).
   * Everything the thread did since the last call counts (the slice, device work on its event
   * loop), against p % of all the wall time that passed (the slice, rests, idle sleeps).
   */
  restAfter(busyMs: number): number {
    if (this.percentValue >= 100) return 0;
    this.busyMs += busyMs;
    const cpu = this.used();
    const wall = this.now();
    this.debt += cpu - this.lastCpu - ((wall - this.lastWall) * this.percentValue) / 100;
    this.lastCpu = cpu;
    this.lastWall = wall;
    if (this.debt < -BURST_MS) this.debt = -BURST_MS;
    // Resting r ms earns r·p/100 ms of CPU: rest until the debt is paid.
    return this.debt > 0 ? (this.debt * 100) / this.percentValue : 0;
  }
}
