/**
 * The public Machine API (issue 7). Each machine runs on its own worker thread
 * (worker-entry.ts); this object is its handle on the calling thread.
 *
 *   const vm = await Machine.create({ kernel: 'Image', memoryMiB: 256 });
 *   vm.console.pipe(process.stdout);
 *   await vm.start(); await vm.pause(); await vm.snapshot('vm.snap'); await vm.resume();
 *   const vm2 = await Machine.restore('vm.snap');   // running where vm was
 *   await vm.stop();
 */
import { EventEmitter } from 'node:events';
import { Duplex, Readable, Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { VisorError } from '../base/errors.js';
import { defaultAccel, resolveMachineConfig, type Accel, type ImageResolver, type MachineConfig, type ResolvedConfig } from './config.js';
import { z } from 'zod';
import type { TierCode } from '../cpu/tier.js';
import type { MemorySnapshot } from '../host/snapshot/memory.js';
import { parseFirewallEntry } from '../net/user/spec.js';
import { parseMac } from '../net/mac.js';
import { fromWire, type Command, type NetPolicy, type VsockBarrier, type VsockLink, type VsockStream, type WorkerInit, type WorkerMessage } from './protocol.js';
import { DEFAULT_STOP_TIMEOUT_MS, type GuestEvent, type StopResult, type UntilCondition } from './protocol.js';
import { prewarmWorkers, rehearseWith, takeWorker } from './worker-pool.js';
import { BALLOON_PAGES_PER_MIB, JIT_MORE_STAT_KEYS, JIT_STAT_KEYS, STAT } from '../vm/stats.js';
import { transition, type MachineAction, type MachineState } from './states.js';
import { MAX_STAT_NICS, NIC_STAT_SLOTS, NAT_DROP_REASONS, NET_STAT_KEYS, NIC_STAT_KEYS, type NatDropReason } from '../vm/stats.js';

/** One NIC's counters (MachineStats.nics). */
export interface NicStats {
  /** Frames and bytes at the guest's NIC: rx to the guest, tx from it. */
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /**
   * Frames dropped at the NIC, by reason: the guest's receive ring was full, a transmit buffer
   * was malformed, a rate limit's queue overflowed (each direction).
   */
  drops: { rxRingFull: number; txMalformed: number; rxRateLimit: number; txRateLimit: number };
  /** Frames that waited for rate-limit tokens, each direction. */
  rateDelayed: { rx: number; tx: number };
  /**
   * On a user network whose NAT this process hosts: the network's counters (shared by its
   * NICs in this machine): NAT flows opened and open now, DNS queries, DHCP replies, TCP
   * retransmissions to the guest, connections reset after a restore, and frames it dropped,
   * by reason (firewall, flowLimit, checksum, malformed, fragment, ...).
   */
  nat?: {
    tcpFlows: number;
    udpFlows: number;
    activeTcp: number;
    activeUdp: number;
    dnsQueries: number;
    dhcpReplies: number;
    tcpRetransmits: number;
    restoredResets: number;
    drops: Record<NatDropReason, number>;
  };
}

export interface MachineStats {
  /** Guest instructions executed since boot (traps count as one). */
  instructions: number;
  /** Millions of instructions per second of running time, overall and over the last half second. */
  mips: number;
  recentMips: number;
  /** Wall time spent running, and asleep in it because the guest idled (wfi). */
  runningMs: number;
  idleMs: number;
  /**
   * CPU time of the machine's thread (ms): its instructions, devices and event loop, not time
   * spent waiting for a core. Absent where the host cannot tell (host/thread-cpu.ts: Linux or Node ≥ 23.9).
   */
  threadCpuMs?: number;
  /** Exceptions and interrupts taken, by cause number (privileged spec tables 3.6 / 4.2). */
  traps: Record<number, number>;
  interrupts: Record<number, number>;
  tlbMisses: number;
  /**
   * A machine restored from an in-memory snapshot copies each page of RAM in when its guest
   * first reaches it: pages copied so far, and pages of the snapshot still not copied (zero
   * for a machine that booted, or restored from a file).
   */
  ram: { pagedIn: number; pending: number };
  /** virtio-balloon (machines with `balloon: true`): what the host asked for and what the guest has given. */
  balloon?: { targetMiB: number; actualMiB: number };
  virtioInterrupts: number;
  /**
   * NICs (summed over the machine's): frames, drops (full receive ring, rate-limit overflow,
   * bad transmit buffers), frames that waited for rate-limit tokens; and the user network's
   * NAT flows opened (TCP, UDP), open now, and frames it dropped (firewall, all reasons).
   */
  net: Record<(typeof NET_STAT_KEYS)[number], number>;
  /** Each NIC's own counters, in the order of the config's `nets` (the first 8). */
  nics: NicStats[];
  io: {
    blkReads: number;
    blkWrites: number;
    blkBytesRead: number;
    blkBytesWritten: number;
    /** Disk requests that waited for the machine's disk limits (config diskLimits), and how long in total. */
    blkThrottled: number;
    blkThrottledMs: number;
    netRxBytes: number;
    netTxBytes: number;
    consoleOutBytes: number;
    consoleInBytes: number;
  };
  /** The execution tier, and tier 1's counters (all zero under the interpreter). */
  accel: 'interp' | 'jit';
  jit: {
    modulesCompiled: number;
    blocksCompiled: number;
    compileMs: number;
    /** Entries into compiled code. */
    cacheHits: number;
    /** Guest instructions executed in compiled code. */
    instructions: number;
    /** Modules dropped because their page was written (or fence.i). */
    invalidations: number;
    /** Modules dropped to stay within the code cache's bound. */
    evictions: number;
    /** Exits from compiled code to interpret one instruction. */
    stepExits: number;
    /** WebAssembly bytes of the modules compiled. */
    wasmBytes: number;
    /** Guest instructions in the modules compiled. */
    instructionsCompiled: number;
    /** Of compileMs: building the modules' bytes (the rest is V8 compiling them). */
    emitMs: number;
    /** Modules in use now (modulesCompiled less those replaced by a recompile, invalidated or evicted). */
    liveModules: number;
  };
}

export interface SnapshotInfo {
  path: string;
  bytes: number;
  ramPages: number;
  presentPages: number;
  ms: number;
}

export interface SnapshotOptions {
  /**
   * Compress RAM with zlib (default false). Uncompressed RAM (still sparse: zero pages are left
   * out) restores fastest: it is read from the file straight into guest RAM, where inflating a
   * 512 MiB Debian guest's 51 MiB costs ~230 ms of CPU (docs/benchmarks.md, Restore); a
   * compressed file is about 3.4 times smaller.
   */
  compress?: boolean;
}

export interface StopOptions {
  /**
   * Ask the guest to shut down first (default true): through the agent of visor's images, on
   * the virtio-console port org.visor.agent. false stops it by force at once.
   */
  graceful?: boolean;
  /**
   * How long to wait for the agent to listen and then for the guest to power off before
   * stopping by force (default 10 s).
   */
  timeoutMs?: number;
}

export interface CreateOptions {
  /** How `image` names become kernel/initrd files (default: visor's image cache, pulling if needed). */
  resolveImage?: ImageResolver;
}

export interface RestoreOptions {
  /** Start running right away (default true); false leaves it paused. */
  start?: boolean;
  /** Execution tier for the restored machine (default: defaultAccel()). */
  accel?: Accel;
  /**
   * Where the restored machine's vsock device listens (a Unix socket path), instead of the
   * saved machine's: each of several machines restored from one snapshot needs its own.
   */
  vsockPath?: string;
  /**
   * Compiled code of a machine with the same memory size (Machine.exportCode): a restored
   * guest runs the code its snapshot's machine ran, so it starts with that machine's compiled
   * pages instead of interpreting until its JIT has compiled them again. Each page's module is
   * used only if the page still holds the bytes it was compiled from.
   */
  code?: TierCode;
  /**
   * Firewall rules (`allow|deny DIR:PROTO:TARGET[:PORTS]`) and host access for the restored
   * machine's user-network NICs, instead of the saved machine's; the saved machine's port
   * forwards are then not bound (add them with addForward).
   */
  netPolicy?: { firewall?: string[]; hostAccess?: boolean };
  /**
   * New MAC addresses ("aa:bb:cc:dd:ee:ff") for the first NICs, instead of the saved
   * machine's: machines restored from one snapshot onto one network must not share an
   * address. The NIC shows the new one at once; the guest's driver keeps the address it read
   * at boot until the guest is told (`ip link set dev eth0 address …`, then renew its lease).
   */
  macs?: string[];
  /**
   * Other files for the saved machine's disks, in order: each must hold what the saved disk
   * held (the same size, qcow2 header and first MiB; only the modification time may differ),
   * as a fresh qcow2 overlay on the same base does while nothing has written to it. Boot
   * snapshots (src/sdk/boot-snapshot.ts) restore onto a new overlay per run this way.
   */
  disks?: string[];
  /**
   * Warm V8 for the hart before the guest runs (src/vm/warmup.ts), as a boot does: ~0.3 s
   * before the first instruction, repaid many times by a guest that goes on to run much new
   * code (a boot snapshot's run: `visor run`). A restore skips it by default (latency).
   */
  warmUp?: boolean;
  /**
   * Interpret only, for this many instructions after the restore, before the JIT compiles
   * anything (Hart.holdJit). For a guest that goes on with a short stretch of code the
   * restored machine has not compiled: a boot snapshot's run (`visor run -- true` or a
   * python3 one-liner: the JIT's compiles cost more than they save there; docs/benchmarks.md).
   */
  interpretFirst?: number;
  /**
   * vsock streams open in an in-memory snapshot to keep rather than reset: the host takes each
   * over with `ADOPT <guestPort> <hostPort>\n` on the vsock socket (answered `OK <hostPort>\n`)
   * and continues it where the snapshot's `link` left it (snapshotInMemory's vsockBarrier).
   * What a fork's children do with their parent's agent connection. Others are reset.
   */
  keepVsock?: VsockStream[];
}

/** Events: 'state' (state, reason), 'guest' (GuestEvent: poweroff, reboot, fail, panic), 'error' (VisorError). */
export interface MachineEvents {
  state: [state: MachineState, reason: string | undefined];
  guest: [event: GuestEvent];
  error: [err: VisorError];
}

const defaultResolveImage: ImageResolver = async (name, opts) => {
  const { ensureImage, ephemeralDisk } = await import('../images/index.js');
  const { cacheRoot } = await import('../images/cache.js');
  const img = await ensureImage(name, opts);
  // An image with a root disk: this machine's own overlay on the base, as `visor run` makes.
  const rootDisk = img.rootfs ? await ephemeralDisk(cacheRoot(), img.rootfs) : undefined;
  return {
    kernel: img.kernel, ...(img.initrd ? { initrd: img.initrd } : {}), ...(img.append ? { append: img.append } : {}),
    ...(rootDisk ? { rootDisk: { path: rootDisk.path, dispose: rootDisk.dispose } } : {}),
  };
};

/** runUntil's default timeout. */
export const DEFAULT_RUN_UNTIL_TIMEOUT_MS = 300_000;

/** How long a forced stop (flushing and closing devices) may take before the worker is killed. */
const FORCED_STOP_MS = 10_000;
/** How long kill() waits for a terminated worker to end before abandoning it. */
const WORKER_EXIT_MS = 10_000;

export class Machine extends EventEmitter<MachineEvents> {
  /**
   * The guest's console: its output (UART, and hvc0 when the machine has the virtio-console)
   * and its input (to hvc0 with `console: 'virtio'`, else the UART).
   */
  readonly console: Duplex;
  /**
   * The data port org.visor.data (machines with the virtio-console): a byte channel to
   * /dev/vport0p2 in the guest. Bytes written before the guest opens the port wait (up to 1 MiB).
   */
  readonly channel: Duplex;
  /**
   * The guest command's stdio, for machines with `stdio: 'virtio'` (visor's images run the
   * command given in the kernel command line on them): bytes exactly as the command wrote
   * them, stdout and stderr apart; `stdin.end()` is end-of-file for the command. Without
   * that config they carry nothing.
   */
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /**
   * Where this machine's creation or restore went, in ms (bench/restore.ts): `at.X` is when the
   * worker reached step X counted from the call; the rest are MachineRunner.restore's phases.
   */
  readonly startTimings: Record<string, number> = {};
  private _agentListening: boolean;
  private _state: MachineState;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  private nextId = 1;
  private readonly statsView: Float64Array;
  private exited = false;
  private readonly exitedPromise: Promise<void>;
  /** Settles everything waiting on the worker (its 'exit', or kill() giving up on it). */
  private workerGone!: (code: number | string) => void;

  private constructor(
    private readonly worker: Worker,
    readonly config: ResolvedConfig,
    state: MachineState,
    stats: SharedArrayBuffer,
    agentListening: boolean,
  ) {
    super();
    this._state = state;
    this._agentListening = agentListening;
    this.statsView = new Float64Array(stats);
    this.console = new Duplex({
      read() {},
      write: (chunk: Buffer, _enc, cb) => {
        if (!this.exited && this._state !== 'stopped') {
          const bytes = new Uint8Array(chunk);
          this.worker.postMessage({ op: 'input', bytes } satisfies Command);
        }
        cb();
      },
    });
    this.channel = new Duplex({
      read() {},
      write: (chunk: Buffer, _enc, cb) => {
        if (!this.exited && this._state !== 'stopped') this.worker.postMessage({ op: 'channel', bytes: new Uint8Array(chunk) } satisfies Command);
        cb();
      },
    });
    this.stdin = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        if (!this.exited && this._state !== 'stopped') this.worker.postMessage({ op: 'stdin', bytes: new Uint8Array(chunk) } satisfies Command);
        cb();
      },
      final: (cb) => {
        if (!this.exited && this._state !== 'stopped') this.worker.postMessage({ op: 'stdin-end' } satisfies Command);
        cb();
      },
    });
    this.stdout = new Readable({ read() {} });
    this.stderr = new Readable({ read() {} });
    this.stdin.on('error', () => {});
    // Output may come faster than anyone reads; nobody reading is not an error.
    this.console.on('error', () => {});
    this.channel.on('error', () => {});
    worker.on('message', (m: WorkerMessage) => this.onMessage(m));
    this.exitedPromise = new Promise((resolve) => {
      this.workerGone = (code) => {
        if (this.exited) return;
        this.exited = true;
        const err = new VisorError('Internal', `machine ${config.name}: its worker exited (code ${code})`);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        if (this._state !== 'stopped') {
          this.setState('stopped', 'crashed');
        }
        this.console.push(null);
        this.channel.push(null);
        this.stdout.push(null);
        this.stderr.push(null);
        resolve();
      };
      worker.once('exit', (code) => this.workerGone(code));
    });
    worker.on('error', (err) => {
      // An exception escaped the worker: this machine is gone, the process and others are not.
      this.emitError(new VisorError('Internal', `machine ${config.name} crashed: ${err.message}`, { cause: err }));
    });
  }

  /** Validates `config`, resolves the image, opens devices and loads the kernel (state 'created'). */
  static async create(config: MachineConfig, opts: CreateOptions = {}): Promise<Machine> {
    const disposers: (() => Promise<void>)[] = [];
    const dispose = () => Promise.all(disposers.map((d) => d().catch(() => {}))).then(() => {});
    let vm: Machine;
    try {
      const resolved = await resolveMachineConfig(config, opts.resolveImage ?? defaultResolveImage, disposers);
      vm = await Machine.spawn({ mode: 'create', config: resolved, stats: newStats() });
    } catch (err) {
      await dispose();
      throw err;
    }
    // The machine's own root overlay goes once its worker (which holds the disk open) is gone.
    if (disposers.length) void vm.exitedPromise.then(dispose);
    return vm;
  }

  /**
   * A machine from a snapshot file (or an in-memory snapshot: snapshotInMemory), continuing
   * exactly where the snapshotted one was. Fails with a clear error for a damaged or foreign
   * file, a newer format, or a disk that changed.
   */
  static async restore(from: string | MemorySnapshot, opts: RestoreOptions = {}): Promise<Machine> {
    const inMemory = typeof from === 'object' && from !== null && (from as MemorySnapshot).kind === 'visor-memory-snapshot';
    if (!inMemory && (typeof from !== 'string' || from === '')) throw new VisorError('InvalidArgument', `Machine.restore: give the snapshot file's path or what snapshotInMemory() returned (got ${from === '' ? 'an empty string' : typeof from})`);
    const { resolve } = await import('node:path');
    // The worker reads the file and inflates RAM while it loads the rest of visor (worker-entry.ts).
    const source = inMemory ? { image: from as MemorySnapshot } : { path: resolve(from as string) };
    const spawned = Machine.spawn({ mode: 'restore', ...source, stats: newStats(), accel: opts.accel ?? defaultAccel(), ...(opts.vsockPath ? { vsockPath: resolve(opts.vsockPath) } : {}), ...(opts.code ? { code: opts.code } : {}), ...(opts.netPolicy ? { netPolicy: netPolicyOf(opts.netPolicy) } : {}), ...(opts.macs ? { macs: macsOf(opts.macs) } : {}), ...(opts.disks ? { disks: disksOf(opts.disks, resolve) } : {}), ...(opts.warmUp === true ? { warmUp: true } : {}), ...(opts.interpretFirst !== undefined ? { interpretFirst: countOf(opts.interpretFirst, 'interpretFirst') } : {}), ...(opts.keepVsock ? { keepVsock: streamsOf(opts.keepVsock) } : {}) });
    // Its worker taken, the warm ones waiting restore one like it while idle (worker-entry.ts rehearse).
    if (inMemory) rehearseWith(from as MemorySnapshot);
    const vm = await spawned;
    if (opts.start ?? true) await vm.resume();
    return vm;
  }

  /**
   * Starts `count` workers ahead of need, so the next create() or restore() skips worker
   * start-up (most of a restore's latency). Idle warm workers do not keep the process alive.
   */
  static prewarm(count = 1): void {
    prewarmWorkers(count);
  }


  private static spawn(init: WorkerInit): Promise<Machine> {
    const t0 = performance.timeOrigin + performance.now();
    const worker = takeWorker(init);
    return new Promise((resolve, reject) => {
      const onMessage = (m: WorkerMessage) => {
        if (m.t === 'ready') {
          cleanup();
          const vm = new Machine(worker, m.config, m.state, init.stats, m.agentListening);
          // Worker marks relative to the call (negative: a prewarmed worker got there before it).
          for (const [k, v] of Object.entries(m.marks)) vm.startTimings[`at.${k}`] = v - t0;
          for (const [k, v] of Object.entries(m.timings)) vm.startTimings[k] = v;
          resolve(vm);
        } else if (m.t === 'init-error') {
          cleanup();
          reject(fromWire(m.error));
        }
      };
      const onError = (err: Error) => {
        cleanup();
        void worker.terminate();
        reject(new VisorError('Internal', `machine worker failed to start: ${err.message}`, { cause: err }));
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new VisorError('Internal', `machine worker exited during start-up (code ${code})`));
      };
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
  }

  get state(): MachineState {
    return this._state;
  }

  get name(): string {
    return this.config.name;
  }

  private onMessage(m: WorkerMessage): void {
    switch (m.t) {
      case 'out':
        this.console.push(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength));
        return;
      case 'chan':
        this.channel.push(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength));
        return;
      case 'stdout':
      case 'stderr':
        this[m.t].push(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength));
        return;
      case 'state':
        this.setState(m.state, m.reason);
        return;
      case 'guest':
        if (m.event.kind === 'agent') this._agentListening = m.event.listening;
        this.emit('guest', m.event);
        return;
      case 'error':
        this.emitError(fromWire(m.error));
        return;
      case 'reply': {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.ok) p.resolve(m.value);
        else p.reject(fromWire(m.error));
        return;
      }
      default:
        return;
    }
  }

  private emitError(err: VisorError): void {
    // An 'error' event with no listener would throw on the caller's thread: only emit when heard.
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private setState(s: MachineState, reason: string | null | undefined): void {
    if (this._state === s) return;
    this._state = s;
    // Always a string or undefined (a reason that crossed the thread may have become null).
    this.emit('state', s, reason ?? undefined);
  }

  private call(action: MachineAction, extra: { path?: string; compress?: boolean; inMemory?: boolean; barrier?: VsockBarrier; until?: UntilCondition; stop?: { graceful: boolean; timeoutMs: number } } = {}): Promise<unknown> {
    try {
      transition(this._state, action); // refuse early, naming the state the caller sees
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.exited) return Promise.reject(new VisorError('NotAllowed', `machine ${this.name} is stopped`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const cmd: Command = action === 'snapshot' ? (extra.inMemory ? { op: 'snapshotInMemory', id, ...(extra.barrier ? { vsockBarrier: extra.barrier } : {}) } : { op: 'snapshot', id, path: extra.path!, compress: extra.compress ?? false })
        : extra.until ? { op: 'runUntil', id, until: extra.until }
        : extra.stop ? { op: 'stop', id, ...extra.stop }
        : { op: action, id };
      this.worker.postMessage(cmd);
    });
  }

  async start(): Promise<void> {
    await this.call('start');
  }

  async pause(): Promise<void> {
    await this.call('pause');
  }

  async resume(): Promise<void> {
    await this.call('resume');
  }

  /**
   * Runs the machine (created, paused or running) until the guest prints `output` on its
   * console or `instructions` (counted from boot) have run, and leaves it paused there: at the
   * end of that instruction batch. The batches sit on a fixed grid, so for a deterministic
   * guest the point is the same however fast the host is; a snapshot taken there is
   * reproducible. Rejects with NotAllowed if the machine is paused, stopped or powers off first.
   */
  async runUntil(until: UntilCondition): Promise<void> {
    const { timeoutMs = DEFAULT_RUN_UNTIL_TIMEOUT_MS, ...cond } = until;
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new VisorError('InvalidArgument', 'runUntil: timeoutMs must be a positive number of milliseconds');
    const action: MachineAction = this._state === 'created' ? 'start' : this._state === 'paused' ? 'resume' : 'pause';
    const running = this.call(action, { until: cond });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    try {
      if ((await Promise.race([running, timedOut])) !== 'timeout') return;
    } finally {
      clearTimeout(timer);
    }
    // Pausing settles the runner's pending runUntil (refused: paused), which is ours to drop.
    running.catch(() => {});
    if (this._state === 'running') await this.pause().catch(() => {});
    const what = cond.output !== undefined ? `the guest printed ${JSON.stringify(cond.output)}` : `${cond.instructions} instructions had run`;
    throw new VisorError('Timeout', `runUntil: ${timeoutMs} ms passed before ${what}; the machine is paused`);
  }

  /**
   * Saves the whole machine to `path` (atomically), running or paused; a running machine goes
   * on. RAM is stored sparse and, unless `compress: true`, uncompressed: a larger file, a faster restore.
   */
  async snapshot(path: string, opts: SnapshotOptions = {}): Promise<SnapshotInfo> {
    const { resolve } = await import('node:path');
    const abs = resolve(path);
    const r = (await this.call('snapshot', { path: abs, compress: opts.compress ?? false })) as Omit<SnapshotInfo, 'path'>;
    return { path: abs, ...r };
  }

  /**
   * The same snapshot, held in memory instead of a file: Machine.restore(it) starts machines
   * from it in this process, each paging RAM in from it as its guest reaches a page (so a
   * restore copies no RAM up front, and many restores share one copy). Its RAM lives as long
   * as the result or a machine restored from it is kept.
   */
  async snapshotInMemory(opts: { vsockBarrier?: VsockBarrier } = {}): Promise<MemorySnapshot & { link?: VsockLink }> {
    const barrier = opts.vsockBarrier ? { ...streamsOf([opts.vsockBarrier], 'snapshotInMemory: vsockBarrier')[0]!, hostBytes: bytesOf(opts.vsockBarrier.hostBytes) } : undefined;
    const { ms: _ms, ...snap } = (await this.call('snapshot', { inMemory: true, ...(barrier ? { barrier } : {}) })) as MemorySnapshot & { ms: number; link?: VsockLink };
    return snap;
  }

  /** The guest agent listens on its port: stop() can ask the guest to shut down. */
  get agentListening(): boolean {
    return this._agentListening;
  }

  /**
   * Asks the guest to give `targetMiB` of its memory back through the virtio-balloon (config
   * `balloon: true`); 0 gives it all back. The guest complies on its own time: `actualMiB`
   * (also in stats().balloon) says how much it has given so far.
   */
  async balloon(targetMiB: number): Promise<{ targetMiB: number; actualMiB: number }> {
    if (this.exited || this._state === 'stopped') throw new VisorError('NotAllowed', `machine ${this.name} is stopped`);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ op: 'balloon', id, targetMiB } satisfies Command);
    });
  }

  /**
   * Stops the machine. A running machine whose guest agent listens (visor's images start one)
   * is asked to shut down: the guest stops its processes, syncs and unmounts its file systems
   * and powers off. Without an agent (a kernel of your own, or one still booting) it waits up
   * to `timeoutMs` for one to listen. Otherwise, or past the timeout, the machine is stopped
   * by force: the instruction batch ends, disk I/O completes, every device is flushed and
   * closed. The result says which, and why. Should even that hang, the worker is killed.
   */
  async stop(opts: StopOptions = {}): Promise<StopResult> {
    // Stopping a stopped machine is done already (so `finally { await vm.stop() }` is safe).
    if (this._state === 'stopped' || this.exited) {
      await this.exitedPromise;
      return { graceful: false, forced: 'not-running' };
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    const stopping = this.call('stop', { stop: { graceful: opts.graceful ?? true, timeoutMs } }) as Promise<StopResult>;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs + FORCED_STOP_MS)));
    try {
      const r = await Promise.race([stopping, timedOut]);
      if (r === 'timeout') {
        stopping.catch(() => {});
        await this.kill();
        return { graceful: false, forced: 'timeout' };
      }
      await this.exitedPromise;
      return r;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the machine now: no flush; the worker is terminated if it does not answer at once. */
  async kill(): Promise<void> {
    if (this._state === 'stopped' || this.exited) return void (await this.exitedPromise);
    transition(this._state, 'kill');
    const done = this.call('kill').catch(() => {});
    const timer = setTimeout(() => void this.worker.terminate(), 1000);
    await Promise.race([done, this.exitedPromise]);
    clearTimeout(timer);
    if (!this.exited) {
      // terminate() resolves once the worker's environment is torn down, and Node's teardown
      // waits for every native handle to close: a handle Node itself lost track of (see
      // host/usernet-sockets.ts) made it spin forever. Past WORKER_EXIT_MS the thread is
      // given up on (it may go on using CPU: said as an 'error'), so kill() always returns.
      let waited: NodeJS.Timeout | undefined;
      const gaveUp = await Promise.race([
        this.worker.terminate().then(() => false),
        new Promise<boolean>((r) => (waited = setTimeout(() => r(true), WORKER_EXIT_MS))),
      ]);
      clearTimeout(waited);
      if (gaveUp && !this.exited) {
        this.emitError(new VisorError('Internal', `machine ${this.name}: its worker thread did not end ${WORKER_EXIT_MS / 1000} s after terminate(); it is abandoned and may still use CPU (please report this)`));
        this.workerGone('abandoned');
      }
    }
    await this.exitedPromise;
    this.setState('stopped', 'killed');
  }

  /**
   * Forwards `hostAddress:hostPort` (default 127.0.0.1) on the host to the guest's `guestPort`
   * while the machine runs, through its first user-network NIC (`nets: [{ user: true }]`).
   * Rejects with NetworkError when the host port cannot be bound.
   */
  async addForward(f: { guestPort: number; hostPort: number; hostAddress?: string; proto?: 'tcp' | 'udp' }): Promise<void> {
    const forward = ForwardSchema.parse({ proto: f.proto ?? 'tcp', hostAddress: f.hostAddress ?? '127.0.0.1', hostPort: f.hostPort, guestPort: f.guestPort });
    if (this.exited || this._state === 'stopped') throw new VisorError('NotAllowed', `machine ${this.name} is stopped`);
    const id = this.nextId++;
    await new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ op: 'forward', id, forward } satisfies Command);
    });
  }

  /**
   * New firewall rules (`allow|deny DIR:PROTO:TARGET[:PORTS]`) and host access for the
   * machine's private user networks (`nets: [{ user: true }]`), as RestoreOptions.netPolicy
   * gives a restore. New connections follow them; connections already open stay.
   */
  async setNetPolicy(policy: { firewall?: string[]; hostAccess?: boolean }): Promise<void> {
    const checked = netPolicyOf(policy);
    if (this.exited || this._state === 'stopped') throw new VisorError('NotAllowed', `machine ${this.name} is stopped`);
    const id = this.nextId++;
    await new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ op: 'netPolicy', id, policy: checked } satisfies Command);
    });
  }

  /**
   * Whether this machine keeps the process alive (default true, as a running timer does).
   * A machine held in reserve (Sandbox.prewarm) does not.
   */
  keepProcessAlive(on: boolean): void {
    if (on) this.worker.ref();
    else this.worker.unref();
  }

  /**
   * The JIT's compiled pages now (undefined under the interpreter), for RestoreOptions.code of
   * machines restored from this one's snapshots. The modules are shared, not copied: cheap.
   */
  async exportCode(): Promise<TierCode | undefined> {
    if (this.exited || this._state === 'stopped') throw new VisorError('NotAllowed', `machine ${this.name} is stopped`);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ op: 'exportCode', id } satisfies Command);
    });
  }

  /**
   * Limits the machine to `percent` (1-100) of one host core: its run loop works a slice, then
   * rests until its thread's CPU time is back to that share of wall time (src/vm/cpu-limit.ts),
   * so a busy guest gets that share of a core when the host has it to give. On hosts without a
   * per-thread CPU clock (not Linux, Node < 23.9) busy wall time stands in for CPU time, and a
   * busy host then gives the machine less. 100 lifts it.
   */
  async setCpuLimit(percent: number): Promise<void> {
    if (this.exited || this._state === 'stopped') throw new VisorError('NotAllowed', `machine ${this.name} is stopped`);
    const id = this.nextId++;
    await new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ op: 'cpuLimit', id, percent } satisfies Command);
    });
  }

  /** Counters, read without a round trip (the worker publishes them after every slice). */
  stats(): MachineStats {
    const s = this.statsView;
    const byCause = (base: number) => {
      const r: Record<number, number> = {};
      for (let i = 0; i < 16; i++) if (s[base + i]! > 0) r[i] = s[base + i]!;
      return r;
    };
    const runningMs = s[STAT.runningMs]!;
    return {
      instructions: s[STAT.instructions]!,
      mips: runningMs > 0 ? s[STAT.instructions]! / (runningMs * 1000) : 0,
      recentMips: s[STAT.mips]!,
      runningMs,
      idleMs: s[STAT.idleMs]!,
      ...(s[STAT.threadCpuMs]! >= 0 ? { threadCpuMs: s[STAT.threadCpuMs]! } : {}),
      traps: byCause(STAT.traps),
      interrupts: byCause(STAT.interrupts),
      tlbMisses: s[STAT.tlbMisses]!,
      ram: { pagedIn: s[STAT.ramPagedIn]!, pending: s[STAT.ramPending]! },
      ...(this.config.balloon ? { balloon: { targetMiB: s[STAT.balloonTargetPages]! / BALLOON_PAGES_PER_MIB, actualMiB: s[STAT.balloonActualPages]! / BALLOON_PAGES_PER_MIB } } : {}),
      virtioInterrupts: s[STAT.virtioInterrupts]!,
      net: Object.fromEntries(NET_STAT_KEYS.map((k, i) => [k, s[STAT.net + i]!])) as MachineStats['net'],
      nics: readNicStats(s),
      io: {
        blkReads: s[STAT.blkReads]!,
        blkWrites: s[STAT.blkWrites]!,
        blkBytesRead: s[STAT.blkBytesRead]!,
        blkBytesWritten: s[STAT.blkBytesWritten]!,
        blkThrottled: s[STAT.blkThrottled]!,
        blkThrottledMs: s[STAT.blkThrottledMs]!,
        netRxBytes: s[STAT.netRxBytes]!,
        netTxBytes: s[STAT.netTxBytes]!,
        consoleOutBytes: s[STAT.consoleOutBytes]!,
        consoleInBytes: s[STAT.consoleInBytes]!,
      },
      accel: this.config.accel,
      jit: Object.fromEntries([
        ...JIT_STAT_KEYS.map((k, i) => [k, s[STAT.jit + i]!]),
        ...JIT_MORE_STAT_KEYS.map((k, i) => [k, s[STAT.jitMore + i]!]),
      ]) as MachineStats['jit'],
    };
  }

  /** Resolves when the machine has stopped (for whatever reason) and its worker is gone. */
  whenStopped(): Promise<void> {
    return this.exitedPromise;
  }
}

