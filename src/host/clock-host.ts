import { performance } from 'node:perf_hooks';
import { TIMEBASE_HZ, type MachineClock } from '../machine/clock.js';

const TICKS_PER_MS = TIMEBASE_HZ / 1000;

/**
 * The host's clocks: mtime from the monotonic clock (performance.now(), sub-microsecond,
 * never goes back), wall time for the RTC from the system clock. performance.now() is a cheap
 * double; the guest reads `time` often (sched_clock), so no BigInt on this path.
 */
export class HostClock implements MachineClock {
  private readonly origin = performance.now();

  nowTicks(): number {
    return Math.floor((performance.now() - this.origin) * TICKS_PER_MS);
  }

  wallNs(): bigint {
    const ms = performance.timeOrigin + performance.now();
    const whole = Math.floor(ms);
    return BigInt(whole) * 1_000_000n + BigInt(Math.floor((ms - whole) * 1e6));
  }

  /** Milliseconds from now until the clock reads `ticks` (negative if past). */
  msUntil(ticks: number): number {
    return (ticks - this.nowTicks()) / TICKS_PER_MS;
  }
}

/**
 * Guest time that follows the host's monotonic clock but never runs ahead of the guest's
 * progress: while the guest computes, mtime advances by at most `ticksPerInstruction` per
 * retired instruction; when it idles (idle()), it catches up with the host at once.
 *
 * Why: a host that stalls the process (another job on the core, a GC pause, a slow batch)
 * would otherwise show the guest a sudden jump in time inside a handler. Linux then reports
 * "hrtimer: interrupt took N ns", soft lockups or RCU stalls that say nothing about the guest
 * and everything about the host. Bounding the rate keeps the guest's view consistent: on a
 * host fast enough (more than TIMEBASE_HZ / ticksPerInstruction instructions per second of
 * guest work) the cap never binds and guest time is host time.
 */
export class PacedClock implements MachineClock {
  private readonly host = new HostClock();
  private instructions: () => number = () => 0;
  private lastTicks = 0;
  private lastInstructions = 0;
  private carry = 0;

  /** 0.25 ticks (25 ns) per instruction: the guest never sees a CPU slower than 40 MIPS. */
  constructor(private readonly ticksPerInstruction = 0.25) {}

  /** Connects the retired-instruction counter once the hart exists. */
  attach(instructions: () => number): void {
    this.instructions = instructions;
    this.lastInstructions = instructions();
  }

  nowTicks(): number {
    const host = this.host.nowTicks();
    const n = this.instructions();
    const budget = (n - this.lastInstructions) * this.ticksPerInstruction + this.carry;
    this.lastInstructions = n;
    const cap = this.lastTicks + Math.floor(budget);
    if (host <= cap) {
      this.carry = 0;
      if (host > this.lastTicks) this.lastTicks = host;
    } else {
      this.carry = budget - Math.floor(budget);
      this.lastTicks = cap;
    }
    return this.lastTicks;
  }

  idle(): void {
    const host = this.host.nowTicks();
    if (host > this.lastTicks) this.lastTicks = host;
    this.lastInstructions = this.instructions();
    this.carry = 0;
  }

  wallNs(): bigint {
    return this.host.wallNs();
  }
}
