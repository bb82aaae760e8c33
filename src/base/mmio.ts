/**
 * Memory-mapped I/O, the contract between the bus and every device.
 *
 * Devices see offsets relative to their own base. Accesses are 1, 2 or 4 bytes: the bus
 * splits an 8-byte access into two 4-byte ones (low word first, at offset and offset+4), so
 * a device whose 64-bit register must read consistently (CLINT mtime) latches on the low half.
 * A device never throws on a guest access: unknown offsets read as zero and ignore writes
 * (RAZ/WI), and the device counts them if it wants. Only unmapped addresses are access faults,
 * and those are decided by the bus, not the device.
 */
export type AccessSize = 1 | 2 | 4;

export interface MmioDevice {
  /** Short name for logs and the device tree (e.g. "uart0"). */
  readonly name: string;
  /** Returns the value zero-extended to `size` bytes (4-byte reads may return it signed). */
  read(offset: number, size: AccessSize): number;
  write(offset: number, size: AccessSize, value: number): void;
}

/** A level-triggered interrupt input: the PLIC implements it, devices drive it. */
export interface IrqSink {
  setIrq(source: number, level: boolean): void;
}