/** stats().nics from the shared array (vm/stats.ts NIC_STAT_KEYS). */
export function readNicStats(s: Float64Array): NicStats[] {
  const slots = NIC_STAT_SLOTS;
  const out: NicStats[] = [];
  for (let i = 0; i < Math.min(s[STAT.nics]!, MAX_STAT_NICS); i++) {
    const at = STAT.nics + 1 + i * slots;
    const v = Object.fromEntries(NIC_STAT_KEYS.map((k, j) => [k, s[at + j]!])) as Record<(typeof NIC_STAT_KEYS)[number], number>;
    out.push({
      rxFrames: v.rxFrames,
      rxBytes: v.rxBytes,
      txFrames: v.txFrames,
      txBytes: v.txBytes,
      drops: { rxRingFull: v.dropRxRingFull, txMalformed: v.dropTxMalformed, rxRateLimit: v.dropRxRateLimit, txRateLimit: v.dropTxRateLimit },
      rateDelayed: { rx: v.rateDelayedRx, tx: v.rateDelayedTx },
      ...(v.hasNat
        ? {
            nat: {
              tcpFlows: v.natTcpFlows,
              udpFlows: v.natUdpFlows,
              activeTcp: v.natActiveTcp,
              activeUdp: v.natActiveUdp,
              dnsQueries: v.natDnsQueries,
              dhcpReplies: v.natDhcpReplies,
              tcpRetransmits: v.natTcpRetransmits,
              restoredResets: v.natRestoredResets,
              drops: Object.fromEntries(NAT_DROP_REASONS.map((r) => [r, v[`natDrop.${r}`]])) as Record<NatDropReason, number>,
            },
          }
        : {}),
    });
  }
  return out;
}

