import { describe, expect, it } from 'vitest';
import { unnameAssemblerLabels } from './module-symbols.js';

/** A minimal ELF64 little-endian relocatable object: null, .strtab and .symtab sections. */
function elf(symbols: { name: string; bind: number }[]): Uint8Array & { symOff?: number } {
  const names = ['', ...symbols.map((s) => s.name)];
  const strtab: number[] = [0];
  const offsets = names.map((n) => {
    if (n === '') return 0;
    const at = strtab.length;
    strtab.push(...new TextEncoder().encode(n), 0);
    return at;
  });
  const strOff = 64;
  const symOff = strOff + strtab.length + ((8 - (strtab.length % 8)) % 8);
  const symSize = 24 * names.length;
  const shOff = symOff + symSize;
  const b = new Uint8Array(shOff + 3 * 64);
  const v = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  v.setBigUint64(0x28, BigInt(shOff), true);
  v.setUint16(0x3a, 64, true);
  v.setUint16(0x3c, 3, true);
  b.set(strtab, strOff);
  names.forEach((_, i) => {
    v.setUint32(symOff + 24 * i, offsets[i]!, true);
    if (i > 0) b[symOff + 24 * i + 4] = (symbols[i - 1]!.bind << 4) | 2;
    v.setBigUint64(symOff + 24 * i + 8, BigInt(0x100 * i), true); // st_value
  });
  const sh = (i: number, type: number, off: number, size: number, link: number, entsize: number) => {
    const at = shOff + 64 * i;
    v.setUint32(at + 4, type, true);
    v.setBigUint64(at + 24, BigInt(off), true);
    v.setBigUint64(at + 32, BigInt(size), true);
    v.setUint32(at + 40, link, true);
    v.setBigUint64(at + 56, BigInt(entsize), true);
  };
  sh(1, 3, strOff, strtab.length, 0, 0);
  sh(2, 2, symOff, symSize, 1, 24);
  return Object.assign(b, { symOff });
}

describe('module symbols', () => {
  it('unnames local .L labels only, in a copy with every other byte as it was', () => {
    const syms = [{ name: '.Lpcrel_hi0', bind: 0 }, { name: 'ext4_fill_super', bind: 0 }, { name: '.Lglobal', bind: 1 }, { name: '.L0 ', bind: 0 }, { name: 'init_module', bind: 1 }];
    const ko = elf(syms);
    const before = ko.slice();
    const { ko: out, unnamed } = unnameAssemblerLabels(ko, 'ext4.ko');
    expect(unnamed).toBe(2);
    expect(Array.from(ko)).toEqual(Array.from(before)); // the input is untouched
    expect(out.length).toBe(ko.length);
    const symOff = ko.symOff!;
    const stName = (b: Uint8Array, i: number) => new DataView(b.buffer, b.byteOffset).getUint32(symOff + 24 * i, true);
    expect([1, 2, 3, 4, 5].map((i) => stName(out, i) === 0)).toEqual([true, false, false, true, false]);
    // Only those two st_name fields differ.
    const diff = Array.from(out).flatMap((x, i) => (x !== ko[i] ? [i] : []));
    expect(diff.every((i) => (i >= symOff + 24 && i < symOff + 28) || (i >= symOff + 96 && i < symOff + 100))).toBe(true);
  });

  it('returns a module without such labels as it is', () => {
    const ko = elf([{ name: 'crc16', bind: 1 }]);
    expect(unnameAssemblerLabels(ko, 'crc16.ko')).toEqual({ ko, unnamed: 0 });
  });

  it('rejects what is not a well-formed ELF64 little-endian object, naming the module', () => {
    expect(() => unnameAssemblerLabels(new Uint8Array(100), 'a.ko')).toThrow(/a\.ko: not an ELF object/);
    const elf32 = elf([]);
    elf32[4] = 1;
    expect(() => unnameAssemblerLabels(elf32, 'b.ko')).toThrow(/b\.ko: not a little-endian 64-bit/);
    const cut = elf([{ name: '.L1', bind: 0 }]);
    expect(() => unnameAssemblerLabels(cut.subarray(0, cut.length - 70), 'c.ko')).toThrow(/c\.ko: section headers outside the file/);
  });
});
