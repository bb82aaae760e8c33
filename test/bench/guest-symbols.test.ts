import { describe, expect, it } from 'vitest';
import { guestAddress, parseKallsyms, profileBySymbol } from '../../bench/guest-symbols.js';

const KALLSYMS = [
  'ffffffff80000000 T _start',
  'ffffffff80001000 t sha256_transform_blocks',
  'ffffffff80002000 D some_data',
  'ffffffff80003000 T memcpy',
  '0000000000000000 t hidden_by_kptr_restrict',
  'ffffffff021bd000 t ext4_fill_super\t[ext4]',
].join('\n');

describe('guest profile symbols', () => {
  it('reads the hart\'s sign-extended pc as an unsigned address', () => {
    expect(guestAddress(-2147483648)).toBe(0xffffffff80000000n);
    expect(guestAddress(0x10074)).toBe(0x10074n);
  });

  it('charges each sample to the code symbol at or below it, modules and user space apart', () => {
    const pc = (a: bigint) => Number(BigInt.asIntN(64, a));
    const counts = new Map<number, number>([
      [pc(0xffffffff80001010n), 5], [pc(0xffffffff80001ffen), 2], // sha256_transform_blocks
      [pc(0xffffffff80002010n), 1], // past data: still the code symbol before it
      [pc(0xffffffff80003004n), 3], // memcpy
      [pc(0xffffffff021bd100n), 4], // ext4_fill_super [ext4]
      [0x10074, 6], // user space
      [pc(0xffffffff70000000n), 1], // below every symbol
    ]);
    const rows = profileBySymbol(counts, parseKallsyms(KALLSYMS));
    expect(rows.map((r) => [r.name, r.module, r.instructions])).toEqual([
      ['sha256_transform_blocks', '', 8],
      ['(user space)', '', 6],
      ['ext4_fill_super', 'ext4', 4],
      ['memcpy', '', 3],
      ['(unknown kernel address)', '', 1],
    ]);
    expect(rows.reduce((s, r) => s + r.share, 0)).toBeCloseTo(1, 12);
  });
});
