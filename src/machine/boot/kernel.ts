import { VisorError } from '../../base/errors.js';

/**
 * Kernel formats the board loads: the RISC-V Linux `Image` (Documentation/arch/riscv/boot-image-header.rst,
 * with or without the EFI stub, which makes the file also a PE image) and ELF64 executables
 * (vmlinux, bare-metal programs). Anything else is rejected with a message naming what the
 * file looks like, so a user who passes an x86 bzImage or a gzip'd vmlinuz knows why.
 */

/** "RISCV\0\0\0" at offset 0x30 (deprecated magic, still written). */
export const RISCV_IMAGE_MAGIC = 0x5643534952n; // little-endian u64 of "RISCV\0\0\0"
/** "RSC\x05" at offset 0x38. */
export const RISCV_IMAGE_MAGIC2 = 0x05435352;
const ARM64_IMAGE_MAGIC = 0x644d5241; // "ARM\x64" at 0x38
const EM_RISCV = 243;
const PT_LOAD = 1;

const PE_MACHINES: Record<number, string> = {
  0x5064: 'RISC-V 64-bit',
  0x5032: 'RISC-V 32-bit',
  0x5128: 'RISC-V 128-bit',
  0x8664: 'x86-64',
  0x014c: 'x86 (32-bit)',
  0xaa64: 'ARM64',
  0x01c2: 'ARM (32-bit)',
  0x01c4: 'ARM (32-bit)',
  0x6264: 'LoongArch 64-bit',
};

const ELF_MACHINES: Record<number, string> = {
  3: 'x86 (32-bit)',
  8: 'MIPS',
  20: 'PowerPC',
  21: 'PowerPC 64-bit',
  22: 'S/390',
  40: 'ARM (32-bit)',
  62: 'x86-64',
  183: 'ARM64',
  243: 'RISC-V',
  258: 'LoongArch',
};

/** A kernel ready to copy into RAM: segments at guest-physical addresses. */
export interface LoadedKernel {
  format: 'image' | 'elf';
  /** Guest-physical entry point. */
  entry: number;
  /** Lowest and one-past-highest guest-physical address the kernel occupies (bss included). */
  start: number;
  end: number;
  segments: { addr: number; data: Uint8Array; memSize: number }[];
}

