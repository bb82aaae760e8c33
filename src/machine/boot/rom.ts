import type { AccessSize, MmioDevice } from '../../base/mmio.js';

/**
 * The reset vector at 0x1000, as QEMU's riscv_setup_rom_reset_vec() lays it out, so OpenSBI's
 * fw_jump and fw_dynamic see the registers they expect:
 *   a0 = mhartid, a1 = DTB address, a2 = &fw_dynamic_info, then jump to the firmware.
 */
export const FW_DYNAMIC_INFO_MAGIC_VALUE = 0x4942534f; // "OSBI"
export const FW_DYNAMIC_INFO_VERSION = 2;
export const FW_DYNAMIC_INFO_NEXT_MODE_S = 1;

/** Offsets inside the ROM. */
export const ROM_START_ADDR = 0x18;
export const ROM_FDT_ADDR = 0x20;
export const ROM_FW_DYNAMIC_INFO = 0x28;

const RESET_VEC = [
  0x00000297, // auipc t0, 0            t0 = 0x1000
  0x02828613, // addi  a2, t0, 40       a2 = &fw_dynamic_info
  0xf1402573, // csrr  a0, mhartid
  0x0202b583, // ld    a1, 32(t0)       DTB
  0x0182b283, // ld    t0, 24(t0)       firmware entry
  0x00028067, // jr    t0
];

export function buildResetRom(opts: { firmwareEntry: number; dtbAddr: number; kernelEntry: number }): Uint8Array {
  const rom = new Uint8Array(ROM_FW_DYNAMIC_INFO + 6 * 8);
  const dv = new DataView(rom.buffer);
  RESET_VEC.forEach((insn, i) => dv.setUint32(i * 4, insn, true));
  dv.setBigUint64(ROM_START_ADDR, BigInt(opts.firmwareEntry), true);
  dv.setBigUint64(ROM_FDT_ADDR, BigInt(opts.dtbAddr), true);
  // struct fw_dynamic_info (OpenSBI include/sbi/fw_dynamic.h): magic, version, next_addr,
  // next_mode, options, boot_hart — each an unsigned long.
  const info = ROM_FW_DYNAMIC_INFO;
  dv.setBigUint64(info, BigInt(FW_DYNAMIC_INFO_MAGIC_VALUE), true);
  dv.setBigUint64(info + 8, BigInt(FW_DYNAMIC_INFO_VERSION), true);
  dv.setBigUint64(info + 16, BigInt(opts.kernelEntry), true);
  dv.setBigUint64(info + 24, BigInt(FW_DYNAMIC_INFO_NEXT_MODE_S), true);
  dv.setBigUint64(info + 32, 0n, true);
  dv.setBigUint64(info + 40, 0n, true); // boot_hart: hart 0
  return rom;
}

/** A read-only memory window; writes are ignored (RAZ/WI beyond its contents). */
export class Rom implements MmioDevice {
  readonly name: string;
  private readonly dv: DataView;
  constructor(name: string, private readonly bytes: Uint8Array) {
    this.name = name;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  read(offset: number, size: AccessSize): number {
    if (offset + size > this.bytes.length) return 0;
    return size === 1 ? this.bytes[offset]! : size === 2 ? this.dv.getUint16(offset, true) : this.dv.getUint32(offset, true);
  }
  write(): void {}
}
