import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.js';
import { FakeIrq } from '../testing.js';
import {
  GoldfishRtc, RTC_ALARM_HIGH, RTC_ALARM_LOW, RTC_ALARM_STATUS, RTC_CLEAR_INTERRUPT, RTC_IRQ_ENABLED,
  RTC_TIME_HIGH, RTC_TIME_LOW,
} from './goldfish-rtc.js';

const readTime = (rtc: GoldfishRtc) => {
  const lo = BigInt(rtc.read(RTC_TIME_LOW, 4) >>> 0);
  return (BigInt(rtc.read(RTC_TIME_HIGH, 4) >>> 0) << 32n) | lo;
};

describe('GoldfishRtc', () => {
  it('reports the host wall clock in ns, setting it moves only the guest', () => {
    const clock = new ManualClock();
    const rtc = new GoldfishRtc(clock, new FakeIrq(), 11);
    expect(readTime(rtc)).toBe(clock.wallNs());
    const target = 1_000_000_000_000_000_000n;
    rtc.write(RTC_TIME_HIGH, 4, Number(target >> 32n));
    rtc.write(RTC_TIME_LOW, 4, Number(target & 0xffffffffn));
    expect(readTime(rtc)).toBe(target);
    clock.advance(10); // 1 µs
    expect(readTime(rtc)).toBe(target + 1000n);
  });

  it('fires an alarm as an interrupt', () => {
    const clock = new ManualClock();
    const irq = new FakeIrq();
    const rtc = new GoldfishRtc(clock, irq, 11);
    const at = clock.wallNs() + 5_000n;
    rtc.write(RTC_IRQ_ENABLED, 4, 1);
    rtc.write(RTC_ALARM_HIGH, 4, Number(at >> 32n));
    rtc.write(RTC_ALARM_LOW, 4, Number(at & 0xffffffffn));
    expect(rtc.read(RTC_ALARM_STATUS, 4)).toBe(1);
    expect(rtc.nextDeadline()).toBe(51);
    clock.advance(49);
    rtc.update();
    expect(irq.level(11)).toBe(false);
    clock.advance(1);
    rtc.update();
    expect(irq.level(11)).toBe(true);
    expect(rtc.read(RTC_ALARM_STATUS, 4)).toBe(0);
    rtc.write(RTC_CLEAR_INTERRUPT, 4, 1);
    expect(irq.level(11)).toBe(false);
    const s = rtc.saveState();
    const r2 = new GoldfishRtc(clock, new FakeIrq(), 11);
    r2.restore(JSON.parse(JSON.stringify(s)));
    expect(r2.saveState()).toEqual(s);
  });
});
