import { setFlagsFromString } from 'node:v8';

let tuned = false;

/**
 * The budget of V8's wasm tier-up (`--wasm-tiering-budget`): how much a function must run in
 * baseline code (Liftoff) before V8 compiles it again with its optimizing compiler (TurboFan),
 * on a worker thread, and switches to that code at its next call. V8's default is 1.8 M; the
 * flag is an int32, so this is close to its largest value (a larger one wraps negative and
 * tiers up everything at once).
 */
export const WASM_TIERING_BUDGET = 2_000_000_000;

/**
 * V8 settings for a process that runs the JIT (src/jit/). Measured on a Debian boot to /init
 * (`npx tsx bench/boot.ts --jit --init-only --stats`) and on `bench/guest-cpu.ts`
 * (docs/benchmarks.md "TurboFan for the hottest pages"):
 *
 * 1. Only the hottest pages' code is tiered up to TurboFan. A page function is large (tens of
 *    KiB of wasm) and TurboFan takes ~14x Liftoff's time for it (13 ms on average for a
 *    kernel page, `bench/jit-compile.ts`): at V8's default budget nearly every page of a boot
 *    was recompiled, more worker CPU than the guest used. At WASM_TIERING_BUDGET only the
 *    pages a workload spends its time in are (a boot: worker CPU 1.2 -> 2.6 s; main thread
 *    4.96 -> 4.21 s), and their code runs about twice as fast: in-guest sha256sum of 32 MiB
 *    12.9 -> 6.1 s. The compiles run on V8's worker threads, so the guest does not wait.
 *
 * 2. No on-stack replacement for JavaScript. With the JIT, the interpreter (Hart.execute) runs
 *    cold code and single instructions, meeting new paths all through a boot; each deopt was
 *    followed by an OSR compile of that large function (0.3-2.5 s on a worker each). Without
 *    OSR it is reoptimized at its next call (it returns at least every run() batch): boot CPU
 *    to /init 12.2-13.0 s -> 10.4-10.8 s (V8 workers 4.5 s -> 2.7 s).
 *
 * The flags are process-wide and read when a module is compiled, so calling this before the
 * first page compiles is enough; it is idempotent. `VISOR_WASM_TIERUP=0` keeps the JIT's wasm
 * on Liftoff only (no tier-up: the setting before), `VISOR_WASM_TIERUP=1` leaves V8's
 * defaults, for comparison; `VISOR_WASM_TIERING_BUDGET=N` sets another budget (for measuring).
 */
export function tuneV8ForJit(): void {
  if (tuned) return;
  tuned = true;
  const mode = process.env['VISOR_WASM_TIERUP'];
  if (mode === '1') return;
  if (mode === '0') {
    setFlagsFromString('--no-wasm-dynamic-tiering');
    setFlagsFromString('--no-wasm-tier-up');
  } else {
    const budget = Number(process.env['VISOR_WASM_TIERING_BUDGET'] ?? WASM_TIERING_BUDGET);
    setFlagsFromString(`--wasm-tiering-budget=${Number.isSafeInteger(budget) && budget > 0 ? Math.min(budget, WASM_TIERING_BUDGET) : WASM_TIERING_BUDGET}`);
  }
  setFlagsFromString('--no-use-osr');
}
