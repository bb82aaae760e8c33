/**
 * One machine's lifecycle, run from Node's event loop: opens its host devices, has src/vm/
 * assemble the board (assembler.ts) and drive it (driver.ts: batches on a fixed grid, idle
 * sleep, reboots), and answers the API: pause, snapshot, stop, the guest agent, the balloon.
 * The SDK runs one MachineRunner per worker thread (worker-entry.ts); tests may run it
 * in-process. Every control request waits for the current batch to end (see driver.ts).
 */
import { performance } from 'node:perf_hooks';
import type { TierCode } from '../cpu/tier.js';
import { VisorError } from '../base/errors.js';
import type { OpenedDisk } from '../storage/open.js';
import { DiskThrottle, ThrottledDevice } from '../storage/throttle.js';
import { VirtioBalloon } from '../virtio/balloon/device.js';
import { VirtioVsock } from '../virtio/vsock/device.js';
import { listenVsockUnix, unixVsockBackend, type VsockListener } from '../host/vsock-unix.js';
import type { EntropySource } from '../virtio/rng/device.js';
import { ConsolePort, VirtioConsole } from '../virtio/console/device.js';
import { AGENT_PORT_NAME, AGENT_REQUEST, agentRequest, CONSOLE_PORTS, DATA_PORT_NAME, KERNEL_PANIC as PANIC } from '../guest/boot-protocol.js';
import { STDERR_PORT_NAME, STDIN_PORT_NAME, STDOUT_PORT_NAME } from '../images/init-script.js';
import { parseMac } from '../net/mac.js';
import { transition, type MachineAction, type MachineState } from './states.js';
import { HostNetworks, writeNetStats, type NetAttachment } from '../host/net-attach.js';
import { STORED_CODEC } from '../host/snapshot/ram.js';
import { DEFLATE_CODEC, fingerprintDisk, nativeZeroTest, verifyDisk, writeSnapshotFile, type DiskFingerprint, type ReadSnapshot } from '../host/snapshot/file.js';
import { imageOfRam, type MemorySnapshot } from '../host/snapshot/memory.js';
import { snapshotMeta, validateSnapshot, type MachineSnapshotState, type RunnerState, type SnapshotMeta } from '../host/snapshot/meta.js';
import { allocateGuestRam } from '../cpu/guest-ram.js';
import { attachRamPager, imageLayers, knownWrittenPages, MAX_IMAGE_LAYERS, ramPagerOf, writtenPages, type RamImage } from '../cpu/ram-pager.js';
import { clockFor, closeDisks, hostTier, nodeEntropy, openDisks, readBootImage, warmUp } from '../host/vm-host.js';
import { defaultAccel } from '../host/accel.js';
import { assembleVm, type AssembledVm } from '../vm/assembler.js';
import { DTB_SEED_STATE, SeededEntropy } from '../vm/seeded-entropy.js';
import { VmDriver } from '../vm/driver.js';
import type { CpuClock } from '../vm/cpu-limit.js';
import { hasVirtioConsole, type Accel, type VmSpec as ResolvedConfig } from '../vm/spec.js';
import { BALLOON_PAGES_PER_MIB as PAGES_PER_MIB, publishStats, STAT } from '../vm/stats.js';
import type { NetPolicy, VsockBarrier, VsockLink, VsockStream } from './protocol.js';
import type { ForwardSpec } from '../vm/spec.js';
import { DEFAULT_STOP_TIMEOUT_MS, type GuestEvent, type StopRequest, type StopResult, type UntilCondition } from './protocol.js';

export { STAT, JIT_STAT_KEYS } from '../vm/stats.js';
export { DEFAULT_STOP_TIMEOUT_MS, type GuestEvent, type StopRequest, type StopResult, type UntilCondition } from './protocol.js';

