import { describe, expect, it } from 'vitest';
import type { AccessSize, MmioDevice } from '../base/mmio.js';
import { Bus } from './bus.js';

class Reg implements MmioDevice {
  log: string[] = [];
  constructor(readonly name: string) {}
  read(offset: number, size: AccessSize): number {
    this.log.push(`r${offset}/${size}`);
    return offset + 1;
  }
  write(offset: number, size: AccessSize, value: number): void {
    this.log.push(`w${offset}/${size}=${value}`);
  }
}

describe('Bus', () => {
  it('dispatches by address range with device-relative offsets', () => {
    const bus = new Bus(0x8000_0000, 1 << 20);
    const a = new Reg('a');
    const b = new Reg('b');
    bus.map(0x1000_0000, 0x100, a);
    bus.map(0x0200_0000, 0x10000, b);
    expect(bus.mmioRead(0x1000_0005, 1)).toBe(6);
    expect(bus.mmioWrite(0x0200_bff8, 4, 7)).toBe(true);
    expect(a.log).toEqual(['r5/1']);
    expect(b.log).toEqual(['w49144/4=7']);
    expect(bus.mappings.map((m) => m.device.name)).toEqual(['b', 'a']);
  });

  it('faults unmapped and straddling accesses', () => {
    const bus = new Bus(0x8000_0000, 1 << 20);
    bus.map(0x1000_0000, 0x100, new Reg('a'));
    expect(bus.mmioRead(0x2000_0000, 4)).toBeUndefined();
    expect(bus.mmioRead(0x1000_00fe, 4)).toBeUndefined();
    expect(bus.mmioWrite(0x0, 1, 0)).toBe(false);
    expect(bus.unmappedReads).toBe(2);
    expect(bus.unmappedWrites).toBe(1);
  });

  it('rejects overlapping windows and computes RAM offsets', () => {
    const bus = new Bus(0x8000_0000, 1 << 20);
    bus.map(0x1000, 0x1000, new Reg('rom'));
    expect(() => bus.map(0x1800, 0x1000, new Reg('x'))).toThrow(/overlaps rom/);
    expect(() => bus.map(0x8000_1000, 0x1000, new Reg('y'))).toThrow(/overlaps RAM/);
    expect(bus.ramOffset(0x8000_0010, 16)).toBe(16);
    expect(bus.ramOffset(0x8010_0000 - 8, 16)).toBe(-1);
    expect(() => new Bus(0x8000_0000, 100)).toThrow(/multiple of 4096/);
  });
});
