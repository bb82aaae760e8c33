/**
 * One machine, run from Node's event loop: builds the virt board from files (or a snapshot),
 * steps it, pauses it, snapshots it, stops it. The SDK runs one MachineRunner per worker
 * thread (worker-entry.ts); tests may run it in-process.
 *
 * Instructions run in batches on a fixed grid (batch k ends after k·BATCH instructions,
 * counted across snapshots), and every control request (pause, snapshot, stop) waits for the
 * current batch to end rather than cutting it short. Interrupts are taken at batch starts, so
 * a machine paused, snapshotted or restored takes them at the same instructions as one never
 * interrupted. In deterministic mode disk completions are also delivered at the batch
 * boundary after the request (the loop waits for them), and the clock counts instructions.
 */
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { VisorError } from '../base/errors.js';
import { Hart } from '../cpu/hart.js';
import type { MachineClock } from '../machine/clock.js';
import type { BoardHart } from '../machine/hart.js';
import { InstructionClock } from '../machine/instruction-clock.js';
import { RNG_SEED_BYTES, VirtMachine, type VirtConfig, type VirtState } from '../machine/virt.js';
import { closeDisk, openDisk, type OpenedDisk } from '../storage/open.js';
import { createVirtioBlk, type VirtioBlk } from '../virtio/blk/device.js';
import { VirtioMmioTransport } from '../virtio/mmio/transport.js';
import type { VirtioNet } from '../virtio/net/device.js';
import { VirtioBalloon } from '../virtio/balloon/device.js';
import { VirtioVsock } from '../virtio/vsock/device.js';
import { listenVsockUnix, unixVsockBackend, type VsockListener } from '../host/vsock-unix.js';
import { createVirtioRng, type EntropySource } from '../virtio/rng/device.js';
import { ConsolePort, VirtioConsole } from '../virtio/console/device.js';
import { AGENT_PORT_NAME, DATA_PORT_NAME } from '../images/init-script.js';
// Not from config.ts: that loads zod, which the worker does not need (console-kind.ts).
import type { Accel, ResolvedConfig } from './config.js';
import { inflateInitrd } from '../host/initrd.js';
import { defaultAccel } from '../host/accel.js';
import { hasVirtioConsole } from './console-kind.js';
import { transition, type MachineAction, type MachineState } from './states.js';
import { PacedClock } from '../host/clock-host.js';
import { IdleSleeper } from '../vm/idle-sleep.js';
import { NodeFileOpener, mapFsError } from '../host/file-handle.js';
import { HostNetworks, type NetAttachment } from '../host/net-attach.js';
import { STORED_CODEC } from '../machine/snapshot/ram.js';
import { DEFLATE_CODEC, fingerprintDisk, verifyDisk, writeSnapshotFile, type DiskFingerprint, type ReadSnapshot } from '../host/snapshot-file.js';
import { nodeEntropy } from '../host/virtio-entropy.js';
import { tuneV8ForJit } from '../host/v8-tuning.js';
import { warmUp } from '../host/warmup.js';

export const BATCH = 20_000;
/** virtio-balloon counts 4 KiB pages whatever the guest's page size (§5.5.6). */
const PAGES_PER_MIB = 256;
const SLICE_MS = 20;
const PANIC = 'Kernel panic - not syncing';
const PANIC_GRACE_MS = 500;

export type GuestEvent =
  /** The guest agent opened (or closed) its port: whether stop() can ask the guest. */
  | { kind: 'agent'; listening: boolean }
  | { kind: 'poweroff' }
  | { kind: 'reboot' }
  | { kind: 'fail'; code: number }
  | { kind: 'panic'; line: string };

/**
 * Where runUntil() pauses: at the end of the first instruction batch in which the guest printed
 * `output` on its console (counted from the call), or by which `instructions` (since boot)
 * have run. Batches sit on the fixed grid, so for a deterministic guest the point is the same
 * however fast the host runs it.
 */
export interface UntilCondition {
  output?: string;
  instructions?: number;
}

/** How stop() ended the machine. */
export interface StopResult {
  /** The guest shut itself down at the agent's request, before the timeout. */
  graceful: boolean;
  /**
   * Why it was stopped by force instead: 'no-agent' (no agent listened on its port within the
   * timeout, or the machine has no agent port), 'timeout' (the agent was asked but the guest
   * had not powered off by the timeout), 'not-running' (created or paused: nobody to ask),
   * 'requested' (graceful: false).
   */
  forced?: 'no-agent' | 'timeout' | 'not-running' | 'requested';
}

export interface StopRequest {
  /** Ask the guest first (default true). */
  graceful?: boolean;
  /** How long to wait for the agent and then for the guest to power off (default 10 s). */
  timeoutMs?: number;
}

export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