const ForwardSchema = z.strictObject({
  proto: z.enum(['tcp', 'udp']),
  hostAddress: z.ipv4(),
  hostPort: z.number().int().min(1).max(65535),
  guestPort: z.number().int().min(1).max(65535),
});

/** Checks a restore's network policy (each firewall entry as the config's are). */
function netPolicyOf(p: { firewall?: string[]; hostAccess?: boolean }): NetPolicy {
  const firewall = p.firewall ?? [];
  for (const t of firewall) {
    const r = typeof t === 'string' ? parseFirewallEntry(t) : 'not a string';
    if (typeof r === 'string') throw new VisorError('InvalidConfig', `netPolicy: firewall: ${r}`);
  }
  return { firewall, hostAccess: p.hostAccess ?? true };
}

/** Checks a restore's instruction count (a whole number, at most 2^53). */
function countOf(n: unknown, what: string): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new VisorError('InvalidArgument', `Machine.restore: ${what} must be a whole number of instructions`);
  return n;
}

/** Checks a restore's replacement disk paths (non-empty strings), made absolute. */
function disksOf(disks: unknown, resolve: (p: string) => string): string[] {
  if (!Array.isArray(disks) || disks.some((d) => typeof d !== 'string' || d === '')) {
    throw new VisorError('InvalidArgument', 'Machine.restore: disks must be a list of file paths');
  }
  return disks.map((d: string) => resolve(d));
}

