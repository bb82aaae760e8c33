import { describe, expect, it } from 'vitest';
import { writeNetStats, type NetAttachment, type NetAttachmentCounters } from '../host/net-attach.js';
import { DROP_REASONS } from '../net/user/drop-reasons.js';
import { MAX_STAT_NICS, NAT_DROP_REASONS, STAT } from '../vm/stats.js';
import { readNicStats } from './machine.js';

/** A NIC whose device and NAT counters are given (the layout is what is under test). */
function nic(seed: number, withNat: boolean): NetAttachment {
  const counters: NetAttachmentCounters = {
    nic: { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0, rxRateDrops: seed + 6, txRateDrops: seed + 7, rxDelayed: seed + 8, txDelayed: seed + 9 },
    ...(withNat
      ? {
          nat: {
            framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0,
            tcpFlowsOpened: seed + 10, udpFlowsOpened: seed + 11, dnsQueries: seed + 12, dhcpReplies: seed + 13, tcpRetransmits: seed + 14, tcpRestoredResets: seed + 15,
            activeTcp: seed + 16, activeUdp: seed + 17,
            drops: Object.fromEntries(DROP_REASONS.map((r, i) => [r, seed + 20 + i])) as Record<(typeof DROP_REASONS)[number], number>,
          },
        }
      : {}),
  };
  return {
    device: { counters: { rxFrames: seed, rxBytes: seed + 1, txFrames: seed + 2, txBytes: seed + 3, rxDropped: seed + 4, txErrors: seed + 5 } },
    switchName: 'x',
    counters: () => counters,
    savedFlows: () => [],
    resetRestored: () => 0,
    dispose: async () => {},
  } as unknown as NetAttachment;
}

describe('per-NIC stats', () => {
  it('name the stack\'s drop reasons, in its order', () => {
    expect([...NAT_DROP_REASONS]).toEqual([...DROP_REASONS]);
  });


  it('carry each NIC\'s frames, bytes, drops by reason and its NAT through the shared array', () => {
    const s = new Float64Array(STAT.size);
    writeNetStats(s, [nic(100, true), nic(1000, false)]);
    const [a, b, none] = readNicStats(s);
    expect(none).toBeUndefined();
    expect(a).toEqual({
      rxFrames: 100, rxBytes: 101, txFrames: 102, txBytes: 103,
      drops: { rxRingFull: 104, txMalformed: 105, rxRateLimit: 106, txRateLimit: 107 },
      rateDelayed: { rx: 108, tx: 109 },
      nat: {
        tcpFlows: 110, udpFlows: 111, dnsQueries: 112, dhcpReplies: 113, tcpRetransmits: 114, restoredResets: 115, activeTcp: 116, activeUdp: 117,
        drops: Object.fromEntries(DROP_REASONS.map((r, i) => [r, 120 + i])),
      },
    });
    expect(b).toEqual({ rxFrames: 1000, rxBytes: 1001, txFrames: 1002, txBytes: 1003, drops: { rxRingFull: 1004, txMalformed: 1005, rxRateLimit: 1006, txRateLimit: 1007 }, rateDelayed: { rx: 1008, tx: 1009 } });
    // The sums (stats().net) still add both NICs.
    expect(s[STAT.net]).toBe(1100);
  });

  it('publish the first MAX_STAT_NICS NICs of a machine with more', () => {
    const s = new Float64Array(STAT.size);
    writeNetStats(s, Array.from({ length: MAX_STAT_NICS + 2 }, (_, i) => nic(i * 1000, true)));
    const all = readNicStats(s);
    expect(all).toHaveLength(MAX_STAT_NICS);
    expect(all.at(-1)!.rxFrames).toBe((MAX_STAT_NICS - 1) * 1000);
  });
});
