import { describe, expect, it } from 'vitest';
import { FakeIrq } from '../testing.js';
import {
  UART_FCR, UART_IER, UART_IER_RDI, UART_IER_THRI, UART_IIR, UART_IIR_NO_INT, UART_IIR_RDI,
  UART_IIR_RX_TIMEOUT, UART_IIR_THRI, UART_LCR, UART_LSR, UART_LSR_DR, UART_LSR_THRE, UART_LSR_TEMT,
  UART_MCR, UART_RBR, UART_SCR, UART_THR, Uart16550,
} from './uart.js';

function make() {
  const irq = new FakeIrq();
  const uart = new Uart16550(irq, 10);
  const out: number[] = [];
  uart.onTransmit = (b) => out.push(b);
  return { irq, uart, out };
}

describe('Uart16550', () => {
  it('transmits THR writes and reports an empty transmitter', () => {
    const { uart, out } = make();
    for (const c of 'hi') uart.write(UART_THR, 1, c.charCodeAt(0));
    expect(String.fromCharCode(...out)).toBe('hi');
    expect(uart.read(UART_LSR, 1) & (UART_LSR_THRE | UART_LSR_TEMT)).toBe(UART_LSR_THRE | UART_LSR_TEMT);
  });

  it('raises THRE when ETBEI is enabled and acknowledges it on an IIR read', () => {
    const { uart, irq } = make();
    expect(uart.read(UART_IIR, 1) & 0x0f).toBe(UART_IIR_NO_INT);
    uart.write(UART_IER, 1, UART_IER_THRI);
    expect(irq.level(10)).toBe(true);
    expect(uart.read(UART_IIR, 1) & 0x0f).toBe(UART_IIR_THRI);
    expect(irq.level(10)).toBe(false);
    expect(uart.read(UART_IIR, 1) & 0x0f).toBe(UART_IIR_NO_INT);
    // Sending a byte empties THR again: THRE comes back.
    uart.write(UART_THR, 1, 0x41);
    expect(irq.level(10)).toBe(true);
    uart.write(UART_IER, 1, 0);
    expect(irq.level(10)).toBe(false);
  });

  it('receives into a FIFO with RX interrupts, trigger level and timeout cause', () => {
    const { uart, irq } = make();
    uart.write(UART_FCR, 1, 0x01 | 0x80); // FIFO on, trigger 8
    uart.write(UART_IER, 1, UART_IER_RDI);
    expect(irq.level(10)).toBe(false);
    uart.receive(new TextEncoder().encode('abc'));
    expect(irq.level(10)).toBe(true);
    expect(uart.read(UART_IIR, 1)).toBe(0xc0 | UART_IIR_RX_TIMEOUT);
    uart.receive(new TextEncoder().encode('defghij'));
    expect(uart.read(UART_IIR, 1)).toBe(0xc0 | UART_IIR_RDI);
    let s = '';
    while (uart.read(UART_LSR, 1) & UART_LSR_DR) s += String.fromCharCode(uart.read(UART_RBR, 1));
    expect(s).toBe('abcdefghij');
    expect(irq.level(10)).toBe(false);
  });

  it('keeps input beyond the FIFO instead of dropping it', () => {
    const { uart } = make();
    uart.write(UART_FCR, 1, 0x01);
    uart.receive(new Uint8Array(100).fill(0x61));
    let n = 0;
    while (uart.read(UART_LSR, 1) & UART_LSR_DR) {
      uart.read(UART_RBR, 1);
      n++;
    }
    expect(n).toBe(100);
  });

  it('clearing the receive FIFO drops only what is in it, not the host input still behind it', () => {
    const { uart } = make();
    uart.write(UART_FCR, 1, 0x01);
    uart.receive(Uint8Array.from({ length: 40 }, (_, i) => i));
    uart.write(UART_FCR, 1, 0x07); // enable, clear RCVR and XMIT: what Linux does when it opens the port
    const got: number[] = [];
    while (uart.read(UART_LSR, 1) & UART_LSR_DR) got.push(uart.read(UART_RBR, 1));
    expect(got).toEqual(Array.from({ length: 24 }, (_, i) => i + 16));
  });

  it('programs the divisor latch without disturbing data registers', () => {
    const { uart, out } = make();
    uart.write(UART_LCR, 1, 0x83);
    uart.write(UART_THR, 1, 0x01);
    uart.write(UART_IER, 1, 0x00);
    expect(uart.read(UART_RBR, 1)).toBe(0x01);
    uart.write(UART_LCR, 1, 0x03);
    expect(out).toEqual([]);
    uart.write(UART_SCR, 1, 0x5a);
    expect(uart.read(UART_SCR, 1)).toBe(0x5a);
  });

  it('loops transmitted bytes back in loopback mode', () => {
    const { uart, out } = make();
    uart.write(UART_MCR, 1, 0x10);
    uart.write(UART_THR, 1, 0x42);
    expect(out).toEqual([]);
    expect(uart.read(UART_LSR, 1) & UART_LSR_DR).toBe(UART_LSR_DR);
    expect(uart.read(UART_RBR, 1)).toBe(0x42);
  });

  it('ignores wide accesses and round-trips its state', () => {
    const { uart } = make();
    uart.write(UART_IER, 4, 0xff);
    expect(uart.read(UART_IER, 1)).toBe(0);
    uart.write(UART_IER, 1, UART_IER_RDI);
    uart.receive([1, 2, 3]);
    const s = uart.saveState();
    const { uart: u2, irq: irq2 } = make();
    u2.restore(JSON.parse(JSON.stringify(s)));
    expect(u2.saveState()).toEqual(s);
    expect(irq2.level(10)).toBe(true);
    expect(() => u2.restore({ ...s, rx: [300] })).toThrow(/UART state/);
  });
});
