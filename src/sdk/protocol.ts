/**
 * Messages between a Machine (main thread) and its worker (worker-entry.ts). Plain data only:
 * they cross postMessage. Errors travel as { code, message } and become VisorErrors again.
 */
import { VisorError, type VisorErrorCode } from '../base/errors.js';
import type { TierCode } from '../cpu/tier.js';
import type { ForwardSpec } from '../vm/spec.js';
import type { Accel, ResolvedConfig } from './config.js';
import type { PausePoint } from '../vm/driver.js';
import type { MachineState } from './states.js';
import type { MemorySnapshot } from '../host/snapshot/memory.js';

export type WorkerInit =
  | { mode: 'create'; config: ResolvedConfig; stats: SharedArrayBuffer }
  /** accel: the tier is this process's choice, not part of the saved machine. */
  /** From a snapshot file (`path`) or one held in memory (`image`: its RAM pages in on demand). */
  | { mode: 'restore'; path?: string; image?: MemorySnapshot; stats: SharedArrayBuffer; accel: Accel; vsockPath?: string; code?: TierCode; netPolicy?: NetPolicy; macs?: string[]; disks?: string[]; warmUp?: boolean; interpretFirst?: number; keepVsock?: VsockStream[] };

/** A vsock stream, by its two ports (the guest's, the host's). */
export interface VsockStream {
  guestPort: number;
  hostPort: number;
}

/** A snapshot's wait for the host's bytes on a stream (MachineRunner.snapshotInMemory): the host wrote `hostBytes` on it so far. */
export interface VsockBarrier extends VsockStream {
  hostBytes: number;
}

/**
 * A stream as the snapshot holds it: every one of the host's `hostBytes` taken, and the first
 * `guestBytes` of the guest's given to the host. A machine restored from the snapshot with it
 * kept (keepVsock) continues from exactly there.
 */
export interface VsockLink extends VsockBarrier {
  guestBytes: number;
}

/** A restored machine's user-network policy, instead of the saved machine's (RestoreOptions.netPolicy). */
export interface NetPolicy {
  firewall: string[];
  hostAccess: boolean;
}

export type Command =
  | { op: 'start' | 'pause' | 'resume' | 'kill'; id: number }
  | { op: 'stop'; id: number; graceful?: boolean; timeoutMs?: number }
  | { op: 'snapshot'; id: number; path: string; compress: boolean }
  | { op: 'snapshotInMemory'; id: number; vsockBarrier?: VsockBarrier }
  | { op: 'runUntil'; id: number; until: UntilCondition }
  /** Host request to the virtio-balloon (not a lifecycle action: the state does not change). */
  | { op: 'balloon'; id: number; targetMiB: number }
  /** Resource limits (not a lifecycle action): percent of one host core. */
  | { op: 'cpuLimit'; id: number; percent: number }
  /** The JIT's compiled pages, for machines restored from this one's snapshots (RestoreOptions.code). */
  | { op: 'exportCode'; id: number }
  /** New firewall rules and host access for the machine's private user networks. */
  | { op: 'netPolicy'; id: number; policy: NetPolicy }
  /** A port forward into the guest, added while it runs (its first user-network NIC). */
  | { op: 'forward'; id: number; forward: ForwardSpec }
  | { op: 'input'; bytes: Uint8Array }
  /** Host → guest bytes on the data port. */
  | { op: 'channel'; bytes: Uint8Array }
  /** The command's stdin (stdio: 'virtio'); stdin-end is its end-of-file. */
  | { op: 'stdin'; bytes: Uint8Array }
  | { op: 'stdin-end' }
  /** A prewarmed worker's machine. */
  | { op: 'init'; init: WorkerInit }
  /** A prewarmed worker, while idle: restore this snapshot once and throw it away (worker-entry.ts rehearse). */
  | { op: 'rehearse'; image: MemorySnapshot };

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
  /** The command's stdout and stderr (stdio: 'virtio'). */
  | { t: 'stdout' | 'stderr'; bytes: Uint8Array }
  | { t: 'guest'; event: GuestEvent }
  | { t: 'error'; error: WireError };

export function toWire(err: unknown): WireError {
  if (err instanceof VisorError) return { code: err.code, message: err.message };
  return { code: 'Internal', message: err instanceof Error ? err.message : String(err) };
}

export function fromWire(e: WireError): VisorError {
  return new VisorError(e.code, e.message);
}

export type GuestEvent =
  /** The guest agent opened (or closed) its port: whether stop() can ask the guest. */
  | { kind: 'agent'; listening: boolean }
  | { kind: 'poweroff' }
  | { kind: 'reboot' }
  | { kind: 'fail'; code: number }
  | { kind: 'panic'; line: string };

/**
 * Where runUntil() pauses: at the end of the first instruction batch in which the guest printed
 * `output` on its console, or by which `instructions` (since boot) have run. Output counts
 * from where the previous runUntil matched (or the boot), within the last 64 KiB: text
 * printed just before the call is found (then the machine pauses where it stands). Batches
 * sit on the fixed grid, so for a deterministic guest the point is the same however fast the
 * host runs it.
 */
export interface UntilCondition extends PausePoint {
  /** Machine.runUntil: give up after this long (default 5 minutes), pausing the machine. */
  timeoutMs?: number;
}

/** How stop() ended the machine. */
export interface StopResult {
  /** The guest shut itself down at the agent's request, before the timeout. */
  graceful: boolean;
  /**
   * Why it was stopped by force instead: 'no-agent' (no agent listened on its port within the
   * timeout, or the machine has no agent port), 'timeout' (the agent was asked but the guest
   * had not powered off by the timeout), 'not-running' (created or paused: nobody to ask),
   * 'requested' (graceful: false).
   */
  forced?: 'no-agent' | 'timeout' | 'not-running' | 'requested';
}

export interface StopRequest {
  /** Ask the guest first (default true). */
  graceful?: boolean;
  /** How long to wait for the agent and then for the guest to power off (default 10 s). */
  timeoutMs?: number;
}

export const DEFAULT_STOP_TIMEOUT_MS = 10_000;
