import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { parseThreadCpuMs, threadCpuClock } from './thread-cpu.js';

const spin = (ms: number) => {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x++;
  return x;
};

describe('thread CPU clock', () => {
  it('reads schedstat (ns) and stat (utime + stime in 10 ms ticks, after a name with spaces)', () => {
    expect(parseThreadCpuMs('schedstat', '262983642 51970800 62\n')).toBeCloseTo(262.983642, 6);
    const stat = '31218 (node worker) 1) R 31189 31189 27004 0 -1 4194304 100 0 0 0 123 45 0 0 20 0 1 0 2301196 3133440 372';
    expect(parseThreadCpuMs('stat', stat)).toBe(1680);
    expect(parseThreadCpuMs('schedstat', 'garbage')).toBeNaN();
  });

  it.skipIf(process.platform !== 'linux')('on Linux, counts this thread\'s CPU and not a busy worker\'s', async () => {
    const clock = threadCpuClock();
    expect(clock).toBeDefined();
    // A worker spins for 600 ms while this thread sleeps: this thread's clock barely moves.
    const before = clock!();
    const w = new Worker('const end = Date.now() + 600; while (Date.now() < end);', { eval: true });
    await new Promise((r) => w.once('exit', r));
    const idle = clock!() - before;
    // Now this thread spins 300 ms of wall time: its clock moves by what it got of a core.
    const c0 = clock!();
    const u0 = process.cpuUsage();
    spin(300);
    const own = clock!() - c0;
    const u = process.cpuUsage(u0);
    const proc = (u.user + u.system) / 1000;
    expect(idle).toBeLessThan(150);
    expect(own).toBeGreaterThan(20);
    // The process's CPU over the same spin includes this thread's (and little else: no worker runs).
    expect(own).toBeLessThanOrEqual(proc + 20);
    expect(own).toBeGreaterThan(proc * 0.6);
  });
});
