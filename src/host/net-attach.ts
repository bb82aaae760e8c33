/**
 * NICs and the networks they plug into, for one visor process.
 *
 * - `switch=NAME`: every VM naming the same switch gets a port on one in-process L2Switch,
 *   and that switch joins the host-wide one over a Unix socket (net-socket.ts), so VMs in
 *   other visor processes on this host are on the same segment.
 * - `user` (private) and `user=NAME` (shared): a user-mode network (src/net/user/: NAT, DHCP,
 *   DNS, port forwards, firewall) on its own switch. A named one is shared across processes
 *   the same way a switch is, and the process that hosts the socket hub (the first to use
 *   the name) also hosts the one NAT: one gateway, one DHCP lease table, so leases never
 *   collide and VMs reach each other through the switch. Later processes' VMs use that NAT;
 *   their port forwards and firewall rules are refused (they would silently not apply), so
 *   publish ports from the process that started the network. If that process exits, the
 *   others lose the NAT and must rejoin.
 *
 * Each NIC gets a NicShaper (rate limits and counters). The MAC is derived from the VM name,
 * so it is stable across runs and a DHCP lease follows the VM.
 */
import { VisorError } from '../base/errors.js';
import { stableMac } from '../net/mac.js';
import { NicShaper, type NicCounters } from '../net/nic-shaper.js';
import { parseFirewallEntry } from '../net/user/spec.js';
import type { FirewallRule } from '../net/user/firewall.js';
import { UserNet, type UserNetCounters } from '../net/user/user-net.js';
import type { SavedTcpFlow } from '../net/user/tcp.js';
import { L2Switch, SwitchRegistry } from '../net/switch.js';
import { VirtioNet } from '../virtio/net/device.js';
import { joinSocketSwitch, switchSocketPath, userNetSocketPath, type SocketSwitchMembership } from './net-socket.js';
import { NodeHostSockets } from './usernet-sockets.js';
import type { HostSockets } from '../net/user/host-sockets.js';

import type { ForwardSpec, NetSpec } from '../vm/spec.js';
// A NIC's resolved spec is part of a machine's spec (vm/spec.ts).
export type { ForwardSpec, NetSpec } from '../vm/spec.js';

export interface NetAttachmentCounters {
  nic: NicCounters;
  /** The user network's, where this process hosts it. */
  nat?: UserNetCounters & { activeTcp: number; activeUdp: number };
}

export interface NetAttachment {
  readonly device: VirtioNet;
  readonly switchName: string;
  counters(): NetAttachmentCounters;
  /** This NIC's guest TCP connections through the NAT (for a snapshot); none where another process hosts it. */
  savedFlows(): SavedTcpFlow[];
  /** After a restore: resets those connections in the guest (their host sockets are gone). */
  resetRestored(flows: readonly SavedTcpFlow[]): number;
  /**
   * A port forward added while the machine runs (a user network this process hosts; else
   * undefined). Rejects with the host's error (the port in use, …).
   */
  addForward?(f: ForwardSpec): Promise<void>;
  /**
   * Gives the NIC another address (VirtioNet.setMac: a fork's child must not share its
   * parent's); forwards find the guest by it from now on. Resets of restored connections
   * still go to the address the NIC was opened with: the guest has it until it is told.
   */
  setMac(mac: Uint8Array): void;
  /**
   * A private user network's new firewall rules (`allow|deny DIR:PROTO:TARGET[:PORTS]`) and
   * host access (UserNet.setPolicy); undefined on other networks, whose policy is the network's.
   */
  setPolicy?(firewall: readonly string[], hostAccess: boolean): void;
  dispose(): Promise<void>;
}

interface HostedUserNet {
  net: UserNet;
  policy: string;
  timer: ReturnType<typeof setInterval>;
  detach(): void;
}

function parseRules(firewall: readonly string[]): FirewallRule[] {
  return firewall.map((t) => {
    const r = parseFirewallEntry(t);
    if (typeof r === 'string') throw new VisorError('InvalidConfig', `firewall: ${r}`);
    return r;
  });
}

/** Ticks (retransmissions, idle timeouts) of a user network. */
const USERNET_TICK_MS = 100;

export class HostNetworks {
  private readonly registry = new SwitchRegistry();
  private readonly joined = new Map<string, Promise<SocketSwitchMembership | null>>();
  private readonly users = new Map<string, number>();
  private readonly userNets = new Map<string, HostedUserNet>();

  /**
   * @param crossProcess join the host-wide switch over a Unix socket (default true);
   *   `socketDir` overrides where its socket lives (tests); `sockets` the host's sockets.
   */
  constructor(private readonly opts: { crossProcess?: boolean; socketDir?: string; sockets?: HostSockets } = {}) {}

  /** A NIC for VM `vmName` plugged into switch `switchName`. */
  attach(switchName: string, vmName: string, mac = stableMac(vmName)): Promise<NetAttachment> {
    return this.attachSpec({ switch: switchName }, vmName, mac);
  }

