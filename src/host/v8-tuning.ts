import { setFlagsFromString } from 'node:v8';

let tuned = false;

/**
 * Keeps the JIT's WebAssembly on V8's baseline compiler (Liftoff): no tier-up to TurboFan.
 *
 * Why: V8 tiers up every wasm function that runs long enough, compiling it again with its
 * optimizing compiler on worker threads. The JIT's page functions run long (a hot kernel
 * page runs millions of instructions) and are large (tens of KiB of wasm each), so on a
 * Debian boot nearly every one of ~400 pages was recompiled at 30-1000 ms of CPU each: two
 * thirds of the process's CPU went there, more than the guest itself used (measured with
 * `npm run bench:boot -- --jit --stats`, docs/benchmarks.md "JIT"). The optimized code runs a
 * tight loop ~3x faster, which pays back only for pages that run billions of instructions.
 *
 * The flags are process-wide and read when a module is compiled, so calling this before the
 * first page compiles is enough; it is idempotent. `VISOR_WASM_TIERUP=1` leaves V8's default
 * (tier-up on), for comparison.
 */
export function tuneV8ForJit(): void {
  if (tuned) return;
  tuned = true;
  if (process.env['VISOR_WASM_TIERUP'] === '1') return;
  setFlagsFromString('--no-wasm-dynamic-tiering');
  setFlagsFromString('--no-wasm-tier-up');
}
