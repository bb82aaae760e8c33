/**
 * What the hart sees of the physical address space. RAM is handed over as a byte array so
 * the hart can load and store without a call per access; everything else goes through the
 * MMIO functions, which the machine's bus implements.
 */
export interface PhysicalMemory {
  /** Guest-physical address of ram[0] (0x8000_0000 on the virt board). */
  readonly ramBase: number;
  /** Guest RAM. Its byteOffset and length are multiples of 4096. */
  readonly ram: Uint8Array;
  /**
   * Reads `size` bytes at a physical address outside RAM. Returns undefined when nothing is
   * mapped there: the hart turns that into an access fault.
   */
  mmioRead(addr: number, size: 1 | 2 | 4): number | undefined;
  /** Writes outside RAM. Returns false when nothing is mapped there (access fault). */
  mmioWrite(addr: number, size: 1 | 2 | 4, value: number): boolean;
}
