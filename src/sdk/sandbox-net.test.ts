import { describe, expect, it } from 'vitest';
import { isVisorError } from '../base/errors.js';
import { parseFirewallEntry } from '../net/user/spec.js';
import { Firewall } from '../net/user/firewall.js';
import { ip4 } from '../net/user/packet.js';
import { sandboxNetPolicy } from './sandbox.js';

/** Whether a guest's outgoing TCP to `addr` passes the policy (the user network's own firewall). */
function reaches(policy: { firewall: string[]; hostAccess: boolean }, addr: string): boolean {
  const rules = policy.firewall.map((t) => parseFirewallEntry(t));
  for (const r of rules) if (typeof r === 'string') throw new Error(r);
  const all = [...(policy.hostAccess ? [] : [parseFirewallEntry('deny out:any:host')]), ...rules] as Exclude<ReturnType<typeof parseFirewallEntry>, string>[];
  const fw = new Firewall(all, (a) => a === ip4('10.0.2.2'));
  return fw.allows({ dir: 'out', proto: 'tcp', addr: ip4(addr)!, port: 80 });
}

describe('sandboxNetPolicy', () => {
  it('denies the host by default and allows the rest', () => {
    const p = sandboxNetPolicy();
    expect(p).toEqual({ firewall: [], hostAccess: false });
    expect(reaches(p, '10.0.2.2')).toBe(false);
    expect(reaches(p, '192.0.2.1')).toBe(true);
    expect(sandboxNetPolicy({ denyHost: false }).hostAccess).toBe(true);
  });

  it('lets allowOut win over denyOut, and never over denyHost', () => {
    const p = sandboxNetPolicy({ denyOut: ['0.0.0.0/0'], allowOut: ['192.0.2.0/24'] });
    expect(reaches(p, '192.0.2.7')).toBe(true);
    expect(reaches(p, '198.51.100.1')).toBe(false);
    expect(reaches(sandboxNetPolicy({ allowOut: ['10.0.2.2'] }), '10.0.2.2')).toBe(false);
    expect(reaches(sandboxNetPolicy({ denyHost: false, denyOut: ['10.0.2.0/24'] }), '10.0.2.2')).toBe(false);
  });

  it('refuses host names, injected rule parts and unknown options', () => {
    for (const bad of [{ denyOut: ['example.com'] }, { allowOut: ['1.2.3.4:22'] }, { denyOut: 'any' }, { denyHost: 'yes' }, { allowIn: ['any'] }]) {
      let err: unknown;
      try {
        sandboxNetPolicy(bad as never);
      } catch (e) {
        err = e;
      }
      expect(isVisorError(err, 'InvalidArgument')).toBe(true);
    }
  });
});
