/**
 * The virt board's physical memory map, as QEMU's hw/riscv/virt.c lays it out
 * (virt_memmap[]), so firmware and kernels built for QEMU run unmodified.
 */
export const VIRT_MEMMAP = {
  mrom: { base: 0x0000_1000, size: 0xf000 },
  test: { base: 0x0010_0000, size: 0x1000 },
  rtc: { base: 0x0010_1000, size: 0x1000 },
  clint: { base: 0x0200_0000, size: 0x10000 },
  plic: { base: 0x0c00_0000, size: 0x600000 },
  uart: { base: 0x1000_0000, size: 0x100 },
  /** Slot n at base + n*size. */
  virtio: { base: 0x1000_1000, size: 0x1000, count: 8 },
  dram: { base: 0x8000_0000 },
} as const;

/** PLIC interrupt sources (QEMU virt: UART0_IRQ 10, RTC_IRQ 11, VIRTIO_IRQ 1-8). */
export const VIRT_IRQ = {
  virtio0: 1,
  uart: 10,
  rtc: 11,
} as const;
