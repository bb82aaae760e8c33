/**
 * A minimal device for transport and queue tests: queue 0 copies each chain's readable bytes
 * into its writable bytes. Config space is 8 bytes the test can change.
 */
import { readConfigBytes, type DeviceContext, type VirtioDevice } from '../device.js';

export class EchoDevice implements VirtioDevice {
  readonly deviceId = 0x7e;
  readonly name = 'echo';
  readonly features = 1n; // one device feature bit, so negotiation has something to do
  readonly queueSizes: readonly number[];
  readonly config = new Uint8Array(8);
  ctx: DeviceContext | null = null;
  resets = 0;
  /** When false, notifications are queued and `drain()` completes them later (async I/O). */
  immediate = true;

  constructor(queueSize = 16) {
    this.queueSizes = [queueSize];
  }
  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size);
  }
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    for (let i = 0; i < size; i++) if (offset + i < 8 && offset + i >= 0) this.config[offset + i] = (value >>> (8 * i)) & 0xff;
  }
  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }
  reset(): void {
    this.ctx = null;
    this.resets++;
  }
  notify(): void {
    if (this.immediate) this.drain();
  }
  drain(): number {
    const ctx = this.ctx;
    if (!ctx) return 0;
    const q = ctx.queues[0]!;
    let n = 0;
    for (let c = q.pop(); c; c = q.pop()) {
      const data = c.readAll();
      const w = c.write(0, data);
      q.pushUsed(c.head, w);
      n++;
    }
    if (n) ctx.usedBuffers(0);
    return n;
  }
}
