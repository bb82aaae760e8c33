/**
 * A seeded entropy source, so deterministic machines repeat: their virtio-rng stream and
 * their /chosen/rng-seed come from here instead of the host's entropy. Its state is saved in
 * snapshots (RunnerState.rngState).
 */
import type { EntropySource } from '../virtio/rng/device.js';

/** xoshiro128** (Blackman & Vigna): a seeded entropy source so deterministic guests repeat. */
export class SeededEntropy implements EntropySource {
  s: Uint32Array;
  constructor(state: readonly number[] = [0x9e3779b9, 0x243f6a88, 0xb7e15162, 0x1234567]) {
    this.s = Uint32Array.from(state);
  }
  private next(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return r;
  }
  saveState(): [number, number, number, number] {
    const s = this.s;
    return [s[0]!, s[1]!, s[2]!, s[3]!];
  }
  fill(buf: Uint8Array): void {
    for (let i = 0; i < buf.length; i += 4) {
      const r = this.next();
      for (let k = 0; k < 4 && i + k < buf.length; k++) buf[i + k] = (r >>> (8 * k)) & 0xff;
    }
  }
}
/** The state a deterministic machine's /chosen/rng-seed is drawn from. */
export const DTB_SEED_STATE = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a];
function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

