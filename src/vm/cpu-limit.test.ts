import { describe, expect, it } from 'vitest';
import { BURST_MS, CpuLimiter } from './cpu-limit.js';

/**
 * A thread on a host that gives it `share` of a core while it wants to run: a busy slice of
 * SLICE wall milliseconds holds SLICE·share of CPU, a rest holds none. The driver's loop
 * (driver.ts) is played against the limiter: slice, ask how long to rest, rest, again.
 */
function simulate(o: { limit: number; share: number; seconds: number; clock?: 'exact' | 'ticks' | 'none'; slice?: number }): { cpu: number; wall: number; busyWall: number } {
  const slice = o.slice ?? 20;
  let wall = 0;
  let cpu = 0;
  let busyWall = 0;
  const kind = o.clock ?? 'exact';
  // 'ticks': /proc/thread-self/stat counts whole 10 ms clock ticks.
  const clock = kind === 'none' ? undefined : kind === 'ticks' ? () => Math.floor(cpu / 10) * 10 : () => cpu;
  const l = new CpuLimiter(clock, () => wall);
  l.set(o.limit);
  const start = { wall, cpu, busyWall };
  while (wall - start.wall < o.seconds * 1000) {
    wall += slice;
    cpu += slice * o.share;
    busyWall += slice;
    let rest = l.restAfter(slice);
    // The driver rests at most a second at a time and asks again.
    while (rest >= 1) {
      wall += Math.min(1000, rest);
      rest = l.restAfter(0);
    }
  }
  return { cpu: cpu - start.cpu, wall: wall - start.wall, busyWall: busyWall - start.busyWall };
}

describe('CpuLimiter', () => {
  it('holds the thread to its limit in CPU time when the host gives it a whole core', () => {
    const r = simulate({ limit: 25, share: 1, seconds: 30 });
    expect(r.cpu / r.wall).toBeCloseTo(0.25, 2);
  });

  it('holds it to the limit in CPU time on a busy host, not to the limit of what it gets', () => {
    // The thread gets half a core while it runs: a wall-time duty cycle would give it 12.5%.
    for (const share of [0.5, 0.3]) {
      const r = simulate({ limit: 25, share, seconds: 30 });
      expect(r.cpu / r.wall).toBeCloseTo(0.25, 2);
    }
    const half = simulate({ limit: 50, share: 0.6, seconds: 30 });
    expect(half.cpu / half.wall).toBeCloseTo(0.5, 2);
  });

  it('never rests a thread that gets less than its limit anyway', () => {
    const r = simulate({ limit: 25, share: 0.2, seconds: 30 });
    expect(r.cpu / r.wall).toBeCloseTo(0.2, 3);
  });

  it('evens out a clock that counts in 10 ms ticks', () => {
    const r = simulate({ limit: 25, share: 0.5, seconds: 60, slice: 7 });
    expect(Math.abs(r.cpu / r.wall - 0.25)).toBeLessThan(0.005);
  });

  it('without a clock, counts busy wall time (a duty cycle): p% of the wall time busy', () => {
    const r = simulate({ limit: 25, share: 0.5, seconds: 30, clock: 'none' });
    expect(r.busyWall / r.wall).toBeCloseTo(0.25, 2);
    // ...which on a busy host is less CPU than the limit: the fallback's known cost.
    expect(r.cpu / r.wall).toBeCloseTo(0.125, 2);
  });

  it('keeps at most BURST_MS of credit from idle time', () => {
    let wall = 0;
    let cpu = 0;
    const l = new CpuLimiter(() => cpu, () => wall);
    l.set(25);
    wall += 60_000; // a minute idle
    expect(l.restAfter(0)).toBe(0);
    // Busy at a full core from here: the credit covers BURST_MS of CPU beyond the 25%, no more.
    let ran = 0;
    for (;;) {
      wall += 1;
      cpu += 1;
      ran += 1;
      if (l.restAfter(1) > 0) break;
    }
    expect(ran).toBeGreaterThan(BURST_MS);
    expect(ran).toBeLessThanOrEqual(Math.ceil(BURST_MS / 0.75) + 1);
  });

  it('rests nothing without a limit, and starts afresh when the limit changes', () => {
    let wall = 0;
    let cpu = 0;
    const l = new CpuLimiter(() => cpu, () => wall);
    wall += 100;
    cpu += 100;
    expect(l.restAfter(100)).toBe(0);
    l.set(50);
    wall += 20;
    cpu += 20;
    expect(l.restAfter(20)).toBeCloseTo(20, 6); // 20 ms of CPU at 50% is 40 ms of wall: rest 20
    l.set(100);
    wall += 20;
    cpu += 20;
    expect(l.restAfter(20)).toBe(0);
  });
});
