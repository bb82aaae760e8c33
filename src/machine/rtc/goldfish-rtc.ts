import { VisorError } from '../../base/errors.js';
import type { AccessSize, IrqSink, MmioDevice } from '../../base/mmio.js';
import { TIMEBASE_HZ, type MachineClock } from '../clock.js';

/**
 * Goldfish RTC (Android emulator goldfish "rtc" device; Linux drivers/rtc/rtc-goldfish.c,
 * `google,goldfish-rtc`). Time is nanoseconds since the Unix epoch, from the host's wall clock.
 * Reading TIME_LOW latches the high half for the following TIME_HIGH read.
 */
export const RTC_TIME_LOW = 0x00;
export const RTC_TIME_HIGH = 0x04;
export const RTC_ALARM_LOW = 0x08;
export const RTC_ALARM_HIGH = 0x0c;
export const RTC_IRQ_ENABLED = 0x10;
export const RTC_CLEAR_ALARM = 0x14;
export const RTC_ALARM_STATUS = 0x18;
export const RTC_CLEAR_INTERRUPT = 0x1c;

const M32 = 0xffffffffn;
const NS_PER_TICK = BigInt(1_000_000_000 / TIMEBASE_HZ);

export interface GoldfishRtcState {
  version: 1;
  /** Guest time minus host wall time, ns, as a decimal string (64-bit). */
  offsetNs: string;
  alarmNs: string;
  alarmRunning: boolean;
  irqEnabled: boolean;
  irqPending: boolean;
}

export class GoldfishRtc implements MmioDevice {
  readonly name = 'rtc';
  private offsetNs = 0n;
  private timeHigh = 0;
  private alarmNs = 0n;
  private alarmRunning = false;
  private irqEnabled = false;
  private irqPending = false;
  private irqLevel = false;

  constructor(
    private readonly clock: MachineClock,
    private readonly irq: IrqSink,
    private readonly irqSource: number,
  ) {}

  nowNs(): bigint {
    return this.clock.wallNs() + this.offsetNs;
  }

  private setTime(ns: bigint): void {
    this.offsetNs = BigInt.asUintN(64, ns) - this.clock.wallNs();
  }

  private updateIrq(): void {
    const level = this.irqPending && this.irqEnabled;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.setIrq(this.irqSource, level);
    }
  }

  /** Fires the alarm if its time has come; the run loop calls this between batches. */
  update(): void {
    if (this.alarmRunning && this.nowNs() >= this.alarmNs) {
      this.alarmRunning = false;
      this.irqPending = true;
      this.updateIrq();
    }
  }

  /** The clock.nowTicks() reading at which the alarm fires, or Infinity. */
  nextDeadline(): number {
    if (!this.alarmRunning) return Infinity;
    const delta = this.alarmNs - this.nowNs();
    const now = this.clock.nowTicks();
    return delta <= 0n ? now : now + Number(delta / NS_PER_TICK) + 1;
  }

  read(offset: number, size: AccessSize): number {
    if (size !== 4) return 0;
    switch (offset) {
      case RTC_TIME_LOW: {
        const t = this.nowNs();
        this.timeHigh = Number((t >> 32n) & M32);
        return Number(t & M32);
      }
      case RTC_TIME_HIGH:
        return this.timeHigh;
      case RTC_ALARM_LOW:
        return Number(this.alarmNs & M32);
      case RTC_ALARM_HIGH:
        return Number((this.alarmNs >> 32n) & M32);
      case RTC_IRQ_ENABLED:
        return this.irqEnabled ? 1 : 0;
      case RTC_ALARM_STATUS:
        return this.alarmRunning ? 1 : 0;
      default:
        return 0;
    }
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (size !== 4) return;
    const v = BigInt(value >>> 0);
    switch (offset) {
      case RTC_TIME_LOW:
        this.setTime((this.nowNs() & ~M32) | v);
        return;
      case RTC_TIME_HIGH:
        this.setTime((this.nowNs() & M32) | (v << 32n));
        return;
      case RTC_ALARM_LOW:
        // Writing the low half arms the alarm (Linux writes ALARM_HIGH first).
        this.alarmNs = (this.alarmNs & ~M32) | v;
        this.alarmRunning = true;
        this.update();
        return;
      case RTC_ALARM_HIGH:
        this.alarmNs = (this.alarmNs & M32) | (v << 32n);
        return;
      case RTC_IRQ_ENABLED:
        this.irqEnabled = (value & 1) !== 0;
        this.updateIrq();
        return;
      case RTC_CLEAR_ALARM:
        this.alarmRunning = false;
        return;
      case RTC_CLEAR_INTERRUPT:
        this.irqPending = false;
        this.updateIrq();
        return;
      default:
        return;
    }
  }

  saveState(): GoldfishRtcState {
    return {
      version: 1,
      offsetNs: this.offsetNs.toString(),
      alarmNs: this.alarmNs.toString(),
      alarmRunning: this.alarmRunning,
      irqEnabled: this.irqEnabled,
      irqPending: this.irqPending,
    };
  }

  restore(s: GoldfishRtcState): void {
    const int = (v: unknown) => typeof v === 'string' && /^-?\d{1,20}$/.test(v);
    if (
      s.version !== 1 || !int(s.offsetNs) || !int(s.alarmNs) ||
      typeof s.alarmRunning !== 'boolean' || typeof s.irqEnabled !== 'boolean' || typeof s.irqPending !== 'boolean'
    ) {
      throw new VisorError('InvalidArgument', 'invalid goldfish RTC state');
    }
    this.offsetNs = BigInt(s.offsetNs);
    this.alarmNs = BigInt.asUintN(64, BigInt(s.alarmNs));
    this.alarmRunning = s.alarmRunning;
    this.irqEnabled = s.irqEnabled;
    this.irqPending = s.irqPending;
    this.irqLevel = false;
    this.irq.setIrq(this.irqSource, false);
    this.updateIrq();
  }
}
