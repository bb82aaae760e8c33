/**
 * visord benchmarks (issue 17).
 *
 *   npx tsx bench/daemon.ts [--duration S] [--clients N] [--machines N] [--only load|cpu] [--agent]
 *
 * load: a daemon process (test/server/daemon-main.ts: the tiny test images, the fake guest
 *   agent) with N machines running (default 10, an idle-looping guest); C clients (default 50)
 *   on loopback, each sending its next request when the last is answered, for S seconds per
 *   phase (default 60): GET /v1/machines, then POST /v1/machines/{id}/exec {cmd: 'true'}.
 *   Without --agent exec goes to a fake agent (the daemon's path: auth, schema, audit, routing);
 *   with --agent the machines run the 'tiny' image (one boot, the rest forks of it, 128 MiB
 *   each) and exec runs `sh -c true` in the guest through the real agent over vsock.
 * cpu: one machine spinning a busy loop on its worker, unlimited and then limited to 25%
 *   (and 50%) of a core with Machine.setCpuLimit: the CPU seconds of the machine's own thread
 *   (/proc/self/task, Linux) over wall seconds, the whole process's beside it, guest
 *   instructions per second, and the load average, each over S/4 seconds (at least 5).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Machine } from '../src/sdk/machine.js';
import { spinGuest } from '../test/sdk/guest.js';
import { act, http, spawnDaemon } from '../test/server/process.js';
import { benchArg } from './args.js';

const arg = (name: string, def: string): string => benchArg(name, def);
const DURATION = Number(arg('duration', '60'));
const CLIENTS = Number(arg('clients', '50'));
const MACHINES = Number(arg('machines', '10'));
const ONLY = arg('only', '');
/** --agent: the 'tiny' image and the real guest agent (one boot, the other machines forks of it). */
const AGENT = process.argv.includes('--agent');
const dir = mkdtempSync(join(tmpdir(), 'visor-bench-daemon-'));

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** CPU seconds (user + system) of process `pid` from /proc (Linux; NaN elsewhere). */
function processCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in USER_HZ ticks
  } catch {
    return NaN;
  }
}

