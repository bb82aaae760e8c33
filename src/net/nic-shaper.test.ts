import { describe, expect, it } from 'vitest';
import { NicShaper } from './nic-shaper.js';

/** Offers `frameLen`-byte frames as fast as the queue takes them for `seconds` of injected time. */
function measure(limits: ConstructorParameters<typeof NicShaper>[0], dir: 'tx' | 'rx', frameLen: number, seconds: number) {
  let now = 0;
  const timers: { at: number; run: () => void }[] = [];
  let bytes = 0;
  let frames = 0;
  const got = (f: Uint8Array) => {
    bytes += f.length;
    frames++;
  };
  const s = new NicShaper(limits, got, got, () => now, (ms, run) => timers.push({ at: now + ms, run }));
  const frame = new Uint8Array(frameLen);
  // Warm-up: spend the initial burst so the measurement sees the sustained rate.
  const offer = () => {
    while ((dir === 'tx' ? s.queued.tx : s.queued.rx) < 100) dir === 'tx' ? s.fromGuest(frame) : s.toGuest(frame);
  };
  const runUntil = (end: number) => {
    while (now < end) {
      offer();
      timers.sort((a, b) => a.at - b.at);
      const t = timers.shift();
      if (!t) break;
      now = Math.max(now, t.at);
      t.run();
    }
  };
  runUntil(2000);
  bytes = 0;
  frames = 0;
  const start = now;
  runUntil(start + seconds * 1000);
  const secs = (now - start) / 1000;
  return { bytesPerSec: bytes / secs, framesPerSec: frames / secs, counters: s.counters };
}

describe('NIC rate limits (token buckets)', () => {
  it('holds a byte rate within 10% of its setting, each direction', () => {
    for (const dir of ['tx', 'rx'] as const) {
      const r = measure({ [dir]: { bytesPerSec: 1_000_000, bytesBurst: 64_000 } }, dir, 1514, 10);
      expect(r.bytesPerSec / 1_000_000).toBeGreaterThan(0.9);
      expect(r.bytesPerSec / 1_000_000).toBeLessThan(1.1);
    }
  });

  it('holds a packet rate within 10% of its setting', () => {
    const r = measure({ rx: { packetsPerSec: 2000, packetsBurst: 50 } }, 'rx', 64, 10);
    expect(r.framesPerSec / 2000).toBeGreaterThan(0.9);
    expect(r.framesPerSec / 2000).toBeLessThan(1.1);
  });

  it('applies the tighter of bytes and packets', () => {
    const r = measure({ tx: { bytesPerSec: 10_000_000, packetsPerSec: 1000 } }, 'tx', 1500, 5);
    expect(r.framesPerSec / 1000).toBeGreaterThan(0.9);
    expect(r.framesPerSec / 1000).toBeLessThan(1.1);
  });

  it('drops (and counts) what overflows the bounded queue; unlimited passes everything', () => {
    const out: Uint8Array[] = [];
    const s = new NicShaper({ tx: { packetsPerSec: 1, packetsBurst: 1 } }, (f) => out.push(f), () => {}, () => 0, () => {});
    for (let i = 0; i < 1000; i++) s.fromGuest(new Uint8Array(60));
    expect(out).toHaveLength(1);
    expect(s.queued.tx).toBe(512);
    expect(s.counters.txRateDrops).toBe(1000 - 1 - 512);
    const free: Uint8Array[] = [];
    const u = new NicShaper({}, () => {}, (f) => free.push(f));
    for (let i = 0; i < 1000; i++) u.toGuest(new Uint8Array(60));
    expect(free).toHaveLength(1000);
    expect(u.counters.rxBytes).toBe(60_000);
  });
});
