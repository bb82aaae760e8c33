import { warmUpHart, type WarmUpResult } from '../vm/warmup.js';
import type { Accel } from './accel.js';
import { tuneV8ForJit } from './v8-tuning.js';

/**
 * Warms V8 for the hart before a machine of this tier is built (src/machine/warmup/: a short
 * built-in program on a throwaway board, once per process and tier). Call it where a real
 * machine is about to be created. `VISOR_NO_WARMUP=1` skips it (for measuring).
 *
 * The JIT's V8 settings (v8-tuning.ts) are applied first, as the real machine would: the
 * warm-up compiles a page of WebAssembly, which must stay on Liftoff like the real pages.
 * A failure here is a bug in the warm-up, never the guest's: it is reported and the machine
 * starts anyway.
 */
export function warmUp(accel: Accel, env: Record<string, string | undefined> = process.env): WarmUpResult | undefined {
  if (env['VISOR_NO_WARMUP'] === '1') return undefined;
  if (accel === 'jit') tuneV8ForJit();
  try {
    const r = warmUpHart(accel);
    if (r !== undefined && !r.finished) console.warn('visor: the hart warm-up program did not finish (a bug; the machine runs anyway)');
    return r;
  } catch (err) {
    console.warn(`visor: the hart warm-up failed (a bug; the machine runs anyway): ${(err as Error).message}`);
    return undefined;
  }
}
