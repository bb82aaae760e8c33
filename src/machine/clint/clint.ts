import { VisorError } from '../../base/errors.js';
import type { AccessSize, MmioDevice } from '../../base/mmio.js';
import type { MachineClock } from '../clock.js';
import { MIP_MSIP, MIP_MTIP, type InterruptTarget } from '../irq.js';

/**
 * SiFive CLINT / RISC-V ACLINT (MSWI + MTIMER) as on QEMU's virt board, size 0x10000:
 *   0x0000 + 4*hart  msip      (ACLINT MSWI, bit 0)
 *   0x4000 + 8*hart  mtimecmp  (ACLINT MTIMER)
 *   0xbff8           mtime
 * mtime is the injected clock plus an offset (guest writes to mtime move the offset). MTIP is a
 * comparison against a moving clock, so the run loop calls update() between instruction batches
 * and sleeps until nextDeadline() when the hart is idle.
 */
export const CLINT_MSIP = 0x0000;
export const CLINT_MTIMECMP = 0x4000;
export const CLINT_MTIME = 0xbff8;
export const CLINT_SIZE = 0x10000;

const TWO32 = 0x1_0000_0000;

export interface ClintState {
  version: 1;
  msip: number[];
  mtimecmp: { hi: number; lo: number }[];
  mtimeOffset: number;
}

export class Clint implements MmioDevice {
  readonly name = 'clint';
  private msip: number[];
  private cmpHi: number[];
  private cmpLo: number[];
  private mtimeOffset = 0;
  /** mtime latched by a low-half read, so the following high-half read is consistent. */
  private latched = -1;
  private mtip: boolean[];

  constructor(
    private readonly clock: MachineClock,
    private readonly harts: readonly InterruptTarget[],
  ) {
    const n = harts.length;
    this.msip = new Array(n).fill(0);
    // Reset to the far future: no timer interrupt until firmware programs one.
    this.cmpHi = new Array(n).fill(0xffffffff);
    this.cmpLo = new Array(n).fill(0xffffffff);
    this.mtip = new Array(n).fill(false);
  }

  mtime(): number {
    return this.clock.nowTicks() + this.mtimeOffset;
  }

  private mtimecmp(h: number): number {
    return this.cmpHi[h]! * TWO32 + this.cmpLo[h]!;
  }

  /** Re-evaluates MTIP of every hart against the current time. */
  update(): void {
    const now = this.mtime();
    for (let h = 0; h < this.harts.length; h++) {
      const level = now >= this.mtimecmp(h);
      if (level !== this.mtip[h]) {
        this.mtip[h] = level;
        this.harts[h]!.setPending(MIP_MTIP, level);
      }
    }
  }

  /** The clock reading (clock.nowTicks units) at which the next MTIP rises, or Infinity. */
  nextDeadline(): number {
    let d = Infinity;
    for (let h = 0; h < this.harts.length; h++) {
      if (!this.mtip[h]) d = Math.min(d, this.mtimecmp(h) - this.mtimeOffset);
    }
    return d;
  }

  read(offset: number, size: AccessSize): number {
    if (size !== 4) return 0; // the registers are 32/64-bit; narrower accesses read as zero
    if (offset < CLINT_MTIMECMP) {
      const h = offset >> 2;
      return h < this.harts.length ? this.msip[h]! : 0;
    }
    if (offset < CLINT_MTIME) {
      const h = (offset - CLINT_MTIMECMP) >> 3;
      if (h >= this.harts.length) return 0;
      return offset & 4 ? this.cmpHi[h]! : this.cmpLo[h]!;
    }
    if (offset === CLINT_MTIME) {
      this.latched = this.mtime();
      return this.latched % TWO32 >>> 0;
    }
    if (offset === CLINT_MTIME + 4) {
      const t = this.latched >= 0 ? this.latched : this.mtime();
      this.latched = -1;
      return Math.floor(t / TWO32) >>> 0;
    }
    return 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (size !== 4) return;
    value >>>= 0;
    if (offset < CLINT_MTIMECMP) {
      const h = offset >> 2;
      if (h >= this.harts.length) return;
      this.msip[h] = value & 1;
      this.harts[h]!.setPending(MIP_MSIP, (value & 1) !== 0);
      return;
    }
    if (offset < CLINT_MTIME) {
      const h = (offset - CLINT_MTIMECMP) >> 3;
      if (h >= this.harts.length) return;
      if (offset & 4) this.cmpHi[h] = value;
      else this.cmpLo[h] = value;
      this.update();
      return;
    }
    if (offset === CLINT_MTIME || offset === CLINT_MTIME + 4) {
      const now = this.mtime();
      let lo = now % TWO32;
      let hi = Math.floor(now / TWO32);
      if (offset === CLINT_MTIME) lo = value;
      else hi = value;
      this.mtimeOffset = hi * TWO32 + lo - this.clock.nowTicks();
      this.update();
    }
  }

  saveState(): ClintState {
    return {
      version: 1,
      msip: [...this.msip],
      mtimecmp: this.cmpHi.map((hi, i) => ({ hi, lo: this.cmpLo[i]! })),
      mtimeOffset: this.mtimeOffset,
    };
  }

  restore(s: ClintState): void {
    const u32 = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < TWO32;
    const n = this.harts.length;
    if (
      s.version !== 1 ||
      !Array.isArray(s.msip) || s.msip.length !== n || !s.msip.every((v) => v === 0 || v === 1) ||
      !Array.isArray(s.mtimecmp) || s.mtimecmp.length !== n || !s.mtimecmp.every((c) => u32(c?.hi) && u32(c?.lo)) ||
      !Number.isSafeInteger(s.mtimeOffset)
    ) {
      throw new VisorError('InvalidArgument', 'invalid CLINT state');
    }
    this.msip = [...s.msip];
    this.cmpHi = s.mtimecmp.map((c) => c.hi);
    this.cmpLo = s.mtimecmp.map((c) => c.lo);
    this.mtimeOffset = s.mtimeOffset;
    for (let h = 0; h < n; h++) {
      this.harts[h]!.setPending(MIP_MSIP, this.msip[h] === 1);
      this.mtip[h] = false;
      this.harts[h]!.setPending(MIP_MTIP, false);
    }
    this.update();
  }
}
