import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.js';
import { MIP_MSIP, MIP_MTIP } from '../irq.js';
import { FakeHart } from '../testing.js';
import { CLINT_MSIP, CLINT_MTIME, CLINT_MTIMECMP, Clint } from './clint.js';

describe('Clint', () => {
  it('drives MSIP from the msip register', () => {
    const hart = new FakeHart();
    const clint = new Clint(new ManualClock(), [hart]);
    clint.write(CLINT_MSIP, 4, 1);
    expect(hart.mip & MIP_MSIP).toBe(MIP_MSIP);
    expect(clint.read(CLINT_MSIP, 4)).toBe(1);
    clint.write(CLINT_MSIP, 4, 0);
    expect(hart.mip).toBe(0);
  });

  it('reads mtime from the clock, 64-bit consistent across the two halves', () => {
    const clock = new ManualClock();
    clock.ticks = 0x1_ffff_fff0;
    const clint = new Clint(clock, [new FakeHart()]);
    const lo = clint.read(CLINT_MTIME, 4);
    clock.advance(0x20); // the low half wraps between the two reads
    const hi = clint.read(CLINT_MTIME + 4, 4);
    expect(hi * 2 ** 32 + lo).toBe(0x1_ffff_fff0);
  });

  it('raises MTIP when mtime reaches mtimecmp and reports the deadline', () => {
    const clock = new ManualClock();
    const hart = new FakeHart();
    const clint = new Clint(clock, [hart]);
    clint.update();
    expect(hart.mip & MIP_MTIP).toBe(0);
    expect(clint.nextDeadline()).toBeGreaterThan(2 ** 60);
    clint.write(CLINT_MTIMECMP + 4, 4, 0);
    clint.write(CLINT_MTIMECMP, 4, 1000);
    expect(clint.read(CLINT_MTIMECMP, 4)).toBe(1000);
    expect(clint.nextDeadline()).toBe(1000);
    clock.advance(999);
    clint.update();
    expect(hart.mip & MIP_MTIP).toBe(0);
    clock.advance(1);
    clint.update();
    expect(hart.mip & MIP_MTIP).toBe(MIP_MTIP);
    // Moving mtimecmp into the future lowers MTIP at once.
    clint.write(CLINT_MTIMECMP, 4, 5000);
    expect(hart.mip & MIP_MTIP).toBe(0);
  });

  it('lets the guest set mtime and round-trips its state', () => {
    const clock = new ManualClock();
    const hart = new FakeHart();
    const clint = new Clint(clock, [hart]);
    clint.write(CLINT_MTIME + 4, 4, 0);
    clint.write(CLINT_MTIME, 4, 500);
    expect(clint.mtime()).toBe(500);
    clint.write(CLINT_MTIMECMP + 4, 4, 0);
    clint.write(CLINT_MTIMECMP, 4, 600);
    const s = clint.saveState();
    const c2 = new Clint(clock, [new FakeHart()]);
    c2.restore(JSON.parse(JSON.stringify(s)));
    expect(c2.saveState()).toEqual(s);
    expect(() => c2.restore({ ...s, msip: [2] })).toThrow(/CLINT state/);
  });
});
