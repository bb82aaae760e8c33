import { VisorError } from '../../base/errors.js';
import type { AccessSize, IrqSink, MmioDevice } from '../../base/mmio.js';

/**
 * NS16550A UART, enough for Linux's 8250 driver and earlycon (uart8250,mmio / stdout-path).
 * Register map (PC16550D datasheet, reg-shift 0, 1-byte registers):
 *   0 RBR/THR (DLL when LCR.DLAB)   1 IER (DLM when DLAB)   2 IIR (read) / FCR (write)
 *   3 LCR   4 MCR   5 LSR   6 MSR   7 SCR
 * Transmission is instantaneous: a THR write goes straight to the output sink, so THR is empty
 * again at once and the THRE interrupt re-arms (as QEMU's serial does).
 */
export const UART_RBR = 0;
export const UART_THR = 0;
export const UART_IER = 1;
export const UART_IIR = 2;
export const UART_FCR = 2;
export const UART_LCR = 3;
export const UART_MCR = 4;
export const UART_LSR = 5;
export const UART_MSR = 6;
export const UART_SCR = 7;

export const UART_IER_RDI = 0x01; // receive data available
export const UART_IER_THRI = 0x02; // transmitter holding register empty
export const UART_IER_RLSI = 0x04; // receiver line status
export const UART_IER_MSI = 0x08; // modem status

export const UART_IIR_NO_INT = 0x01;
export const UART_IIR_MSI = 0x00;
export const UART_IIR_THRI = 0x02;
export const UART_IIR_RDI = 0x04;
export const UART_IIR_RLSI = 0x06;
export const UART_IIR_RX_TIMEOUT = 0x0c;
export const UART_IIR_FIFO_ENABLED = 0xc0;

export const UART_FCR_ENABLE_FIFO = 0x01;
export const UART_FCR_CLEAR_RCVR = 0x02;
export const UART_FCR_CLEAR_XMIT = 0x04;

export const UART_LCR_DLAB = 0x80;
export const UART_MCR_LOOP = 0x10;

export const UART_LSR_DR = 0x01;
export const UART_LSR_OE = 0x02;
export const UART_LSR_BI = 0x10;
export const UART_LSR_THRE = 0x20;
export const UART_LSR_TEMT = 0x40;

const FIFO_SIZE = 16;
const RX_TRIGGER = [1, 4, 8, 14];

export interface UartState {
  version: 1;
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  fcr: number;
  dll: number;
  dlm: number;
  lsrErrors: number;
  thrInterruptPending: boolean;
  rx: number[];
}

export class Uart16550 implements MmioDevice {
  readonly name = 'uart0';
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private fcr = 0;
  private dll = 0x0c; // 9600 baud at 1.8432 MHz, the reset value firmware expects
  private dlm = 0;
  /** Sticky line-status error bits (OE, BI), cleared by reading LSR. */
  private lsrErrors = 0;
  /** THRE interrupt latch: set when THR empties, cleared by reading IIR (while it is the cause) or writing THR. */
  private thrInterruptPending = false;
  /**
   * Receive queue. The first FIFO_SIZE (or 1 without FIFO) bytes model the hardware FIFO; host
   * input beyond that waits behind it instead of being dropped, so a paste never loses data.
   */
  private rx: number[] = [];
  private irqLevel = false;

  /** Bytes the guest writes (THR). */
  onTransmit: (byte: number) => void = () => {};
  /** Called when the guest drained receive space, so a host feeding in chunks may send more. */
  onReceiveSpace: () => void = () => {};

  constructor(
    private readonly irq: IrqSink,
    private readonly irqSource: number,
  ) {}

  /** Host input (keyboard, pipe). */
  receive(bytes: Uint8Array | readonly number[]): void {
    for (const b of bytes) this.rx.push(b & 0xff);
    this.update();
  }

  /** Bytes waiting for the guest to read. */
  get pendingInput(): number {
    return this.rx.length;
  }

  private get fifoEnabled(): boolean {
    return (this.fcr & UART_FCR_ENABLE_FIFO) !== 0;
  }

  private lsr(): number {
    let v = UART_LSR_THRE | UART_LSR_TEMT | this.lsrErrors;
    if (this.rx.length > 0) v |= UART_LSR_DR;
    return v;
  }

  /** The highest-priority pending interrupt cause, as IIR reports it (§ Interrupt Identification). */
  private cause(): number {
    if (this.ier & UART_IER_RLSI && this.lsrErrors !== 0) return UART_IIR_RLSI;
    if (this.ier & UART_IER_RDI && this.rx.length > 0) {
      // Below the trigger level the 16550 reports a character timeout after 4 character times;
      // we report it at once: the driver treats both the same way (drain until !DR).
      if (!this.fifoEnabled) return UART_IIR_RDI;
      const trigger = RX_TRIGGER[(this.fcr >> 6) & 3]!;
      return Math.min(this.rx.length, FIFO_SIZE) >= trigger ? UART_IIR_RDI : UART_IIR_RX_TIMEOUT;
    }
    if (this.ier & UART_IER_THRI && this.thrInterruptPending) return UART_IIR_THRI;
    return UART_IIR_NO_INT;
  }

