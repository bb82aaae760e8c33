import { describe, expect, it } from 'vitest';
import { loadKernel, parseKernel } from './kernel.js';
import { placeBootData } from './layout.js';
import { buildResetRom, Rom } from './rom.js';

const RAM = { loadAddr: 0x8020_0000, ramBase: 0x8000_0000, ramSize: 64 << 20 };

/** A RISC-V Image header (boot-image-header.rst), optionally with an EFI PE header. */
function image(opts: { size?: number; peMachine?: number; flags?: number } = {}): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x0000006f, true); // j .
  dv.setBigUint64(0x08, 0x200000n, true);
  dv.setBigUint64(0x10, BigInt(opts.size ?? 0x10000), true);
  dv.setBigUint64(0x18, BigInt(opts.flags ?? 0), true);
  b.set(new TextEncoder().encode('RISCV\0\0\0'), 0x30);
  b.set(new TextEncoder().encode('RSC\x05'), 0x38);
  if (opts.peMachine !== undefined) {
    b[0] = 0x4d;
    b[1] = 0x5a;
    dv.setUint32(0x3c, 0x40, true);
    dv.setUint32(0x40, 0x00004550, true);
    dv.setUint16(0x44, opts.peMachine, true);
  }
  b[0x100] = 0xab;
  return b;
}

/** A minimal ELF with one PT_LOAD segment. */
function elf(opts: { cls?: number; machine?: number; paddr: bigint; entry: bigint }): Uint8Array {
  const b = new Uint8Array(0x200);
  const dv = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, opts.cls ?? 2, 1, 1], 0);
  dv.setUint16(0x12, opts.machine ?? 243, true);
  dv.setBigUint64(0x18, opts.entry, true);
  dv.setBigUint64(0x20, 0x40n, true);
  dv.setUint16(0x36, 56, true);
  dv.setUint16(0x38, 1, true);
  dv.setUint32(0x40, 1, true);
  dv.setBigUint64(0x48, 0x100n, true);
  dv.setBigUint64(0x50, opts.paddr, true);
  dv.setBigUint64(0x58, opts.paddr, true);
  dv.setBigUint64(0x60, 0x100n, true);
  dv.setBigUint64(0x68, 0x2000n, true);
  b.fill(0x5a, 0x100, 0x200);
  return b;
}

describe('parseKernel', () => {
  it('loads a RISC-V Image (with and without the EFI stub) at the load address', () => {
    for (const k of [image(), image({ peMachine: 0x5064 })]) {
      const p = parseKernel(k, RAM);
      expect(p).toMatchObject({ format: 'image', entry: 0x8020_0000, start: 0x8020_0000, end: 0x8021_0000 });
      const ram = new Uint8Array(RAM.ramSize).fill(0xff);
      loadKernel(p, ram, RAM.ramBase);
      expect(ram[0x20_0100]).toBe(0xab);
      expect(ram[0x20_f000]).toBe(0); // bss zeroed
    }
  });

  it('relocates a vmlinux linked at a virtual address, keeps a physical ELF where it is', () => {
    const v = parseKernel(elf({ paddr: 0xffffffff80000000n, entry: 0xffffffff80000000n }), RAM);
    expect(v).toMatchObject({ format: 'elf', entry: 0x8020_0000, start: 0x8020_0000, end: 0x8020_2000 });
    const p = parseKernel(elf({ paddr: 0x8000_0000n, entry: 0x8000_0010n }), RAM);
    expect(p).toMatchObject({ entry: 0x8000_0010, start: 0x8000_0000 });
  });

  it('names what it found when the file is no 64-bit RISC-V kernel', () => {
    const cases: [Uint8Array, RegExp][] = [
      [elf({ machine: 62, paddr: 0n, entry: 0n }), /ELF file for x86-64, not RISC-V/],
      [elf({ machine: 183, paddr: 0n, entry: 0n }), /ELF file for ARM64/],
      [elf({ cls: 1, paddr: 0n, entry: 0n }), /32-bit RISC-V ELF/],
      [image({ peMachine: 0x5032 }), /RISC-V Image built for RISC-V 32-bit/],
      [image({ flags: 1 }), /big-endian/],
      [new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]), /gzip-compressed/],
      [new Uint8Array(64), /no known kernel format/],
      [new Uint8Array(0), /empty file/],
    ];
    const arm = new Uint8Array(0x100);
    new DataView(arm.buffer).setUint32(0x38, 0x644d5241, true);
    cases.push([arm, /ARM64 Linux Image/]);
    const bz = new Uint8Array(0x400);
    bz.set(new TextEncoder().encode('HdrS'), 0x202);
    cases.push([bz, /x86 Linux bzImage/]);
    const pe = image({ peMachine: 0x8664 });
    pe.fill(0, 0x30, 0x3c);
    cases.push([pe, /PE\/EFI executable for x86-64/]);
    for (const [bytes, re] of cases) {
      expect(() => parseKernel(bytes, { ...RAM, name: 'k' })).toThrow(re);
    }
  });

  it('rejects a kernel larger than RAM', () => {
    expect(() => parseKernel(image({ size: 100 << 20 }), RAM)).toThrow(/does not fit in RAM/);
  });
});

describe('boot layout and ROM', () => {
  it('puts the DTB 2 MiB aligned at the top and the initrd below it', () => {
    const l = placeBootData({ ramBase: 0x8000_0000, ramSize: 512 << 20, kernelEnd: 0x8200_0000, dtbSize: 0x2000, initrdSize: 0x12345 });
    expect(l.dtbAddr).toBe(0x9fe0_0000);
    expect(l.initrd).toEqual({ start: 0x9fde_d000, end: 0x9fde_d000 + 0x12345 });
    expect(() => placeBootData({ ramBase: 0x8000_0000, ramSize: 16 << 20, kernelEnd: 0x8100_0000, dtbSize: 0x2000, initrdSize: 8 << 20 })).toThrow(/do not fit/);
  });

  it('lays out the reset vector and fw_dynamic_info', () => {
    const rom = new Rom('mrom', buildResetRom({ firmwareEntry: 0x8000_0000, dtbAddr: 0x9fe0_0000, kernelEntry: 0x8020_0000 }));
    expect(rom.read(0, 4)).toBe(0x00000297);
    expect(rom.read(0x18, 4) >>> 0).toBe(0x8000_0000);
    expect(rom.read(0x20, 4) >>> 0).toBe(0x9fe0_0000);
    expect(rom.read(0x28, 4)).toBe(0x4942534f);
    expect(rom.read(0x38, 4) >>> 0).toBe(0x8020_0000);
    expect(rom.read(0x1000, 4)).toBe(0);
  });
});
