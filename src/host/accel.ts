/**
 * Which CPU tier a machine runs on when nobody said: the JIT (tier 1, hot guest pages
 * compiled to WebAssembly). VISOR_ACCEL=interp|jit overrides it for the whole process, so
 * one test suite can run under either tier (CI runs the Debian boot tests under both).
 *
 * The JIT became the default once the SDK's tests stopped depending on guest speed
 * (runUntil: snapshot points by guest output, not timers) and the Debian boot, SDK and
 * differential tests passed under it.
 */
import type { Accel } from '../vm/spec.js';

export type { Accel };

export function defaultAccel(env: Record<string, string | undefined> = process.env): Accel {
  const v = env.VISOR_ACCEL;
  if (v === 'interp' || v === 'jit') return v;
  return 'jit';
}
