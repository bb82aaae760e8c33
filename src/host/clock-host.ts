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
 * Guest time that follows the host's monotonic clock minus a lag, never faster than the
 * guest's progress allows: while the guest computes, mtime advances by at most
 * `ticksPerInstruction` per retired instruction; what the host loses beyond that becomes lag.
 * The lag shrinks again only at that same bounded rate, and while the guest idles (idle())
 * time runs at the host's rate, so the guest never sees a jump.
 *
 * Why: a host that stalls the process (another job on the core, a GC pause, a slow batch)
 * would otherwise show the guest a sudden leap in time inside a handler or across an idle
 * period. Linux then reports "hrtimer: interrupt took N ns", soft lockups or RCU stalls that
 * say nothing about the guest and everything about the host. On a host fast enough (more than
 * TIMEBASE_HZ / ticksPerInstruction instructions per second of guest work) the cap never
 * binds and guest time is host time.
 */
export class PacedClock implements MachineClock {
  private readonly host = new HostClock();
  private instructions: () => number = () => 0;
  private lastTicks = 0;
  private lastInstructions = 0;
  private carry = 0;
  /** How far guest time is behind the host's, in ticks. */
  private lag = 0;
  private idling = false;

  /** 0.25 ticks (25 ns) per instruction: the guest never sees a CPU slower than 40 MIPS. */
  constructor(private readonly ticksPerInstruction = 0.25) {}

  /** Connects the retired-instruction counter once the hart exists. */
  attach(instructions: () => number): void {
    this.instructions = instructions;
    this.lastInstructions = instructions();
  }

  nowTicks(): number {
    const n = this.instructions();
    if (n !== this.lastInstructions) this.idling = false;
    const target = this.host.nowTicks() - this.lag;
    let t: number;
    if (this.idling) {
      t = Math.max(this.lastTicks, target);
    } else {
      const budget = (n - this.lastInstructions) * this.ticksPerInstruction + this.carry;
      const cap = this.lastTicks + Math.floor(budget);
      if (target > cap) {
        this.lag += target - cap; // the host ran ahead of the guest's progress
        t = cap;
        this.carry = budget - Math.floor(budget);
      } else {
        // Headroom: spend it shrinking the lag, still no faster than the cap.
        const catchUp = Math.min(this.lag, cap - target);
        this.lag -= catchUp;
        t = Math.max(this.lastTicks, target + catchUp);
        this.carry = 0;
      }
    }
    this.lastInstructions = n;
    this.lastTicks = t;
    return t;
  }

  /** The guest idles: until it runs again, time follows the host (keeping the lag). */
  idle(): void {
    this.nowTicks();
    this.idling = true;
  }

  wallNs(): bigint {
    return this.host.wallNs();
  }
}
