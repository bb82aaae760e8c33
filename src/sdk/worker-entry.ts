/**
 * A machine's worker thread: owns one MachineRunner, obeys Commands, reports WorkerMessages.
 * One machine per worker, so a machine that crashes or hogs its thread never stalls another.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { z } from 'zod';
import { readSnapshotFile, startRamLoad } from '../host/snapshot/file.js';
import { readMemorySnapshot } from '../host/snapshot/memory.js';
import { prepareGuestRam } from '../cpu/guest-ram.js';
import { threadCpuClock } from '../host/thread-cpu.js';
import type { Command, WorkerInit, WorkerMessage } from './protocol.js';
import type { MemorySnapshot } from '../host/snapshot/memory.js';
import { toWire } from './protocol.js';
import type { RunnerEvents } from './runner.js';

/**
 * The runner (the board, devices, CPU and JIT: most of visor's modules) loads while a restore
 * reads the file and inflates RAM: loading it is compile work on this thread, inflating runs
 * on the libuv pool, so the two overlap. A prewarmed worker starts loading it at once.
 */
const runnerModule = import('./runner.js');
/** Absolute times (ms since the epoch) of the restore's steps, reported in 'ready'. */
const now = () => performance.timeOrigin + performance.now();
const marks: Record<string, number> = { entry: now() };
void runnerModule.then(() => (marks.modules = now()));

/**
 * zod compiles a fast path for each object schema the first time it parses with it (new
 * Function): worth it for schemas parsed many times, not for a worker that validates one
 * snapshot's state once (4 ms instead of 8 for the machine state of a tiny sandbox).
 */
z.config({ jitless: true });

const port = parentPort!;
const post = (m: WorkerMessage, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);

const events: RunnerEvents = {
  output: (bytes) => {
    // A copy of our own to transfer: the caller's bytes may be a view of guest RAM.
    const own = bytes.slice();
    post({ t: 'out', bytes: own }, [own.buffer as ArrayBuffer]);
  },
  state: (state, reason) => {
    post(reason === undefined ? { t: 'state', state } : { t: 'state', state, reason });
    if (state === 'stopped') {
      setImmediate(() => port.close());
      // Everything is closed by now; should a stray handle keep this thread alive, end it anyway.
      setTimeout(() => process.exit(0), 2000).unref();
    }
  },
  channel: (bytes) => {
    const own = bytes.slice();
    post({ t: 'chan', bytes: own }, [own.buffer as ArrayBuffer]);
  },
  stdout: (bytes) => {
    const own = bytes.slice();
    post({ t: 'stdout', bytes: own }, [own.buffer as ArrayBuffer]);
  },
  stderr: (bytes) => {
    const own = bytes.slice();
    post({ t: 'stderr', bytes: own }, [own.buffer as ArrayBuffer]);
  },
  guest: (event) => post({ t: 'guest', event }),
  error: (err) => post({ t: 'error', error: toWire(err) }),
};

/** Messages that arrive before the runner exists: 'init', then 'file' for a restore. */
const early: Command[] = [];
let awaiting: { op: Command['op']; resolve(c: Command): void } | undefined;
let handle: ((c: Command) => void) | undefined;

port.on('message', (c: Command) => {
  if (c.op === 'rehearse') {
    // Warm already: once idle a while; still warming: after it (warmWhileIdle); taken: too late.
    if (handle || initTaken) return;
    if (warmed) scheduleRehearsal(c.image);
    else early.push(c);
    return;
  }
  if (awaiting && awaiting.op === c.op) {
    const a = awaiting;
    awaiting = undefined;
    a.resolve(c);
  } else if (handle) handle(c);
  else early.push(c);
});

function receive<Op extends Command['op']>(op: Op): Promise<Extract<Command, { op: Op }>> {
  const i = early.findIndex((c) => c.op === op);
  if (i >= 0) return Promise.resolve(early.splice(i, 1)[0] as Extract<Command, { op: Op }>);
  return new Promise((resolve) => (awaiting = { op, resolve: resolve as (c: Command) => void }));
}

