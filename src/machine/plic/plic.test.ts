import { describe, expect, it } from 'vitest';
import { MIP_MEIP, MIP_SEIP } from '../irq.js';
import { FakeHart } from '../testing.js';
import { PLIC_CONTEXT_BASE, PLIC_CONTEXT_STRIDE, PLIC_ENABLE_BASE, PLIC_ENABLE_STRIDE, PLIC_PENDING_BASE, Plic } from './plic.js';

const S = 1; // context 1: hart 0 S-mode
const claimReg = (ctx: number) => PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE * ctx + 4;
const thresholdReg = (ctx: number) => PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE * ctx;
const enableReg = (ctx: number, word = 0) => PLIC_ENABLE_BASE + PLIC_ENABLE_STRIDE * ctx + 4 * word;

function setup() {
  const hart = new FakeHart();
  const plic = new Plic([hart]);
  for (const src of [1, 10, 33]) plic.write(4 * src, 4, 1);
  return { hart, plic };
}

describe('Plic', () => {
  it('routes an enabled source to SEIP, claims and completes it', () => {
    const { hart, plic } = setup();
    plic.setIrq(10, true);
    expect(plic.read(PLIC_PENDING_BASE, 4)).toBe(1 << 10);
    expect(hart.mip).toBe(0); // not enabled yet
    plic.write(enableReg(S), 4, 1 << 10);
    expect(hart.mip).toBe(MIP_SEIP);
    expect(plic.read(claimReg(S), 4)).toBe(10);
    expect(hart.mip).toBe(0);
    expect(plic.read(claimReg(S), 4)).toBe(0);
    // The line is still high: completing re-pends it (level-triggered gateway).
    plic.write(claimReg(S), 4, 10);
    expect(hart.mip).toBe(MIP_SEIP);
    plic.read(claimReg(S), 4);
    plic.setIrq(10, false);
    plic.write(claimReg(S), 4, 10);
    expect(hart.mip).toBe(0);
  });

  it('honours priorities, thresholds and separate M/S contexts', () => {
    const { hart, plic } = setup();
    plic.write(4 * 33, 4, 5);
    plic.write(enableReg(0, 1), 4, 1 << 1); // M context: source 33
    plic.write(enableReg(S), 4, (1 << 1) | (1 << 10));
    plic.setIrq(1, true);
    plic.setIrq(33, true);
    expect(hart.mip).toBe(MIP_MEIP | MIP_SEIP);
    plic.write(thresholdReg(0), 4, 5);
    expect(hart.mip).toBe(MIP_SEIP);
    plic.setIrq(10, true);
    // Same priority: the lower source ID wins.
    expect(plic.read(claimReg(S), 4)).toBe(1);
    expect(plic.read(claimReg(S), 4)).toBe(10);
    plic.write(thresholdReg(0), 4, 0);
    expect(plic.read(claimReg(0), 4)).toBe(33);
  });

  it('treats priority 0 as never and ignores bogus accesses', () => {
    const { hart, plic } = setup();
    plic.write(4 * 10, 4, 0);
    plic.write(enableReg(S), 4, 0xffffffff);
    expect(plic.read(enableReg(S), 4) & 1).toBe(0);
    plic.setIrq(10, true);
    expect(hart.mip).toBe(0);
    plic.setIrq(0, true);
    plic.setIrq(5000, true);
    plic.write(claimReg(S), 4, 9999);
    plic.write(claimReg(7), 4, 1);
    expect(plic.read(claimReg(7), 4)).toBe(0);
    expect(plic.read(0x3, 1)).toBe(0);
  });

  it('round-trips its state', () => {
    const { plic } = setup();
    plic.write(enableReg(S), 4, 1 << 10);
    plic.setIrq(10, true);
    plic.read(claimReg(S), 4);
    const s = plic.saveState();
    const hart2 = new FakeHart();
    const p2 = new Plic([hart2]);
    p2.restore(JSON.parse(JSON.stringify(s)));
    expect(p2.saveState()).toEqual(s);
    expect(() => p2.restore({ ...s, threshold: [1] })).toThrow(/PLIC state/);
  });
});
