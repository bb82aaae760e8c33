import { describe, expect, it } from 'vitest';
import { makeHart, RAM_BASE } from './testing/run-program.js';

/**
 * A guest can never make the host throw: random instruction words (including random CSR
 * writes to satp, mstatus, PMP, mtvec...) run for a while from several starting states, and
 * every outcome must be a guest-visible trap or normal execution.
 */
describe('hart robustness', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`random code, seed ${seed}: no host exception`, () => {
      let x = seed * 0x9e3779b1;
      const next = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
      const m = makeHart(256 * 1024);
      const words = new Uint32Array(m.ram.buffer, 0, m.ram.length / 4);
      for (let i = 0; i < words.length; i++) {
        // Bias toward real opcodes: many random words are illegal, which is fine but dull.
        const w = next();
        words[i] = (i & 3) === 0 ? w : (w & ~0x7f) | [0x13, 0x33, 0x03, 0x23, 0x73, 0x63, 0x2f, 0x53, 0x6f, 0x67][w % 10]!;
      }
      m.hart.reset(RAM_BASE + (next() % 1024) * 4);
      m.hart.writeCsr(0x305, BigInt(RAM_BASE + (next() % 4096) * 4)); // mtvec somewhere in RAM
      let total = 0;
      expect(() => {
        for (let i = 0; i < 40 && total < 400_000; i++) {
          const n = m.hart.run(10_000);
          total += n;
          if (n === 0 && m.hart.waitingForInterrupt) m.hart.setPending(1 << 7, true);
        }
      }).not.toThrow();
      expect(m.hart.stats.traps.reduce((s, v) => s + v, 0)).toBeGreaterThan(0);
    });
  }
});
