/**
 * What `visor run` and the SDK do to the process before a machine starts (src/host/warmup.ts:
 * the JIT's V8 settings, then the hart's warm-up program), for benchmarks that build their
 * machines through the test harness (test/virtio/guest-vm.ts GuestVm), which does neither.
 * Without it those benchmarks timed visor under V8's default wasm tiering and with JavaScript
 * OSR on: in bench/usernet.ts the download took 1.02-1.35x QEMU's time that way, 0.92-1.25x
 * with the settings users run with (docs/benchmarks.md, session 15).
 * Uses dist/ like the machines these benchmarks build. Once per process: V8's flags are
 * process-wide.
 */
import type { Accel } from '../src/host/accel.js';

let done = false;

export async function likeVisorRun(accel: Accel): Promise<void> {
  if (done) return;
  done = true;
  const { warmUp } = (await import('../dist/host/warmup.js' as string)) as typeof import('../src/host/warmup.js');
  warmUp(accel);
}
