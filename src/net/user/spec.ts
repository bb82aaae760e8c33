/**
 * How a user network is asked for, in one place for the CLI and the SDK: Docker's
 * `-p [ADDR:]HOST:GUEST[/udp]`, firewall entries `allow|deny DIR:PROTO:TARGET[:PORTS]`
 * (firewall.ts), and rate limits `tx=10M,rx=10M,tx-pps=1000,rx-pps=1000[,burst=…]`.
 * Each parser returns the value or a message saying what was wrong.
 */
import { parseRule, type FirewallRule } from './firewall.js';
import { ip4 } from './packet.js';
import type { RateLimit } from './rate-limiter.js';
import type { PortForward } from './user-net.js';

/** Parses Docker's publish spelling; the host address defaults to 127.0.0.1. */
export function parsePublish(text: string): PortForward | string {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(text);
  if (!m) return `expected [ADDR:]HOST:GUEST[/udp], got '${text}'`;
  const hostAddress = m[1] ?? '127.0.0.1';
  if (ip4(hostAddress) === null) return `'${hostAddress}' is not an IPv4 address`;
  const hostPort = Number(m[2]);
  const guestPort = Number(m[3]);
  if (hostPort < 1 || hostPort > 65535 || guestPort < 1 || guestPort > 65535) return `ports must be 1-65535, got '${text}'`;
  return { proto: (m[4] as 'tcp' | 'udp' | undefined) ?? 'tcp', hostAddress, hostPort, guestPort };
}

/** Parses `allow RULE` or `deny RULE`. */
export function parseFirewallEntry(text: string): FirewallRule | string {
  const m = /^(allow|deny)\s+(\S+)$/.exec(text.trim());
  if (!m) return `expected 'allow RULE' or 'deny RULE', got '${text}'`;
  return parseRule(m[1] as 'allow' | 'deny', m[2]!);
}

export interface NicRateLimits {
  tx?: RateLimit;
  rx?: RateLimit;
}

const SUFFIX: Record<string, number> = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 };

function amount(v: string): number | null {
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)$/.exec(v);
  if (!m) return null;
  const n = Math.round(Number(m[1]) * SUFFIX[m[2]!]!);
  return n > 0 && Number.isSafeInteger(n) ? n : null;
}

/**
 * `tx=BYTES/s`, `rx=BYTES/s`, `tx-pps=N`, `rx-pps=N`, and bursts `tx-burst=BYTES`,
 * `rx-burst=BYTES` (default one second's worth), comma-separated; K, M, G multiply by 10^3n.
 */
export function parseRateSpec(text: string): NicRateLimits | string {
  const out: NicRateLimits = {};
  for (const part of text.split(',')) {
    const m = /^(tx|rx)(-pps|-burst)?=(.+)$/.exec(part.trim());
    const n = m ? amount(m[3]!) : null;
    if (!m || n === null) return `expected tx=BYTES, rx=BYTES, tx-pps=N, rx-pps=N, tx-burst=BYTES or rx-burst=BYTES (K/M/G suffixes), got '${part}'`;
    const lim = (out[m[1] as 'tx' | 'rx'] ??= {});
    if (m[2] === '-pps') lim.packetsPerSec = n;
    else if (m[2] === '-burst') lim.bytesBurst = n;
    else lim.bytesPerSec = n;
  }
  return out;
}