async function phase(name: string, seconds: number, one: () => Promise<number>, daemonPid?: number): Promise<void> {
  const lat: number[] = [];
  let errors = 0;
  const d0 = daemonPid !== undefined ? processCpu(daemonPid) : NaN;
  const c0 = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (performance.now() < end) {
      const t = performance.now();
      const status = await one().catch(() => 0);
      if (status >= 200 && status < 300) lat.push(performance.now() - t);
      else errors++;
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const daemonCpu = daemonPid !== undefined ? processCpu(daemonPid) - d0 : NaN;
  lat.sort((a, b) => a - b);
  console.log(`${name}: ${lat.length} requests in ${wall.toFixed(1)} s = ${(lat.length / wall).toFixed(0)} req/s, p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms, errors ${errors} (${CLIENTS} clients), load average ${loadavg()[0]!.toFixed(2)}`);
  console.log(`  CPU: daemon ${daemonCpu.toFixed(1)} s (${(daemonCpu / wall).toFixed(2)} cores), clients ${((c.user + c.system) / 1e6).toFixed(1)} s, over ${wall.toFixed(1)} s of wall time`);
}

async function load(): Promise<void> {
  const state = join(dir, 'state');
  const d = await spawnDaemon(state, dir, { ...process.env, ...(AGENT ? { VISOR_DAEMON_REAL: '1' } : {}) });
  const token = readFileSync(join(state, 'admin.token'), 'utf8').trim();
  const ids: string[] = [];
  const t0 = performance.now();
  if (AGENT) {
    // One boot; the others continue from it (fork: a snapshot restored), each with its own agent channel.
    const first = (await http(d.url, token, 'POST', '/v1/machines', { name: 'm0', image: 'tiny', memoryMiB: 128 })).json.id;
    const op = await act(d.url, token, `/v1/machines/${first}/start`, {}, 600_000);
    if (op.status !== 'success') throw new Error(JSON.stringify(op));
    for (let i = 0; i < 20; i++) if ((await http(d.url, token, 'POST', `/v1/machines/${first}/exec`, { cmd: 'true' })).status === 200) break;
    ids.push(first);
    for (let i = 1; i < MACHINES; i++) {
      const f = await act(d.url, token, `/v1/machines/${first}/fork`, { name: `m${i}` }, 600_000);
      if (f.status !== 'success') throw new Error(JSON.stringify(f));
      ids.push(f.result.id);
    }
    for (const id of ids) {
      const r = await http(d.url, token, 'POST', `/v1/machines/${id}/exec`, { cmd: 'true' });
      if (r.status !== 200) throw new Error(`exec in ${id}: ${r.status} ${JSON.stringify(r.json)}`);
    }
  } else {
    for (let i = 0; i < MACHINES; i++) {
      const id = (await http(d.url, token, 'POST', '/v1/machines', { name: `m${i}`, memoryMiB: 16 })).json.id;
      const op = await act(d.url, token, `/v1/machines/${id}/start`);
      if (op.status !== 'success') throw new Error(JSON.stringify(op));
      ids.push(id);
    }
  }
  console.log(`daemon ${d.url}: ${MACHINES} machines running (${AGENT ? "'tiny' image, the real guest agent, 128 MiB" : 'counter guest, fake agent, 16 MiB'}) after ${((performance.now() - t0) / 1000).toFixed(0)} s; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const headers = { authorization: `Bearer ${token}` };
  await phase('GET /v1/machines', DURATION, async () => {
    const r = await fetch(`${d.url}/v1/machines`, { headers });
    await r.arrayBuffer();
    return r.status;
  }, d.p.pid);
  let k = 0;
  const body = JSON.stringify({ cmd: 'true' });
  await phase(`POST /v1/machines/{id}/exec true (${AGENT ? 'real agent' : 'fake agent'})`, DURATION, async () => {
    const id = ids[k++ % ids.length]!;
    const r = await fetch(`${d.url}/v1/machines/${id}/exec`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body });
    await r.arrayBuffer();
    return r.status;
  }, d.p.pid);
  d.p.kill('SIGKILL');
  await d.exited;
}

/** CPU seconds (user + system) of each thread of this process, from /proc (Linux). */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  const hz = 100; // USER_HZ: clock ticks per second on Linux
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, (Number(f[11]) + Number(f[12])) / hz); // utime, stime (fields 14 and 15)
    } catch {
      // the thread ended
    }
  }
  return out;
}

async function cpu(): Promise<void> {
  const kernel = join(dir, 'spin.img');
  writeFileSync(kernel, spinGuest());
  const before = new Set(threadCpu().keys());
  const vm = await Machine.create({ kernel, memoryMiB: 16, rng: false });
  await vm.start();
  const seconds = Math.max(5, DURATION / 4);
  await new Promise((r) => setTimeout(r, 1000)); // past start-up and JIT warm-up
  // The machine's thread: of the threads that came with it, the one that has worked most.
  const fresh = [...threadCpu()].filter(([tid]) => !before.has(tid)).sort((a, b) => b[1] - a[1]);
  const worker = fresh[0]?.[0];
  if (!worker) throw new Error('no worker thread found in /proc/self/task');
  for (const limit of [100, 25, 50, 25]) {
    await vm.setCpuLimit(limit);
    await new Promise((r) => setTimeout(r, 500));
    const c0 = process.cpuUsage();
    const w0 = threadCpu().get(worker)!;
    const i0 = vm.stats().instructions;
    const t0 = performance.now();
    const l0 = loadavg()[0]!;
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const c1 = process.cpuUsage(c0);
    const w1 = threadCpu().get(worker)!;
    const wall = (performance.now() - t0) / 1000;
    const share = (c1.user + c1.system) / 1e6 / wall;
    const ips = (vm.stats().instructions - i0) / wall;
    console.log(`cpu limit ${String(limit).padStart(3)}%: machine thread ${(((w1 - w0) / wall) * 100).toFixed(1)}% of a core (process ${(share * 100).toFixed(1)}%), guest ${(ips / 1e6).toFixed(1)} M instructions/s over ${wall.toFixed(1)} s, load average ${l0.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}`);
  }
  await vm.kill();
}

console.log(`visord bench: node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`);
try {
  if (ONLY !== 'load') await cpu();
  if (ONLY !== 'cpu') await load();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
