/**
 * The stats layout: a Float64Array the machine's thread writes after every slice and the
 * SDK's Machine reads without a message (it is shared with the worker). Offsets are fixed
 * here only; `vm.stats()` (sdk/machine.ts) reads them back by name.
 */
import type { AssembledVm } from './assembler.js';

/** Offsets in the shared stats array (Float64Array), written after every slice. */
export const STAT = {
  instructions: 0,
  runningMs: 1,
  idleMs: 2,
  tlbMisses: 3,
  blkBytesRead: 4,
  blkBytesWritten: 5,
  netRxBytes: 6,
  netTxBytes: 7,
  consoleOutBytes: 8,
  consoleInBytes: 9,
  virtioInterrupts: 10,
  blkReads: 11,
  blkWrites: 12,
  mips: 13,
  // Disk requests that waited for their I/O limit's tokens, and the milliseconds they waited.
  blkThrottled: 14,
  blkThrottledMs: 15,
  traps: 16,
  interrupts: 32,
  // Tier 1 (JIT) counters, in JIT_STAT_KEYS order; zero under the interpreter.
  jit: 48,
  // virtio-balloon: the host's target and what the guest gave, in 4 KiB pages.
  balloonTargetPages: 56,
  balloonActualPages: 57,
  // NICs and user networks, in NET_STAT_KEYS order (host/net-attach.ts writes them).
  net: 58,
  // The machine thread's own CPU time in ms (host/thread-cpu.ts); -1 where the host cannot tell.
  threadCpuMs: 68,
  // More tier 1 counters, in JIT_MORE_STAT_KEYS order (room for 8).
  jitMore: 69,
  // Per NIC: the count at STAT.nics, then MAX_STAT_NICS blocks of NIC_STAT_SLOTS (NIC_STAT_KEYS).
  nics: 77,
  // RAM paged in from the image a restore started from (cpu/ram-pager.ts), and pages still there.
  ramPagedIn: 78 + 8 * 32,
  ramPending: 79 + 8 * 32,
  size: 80 + 8 * 32,
} as const;

/** Slots of each NIC's block at STAT.nics + 1. */
export const NIC_STAT_SLOTS = 32;

/** virtio-balloon counts 4 KiB pages whatever the guest's page size (virtio 1.2 §5.5.6). */
export const BALLOON_PAGES_PER_MIB = 256;

/** The JitStats counters published at STAT.jit onwards (vm.stats().jit reads them back by name). */
export const JIT_STAT_KEYS = ['modulesCompiled', 'blocksCompiled', 'compileMs', 'cacheHits', 'instructions', 'invalidations', 'evictions', 'stepExits'] as const;
/** The JitStats counters published at STAT.jitMore onwards (vm.stats().jit has them too). */
export const JIT_MORE_STAT_KEYS = ['wasmBytes', 'instructionsCompiled', 'emitMs', 'liveModules'] as const;

/** The NIC and NAT counters `stats()` publishes at STAT.net (summed over a machine's NICs), in this order (host/net-attach.ts writeNetStats). */
export const NET_STAT_KEYS = ['rxFrames', 'txFrames', 'rxDropped', 'txDropped', 'rateDelayed', 'natTcpFlows', 'natUdpFlows', 'natActiveFlows', 'natFirewallDrops', 'natDrops'] as const;

/**
 * The user network's drop reasons (net/user/drop-reasons.ts DROP_REASONS), restated: the SDK's
 * thread reads stats without loading the network stack. host/net-attach.ts checks the two agree.
 */
export const NAT_DROP_REASONS = ['malformed', 'checksum', 'fragment', 'firewall', 'flowLimit', 'unsupported', 'noRoute', 'dnsBusy', 'noArp', 'internal'] as const;
export type NatDropReason = (typeof NAT_DROP_REASONS)[number];

/** NICs whose counters stats().nics carries (a machine may have more; the rest are in the sums). */
export const MAX_STAT_NICS = 8;

