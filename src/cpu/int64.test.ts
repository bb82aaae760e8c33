import { describe, expect, it } from 'vitest';
import { div64, divu64, mul64, mulh64, mulhsu64, mulhu64, r64, rem64, remu64 } from './int64.js';

const M64 = (1n << 64n) - 1n;
const s64 = (v: bigint) => BigInt.asIntN(64, v);
const u64 = (v: bigint) => BigInt.asUintN(64, v);
const lo = (v: bigint) => Number(BigInt.asIntN(32, v));
const hi = (v: bigint) => Number(BigInt.asIntN(32, v >> 32n));
const result = () => u64((BigInt(r64.hi) << 32n) | BigInt(r64.lo >>> 0));

/** A deterministic mix of corner values and random 64-bit numbers of every magnitude. */
function operands(): bigint[] {
  const out = [0n, 1n, 2n, 3n, M64, M64 - 1n, 1n << 63n, (1n << 63n) - 1n, 1n << 32n, (1n << 32n) - 1n, 1n << 52n, (1n << 52n) - 1n, 1n << 53n, 10n ** 9n, 7n];
  let x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < 120; i++) {
    x = u64(x * 6364136223846793005n + 1442695040888963407n);
    out.push(x >> BigInt(i % 64));
  }
  return out;
}

describe('64-bit integer helpers', () => {
  const ops = operands();
  it('multiply low and high halves match BigInt', () => {
    for (const a of ops) for (const b of ops) {
      mul64(lo(a), hi(a), lo(b), hi(b));
      expect(result()).toBe(u64(a * b));
      mulhu64(lo(a), hi(a), lo(b), hi(b));
      expect(result()).toBe(u64((a * b) >> 64n));
      mulh64(lo(a), hi(a), lo(b), hi(b));
      expect(result()).toBe(u64((s64(a) * s64(b)) >> 64n));
      mulhsu64(lo(a), hi(a), lo(b), hi(b));
      expect(result()).toBe(u64((s64(a) * b) >> 64n));
    }
  });
  it('divide and remainder match the RISC-V rules', () => {
    for (const a of ops) for (const b of ops) {
      divu64(lo(a), hi(a), lo(b), hi(b));
      expect(result()).toBe(b === 0n ? M64 : a / b);
      remu64(lo(a), hi(a), lo(b), hi(b));
      expect(result()).toBe(b === 0n ? a : a % b);
      const sa = s64(a), sb = s64(b);
      div64(lo(a), hi(a), lo(b), hi(b));
      expect(result()).toBe(u64(sb === 0n ? -1n : sa === -(1n << 63n) && sb === -1n ? sa : sa / sb));
      rem64(lo(a), hi(a), lo(b), hi(b));
      expect(result()).toBe(u64(sb === 0n ? sa : sb === -1n ? 0n : sa % sb));
    }
  });
});
