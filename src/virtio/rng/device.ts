/**
 * virtio-rng / entropy device (virtio 1.2 §5.4): one queue, every device-writable buffer is
 * filled with randomness from an injected source. The default source is Web Crypto's
 * getRandomValues (a CSPRNG in Node and in browsers); src/host/virtio-entropy.ts provides a
 * node:crypto one.
 */
import { VIRTIO_ID_RNG, readConfigBytes, type DeviceContext, type VirtioDevice } from '../device.js';
import { isObject, restoreCounters, stateError } from '../state.js';

export interface EntropySource {
  /** Fills `buf` entirely with cryptographically secure random bytes. */
  fill(buf: Uint8Array): void;
}

/** getRandomValues() accepts at most 65536 bytes per call (Web Crypto spec). */
export const webCryptoEntropy: EntropySource = {
  fill(buf) {
    for (let i = 0; i < buf.length; i += 65536) globalThis.crypto.getRandomValues(buf.subarray(i, i + 65536));
  },
};

export interface RngOptions {
  source?: EntropySource;
  queueSize?: number;
  /** Bytes handed out per request at most; Linux asks for small amounts anyway. */
  maxRequest?: number;
}

export interface RngCounters {
  requests: number;
  bytes: number;
}

/**
 * What a snapshot keeps of a virtio-rng: its counters only. Requests are answered when they
 * are taken, so none is ever pending; a deterministic machine's generator state is the
 * runner's (it owns the source).
 */
export interface RngState {
  version: 1;
  counters: RngCounters;
}

export class VirtioRng implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_RNG;
  readonly name = 'rng';
  readonly features = 0n;
  readonly queueSizes: readonly number[];
  readonly counters: RngCounters = { requests: 0, bytes: 0 };
  private readonly source: EntropySource;
  private readonly maxRequest: number;
  private ctx: DeviceContext | null = null;

  constructor(opts: RngOptions = {}) {
    this.source = opts.source ?? webCryptoEntropy;
    this.queueSizes = [opts.queueSize ?? 64];
    this.maxRequest = opts.maxRequest ?? 64 * 1024;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(new Uint8Array(0), offset, size); // §5.4.4: no config space
  }
  writeConfig(): void {}

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }

  reset(): void {
    this.ctx = null;
  }

  saveState(): RngState {
    return { version: 1, counters: { ...this.counters } };
  }

  restore(state: unknown): void {
    if (!isObject(state) || state.version !== 1) throw stateError(this.name, 'unknown version');
    restoreCounters(this.counters, state.counters, this.name);
  }

  notify(queue: number): void {
    const ctx = this.ctx;
    if (!ctx || queue !== 0) return;
    const q = ctx.queues[0]!;
    let any = false;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      const n = Math.min(chain.writableLen, this.maxRequest);
      const buf = new Uint8Array(n);
      this.source.fill(buf);
      chain.write(0, buf);
      q.pushUsed(chain.head, n);
      this.counters.requests++;
      this.counters.bytes += n;
      any = true;
    }
    if (any) ctx.usedBuffers(0);
  }
}

/** Factory for the board: an rng device behind a virtio-mmio transport slot. */
export function createVirtioRng(opts: RngOptions = {}): VirtioRng {
  return new VirtioRng(opts);
}