  private update(): void {
    const level = this.cause() !== UART_IIR_NO_INT;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.setIrq(this.irqSource, level);
    }
  }

  read(offset: number, size: AccessSize): number {
    if (size !== 1 && offset !== 0) return 0;
    switch (offset) {
      case UART_RBR: {
        if (this.lcr & UART_LCR_DLAB) return this.dll;
        const b = this.rx.shift();
        this.update();
        if (b !== undefined && this.rx.length < FIFO_SIZE) this.onReceiveSpace();
        return b ?? 0;
      }
      case UART_IER:
        return this.lcr & UART_LCR_DLAB ? this.dlm : this.ier;
      case UART_IIR: {
        const c = this.cause();
        // Reading IIR acknowledges a THRE interrupt when it is the reported cause.
        if (c === UART_IIR_THRI) {
          this.thrInterruptPending = false;
          this.update();
        }
        return c | (this.fifoEnabled ? UART_IIR_FIFO_ENABLED : 0);
      }
      case UART_LCR:
        return this.lcr;
      case UART_MCR:
        return this.mcr;
      case UART_LSR: {
        const v = this.lsr();
        if (this.lsrErrors !== 0) {
          this.lsrErrors = 0;
          this.update();
        }
        return v;
      }
      case UART_MSR:
        // Loopback wires OUT2/OUT1/RTS/DTR back to DCD/RI/CTS/DSR; otherwise report a connected
        // modem (DCD|DSR|CTS) so tty layers never wait for carrier.
        if (this.mcr & UART_MCR_LOOP) {
          const m = this.mcr;
          return ((m & 0x08) << 4) | ((m & 0x04) << 4) | ((m & 0x02) << 3) | ((m & 0x01) << 5);
        }
        return 0xb0;
      case UART_SCR:
        return this.scr;
      default:
        return 0;
    }
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (size !== 1 && offset !== 0) return;
    value &= 0xff;
    switch (offset) {
      case UART_THR:
        if (this.lcr & UART_LCR_DLAB) {
          this.dll = value;
          return;
        }
        if (this.mcr & UART_MCR_LOOP) {
          this.rx.push(value);
        } else {
          this.onTransmit(value);
        }
        // The character left at once: THR is empty again, which raises THRE anew.
        this.thrInterruptPending = true;
        this.update();
        return;
      case UART_IER: {
        if (this.lcr & UART_LCR_DLAB) {
          this.dlm = value;
          return;
        }
        const old = this.ier;
        this.ier = value & 0x0f;
        // Enabling ETBEI while THR is empty raises THRE at once (Linux's THRE test relies on it).
        if ((this.ier & UART_IER_THRI) !== 0 && (old & UART_IER_THRI) === 0) this.thrInterruptPending = true;
        this.update();
        return;
      }
      case UART_FCR:
        // Clears the FIFO only: the host's backlog behind it is still "on the wire" and arrives
        // after (Linux clears the FIFO when it opens the port; piped input must survive that).
        if (value & UART_FCR_CLEAR_RCVR) this.rx.splice(0, this.fifoEnabled ? FIFO_SIZE : 1);
        this.fcr = value & 0xc1;
        this.update();
        return;
      case UART_LCR:
        this.lcr = value;
        return;
      case UART_MCR:
        this.mcr = value & 0x1f;
        return;
      case UART_SCR:
        this.scr = value;
        return;
      default:
        return; // LSR and MSR are read-only
    }
  }

  saveState(): UartState {
    return {
      version: 1,
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      fcr: this.fcr,
      dll: this.dll,
      dlm: this.dlm,
      lsrErrors: this.lsrErrors,
      thrInterruptPending: this.thrInterruptPending,
      rx: [...this.rx],
    };
  }

  restore(s: UartState): void {
    const byte = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xff;
    if (
      s.version !== 1 ||
      ![s.ier, s.lcr, s.mcr, s.scr, s.fcr, s.dll, s.dlm, s.lsrErrors].every(byte) ||
      typeof s.thrInterruptPending !== 'boolean' ||
      !Array.isArray(s.rx) ||
      !s.rx.every(byte)
    ) {
      throw new VisorError('InvalidArgument', 'invalid UART state');
    }
    this.ier = s.ier;
    this.lcr = s.lcr;
    this.mcr = s.mcr;
    this.scr = s.scr;
    this.fcr = s.fcr;
    this.dll = s.dll;
    this.dlm = s.dlm;
    this.lsrErrors = s.lsrErrors;
    this.thrInterruptPending = s.thrInterruptPending;
    this.rx = [...s.rx];
    this.irqLevel = false;
    this.update();
  }
}