const PANIC_GRACE_MS = 500;
/** How long a snapshot waits for the host's bytes on a stream it is asked to hold whole (vsockBarrier). */
const VSOCK_BARRIER_MS = 1000;
/** Console output runUntil({ output }) looks back over. */
const OUTPUT_HISTORY = 64 * 1024;
/** The stdio ports (stdio: 'virtio'), after hvc0, the agent's and the data port. */
const STDIO_PORTS = { stdin: 3, stdout: 4, stderr: 5 } as const;


export interface RunnerEvents {
  output(bytes: Uint8Array): void;
  /** Bytes the guest wrote to the data port (org.visor.data). */
  channel?(bytes: Uint8Array): void;
  /** The command's stdout and stderr (config stdio: 'virtio'). */
  stdout?(bytes: Uint8Array): void;
  stderr?(bytes: Uint8Array): void;
  state(state: MachineState, reason?: string): void;
  guest(event: GuestEvent): void;
  /** Something failed after creation (a reboot whose kernel is gone, a host I/O error). */
  error(err: VisorError): void;
}


export interface RunnerOptions {
  stats?: Float64Array;
  /** For in-process tests: a NIC registry shared by several runners. */
  networks?: HostNetworks;
  /** Filled by restore() with the milliseconds of each phase (bench/restore.ts). */
  timings?: Record<string, number>;
  /**
   * restore(): the Unix socket path of the vsock device, instead of the saved machine's (a
   * template restored many times, or a fork, needs one path per machine: src/sdk/sandbox.ts).
   */
  vsockPath?: string;
  /**
   * restore(): vsock streams open in the snapshot to keep for the host to adopt (`ADOPT G H`
   * on the vsock socket) instead of resetting them: a fork's child continues its parent's
   * agent connection (VirtioVsock.keepOnRestore).
   */
  keepVsock?: VsockStream[];
  /** restore(): the tier to run on (default: defaultAccel()). */
  accel?: Accel;
  /**
   * restore(): guest RAM being filled already (startRamLoad, begun by the worker while it
   * loads the rest of visor). Used when its size is the snapshot machine's; else RAM is loaded here.
   */
  preloadedRam?: Promise<Uint8Array>;
  /** restore(): files standing in for the saved disks, in order (RestoreOptions.disks): verified as equivalent, not identical. */
  disks?: string[];
  /** restore(): warm V8 for the hart first, as a boot does (RestoreOptions.warmUp). */
  warmUp?: boolean;
  /** restore(): instructions interpreted before the JIT compiles anything (RestoreOptions.interpretFirst). */
  interpretFirst?: number;
  /** restore(): compiled pages of a machine with the same RAM layout (CompiledTier.importCode). */
  code?: TierCode;
  /** restore(): firewall and host access for the user-network NICs, instead of the saved machine's. */
  netPolicy?: NetPolicy;
  /**
   * restore(): new MAC addresses for the first NICs ("aa:bb:cc:dd:ee:ff"), instead of the saved
   * machine's (a fork's children must not share their parent's). The guest keeps using the
   * old address until it is told (Sandbox.fork runs `ip link set … address` in it).
   */
  macs?: string[];
  /**
   * The CPU time of the thread this runner runs on (host/thread-cpu.ts), for the CPU limit
   * and stats().threadCpuMs; given by the worker, whose thread is the machine's alone.
   */
  cpuClock?: CpuClock;
}

