import { setFlagsFromString } from 'node:v8';

let tuned = false;

/**
 * V8 settings for a process that runs the JIT (src/jit/). Measured on a Debian boot to /init
 * (`npm run bench:boot -- --jit --stats`, docs/benchmarks.md "JIT"):
 *
 * 1. The JIT's WebAssembly stays on V8's baseline compiler (Liftoff): no tier-up to TurboFan.
 *    V8 tiers up every wasm function that runs long enough, compiling it again with its
 *    optimizing compiler on worker threads. The JIT's page functions run long (a hot kernel
 *    page runs millions of instructions) and are large (tens of KiB of wasm each), so nearly
 *    every one of ~400 pages was recompiled at 30-1000 ms of CPU each: two thirds of the
 *    process's CPU went there, more than the guest itself used. The optimized code runs a
 *    tight loop ~3x faster, which pays back only for pages that run billions of instructions.
 *
 * 2. No on-stack replacement for JavaScript. With the JIT, the interpreter (Hart.execute) runs
 *    cold code and single instructions, meeting new paths all through a boot; each deopt was
 *    followed by an OSR compile of that large function (0.3-2.5 s on a worker each). Without
 *    OSR it is reoptimized at its next call (it returns at least every run() batch): boot CPU
 *    to /init 12.2-13.0 s -> 10.4-10.8 s (V8 workers 4.5 s -> 2.7 s).
 *
 * The flags are process-wide and read when a module is compiled, so calling this before the
 * first page compiles is enough; it is idempotent. `VISOR_WASM_TIERUP=1` leaves V8's defaults,
 * for comparison.
 */
export function tuneV8ForJit(): void {
  if (tuned) return;
  tuned = true;
  if (process.env['VISOR_WASM_TIERUP'] === '1') return;
  setFlagsFromString('--no-wasm-dynamic-tiering');
  setFlagsFromString('--no-wasm-tier-up');
  setFlagsFromString('--no-use-osr');
}