export interface RunnerEvents {
  output(bytes: Uint8Array): void;
  /** Bytes the guest wrote to the data port (org.visor.data). */
  channel?(bytes: Uint8Array): void;
  state(state: MachineState, reason?: string): void;
  guest(event: GuestEvent): void;
  /** Something failed after creation (a reboot whose kernel is gone, a host I/O error). */
  error(err: VisorError): void;
}

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
  traps: 16,
  interrupts: 32,
  // Tier 1 (JIT) counters, in JIT_STAT_KEYS order; zero under the interpreter.
  jit: 48,
  // virtio-balloon: the host's target and what the guest gave, in 4 KiB pages.
  balloonTargetPages: 56,
  balloonActualPages: 57,
  size: 58,
} as const;

/** The JitStats counters published at STAT.jit onwards (vm.stats().jit reads them back by name). */
export const JIT_STAT_KEYS = ['modulesCompiled', 'blocksCompiled', 'compileMs', 'cacheHits', 'instructions', 'invalidations', 'evictions', 'stepExits'] as const;

/** What the runner keeps of its own in a snapshot, next to the board's state. */
export interface RunnerState {
  version: 1;
  executed: number;
  deterministic: boolean;
  rngState: number[] | null;
}

export interface SnapshotMeta {
  format: 'visor-snapshot';
  visorVersion: string;
  createdAt: string;
  config: ResolvedConfig;
  disks: DiskFingerprint[];
}

export interface MachineSnapshotState {
  runner: RunnerState;
  board: VirtState;
}

/** xoshiro128** (Blackman & Vigna): a seeded entropy source so deterministic guests repeat. */
export class SeededEntropy implements EntropySource {
  s: Uint32Array;
  constructor(state: readonly number[] = [0x9e3779b9, 0x243f6a88, 0xb7e15162, 0x1234567]) {
    this.s = Uint32Array.from(state);
  }
  private next(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return r;
  }
  fill(buf: Uint8Array): void {
    for (let i = 0; i < buf.length; i += 4) {
      const r = this.next();
      for (let k = 0; k < 4 && i + k < buf.length; k++) buf[i + k] = (r >>> (8 * k)) & 0xff;
    }
  }
}
/** The state a deterministic machine's /chosen/rng-seed is drawn from. */
const DTB_SEED_STATE = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a];
function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (err) {
    const e = mapFsError(err, path);
    throw new VisorError(e.code, `${what}: ${e.message}`, { cause: err });
  }
}

export interface RunnerOptions {
  stats?: Float64Array;
  /** For in-process tests: a NIC registry shared by several runners. */
  networks?: HostNetworks;
  /** Filled by restore() with the milliseconds of each phase (bench/restore.ts). */
  timings?: Record<string, number>;
  /** restore(): the tier to run on (default: defaultAccel()). */
  accel?: Accel;
  /**
   * restore(): guest RAM being filled already (startRamLoad, begun by the worker while it
   * loads the rest of visor). Used when its size is the snapshot machine's; else RAM is loaded here.
   */
  preloadedRam?: Promise<Uint8Array>;
}

export class MachineRunner {
  private state: MachineState = 'created';
  private vm!: VirtMachine;
  private clock!: MachineClock;
  private disks: OpenedDisk[] = [];
  private blks: { dev: VirtioBlk; transport: VirtioMmioTransport }[] = [];
  private nets: NetAttachment[] = [];
  /** Kept across reboots (as NICs are): the host side holds on to them. */
  private balloonDev: VirtioBalloon | undefined;
  private vsockDev: VirtioVsock | undefined;
  private vsockListener: VsockListener | undefined;
  private netDevices: VirtioNet[] = [];
  private transports: VirtioMmioTransport[] = [];
  private networks: HostNetworks | undefined;
  private ownNetworks = false;
  private rng: SeededEntropy | undefined;
  private executed = 0;
  /** Wanted by the API: the loop runs while this is true. */
  private wantRunning = false;
  private loopDone: Promise<void> | undefined;
  private readonly sleeper = new IdleSleeper(() => this.clock);
  private panicLine: string | undefined;
  private lineTail = '';
  private panicTimer: NodeJS.Timeout | undefined;
  private readonly stats: Float64Array;
  private consoleOut = 0;
  private consoleIn = 0;
  private runningMs = 0;
  private lastMips = 0;
  private closed = false;
  /** virtio-console: port 0 hvc0, port 1 the agent's, port 2 the user's data channel. */
  private con: VirtioConsole | undefined;
  private agentLine = '';
  /** Woken on every change stop() may wait for (agent port opened, machine stopped). */
  private changed: (() => void)[] = [];
  /** Why the machine stopped ('poweroff' when the guest powered itself off). */
  private lastStop: string | undefined;
  private until: { cond: UntilCondition; tail: string; hit: boolean; resolve(): void; reject(e: unknown): void } | undefined;