  /** A NIC for VM `vmName` on the network `spec` names. */
  async attachSpec(spec: NetSpec, vmName: string, mac = stableMac(vmName)): Promise<NetAttachment> {
    const crossProcess = this.opts.crossProcess ?? true;
    let key: string;
    let sw: L2Switch;
    let membership: SocketSwitchMembership | null = null;
    let privateNet: HostedUserNet | null = null;
    if ('switch' in spec) {
      key = spec.switch;
      const path = switchSocketPath(spec.switch, this.opts.socketDir); // validates the name
      sw = this.registry.get(key);
      if (crossProcess && !this.joined.has(key)) this.joined.set(key, joinSocketSwitch(sw, path));
      membership = (await this.joined.get(key)) ?? null;
    } else if (spec.user === null) {
      // A private network has one NIC: the NAT talks to it directly (no switch), which lets
      // large TCP segments and partial checksums through (virtio-net offloads).
      key = `user:${vmName}:${Math.random().toString(36).slice(2)}`;
      sw = new L2Switch(key);
      privateNet = this.hostUserNet(key, null, spec);
    } else {
      key = `user:${spec.user}`;
      const path = userNetSocketPath(spec.user, this.opts.socketDir);
      sw = this.registry.get(key);
      if (crossProcess && !this.joined.has(key)) this.joined.set(key, joinSocketSwitch(sw, path));
      membership = (await this.joined.get(key)) ?? null;
      if (membership?.role === 'member') {
        if (spec.publish.length || spec.firewall.length || !spec.hostAccess) {
          throw new VisorError('NotAllowed', `--net user=${spec.user}: another visor process hosts this network's NAT; publish ports and set firewall rules from that process (the first to use the network)`);
        }
      } else {
        const have = this.userNets.get(key);
        const policy = JSON.stringify([spec.firewall, spec.hostAccess]);
        if (have && have.policy !== policy) throw new VisorError('InvalidConfig', `--net user=${spec.user}: the network's firewall and host access are set by its first VM; give the same (or none) here`);
        if (!have) this.userNets.set(key, this.hostUserNet(key, sw, spec));
      }
    }
    const hosted = privateNet ?? this.userNets.get(key) ?? null;
    if (hosted && 'user' in spec) {
      for (const f of spec.publish) {
        try {
          await hosted.net.addForward({ ...f, guestMac: mac });
        } catch (err) {
          throw new VisorError('NetworkError', `cannot publish ${f.hostAddress}:${f.hostPort} (${f.proto}): ${(err as Error).message}`, { cause: err });
        }
      }
    }
    const device = new VirtioNet({ mac, offloads: privateNet !== null });
    let port: ReturnType<L2Switch['attach']> | null = null;
    let shaper: NicShaper;
    if (privateNet) {
      const net = privateNet.net;
      shaper = new NicShaper(spec.rateLimit ?? {}, (f) => net.receive(f), (f, meta) => device.receive(f, meta));
      net.connect((f, meta) => shaper.toGuest(f, meta), () => device.acceptsGso);
    } else {
      shaper = new NicShaper(spec.rateLimit ?? {}, (f) => port?.send(f), (f) => device.receive(f));
      port = sw.attach((f) => shaper.toGuest(f), vmName);
    }
    device.connect({ send: (f) => shaper.fromGuest(f) });
    this.users.set(key, (this.users.get(key) ?? 0) + 1);
    let disposed = false;
    /** The NIC's address now (setMac); `mac` stays the one it was opened with. */
    let current = mac;
    const addForward = hosted
      ? async (f: ForwardSpec): Promise<void> => {
          try {
            await hosted.net.addForward({ ...f, guestMac: current });
          } catch (err) {
            throw new VisorError('NetworkError', `cannot publish ${f.hostAddress}:${f.hostPort} (${f.proto}): ${(err as Error).message}`, { cause: err });
          }
        }
      : undefined;
    return {
      device,
      switchName: key,
      ...(addForward ? { addForward } : {}),
      counters: () => {
        const c: NetAttachmentCounters = { nic: { ...shaper.counters } };
        if (hosted) c.nat = { ...hosted.net.counters, drops: { ...hosted.net.counters.drops }, activeTcp: hosted.net.activeFlows.tcp, activeUdp: hosted.net.activeFlows.udp };
        return c;
      },
      savedFlows: () => {
        if (!hosted) return [];
        if (privateNet) return hosted.net.savedTcpFlows();
        const addr = hosted.net.addressOf(current);
        return addr === null ? [] : hosted.net.savedTcpFlows(addr);
      },
      resetRestored: (flows) => (hosted ? hosted.net.resetRestored(flows, mac) : 0),
      setMac: (m) => {
        device.setMac(m);
        current = m.slice();
      },
      ...(privateNet
        ? {
            setPolicy: (firewall: readonly string[], hostAccess: boolean) => privateNet.net.setPolicy({ rules: parseRules(firewall), hostAccess }),
          }
        : {}),
      dispose: async () => {
        if (disposed) return;
        disposed = true;
        device.connect(null);
        port?.detach();
        const left = (this.users.get(key) ?? 1) - 1;
        this.users.set(key, left);
        if (left === 0) {
          this.users.delete(key);
          const h = privateNet ?? this.userNets.get(key);
          h?.detach();
          this.userNets.delete(key);
          const m = await this.joined.get(key);
          this.joined.delete(key);
          await m?.close();
        }
      },
    };
  }

