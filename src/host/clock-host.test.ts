import { describe, expect, it } from 'vitest';
import { PacedClock } from './clock-host.js';

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* a host stall, as the guest would see it */ }
}

describe('PacedClock', () => {
  it('does not show a host stall to a guest that made no progress, and catches up when idle', () => {
    let instructions = 0;
    const clock = new PacedClock(0.25);
    clock.attach(() => instructions);
    const t0 = clock.nowTicks();
    busyWait(30);
    expect(clock.nowTicks()).toBe(t0); // 30 ms passed on the host, no instruction ran
    instructions += 4000; // at most 1000 ticks (100 µs) of guest time for 4000 instructions
    const t1 = clock.nowTicks();
    expect(t1 - t0).toBeLessThanOrEqual(1000);
    expect(t1 - t0).toBeGreaterThan(0);
    clock.idle();
    expect(clock.nowTicks() - t0).toBeGreaterThanOrEqual(300_000); // ≥ 30 ms in 10 MHz ticks
  });

  it('follows the host when the guest runs fast enough, and never goes back', () => {
    let instructions = 0;
    const start = performance.now();
    const clock = new PacedClock(0.25);
    clock.attach(() => instructions);
    let last = clock.nowTicks();
    for (let i = 0; i < 50; i++) {
      busyWait(1);
      instructions += 1_000_000; // far more than 1 ms of guest work at the cap
      const t = clock.nowTicks();
      expect(t).toBeGreaterThanOrEqual(last);
      last = t;
    }
    // Guest time kept up with the host (10 000 ticks per ms): the cap never bound.
    const hostTicks = (performance.now() - start) * 10_000;
    expect(clock.nowTicks()).toBeGreaterThan(hostTicks - 50_000);
  });
});