  private constructor(
    private readonly cfg: ResolvedConfig,
    private readonly events: RunnerEvents,
    opts: RunnerOptions,
  ) {
    this.stats = opts.stats ?? new Float64Array(STAT.size);
    this.networks = opts.networks;
  }

  get currentState(): MachineState {
    return this.state;
  }

  get config(): ResolvedConfig {
    return this.cfg;
  }

  /** A machine ready to start: devices attached, kernel loaded (not yet running). */
  static async create(cfg: ResolvedConfig, events: RunnerEvents, opts: RunnerOptions = {}): Promise<MachineRunner> {
    const r = new MachineRunner(cfg, events, opts);
    try {
      await r.openDevices();
      await r.buildBoard({ boot: true });
    } catch (err) {
      await r.close(false);
      throw err;
    }
    return r;
  }

  /**
   * A machine in the state a snapshot saved (state 'paused'; resume() continues it). Disks
   * are checked against their fingerprints before anything opens them.
   */
  static async restore(snap: ReadSnapshot, events: RunnerEvents, opts: RunnerOptions = {}): Promise<MachineRunner> {
    let t = performance.now();
    const lap = (phase: string) => {
      const now = performance.now();
      if (opts.timings) opts.timings[phase] = now - t;
      t = now;
    };
    const { meta, state } = validateSnapshot(snap);
    for (const d of meta.disks) await verifyDisk(d);
    lap('disks');
    // Snapshots from before the tier was configurable carry no accel; it is chosen here anyway.
    const r = new MachineRunner({ ...meta.config, accel: opts.accel ?? defaultAccel() }, events, opts);
    try {
      let ram = opts.preloadedRam ? await opts.preloadedRam : undefined;
      if (ram !== undefined && ram.length !== meta.config.memoryMiB * 2 ** 20) ram = undefined;
      lap('ram-wait');
      await r.openDevices();
      await r.buildBoard({ boot: false, ram });
      lap('board');
      if (ram === undefined) await snap.loadRam(r.vm.bus.ram);
      lap('ram');
      try {
        r.vm.restoreState(state.board);
      } catch (err) {
        if (err instanceof VisorError && err.code !== 'InvalidArgument') throw err;
        throw new VisorError('CorruptImage', `the snapshot's machine state does not validate: ${(err as Error).message}`, { cause: err });
      }
      r.executed = state.runner.executed;
      if (r.rng && state.runner.rngState) r.rng.s = Uint32Array.from(state.runner.rngState);
      r.state = 'paused';
      r.publishStats();
      lap('state');
    } catch (err) {
      await r.close(false);
      throw err;
    }
    return r;
  }

