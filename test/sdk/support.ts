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

/**
 * Runs a created or paused machine in short run/pause steps until `cond` holds, and leaves it
 * paused there: a fast hart cannot run past the point (or to its end) between two polls.
 */
export async function runUntil(vm: Machine, cond: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  if (vm.state === 'created') {
    await vm.start();
    await vm.pause();
  }
  await settle();
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out running to the point');
    await vm.resume();
    await new Promise((r) => setTimeout(r, 1));
    await vm.pause();
    await settle();
  }
}
