/**
 * Messages between a Machine (main thread) and its worker (worker-entry.ts). Plain data only:
 * they cross postMessage. Errors travel as { code, message } and become VisorErrors again.
 */
import { VisorError, type VisorErrorCode } from '../base/errors.js';
import type { Accel, ResolvedConfig } from './config.js';
import type { GuestEvent, UntilCondition } from './runner.js';
import type { MachineState } from './states.js';

export type WorkerInit =
  | { mode: 'create'; config: ResolvedConfig; stats: SharedArrayBuffer }
  /** accel: the tier is this process's choice, not part of the saved machine. */
  | { mode: 'restore'; path: string; stats: SharedArrayBuffer; accel: Accel };

export type Command =
  | { op: 'start' | 'pause' | 'resume' | 'kill'; id: number }
  | { op: 'stop'; id: number; graceful?: boolean; timeoutMs?: number }
  | { op: 'snapshot'; id: number; path: string; compress: boolean }
  | { op: 'runUntil'; id: number; until: UntilCondition }
  /** Host request to the virtio-balloon (not a lifecycle action: the state does not change). */
  | { op: 'balloon'; id: number; targetMiB: number }
  /** Resource limits (not a lifecycle action): percent of one host core. */
  | { op: 'cpuLimit'; id: number; percent: number }
  | { op: 'input'; bytes: Uint8Array }
  /** Host → guest bytes on the data port. */
  | { op: 'channel'; bytes: Uint8Array }
  /** A prewarmed worker's machine. */
  | { op: 'init'; init: WorkerInit };

export interface WireError {
  code: VisorErrorCode;
  message: string;
}

export type WorkerMessage =
  /**
   * marks: absolute times (ms since the epoch) of the worker's steps (entry, modules, init,
   * read, loaded, ready); timings: the restore's phases in ms (MachineRunner.restore).
   */
  | { t: 'ready'; state: MachineState; config: ResolvedConfig; agentListening: boolean; marks: Record<string, number>; timings: Record<string, number> }
  | { t: 'init-error'; error: WireError }
  | { t: 'reply'; id: number; ok: true; value?: unknown }
  | { t: 'reply'; id: number; ok: false; error: WireError }
  | { t: 'state'; state: MachineState; reason?: string }
  | { t: 'out'; bytes: Uint8Array }
  /** Guest → host bytes from the data port. */
  | { t: 'chan'; bytes: Uint8Array }
  | { t: 'guest'; event: GuestEvent }
  | { t: 'error'; error: WireError };

export function toWire(err: unknown): WireError {
  if (err instanceof VisorError) return { code: err.code, message: err.message };
  return { code: 'Internal', message: err instanceof Error ? err.message : String(err) };
}

export function fromWire(e: WireError): VisorError {
  return new VisorError(e.code, e.message);
}
