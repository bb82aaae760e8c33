/**
 * The JIT against the interpreter, in lock step, on the differential test's random programs
 * (integer, M, A, F/D, C, CSRs, traps, S/U modes under Sv39/Sv48): both harts run the same
 * image in chunks of random length; after every chunk the counts, pc, privilege, every x and f
 * register and the trap CSRs must be equal, and RAM at the end. No QEMU needed: the
 * interpreter is the reference here (test/diff checks it against QEMU).
 */
import { describe, expect, it } from 'vitest';
import { Hart } from '../cpu/hart.js';
import { jitTier } from './jit.js';
import { BareMachine } from '../../test/support/bare-machine.js';
import { generateProgram } from '../../test/diff/gen.js';
import { IMAGE_SIZE, RAM_BASE } from '../../test/diff/layout.js';

const SEED = 20261122;
const PROGRAMS = 4;
const CSRS = [0x300, 0x341, 0x342, 0x343, 0x141, 0x142, 0x143, 0x100, 0x180, 0x003];

function makeHart(image: Uint8Array, jit: boolean, threshold = 0) {
  const machine = new BareMachine(IMAGE_SIZE + (128 << 10));
  machine.load(image, RAM_BASE);
  // Partial pages asked for by name, not left to the default, at threshold 3.
  const jitOptions = { accel: 'jit' as const, tier: jitTier, jitThreshold: threshold, ...(threshold >= 2 ? { jitCompileRunOnly: true } : {}) };
  const hart = new Hart(machine, { hartId: 0, timeSource: () => 0, ...(jit ? jitOptions : { accel: 'interp' as const }) });
  machine.onStop = () => hart.requestStop();
  hart.reset(RAM_BASE);
  return { machine, hart };
}

function state(h: Hart): string {
  const csrs = CSRS.map((c) => h.readCsr(c).toString(16)).join(',');
  return `pc=${h.pc.toString(16)} priv=${h.priv} instret=${h.instructionsRetired} x=[${[...h.regs.subarray(0, 64)].join(',')}] f=[${[...h.fregs].join(',')}] csr=[${csrs}]`;
}

describe('JIT in lock step with the interpreter', () => {
  // Threshold 0: every page compiled whole at its first entry. Threshold 3: pages compiled
  // after the interpreter ran some of them, with only the blocks it ran (compileRunOnly), and
  // compiled again as compiled code reaches the blocks left out.
  for (const threshold of [0, 3]) for (const fp of [false, true]) lockstep(fp, threshold);
});

/** `fp`: the F/D stress profile (gen.ts DiffOptions.fp), which inline F/D code (fp-emit.ts) meets most. */
function lockstep(fp: boolean, threshold: number): void {
  it(`runs ${PROGRAMS} random${fp ? ' F/D stress' : ''} programs (seed ${SEED}) to identical states at every chunk boundary, JIT threshold ${threshold}`, () => {
    let rng = SEED;
    const next = () => { rng = (Math.imul(rng, 1103515245) + 12345) | 0; return (rng >>> 8) & 0xffff; };
    let compiledRuns = 0;
    for (let p = 0; p < PROGRAMS; p++) {
      const prog = generateProgram(SEED, p, fp ? { fp } : {});
      const a = makeHart(prog.image, false);
      const b = makeHart(prog.image, true, threshold);
      expect(b.hart.jit).not.toBeNull();
      let total = 0;
      for (let step = 0; a.machine.stopped === undefined && total < 2_000_000; step++) {
        const chunk = 1 + (next() % 64);
        const na = a.hart.run(chunk);
        const nb = b.hart.run(chunk);
        expect(nb, `program ${p} step ${step}: count`).toBe(na);
        expect(state(b.hart), `program ${p} step ${step} after ${total} instructions`).toBe(state(a.hart));
        total += na;
        if (na === 0) break;
      }
      expect(b.machine.stopped).toBe(a.machine.stopped);
      expect(b.machine.uartText()).toBe(a.machine.uartText());
      expect(Buffer.compare(b.machine.ram, a.machine.ram), `program ${p}: RAM`).toBe(0);
      compiledRuns += b.hart.jitStats!.instructions;
    }
    expect(compiledRuns).toBeGreaterThan(1000);
  });
}
