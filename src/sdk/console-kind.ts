/**
 * Whether a machine has the virtio-console. Its own module (not config.ts) so the worker's
 * runner does not load zod: schema validation happens at the edge, before the worker, and
 * loading zod was ~100 ms of every restore's worker start-up.
 */
import type { ResolvedConfig } from './config.js';

/** The machine has the virtio-console (hvc0, the agent port and the data port). */
export function hasVirtioConsole(c: Pick<ResolvedConfig, 'console' | 'agent' | 'stdio'>): boolean {
  return c.console === 'virtio' || c.agent === true || c.stdio === 'virtio';
}
