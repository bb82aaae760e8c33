/**
 * Prometheus metrics (prom-client): per API route request counts and latency, operations in
 * flight, and per machine its state, counters and resource limits. Machine series are built at
 * scrape time from the live machines, and for a non-admin token only from its project.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { machineCpuSeconds, type MachineManager } from './machines.js';
import type { NetLimits } from './schemas.js';
import type { Operations } from './operations.js';

export class DaemonMetrics {
  private readonly http = new Registry();
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly latency: Histogram<'route' | 'method'>;

  constructor(private readonly machines: MachineManager, private readonly ops: Operations) {
    this.requests = new Counter({ name: 'visor_http_requests_total', help: 'API requests by route, method and status', labelNames: ['route', 'method', 'status'], registers: [this.http] });
    this.latency = new Histogram({
      name: 'visor_http_request_duration_seconds', help: 'API request latency', labelNames: ['route', 'method'], registers: [this.http],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    });
  }

  observe(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.latency.observe({ route, method }, seconds);
  }

  async text(project?: string): Promise<string> {
    const reg = new Registry();
    const g = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames: ['machine', 'name', 'project', ...labelNames], registers: [reg] });
    const state = g('visor_machine_state', '1 for the machine\'s current state', ['state']);
    const instr = g('visor_machine_instructions_total', 'guest instructions executed since boot');
    const mips = g('visor_machine_mips', 'guest MIPS over the last half second');
    const cpu = g('visor_machine_cpu_seconds_total', 'host CPU seconds of the machine\'s thread (Linux; elsewhere its busy wall time)');
    const mem = g('visor_machine_memory_bytes', 'guest memory size');
    const rss = new Gauge({ name: 'visor_daemon_rss_bytes', help: 'the daemon process\'s resident set (all machines share it)', registers: [reg] });
    const balloon = g('visor_machine_balloon_bytes', 'memory the guest has given back through the balloon');
    const diskBytes = g('visor_machine_disk_bytes_total', 'disk bytes', ['direction']);
    const diskOps = g('visor_machine_disk_ops_total', 'disk requests', ['direction']);
    const diskThrottled = g('visor_machine_disk_throttled_total', 'disk requests that waited for the machine\'s disk limits');
    const diskThrottledSeconds = g('visor_machine_disk_throttled_seconds_total', 'time disk requests waited for the machine\'s disk limits');
    const diskLimit = g('visor_machine_disk_limit', 'disk I/O limit (absent: none)', ['kind']);
    const netBytes = g('visor_machine_net_bytes_total', 'network bytes', ['direction']);
    const netFrames = g('visor_machine_net_frames_total', 'network frames through the machine\'s NICs', ['direction']);
    const netDropped = g('visor_machine_net_dropped_total', 'frames the machine\'s NICs dropped (full receive ring, bad buffers, rate-limit queue full)', ['direction']);
    const netDelayed = g('visor_machine_net_rate_delayed_total', 'frames that waited for the machine\'s NIC rate limits');
    const netLimit = g('visor_machine_net_limit', 'NIC rate limit, each NIC (absent: none)', ['direction', 'kind']);
    const cpuLimit = g('visor_machine_cpu_limit_percent', 'CPU limit, percent of one host core');
    const shares = g('visor_machine_cpu_shares', 'CPU shares (relative weight)');
    const inflight = new Gauge({ name: 'visor_operations_in_flight', help: 'operations not finished', registers: [reg] });
    inflight.set(this.ops.running);
    rss.set(process.memoryUsage().rss);
    for (const r of this.machines.allRows()) {
      if (project !== undefined && r.project !== project) continue;
      const l = { machine: r.id, name: r.name, project: r.project };
      for (const s of ['created', 'running', 'paused', 'stopped']) state.set({ ...l, state: s }, r.state === s ? 1 : 0);
      const spec = JSON.parse(r.spec) as { memoryMiB: number; cpuLimitPercent: number; cpuShares: number; diskLimits?: { iops?: number; bytesPerSec?: number }; netLimits?: NetLimits };
      mem.set(l, spec.memoryMiB * 1048576);
      cpuLimit.set(l, spec.cpuLimitPercent);
      shares.set(l, spec.cpuShares);
      if (spec.diskLimits?.iops) diskLimit.set({ ...l, kind: 'iops' }, spec.diskLimits.iops);
      if (spec.diskLimits?.bytesPerSec) diskLimit.set({ ...l, kind: 'bytes_per_second' }, spec.diskLimits.bytesPerSec);
      for (const direction of ['rx', 'tx'] as const) {
        const n = spec.netLimits?.[direction];
        if (n?.bytesPerSec) netLimit.set({ ...l, direction, kind: 'bytes_per_second' }, n.bytesPerSec);
        if (n?.packetsPerSec) netLimit.set({ ...l, direction, kind: 'packets_per_second' }, n.packetsPerSec);
      }
      const vm = this.machines.liveMachine(r.id);
      if (!vm) continue;
      const st = vm.stats();
      instr.set(l, st.instructions);
      mips.set(l, st.recentMips);
      cpu.set(l, machineCpuSeconds(st));
      if (st.balloon) balloon.set(l, st.balloon.actualMiB * 1048576);
      diskBytes.set({ ...l, direction: 'read' }, st.io.blkBytesRead);
      diskBytes.set({ ...l, direction: 'write' }, st.io.blkBytesWritten);
      diskOps.set({ ...l, direction: 'read' }, st.io.blkReads);
      diskOps.set({ ...l, direction: 'write' }, st.io.blkWrites);
      diskThrottled.set(l, st.io.blkThrottled);
      diskThrottledSeconds.set(l, st.io.blkThrottledMs / 1000);
      netBytes.set({ ...l, direction: 'rx' }, st.io.netRxBytes);
      netBytes.set({ ...l, direction: 'tx' }, st.io.netTxBytes);
      netFrames.set({ ...l, direction: 'rx' }, st.net.rxFrames);
      netFrames.set({ ...l, direction: 'tx' }, st.net.txFrames);
      netDropped.set({ ...l, direction: 'rx' }, st.net.rxDropped);
      netDropped.set({ ...l, direction: 'tx' }, st.net.txDropped);
      netDelayed.set(l, st.net.rateDelayed);
    }
    return (await this.http.metrics()) + (await reg.metrics());
  }
}
