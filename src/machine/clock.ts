/**
 * Time as the machine sees it, injected so the host (src/host/clock-*.ts) decides where it
 * comes from: the host's monotonic clock normally, a virtual clock in deterministic mode.
 */
export interface MachineClock {
  /** mtime: ticks of TIMEBASE_HZ since an arbitrary origin; monotonic, a safe integer. */
  nowTicks(): number;
  /** Wall-clock time in nanoseconds since the Unix epoch (the goldfish RTC). */
  wallNs(): bigint;
  /**
   * The guest is idle (wfi with nothing pending): a clock that paces guest time by executed
   * instructions may catch up with the host here (src/host/clock-host.ts, PacedClock).
   */
  idle?(): void;
}

/** The CLINT's mtime frequency; the device tree's timebase-frequency. */
export const TIMEBASE_HZ = 10_000_000;

/** A clock that only moves when told to: tests and deterministic runs. */
export class ManualClock implements MachineClock {
  ticks = 0;
  wall = 1_700_000_000_000_000_000n;
  nowTicks(): number {
    return this.ticks;
  }
  wallNs(): bigint {
    return this.wall + BigInt(this.ticks) * 100n;
  }
  advance(ticks: number): void {
    this.ticks += ticks;
  }
}
