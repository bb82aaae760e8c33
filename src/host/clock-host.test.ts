import { describe, expect, it } from 'vitest';
import { PacedClock } from './clock-host.js';

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* a host stall, as the guest would see it */ }
}

describe('PacedClock', () => {
  it('does not show a host stall to a guest that made no progress, nor release it later as a jump', () => {
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
    // Idle: time runs at the host's rate again, but the 30 ms already lost stay lost (no jump).
    clock.idle();
    const h2 = performance.now();
    const t2 = clock.nowTicks();
    expect(t2 - t1).toBeLessThan(20_000);
    busyWait(10);
    const t3 = clock.nowTicks();
    // Bounded by the host time that really passed (a loaded host may deschedule this process
    // mid-wait): the 30 ms lost above would show as 300,000 ticks more.
    const hostTicks = (performance.now() - h2) * 10_000;
    expect(t3 - t2).toBeGreaterThanOrEqual(100_000); // ≥ 10 ms
    expect(t3 - t2).toBeLessThanOrEqual(hostTicks + 1000);
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

describe('PacedClock lag', () => {
  it('gives the lag back gradually while the guest runs faster than the cap', () => {
    let instructions = 0;
    const start = performance.now();
    const clock = new PacedClock(0.25);
    clock.attach(() => instructions);
    const t0 = clock.nowTicks();
    busyWait(20); // 200 000 ticks lost
    instructions += 1;
    clock.nowTicks();
    // 100 000 instructions may advance time by at most 25 000 ticks beyond the host's own pace.
    busyWait(1);
    instructions += 100_000;
    const t1 = clock.nowTicks();
    expect(t1 - t0).toBeLessThanOrEqual(25_001);
    for (let i = 0; i < 40; i++) { busyWait(1); instructions += 2_000_000; clock.nowTicks(); }
    // After plenty of progress the lag is gone: guest time is within 5 ms of the host's.
    const hostTicks = (performance.now() - start) * 10_000;
    expect(clock.nowTicks()).toBeGreaterThan(hostTicks - 50_000);
  });
});
