import { setImmediate as tick } from 'node:timers/promises';
import type { Machine } from '../../src/sdk/index.js';

/** Collects a machine's console output as text. */
export function collect(vm: Machine): { text(): string } {
  let out = '';
  vm.console.on('data', (d: Buffer) => (out += d.toString('latin1')));
  return { text: () => out };
}

/** Lets console data already posted by the worker reach the stream's listeners. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await tick();
}

export async function waitFor(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
