import { describe, expect, it } from 'vitest';
import { effectiveLimits } from './shares.js';

describe('CPU shares', () => {
  it('keeps every limit when they fit', () => {
    const r = effectiveLimits([{ id: 'a', limitPercent: 100, shares: 100 }, { id: 'b', limitPercent: 50, shares: 10 }], 200);
    expect([...r]).toEqual([['a', 100], ['b', 50]]);
  });
  it('divides a busy host by shares, never past a limit, giving the rest to the others', () => {
    const r = effectiveLimits([
      { id: 'a', limitPercent: 100, shares: 300 },
      { id: 'b', limitPercent: 100, shares: 100 },
      { id: 'c', limitPercent: 10, shares: 400 },
    ], 100);
    // c is capped at 10; the 90 left go 3:1 to a and b.
    expect(r.get('c')).toBe(10);
    expect(r.get('a')).toBe(67);
    expect(r.get('b')).toBe(22);
    const sum = [...r.values()].reduce((s, v) => s + v, 0);
    expect(sum).toBeLessThanOrEqual(100);
  });
  it('gives each machine at least 1%', () => {
    const r = effectiveLimits([{ id: 'a', limitPercent: 100, shares: 10_000 }, { id: 'b', limitPercent: 100, shares: 1 }], 100);
    expect(r.get('b')).toBe(1);
  });
});