  private async openDevices(): Promise<void> {
    const opener = new NodeFileOpener();
    for (const d of this.cfg.disks) {
      try {
        this.disks.push(await openDisk(opener, d.path, { readOnly: d.readOnly, format: d.format }));
      } catch (err) {
        throw err instanceof VisorError ? err : mapFsError(err, d.path);
      }
    }
    if (this.cfg.nets.length > 0) {
      if (!this.networks) {
        this.networks = new HostNetworks();
        this.ownNetworks = true;
      }
      for (const n of this.cfg.nets) this.nets.push(await this.networks.attach(n.switch, this.cfg.name));
    }
    if (this.cfg.rng && this.cfg.deterministic) this.rng = new SeededEntropy();
    if (this.cfg.balloon) this.balloonDev = new VirtioBalloon();
    if (this.cfg.vsock) {
      const { cid, path } = this.cfg.vsock;
      this.vsockDev = new VirtioVsock({ guestCid: cid, backend: unixVsockBackend(path) });
      try {
        this.vsockListener = await listenVsockUnix(this.vsockDev, path);
      } catch (err) {
        throw new VisorError('IoError', `vsock: cannot listen on ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    if (hasVirtioConsole(this.cfg)) {
      // The port layout is part of the machine (snapshots check it), whatever the console choice.
      const con = new VirtioConsole({ ports: [{ console: true }, { name: AGENT_PORT_NAME }, { name: DATA_PORT_NAME }] });
      const [hvc, agent, data] = con.ports as [ConsolePort, ConsolePort, ConsolePort];
      hvc.onOutput = (b) => this.output(b);
      agent.onOutput = (b) => this.agentOutput(b);
      agent.onGuestOpen = (open) => {
        this.agentLine = '';
        this.events.guest({ kind: 'agent', listening: open });
        this.notifyChanged();
      };
      data.onOutput = (b) => this.events.channel?.(b);
      this.con = con;
    }
  }

  /** (Re)builds the board; devices keep their host side across reboots. */
  private async buildBoard(o: { boot: boolean; ram?: Uint8Array | undefined }): Promise<void> {
    const cfg = this.cfg;
    let clock: MachineClock;
    if (cfg.deterministic) clock = new InstructionClock();
    else clock = new PacedClock(); // host time, paced by progress (see PacedClock)
    const vcfg: VirtConfig = {
      ...(o.ram ? { ram: o.ram } : {}),
      kernel: new Uint8Array(0),
      kernelName: cfg.kernel,
      append: cfg.append,
      bios: 'builtin',
      memoryMiB: cfg.memoryMiB,
      clock,
      createHart: (mem, opts) => {
        if (cfg.accel === 'jit') tuneV8ForJit();
        return new Hart(mem, { ...opts, accel: cfg.accel }) as unknown as BoardHart;
      },
    };
    if (o.boot) {
      vcfg.kernel = await readInput(cfg.kernel, 'kernel');
      if (cfg.initrd) vcfg.initrd = inflateInitrd(await readInput(cfg.initrd, 'initrd'), cfg.memoryMiB * 2 ** 20);
      // A deterministic machine's seed is fixed too, so its boots repeat (its own source: the
      // virtio-rng's stream stays as it was).
      vcfg.rngSeed = new Uint8Array(RNG_SEED_BYTES);
      (this.cfg.deterministic ? new SeededEntropy(DTB_SEED_STATE) : nodeEntropy).fill(vcfg.rngSeed);
    }
    // The firmware kind must match on restore; the bytes only matter for booting.
    if (cfg.bios !== 'builtin') vcfg.bios = o.boot ? await readInput(cfg.bios, 'bios') : new Uint8Array(1);
    // A boot meets the interpreter's paths one by one (host/warmup.ts); a restore skips the
    // warm-up: it costs tens of ms in a fresh worker, which a restore's latency target cannot take.
    if (o.boot) warmUp(cfg.accel);
    const vm = new VirtMachine(vcfg);
    if (clock instanceof InstructionClock || clock instanceof PacedClock) clock.attach(() => (vm.hart as unknown as Hart).instructionsRetired);
    this.transports = [];
    this.blks = [];
    this.netDevices = [];
    // Slot order is part of the machine's identity (a snapshot checks it): disks, NICs, rng.
    let slot = 0;
    for (const d of this.disks) {
      const dev = createVirtioBlk({ disk: d.device });
      const t = vm.attachVirtio(slot++, (ctx) => new VirtioMmioTransport({ device: dev, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })) as VirtioMmioTransport;
      this.transports.push(t);
      this.blks.push({ dev, transport: t });
    }
    for (const n of this.nets) {
      // A rebuilt board gets the same NIC: reset it through its new transport.
      const t = vm.attachVirtio(slot++, (ctx) => new VirtioMmioTransport({ device: n.device, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })) as VirtioMmioTransport;
      this.transports.push(t);
      this.netDevices.push(n.device);
    }
    if (this.cfg.rng) {
      const source = this.rng ?? nodeEntropy;
      const t = vm.attachVirtio(slot++, (ctx) => new VirtioMmioTransport({ device: createVirtioRng({ source }), ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })) as VirtioMmioTransport;
      this.transports.push(t);
    }
    // After rng, so snapshots of machines without them keep their slots.
    for (const dev of [this.balloonDev, this.vsockDev]) {
      if (!dev) continue;
      const t = vm.attachVirtio(slot++, (ctx) => new VirtioMmioTransport({ device: dev, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })) as VirtioMmioTransport;
      this.transports.push(t);
    }
    if (this.con) {
      // Last, so machines without it (and their snapshots) keep their slots.
      const con = this.con;
      const t = vm.attachVirtio(slot++, (ctx) => new VirtioMmioTransport({ device: con, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })) as VirtioMmioTransport;
      this.transports.push(t);
    }
    vm.onConsoleOutput = (b) => this.output(b);
    vm.plic.onActivity = () => this.wake();
    if (o.boot) vm.boot();
    this.vm = vm;
    this.clock = clock;
  }

  // ------------------------------------------------------------------ console

  private output(b: Uint8Array): void {
    this.consoleOut += b.length;
    this.watchPanic(b);
    const u = this.until;
    const marker = u?.cond.output;
    if (u && marker !== undefined && !u.hit) {
      const text = u.tail + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
      if (text.includes(marker)) u.hit = true;
      else u.tail = text.slice(-(marker.length - 1) || text.length);
    }
    this.events.output(b);
  }

  private watchPanic(b: Uint8Array): void {
    if (this.panicLine !== undefined) return;
    const text = this.lineTail + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
    const i = text.indexOf(PANIC);
    if (i >= 0) {
      const end = text.indexOf('\n', i);
      this.panicLine = text.slice(i, end < 0 ? undefined : end).trim();
      // Let the backtrace reach the console, then stop.
      this.panicTimer = setTimeout(() => {
        this.panicTimer = undefined;
        this.events.guest({ kind: 'panic', line: this.panicLine! });
        void this.finish('panic');
      }, PANIC_GRACE_MS);
      return;
    }
    this.lineTail = text.slice(-PANIC.length);
  }

  input(bytes: Uint8Array): void {
    if (this.state === 'stopped') return;
    this.consoleIn += bytes.length;
    // console 'virtio': the guest's shell reads hvc0 (port 0 queues it until the guest reads).
    if (this.con && this.cfg.console === 'virtio') this.con.ports[0]!.write(bytes);
    else this.vm.consoleInput(bytes);
    this.wake();
  }

  /** Host → guest bytes on the data port (dropped when the machine has no virtio-console). */
  channelInput(bytes: Uint8Array): void {
    if (this.state === 'stopped' || !this.con) return;
    this.con.ports[2]!.write(bytes);
    this.wake();
  }

  /** The agent is listening: its port is open in the guest. */
  get agentListening(): boolean {
    return this.con?.ports[1]?.guestOpen === true;
  }

  /** Lines from the agent (docs/guest-init.md "Agent"): only its greeting matters to the host. */
  private agentOutput(b: Uint8Array): void {
    this.agentLine += Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
    if (this.agentLine.length > 4096) this.agentLine = this.agentLine.slice(-4096);
    let nl: number;
    while ((nl = this.agentLine.indexOf('\n')) >= 0) this.agentLine = this.agentLine.slice(nl + 1);
  }

  private notifyChanged(): void {
    const w = this.changed;
    this.changed = [];
    for (const f of w) f();
  }

  /** Resolves when `cond` holds (true) or at `deadline` (false); re-checked on every change. */
  private async waitChange(cond: () => boolean, deadline: number): Promise<boolean> {
    while (!cond()) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.changed.push(done);
      });
    }
    return true;
  }

  // ------------------------------------------------------------------ lifecycle

  private check(action: MachineAction): MachineState {
    return transition(this.state, action);
  }

  private setState(s: MachineState, reason?: string): void {
    if (this.state === s) return;
    this.state = s;
    if (s === 'stopped') this.lastStop = reason;
    this.events.state(s, reason);
    this.notifyChanged();
  }

  async start(): Promise<void> {
    this.setState(this.check('start'));
    this.runLoop();
  }

  async resume(): Promise<void> {
    this.setState(this.check('resume'));
    this.runLoop();
  }

  /** Resolves once the machine sits at a batch boundary, not running. */
  async pause(): Promise<void> {
    const next = this.check('pause');
    await this.park();
    this.setState(next);
    this.settleUntil('was paused');
  }

  /**
   * Runs the machine (created, paused or already running) until `cond` holds, and leaves it
   * paused there (see UntilCondition). Rejects with NotAllowed if the machine pauses, stops or
   * the guest powers off first.
   */
  async runUntil(cond: UntilCondition): Promise<void> {
    if (cond.output === undefined && cond.instructions === undefined) throw new VisorError('InvalidArgument', 'runUntil: give output or instructions');
    if (cond.output !== undefined && cond.output.length === 0) throw new VisorError('InvalidArgument', 'runUntil: output must not be empty');
    if (cond.instructions !== undefined && !(Number.isSafeInteger(cond.instructions) && cond.instructions >= 0)) {
      throw new VisorError('InvalidArgument', 'runUntil: instructions must be a whole number');
    }
    if (this.until) throw new VisorError('NotAllowed', 'runUntil: another runUntil is in progress');
    const action: MachineAction = this.state === 'created' ? 'start' : this.state === 'paused' ? 'resume' : 'pause';
    const next = this.check(action);
    const done = new Promise<void>((resolve, reject) => {
      this.until = { cond, tail: '', hit: false, resolve, reject };
    });
    if (this.state !== 'created' && this.untilReached()) {
      // An instruction count already passed (we sit at a batch boundary): pause right here.
      if (this.state === 'running') await this.park();
      this.setState('paused');
      this.settleUntil('paused');
      return done;
    }
    if (next === 'running') {
      this.setState(next);
      this.runLoop();
    }
    return done;
  }

  private untilReached(): boolean {
    return this.until !== undefined && this.untilReachedBy(this.until);
  }

  private untilReachedBy(u: { cond: UntilCondition; hit: boolean }): boolean {
    return u.hit || (u.cond.instructions !== undefined && this.executed >= u.cond.instructions);
  }

  /** Ends a pending runUntil: met if its condition holds, else refused with why it ended. */
  private settleUntil(why: string): void {
    const u = this.until;
    if (!u) return;
    this.until = undefined;
    if (why !== 'stopped' && this.untilReachedBy(u)) u.resolve();
    else u.reject(new VisorError('NotAllowed', `runUntil: the machine ${why} before ${u.cond.output !== undefined ? `the guest printed ${JSON.stringify(u.cond.output)}` : `${u.cond.instructions} instructions`}`));
  }

  private runLoop(): void {
    this.wantRunning = true;
    if (!this.loopDone) {
      this.loopDone = this.loop().finally(() => {
        this.loopDone = undefined;
        if (this.state === 'running' && !this.closed && this.untilReached()) {
          this.setState('paused');
          this.settleUntil('paused');
        }
      });
    }
  }

  private async park(): Promise<void> {
    this.wantRunning = false;
    this.wake();
    await this.loopDone;
  }

  private wake(): void {
    this.sleeper.wake();
  }

  private blkBusy(): boolean {
    for (const b of this.blks) {
      const q = b.transport.queues[0];
      if (q && q.lastAvailIdx !== q.usedIdx) return true;
    }
    return false;
  }

  /** Waits for every disk request in flight to complete (and its interrupt to be raised). */
  private async drainIo(): Promise<void> {
    for (let i = 0; i < 1000 && this.blkBusy(); i++) {
      await Promise.all(this.blks.map((b) => b.dev.whenIdle()));
      await yieldToEventLoop();
    }
  }

  private async loop(): Promise<void> {
    // A guest reboot replaces the board and the clock: both are re-read after one.
    let vm = this.vm;
    let det = this.clock instanceof InstructionClock ? this.clock : undefined;
    let t0 = performance.now();
    let mipsStart = t0;
    let mipsInstr = this.executed;
    try {
      while (this.wantRunning && !this.closed) {
        const sliceEnd = performance.now() + SLICE_MS;
        do {
          this.executed += vm.step(BATCH - (this.executed % BATCH));
          if (this.until && this.untilReached()) break;
          if (det) {
            if (this.blkBusy()) break;
            // Idle time is skipped, not slept: the next timer is due at once.
            if (vm.idle && !vm.exit) {
              const d = vm.nextDeadline();
              if (!Number.isFinite(d)) break;
              det.advanceTo(d);
            }
          }
        } while (!vm.exit && this.wantRunning && !vm.idle && performance.now() < sliceEnd);
        const now = performance.now();
        this.runningMs += now - t0;
        t0 = now;
        if (now - mipsStart > 500) {
          this.lastMips = (this.executed - mipsInstr) / ((now - mipsStart) * 1000);
          mipsStart = now;
          mipsInstr = this.executed;
        }
        this.publishStats();
        if (this.until && this.untilReached() && !vm.exit) {
          // runUntil's point: the loop ends at this batch boundary and runLoop pauses there.
          this.wantRunning = false;
          break;
        }
        if (vm.exit) {
          if (!(await this.guestExit())) return;
          vm = this.vm;
          det = this.clock instanceof InstructionClock ? this.clock : undefined;
          continue;
        }
        if (det && this.blkBusy()) {
          await this.drainIo();
        } else if (vm.idle && this.wantRunning) {
          // Host clock: sleep until the next timer or an interrupt. Deterministic: only
          // reached with no timer armed, so wait for input.
          await this.sleeper.sleepUntil(vm.nextDeadline());
          t0 = performance.now();
        } else {
          await yieldToEventLoop();
          t0 = performance.now();
        }
      }
    } catch (err) {
      const e = err instanceof VisorError ? err : new VisorError('Internal', `machine ${this.cfg.name} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      this.events.error(e);
      this.endFromLoop('error');
    }
  }

  /**
   * The guest powered off, failed or asked for a reboot. Returns true when the loop goes on
   * (reboot: a new board from the same files). Called from the loop: whatever ends the
   * machine is scheduled, since finish() waits for the loop to return.
   */
  private async guestExit(): Promise<boolean> {
    const exit = this.vm.exit!;
    if (exit.kind === 'reboot') {
      this.events.guest({ kind: 'reboot' });
      try {
        await this.drainIo();
        for (const n of this.netDevices) n.reset();
        this.balloonDev?.reset();
        this.vsockDev?.reset();
        if (this.con?.ports[1]?.guestOpen) this.events.guest({ kind: 'agent', listening: false });
        this.con?.reset();
        await this.buildBoard({ boot: true });
        this.executed = 0;
        return true;
      } catch (err) {
        this.events.error(err instanceof VisorError ? err : new VisorError('Internal', String(err), { cause: err }));
        this.endFromLoop('error');
        return false;
      }
    }
    this.events.guest(exit.kind === 'fail' ? { kind: 'fail', code: exit.code } : { kind: 'poweroff' });
    this.endFromLoop(exit.kind);
    return false;
  }

  private endFromLoop(reason: string): void {
    this.wantRunning = false;
    queueMicrotask(() => void this.finish(reason));
  }

  publishStats(): void {
    const s = this.stats;
    const hart = this.vm.hart as unknown as Hart;
    s[STAT.instructions] = this.executed;
    s[STAT.runningMs] = this.runningMs;
    s[STAT.idleMs] = this.sleeper.idleMs;
    s[STAT.tlbMisses] = hart.stats.tlbMisses;
    let rd = 0, wr = 0, reads = 0, writes = 0, irqs = 0, rx = 0, tx = 0;
    for (const b of this.blks) {
      rd += b.dev.counters.bytesRead;
      wr += b.dev.counters.bytesWritten;
      reads += b.dev.counters.reads;
      writes += b.dev.counters.writes;
    }
    for (const n of this.netDevices) {
      rx += n.counters.rxBytes;
      tx += n.counters.txBytes;
    }
    for (const t of this.transports) irqs += t.counters.interrupts;
    s[STAT.blkBytesRead] = rd;
    s[STAT.blkBytesWritten] = wr;
    s[STAT.blkReads] = reads;
    s[STAT.blkWrites] = writes;
    s[STAT.netRxBytes] = rx;
    s[STAT.netTxBytes] = tx;
    s[STAT.consoleOutBytes] = this.consoleOut;
    s[STAT.consoleInBytes] = this.consoleIn;
    s[STAT.virtioInterrupts] = irqs;
    s[STAT.mips] = this.lastMips;
    s[STAT.balloonTargetPages] = this.balloonDev?.target ?? 0;
    s[STAT.balloonActualPages] = this.balloonDev?.actual ?? 0;
    for (let i = 0; i < 16; i++) {
      s[STAT.traps + i] = hart.stats.traps[i] ?? 0;
      s[STAT.interrupts + i] = hart.stats.interrupts[i] ?? 0;
    }
    const j = hart.jitStats;
    if (j) JIT_STAT_KEYS.forEach((k, i) => (s[STAT.jit + i] = j[k]));
  }

  /**
   * Host request to the balloon (virtio 1.2 §5.5.6): the guest should give back memory until
   * `targetMiB` of it sits in the balloon (0 deflates it). The guest acts on it on its own
   * time; `actualMiB` is what it has given so far.
   */
  balloon(targetMiB: number): { targetMiB: number; actualMiB: number } {
    if (this.state === 'stopped') throw new VisorError('NotAllowed', 'cannot inflate the balloon of a machine that is stopped');
    const dev = this.balloonDev;
    if (!dev) throw new VisorError('NotAllowed', `machine ${this.cfg.name} has no balloon (config: balloon: true)`);
    if (!Number.isInteger(targetMiB) || targetMiB < 0 || targetMiB > this.cfg.memoryMiB) {
      throw new VisorError('InvalidArgument', `balloon target must be 0-${this.cfg.memoryMiB} MiB, got ${targetMiB}`);
    }
    dev.setTarget(targetMiB * PAGES_PER_MIB);
    this.wake();
    this.publishStats();
    return { targetMiB, actualMiB: dev.actual / PAGES_PER_MIB };
  }

  /**
   * Writes a snapshot of the whole machine (running or paused): parks at a batch boundary,
   * lets disk I/O finish and flushes the disks (their fingerprints must match the file),
   * saves, and resumes if it was running.
   */
  async snapshot(path: string, opts: { compress?: boolean } = {}): Promise<{ bytes: number; ramPages: number; presentPages: number; ms: number }> {
    this.check('snapshot');
    const t0 = performance.now();
    const wasRunning = this.wantRunning;
    await this.park();
    try {
      if (this.state === 'stopped') throw new VisorError('NotAllowed', 'the machine stopped while the snapshot was being prepared');
      await this.drainIo();
      for (const d of this.disks) await d.device.flush();
      const disks: DiskFingerprint[] = [];
      for (const [i, d] of this.cfg.disks.entries()) disks.push(await fingerprintDisk(d.path, this.disks[i]!.format, d.readOnly));
      const meta: SnapshotMeta = {
        format: 'visor-snapshot',
        visorVersion: VISOR_VERSION,
        createdAt: new Date().toISOString(),
        config: this.cfg,
        disks,
      };
      const machine: MachineSnapshotState = {
        runner: { version: 1, executed: this.executed, deterministic: this.cfg.deterministic, rngState: this.rng ? [...this.rng.s] : null },
        board: this.vm.saveState(),
      };
      const w = await writeSnapshotFile(path, { meta, machine, ram: this.vm.bus.ram }, opts.compress === true ? DEFLATE_CODEC : STORED_CODEC);
      return { bytes: w.bytes, ramPages: w.ram.pages, presentPages: w.ram.presentPages, ms: performance.now() - t0 };
    } finally {
      if (wasRunning && this.state === 'running') this.runLoop();
    }
  }

  /**
   * Stops the machine. Graceful (the default) on a running machine: waits (up to the timeout)
   * for the guest agent to listen on its port, writes POWEROFF, and waits for the guest to
   * power off (it syncs and unmounts first). Otherwise, or once the timeout has passed, by
   * force: waits for the current batch, lets disk I/O complete, flushes and closes every disk
   * and NIC. The result says which, and why.
   */
  async stop(req: StopRequest = {}): Promise<StopResult> {
    this.check('stop');
    let forced: StopResult['forced'];
    if (req.graceful === false) forced = 'requested';
    else if (this.state !== 'running') forced = 'not-running';
    else if (!this.con) forced = 'no-agent';
    else {
      const deadline = performance.now() + (req.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS);
      const stopped = () => this.state === 'stopped';
      // A guest still booting opens the port when its init starts the agent.
      if (!(await this.waitChange(() => this.agentListening || stopped(), deadline))) forced = 'no-agent';
      else if (!stopped()) {
        this.con.ports[1]!.write(new TextEncoder().encode('POWEROFF\n'));
        this.wake();
        if (!(await this.waitChange(stopped, deadline))) forced = 'timeout';
      }
      if (forced === undefined) return this.lastStop === 'poweroff' ? { graceful: true } : { graceful: false, forced: 'timeout' };
    }
    if (this.state !== 'stopped') {
      await this.park();
      await this.finish('stopped');
    }
    return { graceful: false, forced };
  }

  /** Immediate: no flush, devices closed. */
  async kill(): Promise<void> {
    this.check('kill');
    this.wantRunning = false;
    this.wake();
    await this.close(false);
    this.setState('stopped', 'killed');
  }

  private async finish(reason: string): Promise<void> {
    if (this.closed) return;
    this.wantRunning = false;
    this.wake();
    if (this.loopDone) await this.loopDone;
    await this.close(true);
    this.setState('stopped', reason);
  }

  private async close(flush: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.settleUntil('stopped');
    if (this.panicTimer) clearTimeout(this.panicTimer);
    if (flush && this.vm) await this.drainIo().catch(() => {});
    for (const d of this.disks) {
      if (flush) await d.device.flush().catch(() => {});
      await closeDisk(d).catch(() => {});
    }
    for (const n of this.nets) await n.dispose().catch(() => {});
    await this.vsockListener?.close().catch(() => {});
    this.vsockListener = undefined;
    if (this.ownNetworks) this.networks = undefined;
  }
}

export const VISOR_VERSION = '0.1.0';

/** Checks the JSON parts of a snapshot before any of it is used. */
export function validateSnapshot(snap: ReadSnapshot): { meta: SnapshotMeta; state: MachineSnapshotState } {
  const bad = (what: string): never => {
    throw new VisorError('CorruptImage', `snapshot: ${what}`);
  };
  const meta = snap.meta as SnapshotMeta;
  if (typeof meta !== 'object' || meta === null || meta.format !== 'visor-snapshot') bad('meta section is not visor snapshot metadata');
  const c = meta.config as ResolvedConfig;
  if (typeof c !== 'object' || c === null) bad('no machine config');
  if (
    typeof c.name !== 'string' || typeof c.kernel !== 'string' || typeof c.append !== 'string' || typeof c.bios !== 'string' ||
    !Number.isInteger(c.memoryMiB) || !Array.isArray(c.disks) || !Array.isArray(c.nets) ||
    typeof c.rng !== 'boolean' || typeof c.deterministic !== 'boolean' ||
    !c.disks.every((d) => typeof d?.path === 'string' && typeof d.readOnly === 'boolean' && (d.format === undefined || d.format === 'raw' || d.format === 'qcow2')) ||
    !c.nets.every((n) => typeof n?.switch === 'string') ||
    (c.balloon !== undefined && typeof c.balloon !== 'boolean') ||
    (c.console !== undefined && c.console !== 'serial' && c.console !== 'virtio') ||
    (c.agent !== undefined && typeof c.agent !== 'boolean') ||
    (c.vsock !== undefined && !(typeof c.vsock === 'object' && c.vsock !== null && Number.isInteger(c.vsock.cid) && c.vsock.cid >= 3 && c.vsock.cid <= 0xffff_fffe && typeof c.vsock.path === 'string' && c.vsock.path !== ''))
  ) {
    bad('machine config is malformed');
  }
  if (!Array.isArray(meta.disks) || meta.disks.length !== c.disks.length) bad('disk fingerprints do not match the disks');
  meta.disks.forEach((d, i) => {
    if (typeof d !== 'object' || d === null || d.path !== c.disks[i]!.path || typeof d.size !== 'number' || typeof d.headSha256 !== 'string' || typeof d.mtimeMs !== 'number') {
      bad(`disk ${i} fingerprint is malformed`);
    }
  });
  const state = snap.machine as MachineSnapshotState;
  if (typeof state !== 'object' || state === null || typeof state.runner !== 'object' || state.runner === null) bad('machine section is malformed');
  const r = state.runner;
  if (r.version !== 1 || !Number.isSafeInteger(r.executed) || r.executed < 0 || r.deterministic !== c.deterministic) bad('runner state is malformed');
  if (r.rngState !== null && !(Array.isArray(r.rngState) && r.rngState.length === 4 && r.rngState.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32))) {
    bad('rng state is malformed');
  }
  return { meta, state };
}
