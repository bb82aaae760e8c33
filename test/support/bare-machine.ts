/**
 * The smallest machine a hart can run test programs on: RAM at 0x8000_0000, a UART stub that
 * captures what the guest writes to THR, and the `sifive,test0` syscon that stops the hart on
 * 0x5555. It mirrors the part of QEMU's `virt` board the differential test uses, so the same
 * flat binary runs unchanged on both.
 */
import type { PhysicalMemory } from '../../src/cpu/memory.js';
import { allocateGuestRam } from '../../src/cpu/guest-ram.js';

export const BARE_RAM_BASE = 0x8000_0000;
export const BARE_UART_BASE = 0x1000_0000;
export const BARE_SYSCON_BASE = 0x0010_0000;

// NS16550A registers (offsets from the base), TI PC16550D datasheet §8.
const UART_THR = 0;
const UART_LSR = 5;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
// SiFive test finisher: a write of FINISHER_PASS powers off, FINISHER_RESET reboots.
const FINISHER_PASS = 0x5555;
const FINISHER_FAIL = 0x3333;
const FINISHER_RESET = 0x7777;

export type BareStop = 'poweroff' | 'fail' | 'reset';

export class BareMachine implements PhysicalMemory {
  readonly ramBase = BARE_RAM_BASE;
  readonly ram: Uint8Array;
  /** Bytes the guest wrote to the UART's THR. */
  private readonly out: number[] = [];
  /** How the guest stopped itself, if it did. */
  stopped: BareStop | undefined;
  /** Code of a FINISHER_FAIL write (value >> 16). */
  exitCode = 0;
  /** Called when the guest writes the syscon: the runner stops the hart here. */
  onStop: (() => void) | undefined;
  /** Accesses outside RAM, UART and syscon (the hart turns them into access faults). */
  unmappedAccesses = 0;

  constructor(ramBytes = 4 << 20) {
    if (ramBytes % 4096 !== 0) throw new Error('BareMachine: RAM size must be a multiple of 4096');
    this.ram = allocateGuestRam(ramBytes); // in a WebAssembly.Memory, so the JIT can run too
  }

  /** Copies an image to physical address `at` (RAM only). */
  load(image: Uint8Array, at = BARE_RAM_BASE): void {
    const off = at - BARE_RAM_BASE;
    if (off < 0 || off + image.length > this.ram.length) throw new Error('BareMachine: image does not fit in RAM');
    this.ram.set(image, off);
  }

  /** Everything written to the UART so far, as Latin-1 text. */
  uartText(): string {
    let s = '';
    for (let i = 0; i < this.out.length; i += 8192) s += String.fromCharCode(...this.out.slice(i, i + 8192));
    return s;
  }

  mmioRead(addr: number, size: 1 | 2 | 4): number | undefined {
    if (addr >= BARE_UART_BASE && addr < BARE_UART_BASE + 0x100) {
      // THR always empty: the stub transmits instantly.
      return addr - BARE_UART_BASE === UART_LSR ? LSR_THRE | LSR_TEMT : 0;
    }
    if (addr >= BARE_SYSCON_BASE && addr < BARE_SYSCON_BASE + 0x1000) return 0;
    this.unmappedAccesses++;
    void size;
    return undefined;
  }

  mmioWrite(addr: number, size: 1 | 2 | 4, value: number): boolean {
    if (addr >= BARE_UART_BASE && addr < BARE_UART_BASE + 0x100) {
      if (addr - BARE_UART_BASE === UART_THR) this.out.push(value & 0xff);
      return true;
    }
    if (addr >= BARE_SYSCON_BASE && addr < BARE_SYSCON_BASE + 0x1000) {
      if (addr === BARE_SYSCON_BASE && size >= 2) {
        const v = value & 0xffff;
        if (v === FINISHER_PASS) this.stop('poweroff');
        else if (v === FINISHER_FAIL) {
          this.exitCode = (value >>> 16) & 0xffff;
          this.stop('fail');
        } else if (v === FINISHER_RESET) this.stop('reset');
      }
      return true;
    }
    this.unmappedAccesses++;
    return false;
  }

  private stop(how: BareStop): void {
    this.stopped = how;
    this.onStop?.();
  }
}
