import { describe, expect, it } from 'vitest';
import { Hart } from '../../src/cpu/hart.js';
import { firstMismatch } from './compare.js';
import { generateProgram } from './gen.js';
import { minimize } from './minimize.js';
import { QemuRunner, qemuVersion } from './qemu.js';
import { runOnVisor } from './visor.js';

const version = qemuVersion();
if (!version && process.env.CI) throw new Error('qemu-system-riscv64 is required in CI (apt-get install qemu-system-misc)');
if (!version) console.warn('minimize.test.ts: skipped, qemu-system-riscv64 is not installed');

/** A hart with a planted bug: illegal-instruction traps report tval + 1. */
class BuggyHart extends Hart {
  override raise(cause: number, tvalLo: number, tvalHi: number): never {
    return super.raise(cause, cause === 2 ? tvalLo + 1 : tvalLo, tvalHi);
  }
}

describe.skipIf(!version)('minimize', () => {
  it('shrinks a mismatching program to the few groups that show the same difference', async () => {
    const qemu = new QemuRunner();
    try {
      // The first program of this seed whose body takes an illegal-instruction trap.
      let found;
      for (let i = 0; i < 20 && !found; i++) {
        const p = generateProgram(99, i, { mode: 'M', bodyLength: 24 });
        const q = await qemu.run(p.image);
        const m = firstMismatch(runOnVisor(BuggyHart, p.image).output, q.output);
        if (m) found = { p, m };
      }
      expect(found).toBeDefined();
      const { p, m } = found!;
      expect(m.name).toMatch(/^trap\[\d+\]\.tval$/);
      const small = await minimize(BuggyHart, qemu, p, m, { mode: 'M', bodyLength: 24 });
      expect(small.mismatch?.name).toMatch(/^trap\[\d+\]\.tval$/);
      expect(small.kept).toBeLessThanOrEqual(2);
      expect(small.program.bodyEnd - small.program.bodyStart).toBeLessThan(p.bodyEnd - p.bodyStart);
      // The real hart agrees with QEMU on the minimised program.
      const q = await qemu.run(small.program.image);
      expect(firstMismatch(runOnVisor(Hart, small.program.image).output, q.output)).toBeUndefined();
    } finally {
      qemu.dispose();
    }
  }, 120_000);
});
