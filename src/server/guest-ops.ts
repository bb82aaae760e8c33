/**
 * What the daemon needs from inside a guest: exec and files, through the guest agent. The
 * daemon depends on this narrow interface only; the routes and their tests run against a fake.
 *
 * The daemon uses AgentGuestOps (agent-ops.ts): visor's guest agent over each machine's
 * virtio-vsock. `unwiredGuestOps` answers exec and files with Unsupported (501), for daemons
 * started without it.
 */
import { VisorError } from '../base/errors.js';
import type { Machine } from '../sdk/machine.js';

export interface ExecRequest {
  cmd: string;
  cwd?: string;
  envs?: Record<string, string>;
  timeoutMs?: number;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface GuestEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
}

/** A shell on a pty in the guest (the web console's shell tab, `WS /v1/machines/{id}/pty`). */
export interface PtyHandle {
  write(data: Uint8Array): Promise<void>;
  resize(cols: number, rows: number): Promise<void>;
  close(): Promise<void>;
}

export interface GuestOps {
  /** The host end of a machine's agent channel (a vsock's Unix socket), where the ops need one. */
  socketPath?(machineId: string): string;
  /** Tells the ops which daemon machine a live Machine is (a fork's Machine carries its parent's name). */
  bindMachine?(vm: Machine, machineId: string): void;
  openPty?(vm: Machine, size: { cols: number; rows: number }, onData: (d: Uint8Array) => void, onExit: (code: number) => void): Promise<PtyHandle>;
  exec(vm: Machine, req: ExecRequest): Promise<ExecResult>;
  readFile(vm: Machine, path: string): Promise<Uint8Array>;
  writeFile(vm: Machine, path: string, data: Uint8Array): Promise<void>;
  list(vm: Machine, path: string): Promise<GuestEntry[]>;
  remove(vm: Machine, path: string): Promise<void>;
}

const notYet = (): never => {
  throw new VisorError('Unsupported', 'exec and files are not available on this daemon (it was started without a guest agent binding)');
};

/** Until the Sandbox lands: every call says exec and files are not wired. */
export const unwiredGuestOps: GuestOps = {
  exec: async () => notYet(),
  readFile: async () => notYet(),
  writeFile: async () => notYet(),
  list: async () => notYet(),
  remove: async () => notYet(),
};

/** The real binding is AgentGuestOps (agent-ops.ts), which the daemon uses unless given another. */
