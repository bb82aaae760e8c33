/**
 * The warm-up's cost (src/machine/warmup): runs the program once per tier in this fresh
 * process from the build (dist/, where tsc inlines the opcode enum), prints wall and CPU
 * milliseconds and what it exercised.
 *
 *   npm run build && npx tsx bench/warmup.ts [--interp | --jit] [--repeat N]
 */
import type { runWarmUp as RunWarmUp } from '../src/vm/warmup.js';

const { runWarmUp } = (await import('../dist/vm/warmup.js' as string)) as { runWarmUp: typeof RunWarmUp };
const args = process.argv.slice(2);
const tiers = args.includes('--interp') ? ['interp' as const] : args.includes('--jit') ? ['jit' as const] : ['jit' as const, 'interp' as const];
const rep = args.indexOf('--repeat');
const repeat = rep >= 0 ? Number(args[rep + 1]) : 1;
for (const accel of tiers) {
  for (let i = 0; i < repeat; i++) {
    const c0 = process.cpuUsage();
    const r = runWarmUp(accel);
    const c = process.cpuUsage(c0);
    const j = r.jit;
    console.log(`${accel} run ${i + 1}: ${r.finished ? 'finished' : 'DID NOT FINISH'}, ${r.ms.toFixed(1)} ms wall, ${((c.user + c.system) / 1000).toFixed(1)} ms CPU (all threads), ` +
      `${r.instructions} instructions, ${r.tlbMisses} TLB misses, traps ${JSON.stringify(r.traps)}, interrupts ${JSON.stringify(r.interrupts)}` +
      (j ? `; JIT: ${j.modulesCompiled} modules in ${j.compileMs.toFixed(1)} ms (emit ${j.emitMs.toFixed(1)}), ${j.instructions} instructions compiled code, ${j.stepExits} step exits, ${j.invalidations} invalidations` : ''));
  }
}