export class MachineRunner {
  private state: MachineState = 'created';
  /** Runs the board; replaces it on a guest reboot. Set by create()/restore(). */
  private driver!: VmDriver;
  private disks: OpenedDisk[] = [];
  private diskThrottle: DiskThrottle | undefined;
  private nets: NetAttachment[] = [];
  /** restore(): the snapshot's NAT connections, reset in the guest when it first runs. */
  private restoredNatFlows: RunnerState['natFlows'] | null = null;
  /**
   * The RAM image this machine matches but for the pages written since (cpu/ram-pager.ts
   * writtenPages): the one it was restored from, or its last in-memory snapshot. A snapshot in
   * memory then copies only the written pages, on top of it.
   */
  private imageBase: RamImage | undefined;
  /** Kept across reboots (as NICs are): the host side holds on to them. */
  private balloonDev: VirtioBalloon | undefined;
  private vsockDev: VirtioVsock | undefined;
  private vsockListener: VsockListener | undefined;
  private networks: HostNetworks | undefined;
  private ownNetworks = false;
  private rng: SeededEntropy | undefined;
  private panicLine: string | undefined;
  private lineTail = '';
  private panicTimer: NodeJS.Timeout | undefined;
  private readonly stats: Float64Array;
  private readonly cpuClock: CpuClock | undefined;
  private consoleOut = 0;
  private consoleIn = 0;
  private closed = false;
  /** virtio-console: port 0 hvc0, port 1 the agent's, port 2 the user's data channel. */
  private con: VirtioConsole | undefined;
  private agentLine = '';
  /** Woken on every change stop() may wait for (agent port opened, machine stopped). */
  private changed: (() => void)[] = [];
  /** Why the machine stopped ('poweroff' when the guest powered itself off). */
  private lastStop: string | undefined;
  /** A runUntil() in progress (the driver watches for its point). */
  private until: { cond: UntilCondition; resolve(): void; reject(e: unknown): void } | undefined;
  /**
   * Console output no runUntil has matched yet (latin1, the last OUTPUT_HISTORY bytes): a
   * runUntil({ output }) also finds text printed just before the call.
   */
  private outputHistory = '';

