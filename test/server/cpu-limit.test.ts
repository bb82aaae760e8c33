/**
 * The CPU limit measured (issue 17's proof): a machine whose guest spins forever, run by the
 * daemon, limited through the API to 25 % of a core, uses 25 % ± 5 % of a core in its thread's
 * own CPU time, read here from the kernel (/proc/self/task/TID/schedstat, not the daemon's
 * numbers), over a window of wall time, while other processes keep every core busy.
 *
 * On a host with cores to spare the test makes the load itself: one spinning process per
 * core, each in a session of its own (detached: a scheduler autogroup of its own, as another
 * user's work would be); a host whose load average is at its core count already is loaded
 * enough. Either way the machine's thread waits for a core while it runs, which a limit
 * counted in wall time would charge to it (it got ~p/100 of its unlimited share that way).
 * First the machine runs unlimited to show what the host gives its thread; a limit can only
 * be shown below that, so when the host gives it less than 30 %, the test cannot measure the
 * limit: it fails under CI=true, else it says why and skips.
 * Linux only (the thread's CPU time comes from /proc). Opt-in: VISOR_CPU_LIMIT_TESTS=1
 * (~20 s of wall time, ~2 cores busy throughout).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type RunningDaemon } from '../../src/server/daemon.js';
import { bareImages, FakeGuest, tempDir } from './support.js';

const ENABLED = process.env.VISOR_CPU_LIMIT_TESTS === '1';
if (!ENABLED) console.log('test/server/cpu-limit.test.ts skipped: set VISOR_CPU_LIMIT_TESTS=1 to measure a machine\'s CPU limit under load (~20 s, all cores busy)');
const LINUX = process.platform === 'linux';
if (ENABLED && !LINUX) console.log('test/server/cpu-limit.test.ts skipped: the thread CPU times it measures come from Linux\'s /proc');
const WINDOW_S = 6;

/** CPU milliseconds of each thread of this process, from the kernel (schedstat: nanoseconds on a CPU). */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      out.set(tid, Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6);
    } catch {
      // the thread ended
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!ENABLED || !LINUX)('a machine\'s CPU limit, measured', () => {
  const tmp = tempDir('visord-cpu-');
  let d: RunningDaemon;
  let token: string;
  const load: ChildProcess[] = [];

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any; location: string | null }> => {
    const r = await fetch(d.address + path, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const t = await r.text();
    return { status: r.status, json: t ? JSON.parse(t) : undefined, location: r.headers.get('location') };
  };

  /** The machine thread's CPU (kernel's count), the daemon's cpuSeconds and wall time over WINDOW_S. */
  const measure = async (tid: string, id: string) => {
    const c0 = threadCpu().get(tid)!;
    const s0 = (await api('GET', `/v1/machines/${id}`)).json.stats.cpuSeconds as number;
    const t0 = performance.now();
    await sleep(WINDOW_S * 1000);
    const c1 = threadCpu().get(tid)!;
    const s1 = (await api('GET', `/v1/machines/${id}`)).json.stats.cpuSeconds as number;
    const wall = performance.now() - t0;
    return { share: ((c1 - c0) / wall) * 100, reported: ((s1 - s0) * 1000 * 100) / wall };
  };

  beforeAll(async () => {
    d = await startDaemon({ stateDir: join(tmp.dir, 'state'), listen: '127.0.0.1:0', images: bareImages(tmp.dir), guest: new FakeGuest(), logger: pino({ level: 'silent' }) });
    token = readFileSync(d.adminTokenFile!, 'utf8').trim();
  });

  afterAll(async () => {
    for (const p of load) p.kill('SIGKILL');
    await d?.stop();
    tmp.cleanup();
  });

  it('holds a spinning guest to 25 % ± 5 % of a core in its thread\'s CPU time, with every core busy', { timeout: 120_000 }, async (ctx) => {
    if (loadavg()[0]! < cpus().length) {
      for (let i = 0; i < cpus().length; i++) load.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { detached: true, stdio: 'ignore' }));
    }
    const before = new Set(threadCpu().keys());
    const created = await api('POST', '/v1/machines', { name: 'spin', image: 'spin', memoryMiB: 16, start: true });
    expect(created.status, JSON.stringify(created.json)).toBe(202);
    const op = await api('GET', `${created.location}/wait?timeoutMs=60000`);
    expect(op.json.status, JSON.stringify(op.json)).toBe('success');
    const id = op.json.result.id as string;
    await sleep(1500); // past the worker's start and the JIT's first compiles

    // The machine's thread: of the threads that came with it, the one that works.
    const w0 = threadCpu();
    await sleep(1000);
    const fresh = [...threadCpu()].filter(([tid]) => !before.has(tid)).map(([tid, ms]) => [tid, ms - (w0.get(tid) ?? 0)] as const).sort((a, b) => b[1] - a[1]);
    const tid = fresh[0]?.[0];
    expect(tid, 'no new busy thread in /proc/self/task').toBeDefined();

    const free = await measure(tid!, id);
    console.log(`unlimited: the machine's thread used ${free.share.toFixed(1)} % of a core (daemon reports ${free.reported.toFixed(1)} %), ${load.length} spinning processes of the test's beside it, load average ${loadavg()[0]!.toFixed(2)}`);
    if (free.share < 30) {
      const why = `the host gave the machine's thread only ${free.share.toFixed(1)} % of a core unlimited: a 25 % limit cannot be told apart from that (load average ${loadavg()[0]!.toFixed(2)} on ${cpus().length} cores)`;
      if (process.env.CI === 'true') throw new Error(why);
      console.log(`cpu-limit test skipped: ${why}`);
      ctx.skip();
    }

    const patched = await api('PATCH', `/v1/machines/${id}`, { cpuLimitPercent: 25 });
    expect(patched.status, JSON.stringify(patched.json)).toBe(200);
    await sleep(1000);
    const limited = await measure(tid!, id);
    console.log(`limit 25 %: the machine's thread used ${limited.share.toFixed(1)} % of a core (daemon reports ${limited.reported.toFixed(1)} %), load average ${loadavg()[0]!.toFixed(2)}`);
    expect(limited.share).toBeGreaterThanOrEqual(20);
    expect(limited.share).toBeLessThanOrEqual(30);
    // The daemon's own figure is the same clock's (thread CPU), read by the machine's thread.
    expect(Math.abs(limited.reported - limited.share)).toBeLessThan(3);
  });
});
