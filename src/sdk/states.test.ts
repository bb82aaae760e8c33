import { describe, expect, it } from 'vitest';
import { VisorError } from '../base/errors.js';
import { MACHINE_ACTIONS, MACHINE_STATES, TRANSITIONS, transition } from './states.js';

describe('machine state table', () => {
  const legal: Record<string, string> = {
    'created start': 'running', 'created stop': 'stopped', 'created kill': 'stopped',
    'running pause': 'paused', 'running snapshot': 'running', 'running stop': 'stopped', 'running kill': 'stopped',
    'paused resume': 'running', 'paused snapshot': 'paused', 'paused stop': 'stopped', 'paused kill': 'stopped',
  };

  for (const s of MACHINE_STATES) {
    for (const a of MACHINE_ACTIONS) {
      const want = legal[`${s} ${a}`];
      it(`${s} --${a}--> ${want ?? 'NotAllowed'}`, () => {
        if (want) {
          expect(transition(s, a)).toBe(want);
        } else {
          let err: unknown;
          try {
            transition(s, a);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(VisorError);
          expect((err as VisorError).code).toBe('NotAllowed');
          expect((err as VisorError).message).toContain(`is ${s}`);
        }
      });
    }
  }

  it('lists exactly the legal transitions', () => {
    const n = Object.values(TRANSITIONS).reduce((k, t) => k + Object.keys(t).length, 0);
    expect(n).toBe(Object.keys(legal).length);
  });
});