/** Checks a restore's MAC addresses: unicast, "aa:bb:cc:dd:ee:ff", at most one per slot. */
const isU32 = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff;

/** Checks vsock streams (keepVsock, vsockBarrier): at most 16, each two 32-bit ports. */
function streamsOf(list: unknown, what = 'keepVsock'): VsockStream[] {
  if (!Array.isArray(list) || list.length > 16) throw new VisorError('InvalidArgument', `${what}: expected an array of at most 16 { guestPort, hostPort }`);
  return list.map((c: unknown) => {
    const { guestPort, hostPort } = (c ?? {}) as Record<string, unknown>;
    if (!isU32(guestPort) || !isU32(hostPort)) throw new VisorError('InvalidArgument', `${what}: ${JSON.stringify(c)}: guestPort and hostPort must be 32-bit port numbers`);
    return { guestPort, hostPort };
  });
}

function bytesOf(n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new VisorError('InvalidArgument', 'snapshotInMemory: vsockBarrier.hostBytes must be a whole number of bytes');
  return n;
}

function macsOf(macs: string[]): string[] {
  if (!Array.isArray(macs) || macs.length > 8) throw new VisorError('InvalidArgument', 'macs: expected an array of at most 8 MAC addresses');
  return macs.map((m) => {
    const b = typeof m === 'string' ? parseMac(m) : null;
    if (!b || (b[0]! & 1) !== 0) throw new VisorError('InvalidArgument', `macs: ${JSON.stringify(m)} is not a unicast MAC address (aa:bb:cc:dd:ee:ff)`);
    return m.toLowerCase();
  });
}

function newStats(): SharedArrayBuffer {
  return new SharedArrayBuffer(STAT.size * 8);
}
