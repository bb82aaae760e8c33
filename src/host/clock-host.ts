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
