/**
 * Ordered allow/deny rules for the user-mode network. The first rule that matches decides;
 * nothing matching means allowed (QEMU's user networking filters nothing). Syntax, as the
 * CLI's --net-allow / --net-deny take it and the SDK's rule strings:
 *
 *     DIR:PROTO:TARGET[:PORTS]
 *     DIR    out (guest → world) | in (port forwards: host client → guest)
 *     PROTO  tcp | udp | icmp | any
 *     TARGET CIDR (10.0.0.0/8, 1.2.3.4) | any | host (10.0.2.2 and the host's own addresses)
 *     PORTS  N | N-M (destination port out, the guest's port in; omitted: all)
 *
 * e.g. `out:tcp:10.0.0.0/8:80-443`, `out:any:host`, `in:tcp:127.0.0.1:22`.
 */
import { inCidr, parseCidr, type Cidr, type Ip4 } from './packet.js';

export type Direction = 'in' | 'out';
export type RuleProto = 'tcp' | 'udp' | 'icmp' | 'any';

export interface FirewallRule {
  action: 'allow' | 'deny';
  dir: Direction;
  proto: RuleProto;
  /** 'host' means the gateway and the host's own addresses. */
  target: Cidr | 'host' | 'any';
  ports?: { from: number; to: number };
}

/** Parses one rule; returns the reason when it is malformed. */
export function parseRule(action: 'allow' | 'deny', text: string): FirewallRule | string {
  const parts = text.split(':');
  if (parts.length < 3 || parts.length > 4) return `expected DIR:PROTO:TARGET[:PORTS], got '${text}'`;
  const [dir, proto, target, ports] = parts as [string, string, string, string | undefined];
  if (dir !== 'in' && dir !== 'out') return `direction must be in or out, got '${dir}'`;
  if (proto !== 'tcp' && proto !== 'udp' && proto !== 'icmp' && proto !== 'any') return `protocol must be tcp, udp, icmp or any, got '${proto}'`;
  let t: FirewallRule['target'];
  if (target === 'host' || target === 'any') t = target;
  else {
    const c = parseCidr(target);
    if (!c) return `target must be a CIDR, 'host' or 'any', got '${target}'`;
    t = c;
  }
  const rule: FirewallRule = { action, dir, proto, target: t };
  if (ports !== undefined) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(ports);
    const from = m ? Number(m[1]) : NaN;
    const to = m ? Number(m[2] ?? m[1]) : NaN;
    if (!m || from < 1 || to > 65535 || from > to) return `ports must be N or N-M within 1-65535, got '${ports}'`;
    if (proto === 'icmp') return 'icmp rules take no ports';
    rule.ports = { from, to };
  }
  return rule;
}

export interface FlowKey {
  dir: Direction;
  proto: 'tcp' | 'udp' | 'icmp';
  /** Out: the destination as the guest addressed it. In: the host client's address. */
  addr: Ip4;
  /** Out: destination port. In: the guest's port. 0 for icmp. */
  port: number;
}

export class Firewall {
  constructor(
    private readonly rules: readonly FirewallRule[],
    /** Whether an address is the host itself (the gateway or one of the host's). */
    private readonly isHost: (a: Ip4) => boolean,
  ) {}

  allows(k: FlowKey): boolean {
    for (const r of this.rules) if (this.matches(r, k)) return r.action === 'allow';
    return true;
  }

  private matches(r: FirewallRule, k: FlowKey): boolean {
    if (r.dir !== k.dir) return false;
    if (r.proto !== 'any' && r.proto !== k.proto) return false;
    if (r.target === 'host') {
      if (!this.isHost(k.addr)) return false;
    } else if (r.target !== 'any' && !inCidr(k.addr, r.target)) return false;
    if (r.ports && (k.proto === 'icmp' || k.port < r.ports.from || k.port > r.ports.to)) return false;
    return true;
  }
}
