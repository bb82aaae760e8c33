import { describe, expect, it } from 'vitest';
import { MemoryFile } from './memory-file.js';
import { RawDevice } from './raw.js';
import { DiskThrottle, ThrottledDevice, TokenBucket, type ThrottleTimer } from './throttle.js';

/** Virtual time: sleep advances the clock, so the tests see exactly what the limiter asked for. */
function fakeTimer(): ThrottleTimer & { t: number } {
  const timer = {
    t: 0,
    now: () => timer.t,
    sleep: async (ms: number) => {
      timer.t += ms;
    },
  };
  return timer;
}

async function disk(bytes = 1 << 20): Promise<RawDevice> {
  return RawDevice.create(new MemoryFile(), bytes);
}

describe('TokenBucket', () => {
  it('spends its burst at once, then refills at the rate; debt is waited out', () => {
    const b = new TokenBucket(1, 10, 0); // 1 token per ms, holds 10
    expect(b.take(10, 0)).toBe(0);
    expect(b.take(5, 0)).toBe(5); // 5 in debt: 5 ms
    expect(b.take(1, 5)).toBe(1); // paid off at 5 ms, the next is 1 ms away
    expect(b.take(0, 1000)).toBe(0);
    expect(b.take(10, 1000)).toBe(0); // refill is capped at the size
    expect(b.take(1, 1000)).toBe(1);
  });
});

describe('ThrottledDevice', () => {
  it('keeps sequential reads to the byte rate (virtual time)', async () => {
    const timer = fakeTimer();
    const dev = new ThrottledDevice(await disk(), { bytesPerSec: 1 << 20, bytesBurst: 64 << 10 }, timer);
    const buf = new Uint8Array(64 << 10);
    for (let i = 0; i < 64; i++) await dev.read((i % 16) * buf.length, buf);
    // 4 MiB at 1 MiB/s with a 64 KiB burst: 4 s less the burst.
    expect(timer.t).toBeCloseTo(4000 - 62.5, 6);
    expect(dev.counters.throttled).toBe(63);
  });

  it('keeps operations to the IOPS limit whatever their size, flushes included', async () => {
    const timer = fakeTimer();
    const dev = new ThrottledDevice(await disk(), { iops: 100, iopsBurst: 1 }, timer);
    const buf = new Uint8Array(512);
    for (let i = 0; i < 50; i++) await dev.write(0, buf);
    for (let i = 0; i < 50; i++) await dev.flush();
    expect(timer.t).toBeCloseTo(990, 6); // 100 operations, the first free
  });

  it('charges both buckets: the tighter one sets the pace', async () => {
    const timer = fakeTimer();
    const dev = new ThrottledDevice(await disk(), { iops: 1000, bytesPerSec: 512 * 10, iopsBurst: 1, bytesBurst: 512 }, timer);
    const buf = new Uint8Array(512);
    for (let i = 0; i < 21; i++) await dev.read(0, buf);
    expect(timer.t).toBeCloseTo(2000, 6); // bytes: 10 sectors a second
  });

  it('lets concurrent requests through in arrival order', async () => {
    const timer = fakeTimer();
    const dev = new ThrottledDevice(await disk(), { iops: 10, iopsBurst: 1 }, timer);
    const order: number[] = [];
    // Concurrent sleeps overlap: the real scheduler, not the fake clock's sum, orders them.
    const slept: { ms: number; run: () => void }[] = [];
    timer.sleep = (ms) => new Promise((r) => slept.push({ ms, run: () => r() }));
    const done = [0, 1, 2, 3].map((i) => dev.read(0, new Uint8Array(512)).then(() => order.push(i)));
    await Promise.resolve();
    await Promise.resolve();
    expect(slept.map((s) => s.ms)).toEqual([100, 200, 300]);
    for (const s of slept.sort((a, b) => a.ms - b.ms)) s.run();
    await Promise.all(done);
    expect(order).toEqual([0, 1, 2, 3]);
  });

  it('shares one budget between devices given the same throttle', async () => {
    const timer = fakeTimer();
    const t = new DiskThrottle({ iops: 10, iopsBurst: 1 }, timer);
    const a = new ThrottledDevice(await disk(), t);
    const b = new ThrottledDevice(await disk(), t);
    for (let i = 0; i < 5; i++) {
      await a.read(0, new Uint8Array(512));
      await b.read(0, new Uint8Array(512));
    }
    expect(timer.t).toBeCloseTo(900, 6); // 10 operations at 10/s, the first free
    expect(a.counters).toBe(b.counters);
    expect(t.counters.throttled).toBe(9);
  });

  it('refuses nonsense limits with a typed error', async () => {
    expect(() => new ThrottledDevice({} as RawDevice, { iops: -1 })).toThrow(/iops must be a positive number/);
    expect(() => new ThrottledDevice({} as RawDevice, { bytesPerSec: Number.NaN })).toThrow(/bytesPerSec/);
  });

  it('passes data through unchanged', async () => {
    const inner = await disk();
    const dev = new ThrottledDevice(inner, { iops: 1e6 });
    const data = Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff);
    await dev.write(8192, data);
    const back = new Uint8Array(4096);
    await dev.read(8192, back);
    expect(back).toEqual(data);
    expect(dev.size).toBe(inner.size);
    expect(dev.readOnly).toBe(false);
  });
});
