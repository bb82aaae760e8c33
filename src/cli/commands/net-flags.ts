/**
 * `visor run`'s network flags → the SDK's `nets` config. The parsers themselves are
 * src/net/user/spec.ts (shared with the SDK's schema).
 *
 *   --net user[=NAME] | switch=NAME | none   (repeatable; an image gets `user` by default)
 *   -p/--publish [ADDR:]HOST:GUEST[/udp]     (to the first user network)
 *   --net-allow RULE / --net-deny RULE       (ordered as given; firewall.ts has the syntax)
 *   --net-no-host                            (the guest may not reach the host itself)
 *   --net-rate tx=BYTES,rx=BYTES,tx-pps=N,…  (every NIC)
 */
import type { Command } from 'commander';
import { VisorError } from '../../base/errors.js';
import { parseNetSpec } from '../flags.js';
import { parseFirewallEntry, parsePublish, parseRateSpec, type NicRateLimits } from '../../net/user/spec.js';
import type { MachineConfig } from '../../sdk/index.js';

export interface NetFlags {
  net: string[];
  publish: string[];
  netRate?: string;
  netNoHost?: boolean;
}

const collect = (v: string, acc: string[]) => [...acc, v];

/** Adds the flags; firewall entries land in `rules`, in command-line order. */
export function addNetOptions(cmd: Command, rules: string[]): Command {
  return cmd
    .option('--net <user[=NAME]|switch=NAME|none>', "attach a virtio-net NIC: user-mode NAT (10.0.2.0/24, DHCP, DNS; NAME shares it between VMs), a host-wide switch, or none (repeatable; default with an image: user)", collect, [] as string[])
    .option('-p, --publish <[ADDR:]HOST:GUEST[/udp]>', 'forward a host port (on ADDR, default 127.0.0.1) to the guest (repeatable)', collect, [] as string[])
    .option('--net-allow <DIR:PROTO:TARGET[:PORTS]>', 'firewall rule, first match wins: in|out, tcp|udp|icmp|any, CIDR|host|any, N or N-M (e.g. out:tcp:10.0.0.0/8:80-443)', (v: string) => {
      rules.push(`allow ${v}`);
    })
    .option('--net-deny <DIR:PROTO:TARGET[:PORTS]>', 'firewall rule (as --net-allow) that drops what it matches', (v: string) => {
      rules.push(`deny ${v}`);
    })
    .option('--net-no-host', 'the guest may not reach the host itself (10.0.2.2 and the host\'s addresses)')
    .option('--net-rate <tx=B,rx=B,tx-pps=N,rx-pps=N>', 'rate limits per NIC: bytes (K/M/G) or packets per second each way, token buckets');
}

export function netsFromFlags(flags: NetFlags, rules: string[], fromImage: boolean): NonNullable<MachineConfig['nets']> {
  const specs = flags.net.length ? flags.net : fromImage ? ['user'] : [];
  if (specs.includes('none')) {
    if (specs.length > 1) throw new VisorError('InvalidArgument', '--net none cannot be combined with other --net values');
    specs.length = 0;
  }
  let rateLimit: NicRateLimits | undefined;
  if (flags.netRate !== undefined) {
    const r = parseRateSpec(flags.netRate);
    if (typeof r === 'string') throw new VisorError('InvalidArgument', `--net-rate: ${r}`);
    rateLimit = r;
  }
  for (const r of rules) {
    const e = parseFirewallEntry(r);
    if (typeof e === 'string') throw new VisorError('InvalidArgument', `--net-${r.split(' ')[0]}: ${e}`);
  }
  for (const p of flags.publish) {
    const e = parsePublish(p);
    if (typeof e === 'string') throw new VisorError('InvalidArgument', `--publish: ${e}`);
  }
  let firstUser = true;
  const nets = specs.map((spec) => {
    const n = parseNetSpec(spec);
    if (!n) throw new VisorError('InvalidArgument', `--net: expected user, user=NAME, switch=NAME or none, got '${spec}'`);
    const limits = rateLimit ? { rateLimit } : {};
    if ('switchName' in n) return { switch: n.switchName, ...limits };
    const mine = firstUser;
    firstUser = false;
    return {
      user: n.user ?? (true as const),
      ...(mine && flags.publish.length ? { publish: flags.publish } : {}),
      ...(rules.length ? { firewall: rules } : {}),
      ...(flags.netNoHost ? { hostAccess: false } : {}),
      ...limits,
    };
  });
  if (firstUser && (flags.publish.length || rules.length || flags.netNoHost)) {
    throw new VisorError('InvalidArgument', '--publish, --net-allow, --net-deny and --net-no-host need a user network (--net user)');
  }
  return nets;
}