  private constructor(
    private cfg: ResolvedConfig,
    private readonly events: RunnerEvents,
    opts: RunnerOptions,
  ) {
    this.stats = opts.stats ?? new Float64Array(STAT.size);
    this.networks = opts.networks;
    this.cpuClock = opts.cpuClock;
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
      r.drive(await r.assemble({ boot: true }), 0);
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
    const swap = opts.disks;
    if (swap && swap.length !== meta.disks.length) {
      throw new VisorError('InvalidArgument', `restore: ${swap.length} replacement disk(s) given for the snapshot's ${meta.disks.length}`);
    }
    for (const [i, d] of meta.disks.entries()) await verifyDisk(d, swap?.[i]);
    if (swap) meta.config.disks = meta.config.disks.map((d, i) => ({ ...d, path: swap[i]! }));
    lap('disks');
    // Snapshots from before the tier was configurable carry no accel; it is chosen here anyway.
    const vsock = meta.config.vsock && opts.vsockPath ? { vsock: { ...meta.config.vsock, path: opts.vsockPath } } : {};
    // With a policy of its own, the machine binds none of the saved one's port forwards (a
    // template restored many times would take the same host ports): it adds its own (addForward).
    const policy = opts.netPolicy;
    const nets = policy ? { nets: meta.config.nets.map((n) => ('user' in n ? { ...n, publish: [], firewall: [...policy.firewall], hostAccess: policy.hostAccess } : n)) } : {};
    const r = new MachineRunner({ ...meta.config, ...vsock, ...nets, accel: opts.accel ?? defaultAccel() }, events, opts);
    try {
      let ram = opts.preloadedRam ? await opts.preloadedRam : undefined;
      if (ram !== undefined && ram.length !== meta.config.memoryMiB * 2 ** 20) ram = undefined;
      if (snap.ramImage) {
        // An in-memory snapshot: RAM starts empty and pages in from the image on demand.
        const bytes = meta.config.memoryMiB * 2 ** 20;
        if (snap.ramImage.bytes.length !== bytes) throw new VisorError('CorruptImage', `the snapshot's RAM is ${snap.ramImage.bytes.length} bytes; its machine has ${bytes}`);
        ram = allocateGuestRam(bytes);
        attachRamPager(ram, snap.ramImage);
        r.imageBase = snap.ramImage;
      }
      lap('ram-wait');
      await r.openDevices();
      if (opts.keepVsock && r.vsockDev) r.vsockDev.keepOnRestore = opts.keepVsock;
      if (opts.warmUp) warmUp(r.cfg.accel);
      const m = await r.assemble({ boot: false, ram });
      lap('board');
      if (ram === undefined) await snap.loadRam(m.vm.bus.ram);
      // RAM read from a file may hold data anywhere (cpu/ram-pager.ts writtenPages); paged-in
      // RAM marks each page as it comes in.
      if (!snap.ramImage) writtenPages(m.vm.bus.ram).fill(1);
      lap('ram');
      try {
        m.vm.restoreState(state.board);
      } catch (err) {
        if (err instanceof VisorError && err.code !== 'InvalidArgument') throw err;
        throw new VisorError('CorruptImage', `the snapshot's machine state does not validate: ${(err as Error).message}`, { cause: err });
      }
      if (opts.macs) r.readdress(opts.macs);
      if (opts.code) m.vm.hart.jit?.importCode?.(opts.code);
      if (opts.interpretFirst) m.vm.hart.holdJit?.(opts.interpretFirst);
      r.drive(m, state.runner.executed);
      if (r.rng && state.runner.rngState) r.rng.s = Uint32Array.from(state.runner.rngState);
      r.restoredNatFlows = state.runner.natFlows ?? null;
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
    this.disks = await openDisks(this.cfg.disks);
    if (this.cfg.diskLimits) this.diskThrottle = new DiskThrottle(this.cfg.diskLimits);
    if (this.cfg.nets.length > 0) {
      if (!this.networks) {
        this.networks = new HostNetworks();
        this.ownNetworks = true;
      }
      for (const n of this.cfg.nets) this.nets.push(await this.networks.attachSpec(n, this.cfg.name, (n.mac !== undefined ? parseMac(n.mac) : null) ?? undefined));
    }
    if (this.cfg.rng && this.cfg.deterministic) this.rng = new SeededEntropy();
    if (this.cfg.balloon) this.balloonDev = new VirtioBalloon();
    if (this.cfg.vsock) {
      const { cid, path } = this.cfg.vsock;
      this.vsockDev = new VirtioVsock({ guestCid: cid, backend: unixVsockBackend(path) });
      try {
        this.vsockListener = await listenVsockUnix(this.vsockDev, path);
      } catch (err) {
        if (err instanceof VisorError) throw err; // a path in use or not ours: said precisely
        throw new VisorError('IoError', `vsock: cannot listen on ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    if (hasVirtioConsole(this.cfg)) {
      // The port layout is part of the machine (snapshots check it), whatever the console choice.
      // stdio: 'virtio' adds the command's three ports after these, so other machines keep theirs.
      const stdio = this.cfg.stdio === 'virtio' ? [{ name: STDIN_PORT_NAME }, { name: STDOUT_PORT_NAME }, { name: STDERR_PORT_NAME }] : [];
      const con = new VirtioConsole({ ports: [{ console: true }, { name: AGENT_PORT_NAME }, { name: DATA_PORT_NAME }, ...stdio] });
      const [hvc, agent, data] = con.ports as [ConsolePort, ConsolePort, ConsolePort];
      if (stdio.length > 0) {
        con.ports[STDIO_PORTS.stdout]!.onOutput = (b) => this.events.stdout?.(b);
        con.ports[STDIO_PORTS.stderr]!.onOutput = (b) => this.events.stderr?.(b);
      }
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

  /**
   * New addresses for the first NICs, once the saved state has validated against the old
   * ones; the config records them, so a snapshot of this machine restores with them.
   */
  private readdress(macs: readonly string[]): void {
    if (macs.length > this.nets.length) throw new VisorError('InvalidArgument', `restore: ${macs.length} MAC addresses for ${this.nets.length} NICs`);
    const parsed = macs.map((m) => {
      const b = parseMac(m);
      if (!b || (b[0]! & 1) !== 0) throw new VisorError('InvalidArgument', `restore: ${JSON.stringify(m)} is not a unicast MAC address (aa:bb:cc:dd:ee:ff)`);
      return b;
    });
    parsed.forEach((b, i) => this.nets[i]!.setMac(b));
    this.cfg = { ...this.cfg, nets: this.cfg.nets.map((n, i) => (i < macs.length ? { ...n, mac: macs[i]!.toLowerCase() } : n)) };
  }

  /**
   * New firewall rules and host access for the machine's private user networks (a sandbox
   * taken from a pool of restored machines gets its own policy); the config records them.
   */
  setNetPolicy(policy: NetPolicy): void {
    if (this.state === 'stopped') throw new VisorError('NotAllowed', 'the machine is stopped');
    const privateNets = this.nets.filter((n) => n.setPolicy !== undefined);
    if (privateNets.length === 0) throw new VisorError('NotAllowed', 'a network policy needs a private user network (nets: [{ user: true }]) hosted by this process');
    for (const n of privateNets) n.setPolicy!(policy.firewall, policy.hostAccess);
    this.cfg = { ...this.cfg, nets: this.cfg.nets.map((n) => ('user' in n && n.user === null ? { ...n, firewall: [...policy.firewall], hostAccess: policy.hostAccess } : n)) };
  }

  /** (Re)builds the board (src/vm/assembler.ts); devices keep their host side across reboots. */
  private async assemble(o: { boot: boolean; ram?: Uint8Array | undefined }): Promise<AssembledVm> {
    const cfg = this.cfg;
    // A deterministic machine's seed is fixed too, so its boots repeat (its own source: the
    // virtio-rng's stream stays as it was).
    const boot = o.boot ? await readBootImage(cfg, cfg.deterministic ? new SeededEntropy(DTB_SEED_STATE) : nodeEntropy) : undefined;
    // A boot meets the interpreter's paths one by one (host/warmup.ts); a restore skips the
    // warm-up: it costs tens of ms in a fresh worker, which a restore's latency target cannot take.
    if (o.boot) warmUp(cfg.accel);
    const entropy: EntropySource = this.rng ?? nodeEntropy;
    return assembleVm({
      spec: cfg,
      backends: {
        // The guest's disks go through the machine's I/O limit; the host's own flushes (snapshots, shutdown) do not.
        disks: this.disks.map((d) => (this.diskThrottle ? new ThrottledDevice(d.device, this.diskThrottle) : d.device)),
        nics: this.nets.map((n) => n.device),
        entropy,
        ...(this.balloonDev ? { balloon: this.balloonDev } : {}),
        ...(this.vsockDev ? { vsock: this.vsockDev } : {}),
        ...(this.con ? { console: this.con } : {}),
      },
      clock: clockFor(cfg),
      tier: hostTier(cfg.accel),
      ...(boot ? { boot } : {}),
      ...(o.ram ? { ram: o.ram } : {}),
    });
  }

  /** Hands the board to a driver and listens to it. */
  private drive(m: AssembledVm, executed: number): void {
    // A guest booted with panic=-1 reboots at once after a panic: the panic is what ended it.
    const d = new VmDriver(m, { executed, name: this.cfg.name, rebuild: () => this.rebuild(), rebootEnds: () => this.panicLine !== undefined, ...(this.cpuClock ? { cpuClock: this.cpuClock } : {}) });
    d.on('output', (b) => this.output(b));
    d.on('slice', () => this.publishStats());
    d.on('reboot', () => this.events.guest({ kind: 'reboot' }));
    d.on('paused', () => {
      if (this.state === 'running' && !this.closed) {
        this.setState('paused');
        this.settleUntil('paused');
      }
    });
    d.on('exit', (exit) => {
      if (exit.kind === 'reboot' && this.panicLine !== undefined) {
        if (this.panicTimer) clearTimeout(this.panicTimer);
        this.panicTimer = undefined;
        this.events.guest({ kind: 'panic', line: this.panicLine });
        this.endFromLoop('panic');
        return;
      }
      this.events.guest(exit.kind === 'fail' ? { kind: 'fail', code: exit.code } : { kind: 'poweroff' });
      this.endFromLoop(exit.kind);
    });
    d.on('error', (err) => {
      this.events.error(err);
      this.endFromLoop('error');
    });
    this.driver = d;
  }

  /** A guest reboot: the host side of every device is reset, then a new board from the same files. */
  private async rebuild(): Promise<AssembledVm> {
    for (const n of this.nets) n.device.reset();
    this.balloonDev?.reset();
    this.vsockDev?.reset();
    if (this.con?.ports[CONSOLE_PORTS.agent]?.guestOpen) this.events.guest({ kind: 'agent', listening: false });
    this.con?.reset();
    return this.assemble({ boot: true });
  }

  private get vm() {
    return this.driver.machine.vm;
  }

  // ------------------------------------------------------------------ console

  private output(b: Uint8Array): void {
    this.consoleOut += b.length;
    this.watchPanic(b);
    this.outputHistory = (this.outputHistory + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1')).slice(-OUTPUT_HISTORY);
    if (this.until && this.consumeOutput(this.until.cond.output)) this.driver.hitPoint();
    this.events.output(b);
  }

  /** Whether `marker` is in the unmatched output; if so, it and what came before are matched. */
  private consumeOutput(marker: string | undefined): boolean {
    if (marker === undefined) return false;
    const i = this.outputHistory.indexOf(marker);
    if (i < 0) return false;
    this.outputHistory = this.outputHistory.slice(i + marker.length);
    return true;
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
    if (this.con && this.cfg.console === 'virtio') this.con.ports[CONSOLE_PORTS.hvc0]!.write(bytes);
    else this.vm.consoleInput(bytes);
    this.driver.wake();
  }

  /** Host → guest bytes on the data port (dropped when the machine has no virtio-console). */
  channelInput(bytes: Uint8Array): void {
    if (this.state === 'stopped' || !this.con) return;
    this.con.ports[CONSOLE_PORTS.data]!.write(bytes);
    this.driver.wake();
  }

  /** The command's stdin (stdio: 'virtio'); dropped otherwise. */
  stdinInput(bytes: Uint8Array): void {
    if (this.state === 'stopped' || this.cfg.stdio !== 'virtio' || !this.con) return;
    this.consoleIn += bytes.length;
    this.con.ports[STDIO_PORTS.stdin]!.write(bytes);
    this.driver.wake();
  }

  /** End of the command's stdin: it reads end-of-file after what was sent. */
  stdinEnd(): void {
    if (this.state === 'stopped' || this.cfg.stdio !== 'virtio' || !this.con) return;
    this.con.ports[STDIO_PORTS.stdin]!.closeHost();
    this.driver.wake();
  }

  /** The agent is listening: its port is open in the guest. */
  get agentListening(): boolean {
    return this.con?.ports[CONSOLE_PORTS.agent]?.guestOpen === true;
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
      this.until = { cond, resolve, reject };
    });
    // The runner matches output itself (over its history: text printed just before the call
    // counts); the driver watches the instruction count.
    this.driver.pauseAt(cond.instructions !== undefined ? { instructions: cond.instructions } : {});
    // Already printed (since the last match): met at once, at the batch boundary we sit on.
    if (this.consumeOutput(cond.output)) this.driver.hitPoint();
    if (this.state !== 'created' && this.driver.pointReached) {
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

  /** Ends a pending runUntil: met if its condition holds, else refused with why it ended. */
  private settleUntil(why: string): void {
    const u = this.until;
    if (!u) return;
    this.until = undefined;
    const reached = this.driver?.pointReached === true;
    this.driver?.pauseAt(undefined);
    // The driver clears its point when it pauses there.
    if (why === 'paused' || (why !== 'stopped' && reached)) u.resolve();
    else u.reject(new VisorError('NotAllowed', `runUntil: the machine ${why} before ${u.cond.output !== undefined ? `the guest printed ${JSON.stringify(u.cond.output)}` : `${u.cond.instructions} instructions`}`));
  }

  private runLoop(): void {
    if (this.restoredNatFlows) {
      // The guest's connections through the NAT died with the process that saved it: reset
      // them as it starts running, so its sockets fail now rather than wait on nobody.
      this.restoredNatFlows.forEach((flows, i) => this.nets[i]?.resetRestored(flows));
      this.restoredNatFlows = null;
    }
    void this.driver.run();
  }

  private async park(): Promise<void> {
    await this.driver.park();
  }

  private wake(): void {
    this.driver.wake();
  }

  private endFromLoop(reason: string): void {
    queueMicrotask(() => void this.finish(reason));
  }

  publishStats(): void {
    const d = this.driver;
    const paged = ramPagerOf(d.machine.vm.bus.ram)?.stats;
    publishStats(this.stats, d.machine, {
      executed: d.executed, runningMs: d.runningMs, idleMs: d.idleMs, mips: d.mips, consoleOut: this.consoleOut, consoleIn: this.consoleIn,
      ...(this.cpuClock ? { threadCpuMs: this.cpuClock() } : {}),
      ...(paged ? { ramPagedIn: paged.fetched, ramPending: paged.pending } : {}),
    });
    writeNetStats(this.stats, this.nets);
    this.stats[STAT.blkThrottled] = this.diskThrottle?.counters.throttled ?? 0;
    this.stats[STAT.blkThrottledMs] = this.diskThrottle?.counters.waitedMs ?? 0;
  }

  /** A port forward into the running guest, on its first user-network NIC this process hosts. */
  async addForward(f: ForwardSpec): Promise<void> {
    if (this.state === 'stopped') throw new VisorError('NotAllowed', 'the machine is stopped');
    const nic = this.nets.find((n) => n.addForward !== undefined);
    if (!nic?.addForward) throw new VisorError('NotAllowed', 'port forwarding needs a user-network NIC (nets: [{ user: true }]) hosted by this process');
    await nic.addForward(f);
  }

  /** The JIT's compiled pages (none under the interpreter), for RunnerOptions.code of a later restore. */
  exportCode(): TierCode | undefined {
    if (this.state === 'stopped') throw new VisorError('NotAllowed', 'the machine is stopped');
    return this.vm.hart.jit?.exportCode?.();
  }

  /** Limits the machine to `percent` (1-100) of one host core by duty-cycling the run loop. */
  setCpuLimit(percent: number): void {
    this.driver.setCpuLimit(percent);
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
    return this.whileParked(async (t0, meta, machine) => {
      // A snapshot file holds all of RAM: pages a restore had not yet brought in come in first.
      const pager = ramPagerOf(this.vm.bus.ram);
      if (pager && pager.stats.pending > 0) {
        pager.fetchAll();
        this.publishStats();
      }
      const w = await writeSnapshotFile(path, { meta, machine, ram: this.vm.bus.ram }, opts.compress === true ? DEFLATE_CODEC : STORED_CODEC);
      return { bytes: w.bytes, ramPages: w.ram.pages, presentPages: w.ram.presentPages, ms: performance.now() - t0 };
    });
  }

  /**
   * The same snapshot, held in memory: RAM in shared memory that machines restored from it
   * page in on demand (host/snapshot/memory.ts). What a fork's children start from.
   */
  async snapshotInMemory(barrier?: VsockBarrier): Promise<MemorySnapshot & { ms: number; link?: VsockLink }> {
    let link: VsockLink | undefined;
    return this.whileParked(async (t0, meta, machine) => {
      const ram = this.vm.bus.ram;
      const zero = nativeZeroTest(ram);
      const written = knownWrittenPages(ram);
      // On the image this machine last matched, the written pages alone; a chain grown too
      // deep is flattened (every page read, as without a base: `written` then counts only
      // since the last snapshot, so it cannot vouch for zero pages).
      let base = this.imageBase;
      if (base && imageLayers(base, ram.length / 4096).length >= MAX_IMAGE_LAYERS) base = undefined;
      const from = base ? { pager: ramPagerOf(ram), written, base } : { pager: ramPagerOf(ram), written: this.imageBase ? undefined : written };
      const image = imageOfRam(ram, (p) => zero(ram, p), from);
      // From here on this machine lies on the new image: only what it writes next goes in the
      // next one. The write TLB goes, so each page's next store translates and marks it.
      const hart = this.vm.hart;
      if (written && hart.flushWriteTlb) {
        this.imageBase = { bytes: image.ram, present: image.present, base: image.base };
        written.fill(0);
        hart.flushWriteTlb();
      }
      return { kind: 'visor-memory-snapshot' as const, meta: JSON.stringify(meta), machine: JSON.stringify(machine), ...image, ms: performance.now() - t0, ...(link ? { link } : {}) };
    }, barrier ? async () => void (link = await this.vsockBarrier(barrier)) : undefined);
  }

  /**
   * Waits (bounded) until the vsock device has taken every byte the host wrote on a stream
   * before the snapshot (`hostBytes`, counted by the host), so that a machine restored from it
   * holds the same stream the host sees: then says how many bytes the device had given the
   * host by this instant. Undefined when it cannot vouch for that (no such stream, bytes
   * dropped, or they did not arrive in time): the restored machines then reset it.
   */
  private async vsockBarrier(b: VsockBarrier): Promise<VsockLink | undefined> {
    const dev = this.vsockDev;
    const deadline = performance.now() + VSOCK_BARRIER_MS;
    for (;;) {
      const conn = dev?.connection(b.guestPort, b.hostPort);
      if (!conn || conn.state !== 'connected' || conn.dropped > 0 || conn.fromHost > b.hostBytes) return undefined;
      if (conn.fromHost === b.hostBytes) return { guestPort: b.guestPort, hostPort: b.hostPort, hostBytes: b.hostBytes, guestBytes: conn.toHost };
      if (performance.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * Parks the machine at a batch boundary, lets disk I/O finish, flushes the disks (their
   * fingerprints must match what is saved), and hands `save` the machine's state; resumes it
   * afterwards if it was running.
   */
  private async whileParked<T>(save: (t0: number, meta: SnapshotMeta, machine: MachineSnapshotState) => Promise<T>, beforeState?: () => Promise<void>): Promise<T> {
    this.check('snapshot');
    const t0 = performance.now();
    const wasRunning = this.driver.running;
    await this.park();
    try {
      if (this.state === 'stopped') throw new VisorError('NotAllowed', 'the machine stopped while the snapshot was being prepared');
      await this.driver.drainIo();
      for (const d of this.disks) await d.device.flush();
      const disks: DiskFingerprint[] = [];
      for (const [i, d] of this.cfg.disks.entries()) disks.push(await fingerprintDisk(d.path, this.disks[i]!.format, d.readOnly));
      await beforeState?.();
      const meta = snapshotMeta(this.cfg, disks);
      const machine: MachineSnapshotState = {
        runner: {
          version: 1,
          executed: this.driver.executed,
          deterministic: this.cfg.deterministic,
          rngState: this.rng ? this.rng.saveState() : null,
          ...(this.nets.length ? { natFlows: this.nets.map((n) => n.savedFlows()) } : {}),
        },
        board: this.vm.saveState(),
      };
      return await save(t0, meta, machine);
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
        this.con.ports[CONSOLE_PORTS.agent]!.write(agentRequest(AGENT_REQUEST.poweroff));
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
    await this.close(false);
    this.setState('stopped', 'killed');
  }

  private async finish(reason: string): Promise<void> {
    if (this.closed) return;
    await this.driver.park();
    await this.close(true);
    this.setState('stopped', reason);
  }

  private async close(flush: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.settleUntil('stopped');
    if (this.panicTimer) clearTimeout(this.panicTimer);
    // Parks for good: the loop ends at its batch boundary and never starts again.
    const parked = this.driver?.close();
    if (flush && this.driver) await this.driver.drainIo().catch(() => {});
    await closeDisks(this.disks, flush);
    for (const n of this.nets) await n.dispose().catch(() => {});
    await this.vsockListener?.close().catch(() => {});
    this.vsockListener = undefined;
    if (this.ownNetworks) this.networks = undefined;
    await parked;
  }
}