/**
 * One NIC's counters in stats().nics, in this order (host/net-attach.ts writeNetStats): frames
 * and bytes at the guest's NIC (rx: to the guest), its drops by reason (receive ring full,
 * malformed transmit buffers, rate-limit overflow each way), frames that waited for rate
 * tokens; then, on a user network this process hosts, the network's NAT counters (shared by
 * its NICs here): flows opened and open, DNS, DHCP, TCP retransmissions, connections reset
 * after a restore, and its drops by reason (DROP_REASONS).
 */
export const NIC_STAT_KEYS = [
  'rxFrames', 'rxBytes', 'txFrames', 'txBytes',
  'dropRxRingFull', 'dropTxMalformed', 'dropRxRateLimit', 'dropTxRateLimit',
  'rateDelayedRx', 'rateDelayedTx',
  'hasNat', 'natTcpFlows', 'natUdpFlows', 'natActiveTcp', 'natActiveUdp', 'natDnsQueries', 'natDhcpReplies', 'natTcpRetransmits', 'natRestoredResets',
  ...NAT_DROP_REASONS.map((r) => `natDrop.${r}` as const),
] as const;
if (NIC_STAT_KEYS.length > NIC_STAT_SLOTS || STAT.ramPagedIn !== STAT.nics + 1 + MAX_STAT_NICS * NIC_STAT_SLOTS) throw new Error('vm/stats: the per-NIC block outgrew its 32 slots');

/** What the driver and the console count, beside the devices' own counters. */
export interface RunCounters {
  executed: number;
  runningMs: number;
  idleMs: number;
  mips: number;
  consoleOut: number;
  consoleIn: number;
  /** The thread's CPU time (ms), or undefined where the host has no clock for it. */
  threadCpuMs?: number;
  /** RAM pages paged in from a restore's image, and pages still there (cpu/ram-pager.ts). */
  ramPagedIn?: number;
  ramPending?: number;
}

/** Writes every counter of `m` into `s` (STAT layout). */
export function publishStats(s: Float64Array, m: AssembledVm, c: RunCounters): void {
  const hart = m.vm.hart;
  s[STAT.instructions] = c.executed;
  s[STAT.runningMs] = c.runningMs;
  s[STAT.idleMs] = c.idleMs;
  s[STAT.threadCpuMs] = c.threadCpuMs ?? -1;
  s[STAT.tlbMisses] = hart.stats.tlbMisses;
  let rd = 0, wr = 0, reads = 0, writes = 0, irqs = 0, rx = 0, tx = 0;
  for (const b of m.blks) {
    rd += b.dev.counters.bytesRead;
    wr += b.dev.counters.bytesWritten;
    reads += b.dev.counters.reads;
    writes += b.dev.counters.writes;
  }
  for (const n of m.nics) {
    rx += n.counters.rxBytes;
    tx += n.counters.txBytes;
  }
  for (const t of m.transports) irqs += t.counters.interrupts;
  s[STAT.blkBytesRead] = rd;
  s[STAT.blkBytesWritten] = wr;
  s[STAT.blkReads] = reads;
  s[STAT.blkWrites] = writes;
  s[STAT.netRxBytes] = rx;
  s[STAT.netTxBytes] = tx;
  s[STAT.consoleOutBytes] = c.consoleOut;
  s[STAT.consoleInBytes] = c.consoleIn;
  s[STAT.virtioInterrupts] = irqs;
  s[STAT.mips] = c.mips;
  s[STAT.balloonTargetPages] = m.balloon?.target ?? 0;
  s[STAT.balloonActualPages] = m.balloon?.actual ?? 0;
  s[STAT.ramPagedIn] = c.ramPagedIn ?? 0;
  s[STAT.ramPending] = c.ramPending ?? 0;
  for (let i = 0; i < 16; i++) {
    s[STAT.traps + i] = hart.stats.traps[i] ?? 0;
    s[STAT.interrupts + i] = hart.stats.interrupts[i] ?? 0;
  }
  const j = hart.jitStats;
  if (j) {
    JIT_STAT_KEYS.forEach((k, i) => (s[STAT.jit + i] = j[k]));
    JIT_MORE_STAT_KEYS.forEach((k, i) => (s[STAT.jitMore + i] = j[k]));
  }
}
