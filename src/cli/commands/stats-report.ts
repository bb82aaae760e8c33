/**
 * `--stats`: what the machine did, printed on exit (issue 8): instructions, tier 1's compile
 * work, code-cache hits and invalidations, traps and I/O. Text for people, JSON for scripts.
 */
import { VisorError, type MachineStats, type NicStats } from '../../sdk/index.js';

/** Exception causes by number (RISC-V privileged spec, table 3.6), for the traps line. */
const CAUSES: Record<number, string> = {
  0: 'misaligned fetch', 1: 'fetch access', 2: 'illegal instruction', 3: 'breakpoint', 4: 'misaligned load',
  5: 'load access', 6: 'misaligned store', 7: 'store access', 8: 'ecall U', 9: 'ecall S', 11: 'ecall M',
  12: 'fetch page fault', 13: 'load page fault', 15: 'store page fault',
};
const INTERRUPTS: Record<number, string> = { 1: 'S software', 3: 'M software', 5: 'S timer', 7: 'M timer', 9: 'S external', 11: 'M external' };

/** 1234567 → "1.23 M": counts a person reads at a glance. */
export function count(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)} k`;
  return String(Math.round(n));
}

/** Bytes with a unit that keeps small amounts visible (a console's 40 KiB is not "0.0 MiB"). */
export function bytes(b: number): string {
  if (b >= 1048576) return `${(b / 1048576).toFixed(1)} MiB`;
  if (b >= 1024) return `${(b / 1024).toFixed(1)} KiB`;
  return `${b} B`;
}
const byCause = (m: Record<number, number>, names: Record<number, string>) =>
  Object.entries(m).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${names[Number(c)] ?? `cause ${c}`} ${count(n)}`).join(', ') || 'none';

export function formatStats(s: MachineStats): string {
  const lines = [
    `instructions ${count(s.instructions)} in ${(s.runningMs / 1000).toFixed(2)} s running (${s.mips.toFixed(1)} MIPS), ` +
      `${(s.idleMs / 1000).toFixed(2)} s of it idle (wfi); tier ${s.accel === 'jit' ? 'jit (WebAssembly)' : 'interpreter'}`,
  ];
  if (s.accel === 'jit') {
    const j = s.jit;
    const share = s.instructions > 0 ? (100 * j.instructions) / s.instructions : 0;
    lines.push(
      `jit: ${count(j.modulesCompiled)} modules (${count(j.blocksCompiled)} blocks) compiled in ${(j.compileMs / 1000).toFixed(2)} s; ` +
        `${count(j.cacheHits)} entries to compiled code, ${share.toFixed(1)}% of instructions compiled; ` +
        `${count(j.invalidations)} invalidations, ${count(j.evictions)} evictions, ${count(j.stepExits)} single-step exits`,
    );
  }
  lines.push(`traps: ${byCause(s.traps, CAUSES)}`);
  lines.push(`interrupts: ${byCause(s.interrupts, INTERRUPTS)}; TLB misses ${count(s.tlbMisses)}; virtio interrupts ${count(s.virtioInterrupts)}`);
  lines.push(
    `io: disk ${count(s.io.blkReads)} reads (${bytes(s.io.blkBytesRead)}), ${count(s.io.blkWrites)} writes (${bytes(s.io.blkBytesWritten)}); ` +
      `net rx ${bytes(s.io.netRxBytes)}, tx ${bytes(s.io.netTxBytes)}; console out ${bytes(s.io.consoleOutBytes)}, in ${bytes(s.io.consoleInBytes)}`,
  );
  const n = s.net;
  if (n && n.rxFrames + n.txFrames > 0) {
    lines.push(
      `net: ${count(n.rxFrames)} frames in, ${count(n.txFrames)} out; dropped ${count(n.rxDropped)} in, ${count(n.txDropped)} out; ${count(n.rateDelayed)} rate-limited; ` +
        `NAT flows ${count(n.natTcpFlows)} TCP, ${count(n.natUdpFlows)} UDP (${count(n.natActiveFlows)} open); NAT drops ${count(n.natDrops)} (firewall ${count(n.natFirewallDrops)})`,
    );
  }
  for (const [i, c] of (s.nics ?? []).entries()) lines.push(formatNic(i, c));
  return lines.map((l) => `visor: ${l}\n`).join('');
}

/** Reasons with a nonzero count, most first: "firewall 3, checksum 1" (or "none"). */
const reasons = (m: Record<string, number>) =>
  Object.entries(m).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${count(n)}`).join(', ') || 'none';

/** One NIC's line (and its user network's NAT, where this process hosts it). */
function formatNic(i: number, c: NicStats): string {
  let l =
    `nic ${i}: in ${count(c.rxFrames)} frames (${bytes(c.rxBytes)}), out ${count(c.txFrames)} frames (${bytes(c.txBytes)}); ` +
    `drops ${reasons(c.drops)}; rate-limited ${count(c.rateDelayed.rx)} in, ${count(c.rateDelayed.tx)} out`;
  const n = c.nat;
  if (n) {
    l +=
      `; NAT: flows ${count(n.tcpFlows)} TCP, ${count(n.udpFlows)} UDP (${count(n.activeTcp + n.activeUdp)} open), ` +
      `DNS ${count(n.dnsQueries)}, DHCP ${count(n.dhcpReplies)}, retransmits ${count(n.tcpRetransmits)}, reset after restore ${count(n.restoredResets)}; drops ${reasons(n.drops)}`;
  }
  return l;
}

/** Parses `--stats [text|json]` (commander gives true for the bare flag). */
export function statsFormat(v: string | boolean | undefined): 'text' | 'json' | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true || v === 'text') return 'text';
  if (v === 'json') return 'json';
  throw new VisorError('InvalidArgument', `--stats: expected text or json, got '${v}'`);
}

/** Prints the stats to stderr (stdout belongs to the guest's console). */
export function printStats(s: MachineStats, format: 'text' | 'json'): void {
  process.stderr.write(format === 'json' ? `${JSON.stringify(s)}\n` : formatStats(s));
}

export const ACCEL_HELP = 'execution tier: jit (hot guest code compiled to WebAssembly; the default, or VISOR_ACCEL) or interp (interpreter only)';

export function parseAccel(v: string | undefined): 'interp' | 'jit' | undefined {
  if (v === undefined || v === 'interp' || v === 'jit') return v;
  throw new VisorError('InvalidArgument', `--accel: expected interp or jit, got '${v}'`);
}