/** The machine's init has been taken (a rehearsal that has not started by then never does). */
let initTaken = false;
let warmed = false;
/** The rehearsal restore under way or done (rehearse); the machine's own restore waits for it. */
let rehearsal: Promise<void> | undefined;

/**
 * A prewarmed worker also warms V8 for the hart while it waits (host/warmup.ts): a restore
 * skips the warm-up (too slow for its latency), so its guest would otherwise start on a cold
 * interpreter, which made a sandbox's first command take seconds. Off the critical path here.
 */
async function warmWhileIdle(): Promise<void> {
  if (workerData !== null && workerData !== undefined) return;
  await runnerModule;
  await new Promise((r) => setImmediate(r)); // an 'init' already queued goes first
  if (early.some((c) => c.op === 'init') || awaiting === undefined) return;
  const [{ warmUp }, { defaultAccel }] = await Promise.all([import('../host/warmup.js'), import('../host/accel.js')]);
  warmUp(defaultAccel());
  marks.warm = now();
  warmed = true;
  const i = early.findIndex((c) => c.op === 'rehearse');
  if (i >= 0) scheduleRehearsal((early.splice(i, 1)[0] as Extract<Command, { op: 'rehearse' }>).image);
}

/**
 * A rehearsal starts only once this worker has sat idle for a moment: a worker about to be
 * taken (a fork's children take several at once, right after the first restore offered the
 * snapshot) gets its init first, and a machine's own restore never waits behind a rehearsal it
 * did not need.
 */
const REHEARSE_AFTER_IDLE_MS = 100;
let rehearseTimer: ReturnType<typeof setTimeout> | undefined;
function scheduleRehearsal(image: MemorySnapshot): void {
  if (initTaken || rehearsal || rehearseTimer) return;
  rehearseTimer = setTimeout(() => {
    rehearseTimer = undefined;
    if (!initTaken && !rehearsal) rehearsal = rehearse(image);
  }, REHEARSE_AFTER_IDLE_MS);
}

/**
 * A restore's first run through visor's code in a thread is its slowest by far: every function
 * compiled on first call, every property access still to learn its shapes, zod building its
 * schemas, Node loading what listen() needs (a 512 MiB tiny sandbox: 48 ms the first time,
 * 7.5-22 ms for the same restore again in one thread, a loop of MachineRunner.restore). So a prewarmed worker, while it waits, restores a
 * snapshot like the ones it will get (the latest one this process restored from memory: a
 * template's, a fork's; worker-pool.ts) and throws it away. Its RAM pages in on demand, so
 * nothing is copied; it binds no port forward (a policy of its own), its vsock socket lives in a
 * temporary directory, and snapshots with disks or a network shared with other machines are
 * skipped (their files are not ours to open; a NIC there would meet the others).
 */
