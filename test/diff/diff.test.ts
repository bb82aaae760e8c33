import { describe, expect, it } from 'vitest';
import { runDiff } from './driver.js';
import { dumpNames, generateProgram } from './gen.js';
import { ALL_KNOWN_ISSUES } from './known-issues.js';
import { TLOG_FIELDS, TRAP_CAP } from './layout.js';
import { QemuRunner, qemuVersion } from './qemu.js';
import { loadHart } from './visor.js';

// A small fixed-seed differential run so `npm test` exercises the whole path; the large,
// randomly seeded run is `npm run test:diff` (CI runs 2,000 programs).
const SEED = 20240601;
const COUNT = 30;

const version = qemuVersion();
if (!version && process.env.CI) {
  throw new Error('qemu-system-riscv64 is required in CI (apt-get install qemu-system-misc)');
}
if (!version) console.warn('diff.test.ts: skipped, qemu-system-riscv64 is not installed');
const Hart = version ? await loadHart() : undefined;
if (version && !Hart) console.warn('diff.test.ts: visor comparison skipped, src/cpu/hart.ts is not in the tree yet');

describe.skipIf(!version)('differential test against QEMU', () => {
  it('QEMU runs generated programs in every mode to a complete dump', async () => {
    const q = new QemuRunner();
    try {
      const fixed = dumpNames().length;
      for (const mode of ['M', 'S', 'U'] as const) {
        const p = generateProgram(SEED, 1000, { mode, workarounds: ALL_KNOWN_ISSUES });
        const r = await q.run(p.image);
        expect(r.error).toBeUndefined();
        const lines = r.output.trimEnd().split('\n');
        expect(lines.every((l) => /^[0-9a-f]{16}$/.test(l))).toBe(true);
        const traps = Number.parseInt(lines[fixed - 1]!, 16);
        expect(traps).toBeGreaterThan(0);
        expect(lines.length).toBe(fixed + TLOG_FIELDS.length * Math.min(traps, TRAP_CAP));
      }
    } finally {
      q.dispose();
    }
  });

  it.skipIf(!Hart)(`visor matches QEMU bit for bit on ${COUNT} programs (seed ${SEED})`, async () => {
    const r = await runDiff(Hart!, { seed: SEED, count: COUNT, workarounds: ALL_KNOWN_ISSUES, jobs: 4, maxMismatches: 1 });
    expect(r.reports.join('\n\n')).toBe('');
    expect(r.programs).toBe(COUNT);
    expect(r.traps).toBeGreaterThan(COUNT);
  }, 120_000);
});