function describeUnknown(b: Uint8Array): string {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'a gzip-compressed file (decompress the kernel first, e.g. `zcat vmlinuz > Image`)';
  if (b.length >= 4 && dv.getUint32(0, true) === 0xfd2fb528) return 'a zstd-compressed file (decompress the kernel first)';
  if (b.length >= 6 && b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58 && b[4] === 0x5a) return 'an xz-compressed file (decompress the kernel first)';
  if (b.length >= 0x206 && dv.getUint32(0x202, true) === 0x53726448) return 'an x86 Linux bzImage';
  if (b.length >= 0x3c && dv.getUint32(0x38, true) === ARM64_IMAGE_MAGIC) return 'an ARM64 Linux Image';
  if (b.length >= 0x40 && b[0] === 0x4d && b[1] === 0x5a) {
    const pe = dv.getUint32(0x3c, true);
    if (pe + 6 <= b.length && dv.getUint32(pe, true) === 0x00004550) {
      const m = dv.getUint16(pe + 4, true);
      return `a PE/EFI executable for ${PE_MACHINES[m] ?? `machine 0x${m.toString(16)}`}`;
    }
    return 'a DOS/PE executable';
  }
  if (b.length >= 4 && b[0] === 0x07 && b[1] === 0x07) return 'an initramfs (cpio archive), not a kernel';
  if (b.length >= 6 && String.fromCharCode(...b.subarray(0, 6)) === '070701') return 'an initramfs (cpio archive), not a kernel';
  if (b.length === 0) return 'an empty file';
  const head = [...b.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  return `no known kernel format (first bytes: ${head})`;
}

/** True when the file carries the RISC-V Image header. */
function isRiscvImage(b: Uint8Array): boolean {
  if (b.length < 0x40) return false;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return dv.getBigUint64(0x30, true) === RISCV_IMAGE_MAGIC || dv.getUint32(0x38, true) === RISCV_IMAGE_MAGIC2;
}

function parseImage(b: Uint8Array, loadAddr: number, what: string): LoadedKernel {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  // An EFI-stub Image is also a PE file: its machine field tells RV64 from RV32 (the Image
  // header itself has no XLEN field).
  if (b[0] === 0x4d && b[1] === 0x5a) {
    const pe = dv.getUint32(0x3c, true);
    if (pe + 6 <= b.length && dv.getUint32(pe, true) === 0x00004550) {
      const m = dv.getUint16(pe + 4, true);
      if (m !== 0x5064) {
        throw new VisorError('BadKernel', `${what}: a RISC-V Image built for ${PE_MACHINES[m] ?? `PE machine 0x${m.toString(16)}`}; visor runs 64-bit RISC-V kernels only`);
      }
    }
  }
  const flags = dv.getBigUint64(0x18, true);
  if (flags & 1n) throw new VisorError('BadKernel', `${what}: a big-endian RISC-V Image; visor runs little-endian kernels only`);
  const imageSize = Number(dv.getBigUint64(0x10, true));
  // image_size is the memory the kernel needs (bss included); 0 in very old headers.
  const memSize = Math.max(imageSize, b.length);
  return {
    format: 'image',
    entry: loadAddr,
    start: loadAddr,
    end: loadAddr + memSize,
    segments: [{ addr: loadAddr, data: b, memSize }],
  };
}

function parseElf(b: Uint8Array, loadAddr: number, ramBase: number, ramSize: number, what: string): LoadedKernel {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const cls = b[4];
  if (b[5] !== 1) throw new VisorError('BadKernel', `${what}: a big-endian ELF file; visor runs little-endian RISC-V kernels only`);
  const machine = dv.getUint16(0x12, true);
  const arch = ELF_MACHINES[machine] ?? `machine ${machine}`;
  if (machine !== EM_RISCV) throw new VisorError('BadKernel', `${what}: an ELF file for ${arch}, not RISC-V`);
  if (cls !== 2) throw new VisorError('BadKernel', `${what}: a 32-bit RISC-V ELF file; visor runs 64-bit (RV64) kernels only`);
  if (b.length < 64) throw new VisorError('BadKernel', `${what}: a truncated ELF file`);
  const entry = dv.getBigUint64(0x18, true);
  const phoff = Number(dv.getBigUint64(0x20, true));
  const phentsize = dv.getUint16(0x36, true);
  const phnum = dv.getUint16(0x38, true);
  if (phoff + phnum * phentsize > b.length || phentsize < 56) throw new VisorError('BadKernel', `${what}: ELF program headers lie outside the file`);
  const loads: { paddr: bigint; vaddr: bigint; off: number; filesz: number; memsz: number }[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (dv.getUint32(p, true) !== PT_LOAD) continue;
    const off = Number(dv.getBigUint64(p + 8, true));
    const filesz = Number(dv.getBigUint64(p + 0x20, true));
    const memsz = Number(dv.getBigUint64(p + 0x28, true));
    if (off + filesz > b.length || filesz > memsz) throw new VisorError('BadKernel', `${what}: ELF segment ${i} lies outside the file`);
    if (memsz === 0) continue;
    loads.push({ paddr: dv.getBigUint64(p + 0x18, true), vaddr: dv.getBigUint64(p + 0x10, true), off, filesz, memsz });
  }
  if (loads.length === 0) throw new VisorError('BadKernel', `${what}: an ELF file with nothing to load`);
  const ramEnd = BigInt(ramBase + ramSize);
  const inRam = loads.every((l) => l.paddr >= BigInt(ramBase) && l.paddr + BigInt(l.memsz) <= ramEnd);
  // vmlinux links at a virtual address (0xffffffff80000000) with paddr == vaddr: like QEMU we
  // place it at the kernel load address, keeping the segments' relative layout.
  const minPaddr = loads.reduce((m, l) => (l.paddr < m ? l.paddr : m), loads[0]!.paddr);
  const minVaddr = loads.reduce((m, l) => (l.vaddr < m ? l.vaddr : m), loads[0]!.vaddr);
  const delta = inRam ? 0n : BigInt(loadAddr) - minPaddr;
  const segments = loads.map((l) => ({ addr: Number(l.paddr + delta), data: b.subarray(l.off, l.off + l.filesz), memSize: l.memsz }));
  let entryPa: bigint;
  if (inRam) entryPa = entry;
  else if (entry >= minVaddr && entry - minVaddr < 1n << 32n) entryPa = entry - minVaddr + BigInt(loadAddr);
  else entryPa = entry + delta;
  const start = Math.min(...segments.map((s) => s.addr));
  const end = Math.max(...segments.map((s) => s.addr + s.memSize));
  return { format: 'elf', entry: Number(entryPa), start, end, segments };
}

/**
 * Parses a kernel file. `loadAddr` is where an Image (or a relocated vmlinux) goes: 2 MiB
 * aligned, 0x8020_0000 on the virt board. Throws BadKernel naming what the file is otherwise.
 */
export function parseKernel(bytes: Uint8Array, opts: { loadAddr: number; ramBase: number; ramSize: number; name?: string }): LoadedKernel {
  const what = opts.name ?? 'kernel';
  let k: LoadedKernel;
  if (bytes.length >= 20 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) {
    k = parseElf(bytes, opts.loadAddr, opts.ramBase, opts.ramSize, what);
  } else if (isRiscvImage(bytes)) {
    k = parseImage(bytes, opts.loadAddr, what);
  } else {
    throw new VisorError('BadKernel', `${what} is not a RISC-V kernel: found ${describeUnknown(bytes)}`);
  }
  if (k.start < opts.ramBase || k.end > opts.ramBase + opts.ramSize) {
    const mib = Math.ceil((k.end - opts.ramBase) / (1 << 20));
    throw new VisorError('InvalidConfig', `${what} does not fit in RAM: it needs at least ${mib} MiB from 0x${opts.ramBase.toString(16)}`);
  }
  return k;
}

/** Copies a parsed kernel into RAM (zero-filling bss). */
export function loadKernel(k: LoadedKernel, ram: Uint8Array, ramBase: number): void {
  for (const s of k.segments) {
    const off = s.addr - ramBase;
    ram.set(s.data, off);
    ram.fill(0, off + s.data.length, off + s.memSize);
  }
}
