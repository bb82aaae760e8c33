import { TIMEBASE_HZ, type MachineClock } from './clock.js';

/** Guest time per instruction in deterministic mode: 10 per tick, as if the hart ran at 100 MIPS. */
export const DEFAULT_INSTRUCTIONS_PER_TICK = 10;
/** The wall clock a deterministic guest starts from: 2026-01-01T00:00:00Z. */
export const DETERMINISTIC_WALL_START_NS = 1_767_225_600_000_000_000n;

/**
 * Deterministic mode's clock (issue 7): guest time is a function of the instructions the
 * hart retired, never of the host, so two runs of the same guest see the same times and
 * take their timer interrupts at the same instructions. When the hart idles in wfi the run
 * loop skips time forward to the next deadline (advanceTo) instead of sleeping; the skips are
 * decided by guest state alone, so they are deterministic too.
 *
 * The counter is attached after the hart exists (the board creates it): `attach(() =>
 * hart.instructionsRetired)`. A guest that writes minstret backwards does not make time go
 * back: readings never decrease.
 */
export class InstructionClock implements MachineClock {
  private counter: () => number = () => 0;
  private skipped = 0;
  private last = 0;

  constructor(
    readonly instructionsPerTick = DEFAULT_INSTRUCTIONS_PER_TICK,
    readonly wallStartNs = DETERMINISTIC_WALL_START_NS,
  ) {}

  attach(counter: () => number): void {
    this.counter = counter;
  }

  nowTicks(): number {
    const t = this.skipped + Math.floor(this.counter() / this.instructionsPerTick);
    if (t > this.last) this.last = t;
    return this.last;
  }

  wallNs(): bigint {
    return this.wallStartNs + BigInt(this.nowTicks()) * BigInt(1_000_000_000 / TIMEBASE_HZ);
  }

  /** Skips idle time: the clock reads at least `ticks` from now on. */
  advanceTo(ticks: number): void {
    const now = this.nowTicks();
    if (Number.isFinite(ticks) && ticks > now) {
      this.skipped += ticks - now;
      this.last = ticks;
    }
  }
}
