/**
 * What the daemon needs from inside a guest: exec and files, through the guest agent. The
 * daemon depends on this narrow interface only; the routes and their tests run against a fake.
 *
 * Binding to the SDK's Sandbox (src/sdk/sandbox.ts, the sandbox issue): `sandboxGuestOps`
 * below is the one place to wire it. Until it is wired the daemon answers exec and files
 * with Unsupported (501) saying so.
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

export interface GuestOps {
  exec(vm: Machine, req: ExecRequest): Promise<ExecResult>;
  readFile(vm: Machine, path: string): Promise<Uint8Array>;
  writeFile(vm: Machine, path: string, data: Uint8Array): Promise<void>;
  list(vm: Machine, path: string): Promise<GuestEntry[]>;
  remove(vm: Machine, path: string): Promise<void>;
}

const notYet = (): never => {
  throw new VisorError('Unsupported', 'exec and files need the guest agent binding (src/server/guest-ops.ts sandboxGuestOps), which this build does not have yet');
};

/** Until the Sandbox lands: every call says exec and files are not wired. */
export const unwiredGuestOps: GuestOps = {
  exec: async () => notYet(),
  readFile: async () => notYet(),
  writeFile: async () => notYet(),
  list: async () => notYet(),
  remove: async () => notYet(),
};

/**
 * The adapter the lead wires when src/sdk/sandbox.ts lands: a Sandbox over the daemon's
 * Machine (its agent port), then
 *   exec:      (vm, r) => sandboxFor(vm).commands.run(r.cmd, { cwd: r.cwd, envs: r.envs, timeoutMs: r.timeoutMs })
 *   readFile:  (vm, p) => sandboxFor(vm).files.read(p)
 *   writeFile: (vm, p, d) => sandboxFor(vm).files.write(p, d)
 *   list:      (vm, p) => sandboxFor(vm).files.list(p)   (mapped to GuestEntry)
 *   remove:    (vm, p) => sandboxFor(vm).files.remove(p)
 * and daemon.ts passes it as `guest` (it passes unwiredGuestOps today).
 */
export const sandboxGuestOps: GuestOps = unwiredGuestOps;
