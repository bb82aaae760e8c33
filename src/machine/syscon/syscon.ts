import type { AccessSize, MmioDevice } from '../../base/mmio.js';

/**
 * SiFive test finisher (`sifive,test0`, QEMU hw/misc/sifive_test.c), exposed to Linux as a
 * syscon with syscon-poweroff (0x5555) and syscon-reboot (0x7777) nodes. The low 16 bits of a
 * 32-bit write at offset 0 select the action; for FINISHER_FAIL the high 16 bits are the code.
 */
export const FINISHER_FAIL = 0x3333;
export const FINISHER_PASS = 0x5555;
export const FINISHER_RESET = 0x7777;

export type SysconEvent = { kind: 'poweroff' } | { kind: 'reboot' } | { kind: 'fail'; code: number };

export class Syscon implements MmioDevice {
  readonly name = 'syscon';
  onEvent: (e: SysconEvent) => void = () => {};

  read(_offset: number, _size: AccessSize): number {
    return 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (offset !== 0 || size !== 4) return;
    const status = value & 0xffff;
    if (status === FINISHER_PASS) this.onEvent({ kind: 'poweroff' });
    else if (status === FINISHER_RESET) this.onEvent({ kind: 'reboot' });
    else if (status === FINISHER_FAIL) this.onEvent({ kind: 'fail', code: (value >>> 16) & 0xffff });
  }
}
