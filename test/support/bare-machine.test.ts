import { describe, expect, it } from 'vitest';
import { BARE_SYSCON_BASE, BARE_UART_BASE, BareMachine } from './bare-machine.js';

describe('BareMachine', () => {
  it('captures UART THR bytes and reports the transmitter empty', () => {
    const m = new BareMachine(8192);
    for (const ch of 'hi\n') expect(m.mmioWrite(BARE_UART_BASE, 1, ch.charCodeAt(0))).toBe(true);
    expect(m.mmioWrite(BARE_UART_BASE + 3, 1, 0x03)).toBe(true); // LCR: accepted, not output
    expect(m.uartText()).toBe('hi\n');
    expect(m.mmioRead(BARE_UART_BASE + 5, 1)).toBe(0x60);
  });

  it('stops on the syscon poweroff and reports unmapped addresses', () => {
    const m = new BareMachine(8192);
    let stops = 0;
    m.onStop = () => stops++;
    expect(m.mmioWrite(BARE_SYSCON_BASE, 4, 0x1234)).toBe(true);
    expect(m.stopped).toBeUndefined();
    m.mmioWrite(BARE_SYSCON_BASE, 4, 0x5555);
    expect(m.stopped).toBe('poweroff');
    expect(stops).toBe(1);
    expect(m.mmioRead(0x0200_0000, 4)).toBeUndefined();
    expect(m.mmioWrite(0x0c00_0000, 4, 1)).toBe(false);
    expect(m.unmappedAccesses).toBe(2);
  });

  it('loads images into RAM and rejects ones that do not fit', () => {
    const m = new BareMachine(8192);
    m.load(new Uint8Array([1, 2, 3]), 0x8000_1000);
    expect([...m.ram.subarray(4096, 4099)]).toEqual([1, 2, 3]);
    expect(() => m.load(new Uint8Array(8193))).toThrow();
  });
});
