/**
 * Debian's riscv64 modules keep the assembler's local labels (`.L…`) in their symbol tables:
 * RISC-V's `%pcrel_lo` relocations name the label of their `auipc`, so the linker cannot drop
 * them. ext4.ko has 212 769 of its 216 898 symbols so. The kernel's module loader measures,
 * copies and keeps the name of every one (layout_symtab, add_kallsyms), then ignores them in
 * every lookup (is_mapping_symbol), and /proc/kallsyms lists them all: 290 000 lines of noise.
 *
 * The builder gives those symbols an empty name (st_name 0). Nothing else changes: the symbol
 * keeps its index, value and section, so the relocations that name it resolve as before, and
 * the file keeps its size and layout; the loader then skips them as symbols without a name
 * (is_core_symbol). Measured on `visor run --image debian -- true`: 52 M fewer guest
 * instructions in the initramfs (235 → 183 M), docs/benchmarks.md "Session 9".
 */
import { badModule } from './module-signature.js';

const SHT_SYMTAB = 2;
const STB_LOCAL = 0;
const ELF64_SHDR_SIZE = 64;
const ELF64_SYM_SIZE = 24;

/**
 * A copy of the module with its local `.L` symbols unnamed (`ko` itself when it has none).
 * `name` is for the error when the file is not a well-formed little-endian ELF64 object.
 */
export function unnameAssemblerLabels(ko: Uint8Array, name: string): { ko: Uint8Array; unnamed: number } {
  const bad = (what: string) => badModule(name, what);
  if (ko.length < 64 || ko[0] !== 0x7f || ko[1] !== 0x45 || ko[2] !== 0x4c || ko[3] !== 0x46) throw bad('not an ELF object');
  if (ko[4] !== 2 || ko[5] !== 1) throw bad('not a little-endian 64-bit ELF object (riscv64 modules are)');
  const view = new DataView(ko.buffer, ko.byteOffset, ko.byteLength);
  const shoff = Number(view.getBigUint64(0x28, true));
  const shentsize = view.getUint16(0x3a, true);
  const shnum = view.getUint16(0x3c, true);
  if (shentsize !== ELF64_SHDR_SIZE || shoff + shnum * shentsize > ko.length) throw bad('section headers outside the file');
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      type: view.getUint32(at + 4, true),
      offset: Number(view.getBigUint64(at + 24, true)),
      size: Number(view.getBigUint64(at + 32, true)),
      link: view.getUint32(at + 40, true),
      entsize: Number(view.getBigUint64(at + 56, true)),
    };
  };
  let out: Uint8Array | undefined;
  let outView: DataView | undefined;
  let unnamed = 0;
  for (let i = 0; i < shnum; i++) {
    const symtab = section(i);
    if (symtab.type !== SHT_SYMTAB) continue;
    if (symtab.entsize !== ELF64_SYM_SIZE || symtab.offset + symtab.size > ko.length || symtab.link >= shnum) throw bad('a symbol table outside the file');
    const strtab = section(symtab.link);
    if (strtab.offset + strtab.size > ko.length) throw bad('a string table outside the file');
    for (let at = symtab.offset; at + ELF64_SYM_SIZE <= symtab.offset + symtab.size; at += ELF64_SYM_SIZE) {
      const nameOff = view.getUint32(at, true);
      if (nameOff === 0 || ko[at + 4]! >> 4 !== STB_LOCAL || nameOff + 2 > strtab.size) continue;
      const s = strtab.offset + nameOff;
      if (ko[s] !== 0x2e || ko[s + 1] !== 0x4c) continue; // ".L"
      if (out === undefined) {
        out = ko.slice();
        outView = new DataView(out.buffer, out.byteOffset, out.byteLength);
      }
      outView!.setUint32(at, 0, true);
      unnamed++;
    }
  }
  return { ko: out ?? ko, unnamed };
}
