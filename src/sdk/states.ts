/**
 * The machine lifecycle as an explicit table (Firecracker's vCPU states are the model):
 *
 *   created --start--> running --pause--> paused --resume--> running
 *   any but stopped --stop/kill--> stopped          (the guest powering off also stops it)
 *   running, paused --snapshot--> (unchanged)
 *
 * An action the table does not list for the current state is refused with a NotAllowed error
 * that names the state.
 */
import { VisorError } from '../base/errors.js';

export type MachineState = 'created' | 'running' | 'paused' | 'stopped';
export type MachineAction = 'start' | 'pause' | 'resume' | 'snapshot' | 'stop' | 'kill';

export const TRANSITIONS: Readonly<Record<MachineState, Readonly<Partial<Record<MachineAction, MachineState>>>>> = {
  created: { start: 'running', stop: 'stopped', kill: 'stopped' },
  running: { pause: 'paused', snapshot: 'running', stop: 'stopped', kill: 'stopped' },
  paused: { resume: 'running', snapshot: 'paused', stop: 'stopped', kill: 'stopped' },
  stopped: {},
};

export const MACHINE_STATES = Object.keys(TRANSITIONS) as MachineState[];
export const MACHINE_ACTIONS: readonly MachineAction[] = ['start', 'pause', 'resume', 'snapshot', 'stop', 'kill'];

/** The state after `action`, or a NotAllowed error naming the current state. */
export function transition(state: MachineState, action: MachineAction): MachineState {
  const next = TRANSITIONS[state][action];
  if (next === undefined) {
    const allowed = Object.keys(TRANSITIONS[state]);
    throw new VisorError(
      'NotAllowed',
      `cannot ${action} a machine that is ${state}` + (allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''),
    );
  }
  return next;
}
