/**
 * visor's public TypeScript API: `import { Machine } from 'visor'`.
 */
export { Machine, type MachineStats, type NicStats, type SnapshotInfo, type SnapshotOptions, type StopOptions, type CreateOptions, type RestoreOptions, type MachineEvents } from './machine.js';
export { MachineConfigSchema, parseMachineConfig, defaultAccel, type Accel, type MachineConfig, type ResolvedConfig, type ImageResolver } from './config.js';
export { TRANSITIONS, transition, type MachineState, type MachineAction } from './states.js';
export type { GuestEvent, UntilCondition, StopResult } from './protocol.js';
export { VisorError, isVisorError, type VisorErrorCode } from '../base/errors.js';
export {
  Sandbox,
  CommandHandle,
  CommandExitError,
  TimeoutError,
  NotSupportedError,
  type SandboxOptions,
  type RunOptions,
  type CommandResult,
  type EntryInfoWithPath,
  type FilesystemEvent,
  type FilesystemEventType,
  type ForkOptions,
  type SandboxNetwork,
} from './sandbox.js';
export type { TierCode } from '../cpu/tier.js';
export type { MemorySnapshot } from '../host/snapshot/memory.js';
export { agentFiles, type AgentFile } from '../guest/agent-files.js';
