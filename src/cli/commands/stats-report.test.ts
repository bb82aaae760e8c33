import { describe, expect, it } from 'vitest';
import type { MachineStats } from '../../sdk/index.js';
import { count, formatStats, parseAccel, statsFormat } from './stats-report.js';

const base: MachineStats = {
  instructions: 3_850_000_000, mips: 46.1, recentMips: 40, runningMs: 83_500, idleMs: 12_300,
  traps: { 8: 1200, 12: 34_000, 9: 50 }, interrupts: { 5: 9000, 9: 300 }, tlbMisses: 2_300_000, ram: { pagedIn: 0, pending: 0 }, virtioInterrupts: 310,
  net: { rxFrames: 0, txFrames: 0, rxDropped: 0, txDropped: 0, rateDelayed: 0, natTcpFlows: 0, natUdpFlows: 0, natActiveFlows: 0, natFirewallDrops: 0, natDrops: 0 },
  io: { blkReads: 10, blkWrites: 2, blkBytesRead: 2 * 1048576, blkBytesWritten: 8192, blkThrottled: 0, blkThrottledMs: 0, netRxBytes: 0, netTxBytes: 0, consoleOutBytes: 40_000, consoleInBytes: 12 },
  nics: [],
  accel: 'jit',
  jit: { modulesCompiled: 413, blocksCompiled: 12_345, compileMs: 2100, cacheHits: 16_200_000, instructions: 3_734_500_000, invalidations: 120, evictions: 0, stepExits: 2_300_000, wasmBytes: 10_300_000, instructionsCompiled: 210_000, emitMs: 150, liveModules: 300 },
};

describe('--stats report', () => {
  it('adds a net line for a machine with NICs', () => {
    const text = formatStats({ ...base, net: { rxFrames: 1200, txFrames: 800, rxDropped: 3, txDropped: 0, rateDelayed: 5, natTcpFlows: 4, natUdpFlows: 2, natActiveFlows: 1, natFirewallDrops: 7, natDrops: 9 } });
    expect(text).toMatch(/net: 1200 frames in, 800 out; dropped 3 in, 0 out; 5 rate-limited; NAT flows 4 TCP, 2 UDP \(1 open\); NAT drops 9 \(firewall 7\)/);
    expect(formatStats(base)).not.toMatch(/net:/);
  });

  it('adds a line per NIC: frames, bytes, drops by reason, and its NAT', () => {
    const zeroDrops = { malformed: 0, checksum: 0, fragment: 0, firewall: 0, flowLimit: 0, unsupported: 0, noRoute: 0, dnsBusy: 0, noArp: 0, internal: 0 };
    const text = formatStats({
      ...base,
      nics: [
        { rxFrames: 50_000, rxBytes: 70 * 1048576, txFrames: 20_000, txBytes: 1048576, drops: { rxRingFull: 2, txMalformed: 0, rxRateLimit: 0, txRateLimit: 5 }, rateDelayed: { rx: 0, tx: 9 },
          nat: { tcpFlows: 3, udpFlows: 1, activeTcp: 1, activeUdp: 0, dnsQueries: 4, dhcpReplies: 2, tcpRetransmits: 0, restoredResets: 1, drops: { ...zeroDrops, firewall: 6, checksum: 1 } } },
        { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, drops: { rxRingFull: 0, txMalformed: 0, rxRateLimit: 0, txRateLimit: 0 }, rateDelayed: { rx: 0, tx: 0 } },
      ],
    });
    expect(text).toMatch(/nic 0: in 50\.0 k frames \(70\.0 MiB\), out 20\.0 k frames \(1\.0 MiB\); drops txRateLimit 5, rxRingFull 2; rate-limited 0 in, 9 out; NAT: flows 3 TCP, 1 UDP \(1 open\), DNS 4, DHCP 2, retransmits 0, reset after restore 1; drops firewall 6, checksum 1\n/);
    expect(text).toMatch(/nic 1: in 0 frames \(0 B\), out 0 frames \(0 B\); drops none; rate-limited 0 in, 0 out\n/);
  });

  it('reads at a glance: counts, the JIT line, traps by name, I/O', () => {
    const text = formatStats(base);
    expect(text).toMatch(/^visor: instructions 3\.85 G in 83\.50 s running \(46\.1 MIPS\), 12\.30 s of it idle \(wfi\); tier jit/m);
    expect(text).toMatch(/jit: 413 modules \(12\.3 k blocks\) compiled in 2\.10 s; 16\.20 M entries to compiled code, 97\.0% of instructions compiled; 120 invalidations, 0 evictions, 2\.30 M single-step exits/);
    // Most frequent first, by their spec names.
    expect(text).toMatch(/traps: fetch page fault 34\.0 k, ecall U 1200, ecall S 50/);
    expect(text).toMatch(/interrupts: S timer 9000, S external 300; TLB misses 2\.30 M/);
    expect(text).toMatch(/io: disk 10 reads \(2\.0 MiB\), 2 writes \(8\.0 KiB\); net rx 0 B, tx 0 B; console out 39\.1 KiB, in 12 B/);
    expect(text.split('\n').every((l) => l === '' || l.startsWith('visor: '))).toBe(true);
  });

  it('has no JIT line under the interpreter', () => {
    expect(formatStats({ ...base, accel: 'interp' })).not.toMatch(/jit:/);
  });

  it('parses the flags and rejects bad values with what is allowed', () => {
    expect(statsFormat(true)).toBe('text');
    expect(statsFormat('json')).toBe('json');
    expect(statsFormat(undefined)).toBeUndefined();
    expect(() => statsFormat('yaml')).toThrow(/--stats: expected text or json, got 'yaml'/);
    expect(parseAccel('jit')).toBe('jit');
    expect(() => parseAccel('kvm')).toThrow(/--accel: expected interp or jit, got 'kvm'/);
    expect(count(999)).toBe('999');
    expect(count(1_500_000)).toBe('1.50 M');
  });
});
