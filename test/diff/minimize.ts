/**
 * Shrinks a mismatching program to the fewest body groups that still show the same first
 * difference (delta debugging, Zeller's ddmin over the body's top-level groups). The prologue,
 * handlers and epilogue stay; only body groups are dropped.
 */
import { firstMismatch, type Mismatch } from './compare.js';
import { generateProgram, type DiffOptions, type DiffProgram } from './gen.js';
import type { QemuRunner } from './qemu.js';
import { runOnVisor, type HartConstructor } from './visor.js';

/** Trap indices shift as groups go; the rest of a line name identifies the difference. */
const shape = (name: string) => name.replace(/\[\d+\]/, '[]');

export interface Minimized {
  program: DiffProgram;
  mismatch: Mismatch | undefined;
  /** Body groups left. */
  kept: number;
  runs: number;
}

export async function minimize(Hart: HartConstructor, qemu: QemuRunner, p: DiffProgram, first: Mismatch | undefined,
  opts: DiffOptions, maxRuns = 300): Promise<Minimized> {
  const target = first ? shape(first.name) : undefined;
  let runs = 0;
  let best: Minimized = { program: p, mismatch: first, kept: p.groups, runs: 0 };
  const fails = async (keep: number[]): Promise<boolean> => {
    runs++;
    const cand = generateProgram(p.seed, p.index, { ...opts, keep: new Set(keep) });
    const q = await qemu.run(cand.image);
    const v = runOnVisor(Hart, cand.image);
    const m = firstMismatch(v.output, q.output);
    const same = target === undefined ? !!(q.error || v.error) : !!m && shape(m.name) === target;
    if (same) best = { program: cand, mismatch: m, kept: keep.length, runs };
    return same;
  };
  let keep = Array.from({ length: p.groups }, (_, i) => i);
  let n = 2;
  while (keep.length >= 1 && runs < maxRuns) {
    const size = Math.ceil(keep.length / n);
    let reduced = false;
    for (let i = 0; i < keep.length && runs < maxRuns; i += size) {
      const cand = [...keep.slice(0, i), ...keep.slice(i + size)];
      if (await fails(cand)) {
        keep = cand;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (size === 1) break;
      n = Math.min(keep.length, n * 2);
    }
  }
  best.runs = runs;
  return best;
}
