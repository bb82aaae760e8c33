import type { IrqSink } from '../base/mmio.js';
import type { InterruptTarget } from './irq.js';

/** Records a hart's hardware mip inputs, for device tests. */
export class FakeHart implements InterruptTarget {
  mip = 0;
  setPending(mask: number, level: boolean): void {
    this.mip = level ? this.mip | mask : this.mip & ~mask;
  }
}

/** Records interrupt lines, for device tests. */
export class FakeIrq implements IrqSink {
  levels = new Map<number, boolean>();
  changes = 0;
  setIrq(source: number, level: boolean): void {
    this.levels.set(source, level);
    this.changes++;
  }
  level(source: number): boolean {
    return this.levels.get(source) ?? false;
  }
}

/** What of BoardHart a scripted test hart has no use for: counters at zero, no state to save. */
export class TestHartBase {
  readonly stats = { instructions: 0, traps: [] as number[], interrupts: [] as number[], tlbMisses: 0, decodedPages: 0, codeInvalidations: 0 };
  readonly jitStats = undefined;
  saveState(): never {
    throw new Error('a test hart has no state to save');
  }
  restoreState(): never {
    throw new Error('a test hart has no state to restore');
  }
}