  private hostUserNet(key: string, sw: L2Switch | null, spec: Extract<NetSpec, { user: string | null }>): HostedUserNet {
    const net = new UserNet({ sockets: this.opts.sockets ?? new NodeHostSockets(), rules: parseRules(spec.firewall), hostAccess: spec.hostAccess });
    const port = sw?.attach((f) => net.receive(f), 'nat');
    if (port) net.connect((f) => port.send(f));
    const timer = setInterval(() => net.tick(), USERNET_TICK_MS);
    timer.unref?.();
    return {
      net,
      policy: JSON.stringify([spec.firewall, spec.hostAccess]),
      timer,
      detach: () => {
        clearInterval(timer);
        net.close();
        port?.detach();
        void key;
      },
    };
  }
}

// The NIC and NAT counters' layout is the stats layout's (vm/stats.ts): the SDK reads it
// without loading the network stack.
export { NET_STAT_KEYS, NIC_STAT_KEYS } from '../vm/stats.js';
import { MAX_STAT_NICS, NAT_DROP_REASONS, NET_STAT_KEYS, NIC_STAT_KEYS, NIC_STAT_SLOTS, STAT, type NatDropReason } from '../vm/stats.js';
import { DROP_REASONS, type DropReason } from '../net/user/drop-reasons.js';

// The stats layout restates the stack's drop reasons; both directions must type-check.
const sameReasons: [DropReason[], NatDropReason[]] = [[...NAT_DROP_REASONS], [...DROP_REASONS]];
void sameReasons;

const NIC_SLOTS = NIC_STAT_SLOTS;

/** One NIC's NIC_STAT_KEYS values. */
export function nicStatValues(n: NetAttachment): number[] {
  const c = n.counters();
  const d = n.device.counters;
  const v = [d.rxFrames, d.rxBytes, d.txFrames, d.txBytes, d.rxDropped, d.txErrors, c.nic.rxRateDrops, c.nic.txRateDrops, c.nic.rxDelayed, c.nic.txDelayed];
  if (c.nat) {
    const t = c.nat;
    v.push(1, t.tcpFlowsOpened, t.udpFlowsOpened, t.activeTcp, t.activeUdp, t.dnsQueries, t.dhcpReplies, t.tcpRetransmits, t.tcpRestoredResets, ...NAT_DROP_REASONS.map((r) => t.drops[r]));
  }
  while (v.length < NIC_STAT_KEYS.length) v.push(0);
  return v;
}

/**
 * Writes the machine's network counters into the stats array `out` (STAT layout): the sums
 * over `nets` at STAT.net (NET_STAT_KEYS), and each NIC's own at STAT.nics (NIC_STAT_KEYS).
 */
export function writeNetStats(out: Float64Array, nets: readonly NetAttachment[]): void {
  const v = new Array<number>(NET_STAT_KEYS.length).fill(0);
  out[STAT.nics] = Math.min(nets.length, MAX_STAT_NICS);
  for (const [i, n] of nets.entries()) {
    const c = n.counters();
    const d = n.device.counters;
    v[0] += d.rxFrames;
    v[1] += d.txFrames;
    v[2] += d.rxDropped + c.nic.rxRateDrops;
    v[3] += d.txErrors + c.nic.txRateDrops;
    v[4] += c.nic.rxDelayed + c.nic.txDelayed;
    if (c.nat) {
      v[5] += c.nat.tcpFlowsOpened;
      v[6] += c.nat.udpFlowsOpened;
      v[7] += c.nat.activeTcp + c.nat.activeUdp;
      v[8] += c.nat.drops.firewall;
      v[9] += Object.values(c.nat.drops).reduce((a, b) => a + b, 0);
    }
    if (i < MAX_STAT_NICS) nicStatValues(n).forEach((x, k) => (out[STAT.nics + 1 + i * NIC_SLOTS + k] = x));
  }
  v.forEach((x, i) => (out[STAT.net + i] = x));
}

/** Checks a NetSpec read back from a snapshot (untrusted); attachSpec validates the rest. */
export function isNetSpec(n: unknown): n is NetSpec {
  if (typeof n !== 'object' || n === null) return false;
  const o = n as Record<string, unknown>;
  if (typeof o.switch === 'string') return true;
  return (
    (o.user === null || typeof o.user === 'string') &&
    Array.isArray(o.publish) &&
    o.publish.every((f: unknown) => {
      const x = f as ForwardSpec;
      return typeof x === 'object' && x !== null && (x.proto === 'tcp' || x.proto === 'udp') && typeof x.hostAddress === 'string' && Number.isInteger(x.hostPort) && Number.isInteger(x.guestPort);
    }) &&
    Array.isArray(o.firewall) &&
    o.firewall.every((r) => typeof r === 'string') &&
    typeof o.hostAccess === 'boolean'
  );
}