async function rehearse(image: MemorySnapshot): Promise<void> {
  const [{ MachineRunner }, { mkdtemp, rm }, { tmpdir }, { join }, { defaultAccel }] = await Promise.all([runnerModule, import('node:fs/promises'), import('node:os'), import('node:path'), import('../host/accel.js')]);
  let dir: string | undefined;
  try {
    const snap = readMemorySnapshot(image);
    // Disks are files of someone else's; a switch or a named user network is shared with other
    // machines, which would meet this one's NIC: only machines alone with their own network.
    const meta = snap.meta as { disks?: unknown[]; config?: { nets?: unknown[] } } | null;
    if (meta?.disks?.length || !(meta?.config?.nets ?? []).every((n) => typeof n === 'object' && n !== null && 'user' in n && (n as { user: unknown }).user === null)) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-rehearse-'));
    const quiet: RunnerEvents = { output: () => {}, state: () => {}, guest: () => {}, error: () => {} };
    const r = await MachineRunner.restore(snap, quiet, { vsockPath: join(dir, 'v.sock'), netPolicy: { firewall: [], hostAccess: false }, accel: defaultAccel() });
    await r.kill();
    // RAM for the machine to come, if it is like this one: reserved now, while idle.
    if (!initTaken) prepareGuestRam(snap.ramImage.bytes.length);
    marks.rehearsed = now();
  } catch {
    // A rehearsal only warms code: whatever went wrong, the real restore says it.
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

async function main(): Promise<void> {
  // A worker may be started ahead of need (Machine.prewarm): its machine comes with 'init'.
  if (!workerData) void warmWhileIdle();
  const init: WorkerInit = (workerData as WorkerInit | null) ?? (await receive('init')).init;
  initTaken = true;
  clearTimeout(rehearseTimer);
  marks.init = now();
  if (rehearsal) await rehearsal; // (no tick otherwise: a create starts as before)
  let runner: Awaited<ReturnType<(typeof import('./runner.js'))['MachineRunner']['create']>>;
  const timings: Record<string, number> = {};
  // This thread runs this machine alone: its CPU time is the machine's (the CPU limit counts it).
  const clock = threadCpuClock();
  const cpu = clock ? { cpuClock: clock } : {};
  try {
    if (init.mode === 'create') {
      const { MachineRunner, STAT } = await runnerModule;
      runner = await MachineRunner.create(init.config, events, { stats: new Float64Array(init.stats, 0, STAT.size), ...cpu });
    } else {
      // The worker reads the file itself: nothing to copy or transfer between threads. An
      // in-memory snapshot's RAM is shared memory, paged in on demand (host/snapshot/memory.ts).
      const snap = init.image ? readMemorySnapshot(init.image) : await readSnapshotFile(init.path ?? '');
      marks.read = now();
      const preloadedRam = init.image ? undefined : startRamLoad(snap);
      const { MachineRunner, STAT } = await runnerModule;
      marks.loaded = now();
      const stats = new Float64Array(init.stats, 0, STAT.size);
      // The restore's own options (accel, vsockPath, code, netPolicy, macs, disks, warmUp,
      // interpretFirst, keepVsock) are RunnerOptions of the same names.
      const { mode: _mode, path: _path, image: _image, stats: _stats, ...restoreOpts } = init;
      runner = await MachineRunner.restore(snap, events, { stats, ...cpu, timings, ...(preloadedRam ? { preloadedRam } : {}), ...restoreOpts });
    }
  } catch (err) {
    post({ t: 'init-error', error: toWire(err) });
    port.close();
    return;
  }
  handle = (c: Command) => {
    if (c.op === 'input') {
      runner.input(c.bytes);
      return;
    }
    if (c.op === 'channel') {
      runner.channelInput(c.bytes);
      return;
    }
    if (c.op === 'stdin') {
      runner.stdinInput(c.bytes);
      return;
    }
    if (c.op === 'stdin-end') {
      runner.stdinEnd();
      return;
    }
    if (c.op === 'init' || c.op === 'rehearse') return;
    const run = async (): Promise<unknown> => {
      switch (c.op) {
        case 'start': return runner.start();
        case 'pause': return runner.pause();
        case 'resume': return runner.resume();
        case 'stop': return runner.stop({ ...(c.graceful !== undefined ? { graceful: c.graceful } : {}), ...(c.timeoutMs !== undefined ? { timeoutMs: c.timeoutMs } : {}) });
        case 'kill': return runner.kill();
        case 'snapshot': return runner.snapshot(c.path, { compress: c.compress });
        case 'snapshotInMemory': return runner.snapshotInMemory(c.vsockBarrier);
        case 'runUntil': return runner.runUntil(c.until);
        case 'balloon': return runner.balloon(c.targetMiB);
        case 'cpuLimit': return runner.setCpuLimit(c.percent);
        case 'exportCode': return runner.exportCode();
        case 'forward': return runner.addForward(c.forward);
        case 'netPolicy': return runner.setNetPolicy(c.policy);
      }
    };
    run().then(
      (value) => post({ t: 'reply', id: c.id, ok: true, value }),
      (err) => post({ t: 'reply', id: c.id, ok: false, error: toWire(err) }),
    );
  };
  for (const c of early.splice(0)) handle(c);
  marks.ready = now();
  post({ t: 'ready', state: runner.currentState, config: runner.config, agentListening: runner.agentListening, marks, timings });
}

void main();
