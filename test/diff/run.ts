/**
 * Differential test against QEMU: `npm run test:diff -- --seed S --count N`.
 *
 * Options: --seed S (default: time-based, always printed), --count N (default 200),
 * --only I[,J...] (rerun given program indices), --jobs J (parallel QEMU processes, default 6: each mostly waits),
 * --mode M|S|U (force the body's privilege mode), --aligned-only (no misaligned loads/stores),
 * --max-mismatches K (stop after K, default 5), --save DIR (write failing images there),
 * --strict (no workarounds for the known issues in known-issues.ts), --minimize (shrink each
 * mismatching program to the fewest body groups that still differ the same way), --fp (the F/D
 * stress profile, gen.ts DiffOptions.fp).
 * Exits 0 when every program matches, 1 on any mismatch, 2 when QEMU or the hart is missing.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runDiff } from './driver.js';
import { ALL_KNOWN_ISSUES } from './known-issues.js';
import type { Mode } from './gen.js';
import { qemuVersion } from './qemu.js';
import { loadHart } from './visor.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      count: { type: 'string', default: '200' },
      only: { type: 'string' },
      jobs: { type: 'string', default: '6' },
      mode: { type: 'string' },
      'aligned-only': { type: 'boolean', default: false },
      'max-mismatches': { type: 'string', default: '5' },
      save: { type: 'string' },
      strict: { type: 'boolean', default: false },
      minimize: { type: 'boolean', default: false },
      fp: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Date.now() / 1000);
  const count = Number(values.count);
  if (!Number.isSafeInteger(seed) || seed < 0 || !Number.isSafeInteger(count) || count < 0) {
    console.error('test:diff: --seed and --count take non-negative integers');
    return 2;
  }
  const mode = values.mode as Mode | undefined;
  if (mode !== undefined && !['M', 'S', 'U'].includes(mode)) {
    console.error('test:diff: --mode takes M, S or U');
    return 2;
  }
  const version = qemuVersion();
  if (!version) {
    console.error('test:diff: qemu-system-riscv64 is not installed (apt-get install qemu-system-misc)');
    return 2;
  }
  const Hart = await loadHart();
  if (!Hart) {
    console.error('test:diff: src/cpu/hart.ts is not there yet');
    return 2;
  }
  const only = values.only?.split(',').map(Number);
  const workarounds = values.strict ? [] : ALL_KNOWN_ISSUES;
  if (workarounds.length) console.log(`working around known issues (--strict to compare them): ${workarounds.join(', ')}`);
  console.log(`differential test${values.fp ? ' (F/D stress profile)' : ''}: seed ${seed}, ${only ? `programs ${only.join(',')}` : `${count} programs`}, ${version}`);
  const save = values.save;
  if (save) mkdirSync(save, { recursive: true });
  const r = await runDiff(Hart, {
    seed, count, workarounds, minimize: values.minimize, jobs: Number(values.jobs), misaligned: !values['aligned-only'], maxMismatches: Number(values['max-mismatches']),
    ...(only ? { only } : {}),
    ...(mode ? { mode } : {}),
    ...(values.fp ? { fp: true } : {}),
    log: (l) => console.log(l),
    onMismatch: (p, text) => {
      if (!save) return;
      writeFileSync(join(save, `seed${seed}-p${p.index}.bin`), p.image);
      writeFileSync(join(save, `seed${seed}-p${p.index}.txt`), text + '\n');
    },
  });
  const mips = r.visorMs > 0 ? (r.visorInstructions / r.visorMs / 1000).toFixed(1) : '-';
  console.log(`${r.programs} programs (${Object.entries(r.modes).map(([m, n]) => `${m} ${n}`).join(', ')}), ` +
    `${r.mismatches} mismatches, ${r.traps} traps compared, ${(r.wallMs / 1000).toFixed(1)} s wall, ` +
    `visor ${r.visorInstructions} instructions in ${(r.visorMs / 1000).toFixed(1)} s (${mips} MIPS); seed ${seed}`);
  const causes = Object.entries(r.causes).sort((x, y) => y[1] - x[1]).map(([c, n]) => `${c}:${n}`).join(' ');
  if (causes) console.log(`trap causes compared (cause:count): ${causes}`);
  return r.mismatches === 0 ? 0 : 1;
}

main().then((code) => { process.exitCode = code; }, (e) => { console.error(e); process.exitCode = 2; });
