/**
 * What the daemon needs from inside a guest: exec and files, through the guest agent. The
 * daemon depends on this narrow interface only; the routes and their tests run against a fake.
 *
 * The daemon uses AgentGuestOps (agent-ops.ts): visor's guest agent over each machine's
 * virtio-vsock; tests pass a fake.
 */
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

/** A command whose output streams as it comes (`WS /v1/machines/{id}/exec`). */
export interface ExecStreamHandle {
  /** Its pid in the guest. */
  pid: number;
  /** Resolves when it ended: its exit code, or the signal that ended it (then exitCode is 128 + signal). */
  exited: Promise<{ exitCode: number; signal: number }>;
  /** Bytes for its stdin (when started with stdin). */
  write(data: Uint8Array): Promise<void>;
  /** End of its stdin. */
  closeStdin(): Promise<void>;
  signal(signo: number): Promise<void>;
}

export interface ExecStreamHandlers {
  onStdout(data: Uint8Array): void;
  onStderr(data: Uint8Array): void;
}

export interface GuestOps {
  /** The host end of a machine's agent channel (a vsock's Unix socket), where the ops need one. */
  socketPath?(machineId: string): string;
  /** Tells the ops which daemon machine a live Machine is (a fork's Machine carries its parent's name). */
  bindMachine?(vm: Machine, machineId: string): void;
  openPty?(vm: Machine, size: { cols: number; rows: number }, onData: (d: Uint8Array) => void, onExit: (code: number) => void): Promise<PtyHandle>;
  exec(vm: Machine, req: ExecRequest): Promise<ExecResult>;
  /** Starts a command whose stdout and stderr stream to `h`; resolves once it started. */
  execStream?(vm: Machine, req: Omit<ExecRequest, 'timeoutMs'> & { stdin: boolean }, h: ExecStreamHandlers): Promise<ExecStreamHandle>;
  readFile(vm: Machine, path: string): Promise<Uint8Array>;
  writeFile(vm: Machine, path: string, data: Uint8Array): Promise<void>;
  list(vm: Machine, path: string): Promise<GuestEntry[]>;
  remove(vm: Machine, path: string): Promise<void>;
}

