import { TIMEBASE_HZ, type MachineClock } from '../machine/clock.js';
import { yieldToEventLoop } from './event-loop.js';

const TICKS_PER_MS = TIMEBASE_HZ / 1000;
/** Longest single sleep: a safety net should a wake-up ever be missed. */
const MAX_SLEEP_MS = 1000;

/**
 * The idle half of the machine loop (driver.ts): while the hart waits
 * in wfi, sleep until the clock reaches the next timer deadline or until wake() (console input,
 * an I/O completion, a stop request), so an idle guest costs about no host CPU.
 */
export class IdleSleeper {
  /** Milliseconds spent asleep. */
  idleMs = 0;
  private wakeUp: (() => void) | undefined;

  constructor(private readonly clock: () => MachineClock) {}

  /** Ends the current sleep early; a no-op when not asleep. */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  /**
   * Sleeps `ms` without counting it as idle (a CPU limit's off time), ended early by wake()
   * like an idle sleep, so pausing or stopping a throttled machine is not delayed.
   */
  async pauseFor(ms: number): Promise<void> {
    if (!(ms >= 1)) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, Math.min(MAX_SLEEP_MS, Math.round(ms)));
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  async sleepUntil(deadline: number): Promise<void> {
    const clock = this.clock();
    clock.idle?.();
    const ms = Math.min(MAX_SLEEP_MS, (deadline - clock.nowTicks()) / TICKS_PER_MS);
    if (!(ms >= 0.5)) {
      await yieldToEventLoop();
      return;
    }
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, Math.max(1, Math.floor(ms)));
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.idleMs += performance.now() - t0;
  }
}
