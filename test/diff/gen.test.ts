import { describe, expect, it } from 'vitest';
import { disasm } from '../support/riscv-disasm.js';
import { dumpNames, generateProgram, lineName } from './gen.js';
import { BODY, IMAGE_SIZE, RAM_BASE } from './layout.js';
import { Rng } from './rng.js';

describe('differential program generator', () => {
  it('is deterministic in (seed, index) and varies with either', () => {
    const a = generateProgram(7, 3);
    const b = generateProgram(7, 3);
    expect(Buffer.from(a.image).equals(Buffer.from(b.image))).toBe(true);
    expect(Buffer.from(generateProgram(7, 4).image).equals(Buffer.from(a.image))).toBe(false);
    expect(Buffer.from(generateProgram(8, 3).image).equals(Buffer.from(a.image))).toBe(false);
    expect(a.image.length).toBe(IMAGE_SIZE);
  });

  it('emits bodies in every mode with mostly decodable instructions', () => {
    const modes = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const p = generateProgram(11, i);
      modes.add(p.mode);
      expect(p.bodyStart).toBe(BODY);
      const code = p.image.subarray(p.bodyStart - RAM_BASE, p.bodyEnd - RAM_BASE);
      const dv = new DataView(code.buffer, code.byteOffset, code.byteLength);
      let total = 0;
      let unknown = 0;
      for (let at = 0; at < code.length;) {
        const h = dv.getUint16(at, true);
        const w = (h & 3) === 3 ? dv.getUint32(at, true) : h;
        at += (h & 3) === 3 ? 4 : 2;
        total++;
        if (disasm(w).startsWith('.')) unknown++;
      }
      // Only the deliberately illegal encodings fail to decode.
      expect(unknown / total).toBeLessThan(0.05);
      expect(total).toBeGreaterThan(60);
    }
    expect([...modes].sort()).toEqual(['M', 'S', 'U']);
  });

  it('names every dump line', () => {
    const n = dumpNames().length;
    expect(lineName(0)).toBe('x1 (ra)');
    expect(lineName(31)).toBe('f0 (ft0)');
    expect(lineName(n - 1)).toBe('trap count');
    expect(lineName(n)).toBe('trap[0].cause');
    expect(lineName(n + 6)).toBe('trap[1].tval');
  });

  it('Rng is uniform enough and reproducible', () => {
    const r = new Rng(1, 2);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 10_000; i++) counts[r.int(10)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(850);
    expect(new Rng(5, 1).u32()).toBe(new Rng(5, 1).u32());
    expect(new Rng(5, 1).u32()).not.toBe(new Rng(5, 2).u32());
  });
});
