/**
 * The daemon's networks: each is a user-mode network (src/net/user/: NAT, DHCP, DNS, the
 * firewall, port forwards) that the daemon process itself hosts while any of the network's
 * machines runs. Machines run in worker threads; their NICs name the network as
 * `{ user: NAME }` and join it over its socket (host/net-socket.ts) as members, so the NAT,
 * its rules and its forwards live in one place, the daemon, whichever machines come and go.
 *
 * The daemon must host a network before any of its machines starts (`up`): a machine that
 * found no host would host the network itself, without the rules. `up` refuses when another
 * process already hosts the name (it is derived from the daemon's state directory, so two
 * daemons never share one).
 *
 * Rules and forwards are fixed while the network is hosted: changing them (PUT) waits until
 * no machine of the network runs, and the next start applies them. A forward naming a
 * machine reaches that machine's NIC on the network (by MAC, wherever DHCP put it), and is
 * opened when that machine starts; one naming none reaches the first lease (10.0.2.15).
 */
import { createHash } from 'node:crypto';
import { VisorError } from '../base/errors.js';
import { stableMac } from '../net/mac.js';
import { L2Switch } from '../net/switch.js';
import type { HostSockets } from '../net/user/host-sockets.js';
import { parseFirewallEntry } from '../net/user/spec.js';
import type { FirewallRule } from '../net/user/firewall.js';
import { UserNet } from '../net/user/user-net.js';
import { joinSocketSwitch, userNetSocketPath, type SocketSwitchMembership } from '../host/net-socket.js';
import { NodeHostSockets } from '../host/usernet-sockets.js';
import { ruleText, type NetworkRule, type NetworkSpec } from './schemas.js';

/** Ticks (retransmissions, idle timeouts) of a hosted network. */
const TICK_MS = 100;

/** The rule parsed by the firewall's own parser; a message when it is not a rule. */
export function parseNetworkRule(r: NetworkRule): FirewallRule | string {
  return parseFirewallEntry(ruleText(r));
}

/** A machine's NIC on a network: its MAC is the SDK's stable MAC for the machine's id and the NIC's index. */
export function nicMac(machineId: string, index: number): Uint8Array {
  return stableMac(index === 0 ? machineId : `${machineId}#${index}`);
}

export interface NetworkMember {
  id: string;
  name: string;
  /** Index of this network among the machine's NICs. */
  nic: number;
}

interface Hosted {
  net: UserNet;
  membership: SocketSwitchMembership;
  timer: ReturnType<typeof setInterval>;
  forwards: NetworkSpec['forwards'];
  machines: Set<string>;
  /** Forwards listening (index into `forwards`). */
  open: Set<number>;
}

export class DaemonNetworks {
  /** Networks being hosted or hosted (the promise), and those hosted (settled). */
  private readonly hosted = new Map<string, Promise<Hosted>>();
  private readonly settled = new Map<string, Hosted>();

  /**
   * @param stateDir makes the networks' socket names this daemon's own.
   * @param socketDir where their sockets are (default the workers' default: $XDG_RUNTIME_DIR or the temp dir).
   */
  constructor(
    private readonly stateDir: string,
    private readonly opts: { socketDir?: string; sockets?: () => HostSockets } = {},
  ) {}

  /** The user network's name the machines' NICs join (≤ 64 characters, unique per daemon, project and network). */
  switchName(project: string, network: string): string {
    return `visord-${createHash('sha256').update(`${this.stateDir}\0${project}\0${network}`).digest('hex').slice(0, 24)}`;
  }

  private key(project: string, network: string): string {
    return `${project}/${network}`;
  }

  /** Whether the daemon hosts the network now (a machine of it runs), and which machines. */
  status(project: string, network: string): { active: boolean; machines: string[] } {
    const h = this.settled.get(this.key(project, network));
    return h ? { active: true, machines: [...h.machines] } : { active: false, machines: [] };
  }

  /** Counters of a hosted network's NAT. */
  counters(project: string, network: string): UserNet['counters'] | undefined {
    return this.settled.get(this.key(project, network))?.net.counters;
  }

  /**
   * Hosts the network (if not yet) and opens the forwards that go to `member`; call before
   * the machine's worker starts. Rejects (NetworkError) when the network cannot be hosted or
   * a forward's host port cannot be listened on.
   */
  async up(project: string, network: string, spec: NetworkSpec, member: NetworkMember): Promise<void> {
    const key = this.key(project, network);
    let p = this.hosted.get(key);
    if (!p) {
      p = this.host(project, network, spec);
      this.hosted.set(key, p);
      p.then((h) => this.settled.set(key, h), () => this.hosted.delete(key));
    }
    const h = await p;
    h.machines.add(member.id);
    try {
      for (const [i, f] of h.forwards.entries()) {
        if (h.open.has(i)) continue;
        if (f.machine !== undefined && f.machine !== member.name) continue;
        const proto = f.protocol ?? 'tcp';
        try {
          await h.net.addForward({ proto, hostAddress: '127.0.0.1', hostPort: f.hostPort, guestPort: f.guestPort, ...(f.machine !== undefined ? { guestMac: nicMac(member.id, member.nic) } : {}) });
        } catch (err) {
          throw new VisorError('NetworkError', `network ${network}: cannot forward 127.0.0.1:${f.hostPort}/${proto}: ${(err as Error).message}`, { cause: err });
        }
        h.open.add(i);
      }
    } catch (err) {
      await this.down(project, network, member.id);
      throw err;
    }
  }

  /** The machine left the network (stopped); the last one out ends the hosting. */
  async down(project: string, network: string, machineId: string): Promise<void> {
    const key = this.key(project, network);
    const h = this.settled.get(key);
    if (!h || !h.machines.delete(machineId) || h.machines.size > 0) return;
    this.settled.delete(key);
    this.hosted.delete(key);
    await this.end(h);
  }

  private async host(project: string, network: string, spec: NetworkSpec): Promise<Hosted> {
    const rules = spec.rules.map((r) => {
      const parsed = parseNetworkRule(r);
      if (typeof parsed === 'string') throw new VisorError('InvalidConfig', `network ${network}: rule ${ruleText(r)}: ${parsed}`);
      return parsed;
    });
    const path = userNetSocketPath(this.switchName(project, network), this.opts.socketDir);
    const sw = new L2Switch(`net:${project}/${network}`);
    const membership = await joinSocketSwitch(sw, path);
    if (membership.role !== 'hub') {
      await membership.close();
      throw new VisorError('NetworkError', `network ${network}: another process already hosts ${path}; stop it (or remove the socket) and start again`);
    }
    const net = new UserNet({ sockets: this.opts.sockets?.() ?? new NodeHostSockets(), rules, hostAccess: spec.hostAccess ?? false });
    const port = sw.attach((f) => net.receive(f), 'nat');
    net.connect((f) => port.send(f));
    const timer = setInterval(() => net.tick(), TICK_MS);
    timer.unref?.();
    return { net, membership, timer, forwards: spec.forwards, machines: new Set(), open: new Set() };
  }

  private async end(h: Hosted): Promise<void> {
    clearInterval(h.timer);
    h.net.close();
    await h.membership.close();
  }

  /** Ends every hosted network (daemon shutdown, after the machines). */
  async close(): Promise<void> {
    const all = [...this.settled.values()];
    this.settled.clear();
    this.hosted.clear();
    await Promise.allSettled(all.map((h) => this.end(h)));
  }
}
