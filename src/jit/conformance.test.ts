/**
 * One conformance suite, two implementations: the hart's instruction and privilege suites
 * run again here with the JIT compiling every page at first execution.
 */
import { afterAll, expect, it } from 'vitest';
import { testHartOptions } from '../cpu/testing/run-program.js';
import { Hart } from '../cpu/hart.js';
import { jitTier } from './jit.js';

testHartOptions.accel = 'jit';
testHartOptions.tier = jitTier;
testHartOptions.jitThreshold = 0;

// Count compiled code across the suites: the rerun must really exercise the JIT.
const seen = { modules: 0, hits: 0 };
const origRun = Hart.prototype.run;
Hart.prototype.run = function (this: Hart, budget: number): number {
  const before = this.jitStats ? { m: this.jitStats.modulesCompiled, h: this.jitStats.cacheHits } : undefined;
  const n = origRun.call(this, budget);
  if (before && this.jitStats) {
    seen.modules += this.jitStats.modulesCompiled - before.m;
    seen.hits += this.jitStats.cacheHits - before.h;
  }
  return n;
};

await import('../cpu/hart.test.js');
await import('../cpu/priv.test.js');
await import('../cpu/state.test.js');

it('ran compiled code', () => {
  expect(seen.modules).toBeGreaterThan(10);
  expect(seen.hits).toBeGreaterThan(10);
});
afterAll(() => { Hart.prototype.run = origRun; });
