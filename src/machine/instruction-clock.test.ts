import { describe, expect, it } from 'vitest';
import { InstructionClock } from './instruction-clock.js';

describe('InstructionClock', () => {
  it('counts instructions, skips idle time, never goes back', () => {
    let n = 0;
    const c = new InstructionClock(10, 1_000n);
    c.attach(() => n);
    expect(c.nowTicks()).toBe(0);
    n = 95;
    expect(c.nowTicks()).toBe(9);
    expect(c.wallNs()).toBe(1_000n + 900n);
    c.advanceTo(100);
    expect(c.nowTicks()).toBe(100);
    c.advanceTo(50); // the past: no effect
    c.advanceTo(Infinity);
    expect(c.nowTicks()).toBe(100);
    n = 105;
    expect(c.nowTicks()).toBe(101);
    n = 0; // a guest wrote minstret
    expect(c.nowTicks()).toBe(101);
  });
});
