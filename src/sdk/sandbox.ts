/**
 * Sandboxes (issue 16): an isolated Linux to run commands in and move files in and out of,
 * shaped like E2B's SDK, over visor's machines. Each sandbox is a Machine restored from a
 * template snapshot (sandbox-template.ts) with visor's guest agent (src/guest/agent) on
 * virtio-vsock; the calling thread talks to the agent over the vsock's Unix socket.
 *
 *   const sbx = await Sandbox.create();               // image 'tiny' unless told
 *   const r = await sbx.commands.run('echo hi');     // { exitCode: 0, stdout: 'hi\n', stderr: '' }
 *   await sbx.files.write('/root/a.txt', 'x');
 *   const [child] = await sbx.fork();
 *   await sbx.kill();
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { VisorError } from '../base/errors.js';
import { adoptAgent, connectAgent, type AgentConnection } from '../guest/connect.js';
import { AGENT_VSOCK_PORT, DATA_CHUNK, HELLO_NO_MAC, WATCH_BITS, type EntryInfo } from '../guest/protocol.js';
import type { AgentSession, ExecHandle, ExitInfo } from '../guest/session.js';
import type { TierCode } from '../cpu/tier.js';
import type { MemorySnapshot } from '../host/snapshot/memory.js';
import type { VsockLink } from './protocol.js';
import { Machine } from './machine.js';
import { parseFirewallEntry } from '../net/user/spec.js';
import { formatMac, parseMac, randomMac } from '../net/mac.js';
import { ensureTemplate, socketDir } from './sandbox-template.js';

export interface SandboxOptions {
  /** A visor image with the agent (default 'tiny'; 'debian' once the full image ships it). */
  image?: string;
  /** Guest RAM (default 256). Pages the guest never touches cost the host nothing. */
  memoryMiB?: number;
  /** Lifetime: past it the sandbox is killed (or paused, onTimeout: 'pause'). Default 300 000. */
  timeoutMs?: number;
  onTimeout?: 'kill' | 'pause';
  /** Environment for every command (a command's own envs win). */
  envs?: Record<string, string>;
  /**
   * The sandbox's own network (a private user-mode NAT: 10.0.2.15 behind gateway 10.0.2.2,
   * DNS 10.0.2.3). Outgoing traffic is allowed unless `denyOut` names it (CIDRs, or 'any'),
   * `allowOut` wins over `denyOut`; `denyHost` (default true) keeps the guest from the host
   * itself (10.0.2.2 and the host's own addresses), whatever allowOut says.
   */
  network?: SandboxNetwork;
  metadata?: Record<string, string>;
  /** How long a files.* request may take (default 60 000). */
  requestTimeoutMs?: number;
  /** How long the restored guest's agent may take to answer (default 120 000: a loaded host starves guests). */
  startTimeoutMs?: number;
}

export interface SandboxNetwork {
  allowOut?: string[];
  denyOut?: string[];
  denyHost?: boolean;
}

/** A sandbox's network options as the user network's firewall rules (src/net/user/firewall.ts). */
export function sandboxNetPolicy(n: SandboxNetwork = {}): { firewall: string[]; hostAccess: boolean } {
  const target = (what: string, t: unknown): string => {
    if (t === '0.0.0.0/0') return 'any';
    // A CIDR or an address ('any' too); no ':' that would add a protocol or ports to the rule.
    if (typeof t === 'string' && !t.includes(':') && typeof parseFirewallEntry(`deny out:any:${t}`) !== 'string') return t;
    throw new VisorError('InvalidArgument', `network.${what}: expected IPv4 addresses or CIDRs (10.0.0.0/8) or 'any', got ${JSON.stringify(t)} (host names are not supported)`);
  };
  const list = (what: 'allowOut' | 'denyOut'): string[] => {
    const v = n[what];
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.length > 100) throw new VisorError('InvalidArgument', `network.${what}: expected an array of at most 100 CIDRs`);
    return v.map((t) => target(what, t));
  };
  if (n.denyHost !== undefined && typeof n.denyHost !== 'boolean') throw new VisorError('InvalidArgument', 'network.denyHost: expected a boolean');
  const unknown = Object.keys(n).filter((k) => !['allowOut', 'denyOut', 'denyHost'].includes(k));
  if (unknown.length > 0) throw new VisorError('InvalidArgument', `network: unknown option ${unknown.join(', ')} (allowOut, denyOut, denyHost)`);
  // The first matching rule decides; the host rule (hostAccess false) comes before all of them.
  return { firewall: [...list('allowOut').map((t) => `allow out:any:${t}`), ...list('denyOut').map((t) => `deny out:any:${t}`)], hostAccess: !(n.denyHost ?? true) };
}

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** The signal that ended the command (undefined: it exited). */
  signal?: number;
  /** Output past maxOutputBytes was not kept (it still went to onStdout/onStderr). */
  truncated?: boolean;
}

export interface RunOptions {
  cwd?: string;
  envs?: Record<string, string>;
  /** Default 'root'. */
  user?: string;
  /** Default 60 000; 0 waits forever. Past it the command's process group gets SIGKILL and run() rejects with TimeoutError. */
  timeoutMs?: number;
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
  /** Return a handle at once instead of waiting (stdin stays open for sendStdin). */
  background?: boolean;
  /** Keep stdin open for sendStdin in a foreground run too (default false: /dev/null). */
  stdin?: boolean;
  /** Output kept in the result, per stream (default 64 MiB). */
  maxOutputBytes?: number;
}

/** A non-zero exit (E2B's behaviour): the result rides along. */
export class CommandExitError extends VisorError {
  constructor(readonly result: CommandResult) {
    super('CommandExit', `command exited with ${result.signal ? `signal ${result.signal}` : `code ${result.exitCode}`}${result.stderr ? `: ${result.stderr.slice(0, 500).trimEnd()}` : ''}`);
  }
  /** The command's exit code (VisorError's process exit code, for a CLI, is the command's too). */
  override get exitCode(): number {
    return this.result.exitCode;
  }
  get stdout(): string {
    return this.result.stdout;
  }
  get stderr(): string {
    return this.result.stderr;
  }
}

export class TimeoutError extends VisorError {
  constructor(message: string) {
    super('Timeout', message);
  }
}

/** A feature visor does not have yet; the message says which and why. */
export class NotSupportedError extends VisorError {
  constructor(message: string) {
    super('Unsupported', message);
  }
}

/** A command running in a sandbox. */
export class CommandHandle {
  stdout = '';
  stderr = '';
  private truncated = false;
  private readonly result: Promise<CommandResult>;

  /** @internal */
  constructor(
    private readonly exec: ExecHandle,
    readonly pid: number,
    exited: Promise<ExitInfo>,
    timeoutKill: Promise<never> | undefined,
  ) {
    this.result = (timeoutKill ? Promise.race([exited, timeoutKill]) : exited).then((e) => {
      const r: CommandResult = { exitCode: e.exitCode, stdout: this.stdout, stderr: this.stderr };
      if (e.signal) r.signal = e.signal;
      if (this.truncated) r.truncated = true;
      return r;
    });
    this.result.catch(() => {});
  }

  /** @internal */
  append(which: 'stdout' | 'stderr', s: string, max: number): void {
    if (this[which].length + s.length > max) this.truncated = true;
    else this[which] += s;
  }

  /** The result once it exits; a non-zero exit rejects with CommandExitError. */
  async wait(): Promise<CommandResult> {
    const r = await this.result;
    if (r.exitCode !== 0 || r.signal) throw new CommandExitError(r);
    return r;
  }

  async sendStdin(data: string | Uint8Array): Promise<void> {
    await this.exec.sendStdin(typeof data === 'string' ? new TextEncoder().encode(data) : data);
  }

  async closeStdin(): Promise<void> {
    await this.exec.closeStdin();
  }

  /** SIGKILL to the command's process group (its children too). False when it had exited. */
  async kill(signal = 9): Promise<boolean> {
    try {
      await this.exec.signal(signal);
      return true;
    } catch (err) {
      if (err instanceof VisorError && err.code === 'NotFound') return false;
      throw err;
    }
  }

  /** @internal */
  resize(cols: number, rows: number): Promise<void> {
    return this.exec.resize(cols, rows);
  }
}

export interface EntryInfoWithPath extends EntryInfo {
  path: string;
}

export type FilesystemEventType = 'create' | 'write' | 'remove' | 'rename' | 'chmod';
export interface FilesystemEvent {
  name: string;
  type: FilesystemEventType;
}

const live = new Map<string, Sandbox>();

/**
 * Compiled guest code shared by this process's sandboxes, by template (docs/sandbox.md
 * "Warm code"): every sandbox of a template runs the same kernel and programs at the same
 * physical pages, so a new sandbox or a fork starts with the JIT modules an earlier one built
 * (Machine.exportCode, RestoreOptions.code) instead of interpreting its first command while
 * compiling them again. The largest set seen is kept; pages whose bytes differ are not used.
 */
const sharedCode = new Map<string, TierCode>();
/** A sandbox offers its code again once its JIT has compiled this many more modules. */
const SHARE_CODE_EVERY = 16;
/** Workers Sandbox keeps started ahead of need (Sandbox.prewarm). */
let warmTarget = 0;

/**
 * Sandboxes restored ahead of need (Sandbox.prewarm), by template ("image:memoryMiB"): the
 * template restored, its agent connected and greeted (fresh entropy each), then paused. A
 * create takes one, gives its network the sandbox's policy and resumes it: no restore, no
 * worker start-up, no connect on its path (E2B keeps sandboxes warm the same way).
 */
interface Reserve {
  target: number;
  spec: { image: string; memoryMiB: number };
  ready: Restored[];
  filling: number;
  /** A refill waits after a take: the new sandbox's first command goes first (refillAfter). */
  refill: NodeJS.Timeout | undefined;
  /** Settles when the reserve holds `target` (or a fill failed: the error). */
  waiters: { resolve(): void; reject(e: unknown): void }[];
}
const reserves = new Map<string, Reserve>();
/**
 * After a take, the reserve refills once the new sandbox's first command has ended, or this
 * long after the take (a refill is a restore: on a busy host it would share the CPU with that
 * command and double its time).
 */
const RESERVE_REFILL_AFTER_MS = 5000;
const RESERVE_WARM_RUNS = 3;
/** A reserved guest reaches nothing until a sandbox's policy replaces this. */
const RESERVE_POLICY = { firewall: ['deny out:any:any'], hostAccess: false };

/** A sandbox's own root disk (images with one): an overlay file, deleted with the sandbox. */
interface OwnDisk {
  path: string;
  dispose(): Promise<void>;
}

/** A restored machine with its agent connected (not yet a Sandbox). */
interface Restored {
  vm: Machine;
  conn: AgentConnection;
  dir: string;
  disk: OwnDisk | undefined;
  timings: Record<string, number>;
  /** Ends its life in a reserve (it stopped, or was taken). */
  unwatch?: () => void;
}

const reserveKey = (image: string, memoryMiB: number) => `${image}:${memoryMiB}`;
/** The template a sandbox of these options comes from (sharedCode's key). */
const templateOf = (o: Pick<SandboxOptions, 'image' | 'memoryMiB'>) => reserveKey(o.image ?? 'tiny', o.memoryMiB ?? 256);

function settleReserve(r: Reserve, err?: unknown): void {
  if (err === undefined && r.ready.length + r.filling < r.target && r.target > 0) return;
  if (err === undefined && r.filling > 0) return;
  for (const w of r.waiters.splice(0)) err === undefined ? w.resolve() : w.reject(err);
}

/** Restores into `r` until it holds its target (one restore at a time: each is ~1-2 s of CPU). */
function fillReserve(r: Reserve): void {
  if (r.filling > 0 || r.ready.length >= r.target) return settleReserve(r);
  r.filling++;
  void (async () => {
    try {
      const tpl = await ensureTemplate(r.spec);
      const got = await restoreTemplate(await templateImage(tpl.path), { ...r.spec, startTimeoutMs: 120_000 }, RESERVE_POLICY, 1, await templateDisk(tpl.disk));
      await warmReserved(got, templateOf(r.spec));
      await got.vm.pause();
      got.vm.keepProcessAlive(false);
      got.conn.socket.unref();
      const onState = (s: string) => {
        if (s !== 'stopped') return;
        const i = r.ready.indexOf(got);
        if (i >= 0) r.ready.splice(i, 1);
        void rm(got.dir, { recursive: true, force: true });
        void got.disk?.dispose();
      };
      got.vm.on('state', onState);
      got.unwatch = () => got.vm.off('state', onState);
      if (r.target === 0) await discard(got);
      else r.ready.push(got);
      r.filling--;
      fillReserve(r);
    } catch (err) {
      r.filling--;
      settleReserve(r, err);
    }
  })();
}

/**
 * Runs a few empty commands (`:` in a shell, started as commands.run starts any) in a reserved
 * machine: its JIT compiles the paths every command takes (the agent's fork and exec, the
 * kernel's, the shell's start-up) before a create needs them, and offers its code to the
 * process (sharedCode). The guest keeps nothing of them but a higher next pid.
 */
async function warmReserved(got: Restored, template: string): Promise<void> {
  for (let i = 0; i < RESERVE_WARM_RUNS; i++) {
    const e = got.conn.session.exec({ argv: ['/bin/sh', '-c', ':'], env: [], cwd: '', user: 'root', stdin: false }, {});
    await e.exited;
  }
  await offerCode(got.vm, template);
}

/** Offers a machine's compiled code to later creates and forks of its template, if it has more pages (sharedCode). */
async function offerCode(vm: Machine, template: string): Promise<void> {
  const code = await vm.exportCode().catch(() => undefined); // stopped meanwhile: nothing to share
  if (code && code.pages.length > (sharedCode.get(template)?.pages.length ?? 0)) sharedCode.set(template, code);
}

/** A new sandbox's root disk: a fresh overlay on the template's (templates of images with one). */
async function templateDisk(disk: string | undefined): Promise<OwnDisk | undefined> {
  if (disk === undefined) return undefined;
  const { ephemeralDisk } = await import('../images/machines.js');
  const { cacheRoot } = await import('../images/cache.js');
  return ephemeralDisk(cacheRoot(), disk);
}

async function discard(got: Restored): Promise<void> {
  got.unwatch?.();
  got.conn.socket.destroy();
  await got.vm.kill().catch(() => {});
  await rm(got.dir, { recursive: true, force: true });
  await got.disk?.dispose();
}

/**
 * A reserved sandbox of this template, ready to go, if there is one, and the refill to call
 * once its first command has ended (it also comes RESERVE_REFILL_AFTER_MS after the take).
 */
function takeReserved(image: string, memoryMiB: number): { got: Restored | undefined; refill: () => void } {
  const r = reserves.get(reserveKey(image, memoryMiB));
  const none = { got: undefined, refill: () => {} };
  if (!r) return none;
  let got: Restored | undefined;
  while ((got = r.ready.shift()) && (got.vm.state !== 'paused' || got.conn.session.closed)) void discard(got);
  const refill = () => {
    clearTimeout(r.refill);
    r.refill = undefined;
    fillReserve(r);
  };
  if (r.target > 0 && !r.refill) {
    r.refill = setTimeout(refill, got ? RESERVE_REFILL_AFTER_MS : 0);
    r.refill.unref();
  }
  if (!got) return none;
  got.unwatch?.();
  got.vm.keepProcessAlive(true);
  got.conn.socket.ref();
  return { got, refill };
}

// Reserved machines do not keep the process alive; their socket directories go with it.
process.once('exit', () => {
  for (const r of reserves.values()) for (const got of r.ready) rmSync(got.dir, { recursive: true, force: true });
});

/** A TCP port on 127.0.0.1 nobody listens on now. */
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function toBytes(s: string | Uint8Array): Uint8Array {
  return typeof s === 'string' ? new TextEncoder().encode(s) : s;
}

async function* chunks(data: string | Uint8Array | AsyncIterable<Uint8Array | string> | ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
  if (typeof data === 'string' || data instanceof Uint8Array) {
    const b = toBytes(data);
    for (let off = 0; off < b.length; off += DATA_CHUNK) yield b.subarray(off, off + DATA_CHUNK);
    return;
  }
  const it: AsyncIterable<Uint8Array | string> = Symbol.asyncIterator in data ? (data as AsyncIterable<Uint8Array | string>) : streamIter(data as ReadableStream<Uint8Array>);
  for await (const c of it) {
    const b = toBytes(c);
    for (let off = 0; off < b.length; off += DATA_CHUNK) yield b.subarray(off, off + DATA_CHUNK);
  }
}

async function* streamIter(s: ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
  const r = s.getReader();
  try {
    for (;;) {
      const { done, value } = await r.read();
      if (done) return;
      yield value;
    }
  } finally {
    r.releaseLock();
  }
}

function watchType(mask: number): FilesystemEventType {
  if (mask & WATCH_BITS.create) return 'create';
  if (mask & WATCH_BITS.delete) return 'remove';
  if (mask & (WATCH_BITS.movedFrom | WATCH_BITS.movedTo)) return 'rename';
  if (mask & (WATCH_BITS.modify | WATCH_BITS.closeWrite)) return 'write';
  return 'chmod';
}

/**
 * `count` copies of a sandbox's root disk for its fork's children (undefined each without one).
 * The copy is byte for byte (a reflink where the filesystem has them), so a child's restore
 * finds the disk the snapshot saw; each overlay is small (the template's disk is under it).
 */
async function copiesOf(disk: OwnDisk | undefined, count: number): Promise<(OwnDisk | undefined)[]> {
  if (!disk) return new Array<undefined>(count).fill(undefined);
  const { ephemeralCopy } = await import('../images/machines.js');
  const { cacheRoot } = await import('../images/cache.js');
  const made = await Promise.allSettled(Array.from({ length: count }, () => ephemeralCopy(cacheRoot(), disk.path)));
  const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
  if (failed) {
    await Promise.all(made.map((m) => (m.status === 'fulfilled' ? m.value.dispose() : undefined)));
    throw failed.reason;
  }
  return made.map((m) => (m as PromiseFulfilledResult<OwnDisk>).value);
}

export interface ForkOptions {
  /** Children to start (default 1). */
  count?: number;
  /**
   * Give each child a MAC address of its own, which its guest takes (default true;
   * docs/sandbox.md "Network"). false keeps the parent's: each child is alone on a private
   * network, so nothing collides there, and the fork skips one command in each child.
   */
  newAddress?: boolean;
}

/**
 * Templates read into memory, by file: a create restores from its template's image, its guest
 * paging in only the pages it reaches (src/cpu/ram-pager.ts), so the sandboxes of a template
 * share one copy of its RAM (~60 MiB for tiny at 256 MiB) and a restore reads no file. The
 * most recently used TEMPLATE_IMAGES are kept; a template file rebuilt since is read again.
 */
const templateImages = new Map<string, { stamp: string; image: Promise<MemorySnapshot> }>();
const TEMPLATE_IMAGES = 2;

async function templateImage(path: string): Promise<MemorySnapshot> {
  const st = await stat(path);
  const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
  let e = templateImages.get(path);
  templateImages.delete(path); // re-inserted below: the map's order is least recently used first
  if (!e || e.stamp !== stamp) {
    const { loadMemorySnapshot } = await import('../host/snapshot/memory.js');
    const entry = { stamp, image: loadMemorySnapshot(path) };
    // A file that failed to load is read again next time, not remembered as failed.
    entry.image.catch(() => templateImages.get(path) === entry && templateImages.delete(path));
    e = entry;
  }
  templateImages.set(path, e);
  while (templateImages.size > TEMPLATE_IMAGES) templateImages.delete(templateImages.keys().next().value!);
  return e.image;
}

/**
 * Restores a sandbox's machine from an in-memory snapshot (a template's image, a fork's) with its own vsock socket and connects to its agent;
 * `disk` (its own from now on, deleted with it, or here on failure) stands in for the saved root disk.
 */
/** Where a fork's child takes up its parent's agent stream: the snapshot's link and the parent's partial frame there. */
interface AgentCut {
  link: VsockLink;
  partial: Uint8Array;
  /** The parent's agent (the same binary runs in the child). */
  agent: string;
}

async function restoreTemplate(snap: MemorySnapshot, opts: Pick<SandboxOptions, 'image' | 'memoryMiB' | 'startTimeoutMs'>, netPolicy: { firewall: string[]; hostAccess: boolean }, firstId: number, disk: OwnDisk | undefined, mac?: string, cut?: AgentCut): Promise<Restored> {
  const t0 = performance.now();
  let dir: string | undefined;
  let vm: Machine | undefined;
  try {
    dir = await socketDir();
    const sock = join(dir, 'v.sock');
    const code = sharedCode.get(templateOf(opts));
    const keepVsock = cut ? [{ guestPort: cut.link.guestPort, hostPort: cut.link.hostPort }] : undefined;
    vm = await Machine.restore(snap, { vsockPath: sock, netPolicy, ...(code ? { code } : {}), ...(mac ? { macs: [mac] } : {}), ...(disk ? { disks: [disk.path] } : {}), ...(keepVsock ? { keepVsock } : {}) });
    const t1 = performance.now();
    if (warmTarget > 0) Machine.prewarm(warmTarget); // refill for the next one
    // A new MAC is the agent's to set at HELLO (the NIC shows it already): no command for it.
    const macBytes = mac ? parseMac(mac) : null;
    let conn: AgentConnection;
    if (cut) {
      // The parent's stream, continued: the guest has nothing to do before the session is usable.
      const a = await adoptAgent(sock, { guestPort: cut.link.guestPort, hostPort: cut.link.hostPort, partial: cut.partial, firstId, timeoutMs: opts.startTimeoutMs ?? 120_000, ...(macBytes ? { mac: macBytes } : {}) });
      conn = { session: a.session, socket: a.socket, agent: cut.agent, hostPort: a.hostPort, ready: a.ready };
    } else {
      const stopped = new AbortController();
      vm.once('state', (s) => s === 'stopped' && stopped.abort());
      conn = await connectAgent(sock, { timeoutMs: opts.startTimeoutMs ?? 120_000, firstId, signal: stopped.signal, ...(macBytes ? { mac: macBytes } : {}) });
    }
    return { vm, conn, dir, disk, timings: { restore: t1 - t0, connect: performance.now() - t1 } };
  } catch (err) {
    await vm?.kill().catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
    await disk?.dispose();
    throw err;
  }
}

/**
 * A fork's child takes the new MAC its NIC already shows: its agent does at HELLO
 * (AgentConnectOptions.mac); this command does it through an agent older than that field.
 * Nothing else changes: the child is alone on a network of its own, new at the restore, whose
 * DHCP server has no lease yet, so the parent's address (10.0.2.15, the first lease) is the one
 * the child would be given, and its DHCP client (tiny's udhcpc, renewing every 12 h) is
 * answered with it. Session 3's fork also restarted udhcpc and waited for a new lease: 0.9-1.8 s
 * of a 1.3-2.3 s fork for the same address (docs/benchmarks.md "Sandboxes", session 11).
 */
function newMacScript(mac: string): string {
  return `ip link set dev eth0 address ${mac} 2>/dev/null || { ip link set dev eth0 down && ip link set dev eth0 address ${mac} && ip link set dev eth0 up; }`;
}

export class Sandbox {
  readonly sandboxId: string;
  /** ms of each step of this sandbox's start (template, restore, connect). */
  readonly timings: Record<string, number> = {};
  private session: AgentSession;
  /** What the agent's HELLO did with a fork child's new MAC (AgentConnection.macStatus). */
  private macStatus: number | undefined;
  /** The agent's stream (its vsock host port) and name: a fork's children continue it (AgentCut). */
  private readonly agentPort: number;
  private readonly agentName: string;
  /** The agent reads a MAC in HELLO (it answered one with a result): a fork's child can continue its stream. */
  private readonly agentSetsMac: boolean;
  /** It continues its fork parent's stream: its HELLO is answered after it is handed out (constructor). */
  private readonly adopted: boolean;
  private lifetime: NodeJS.Timeout | undefined;
  private readonly handles = new Map<number, CommandHandle>();
  private killed = false;
  private paused = false;
  /** modulesCompiled when this sandbox last offered its code (shareCode). */
  private codeSharedAt = 0;
  private sharing: Promise<void> | undefined;
  /** getHost's forwards, by guest port. */
  private readonly hosts = new Map<number, Promise<string>>();
  /** Called once when this sandbox's first command ends (a reserve's refill waits for it). */
  private afterFirstCommand: (() => void) | undefined;

  private constructor(
    readonly machine: Machine,
    conn: AgentConnection,
    private readonly sockDir: string,
    /** Its own root disk (images with one): what fork copies, deleted with it. */
    private readonly disk: OwnDisk | undefined,
    private readonly opts: SandboxOptions,
  ) {
    this.sandboxId = randomBytes(8).toString('hex');
    this.session = conn.session;
    this.macStatus = conn.macStatus;
    this.agentPort = conn.hostPort;
    this.agentName = conn.agent;
    this.adopted = conn.ready !== undefined;
    this.agentSetsMac = conn.macStatus !== undefined || this.adopted;
    // An adopted stream's HELLO is answered after the child is handed out: a guest that did not
    // take its new MAC ends the child, and its first request says why.
    conn.ready?.then((h) => {
      this.macStatus = h.macStatus;
      const mac = machine.config.nets[0]?.mac;
      if (mac === undefined || h.macStatus === undefined || h.macStatus === HELLO_NO_MAC || h.macStatus === 0) return;
      this.session.end(new VisorError('NetworkError', `fork: the child's guest did not take its new MAC address ${mac} (the agent's SIOCSIFHWADDR on eth0 failed with errno ${h.macStatus}); the child was killed`));
      void this.kill();
    }, () => {});
    machine.on('state', (s, reason) => {
      if (s === 'stopped') {
        this.session.end(new VisorError('GuestGone', `sandbox ${this.sandboxId}: its machine stopped (${reason ?? 'unknown reason'})`));
        this.cleanup();
      }
    });
    machine.on('error', () => {}); // reported through the state change and the session
    live.set(this.sandboxId, this);
    this.armTimeout(opts.timeoutMs ?? 300_000);
  }

  /** Starts a sandbox from the image's template (built on first use: one boot), or takes one prewarmed. */
  static async create(opts: SandboxOptions = {}): Promise<Sandbox> {
    const policy = sandboxNetPolicy(opts.network); // a bad option fails before anything starts
    const image = opts.image ?? 'tiny';
    const memoryMiB = opts.memoryMiB ?? 256;
    const t0 = performance.now();
    const { got, refill } = takeReserved(image, memoryMiB);
    if (got) {
      try {
        await got.vm.setNetPolicy(policy);
        await got.vm.resume();
        const sb = new Sandbox(got.vm, got.conn, got.dir, got.disk, opts);
        sb.afterFirstCommand = refill;
        Object.assign(sb.timings, got.timings, { reserved: 1, take: performance.now() - t0 });
        return sb;
      } catch {
        await discard(got); // it died in reserve: start one the usual way
        refill();
      }
    }
    const tpl = await ensureTemplate({ image, memoryMiB });
    const t1 = performance.now();
    const sb = await Sandbox.fromSnapshot(await templateImage(tpl.path), opts, 1, await templateDisk(tpl.disk));
    sb.timings.template = t1 - t0;
    if (tpl.builtMs) sb.timings.templateBuilt = tpl.builtMs;
    return sb;
  }

  /**
   * Keeps `count` sandboxes of a template (`image`, default 'tiny', and `memoryMiB`, default
   * 256) restored ahead of need: its agent connected, the guest paused and reaching nothing.
   * A create for that template takes one (its network policy applied as it resumes) and the
   * reserve refills once that sandbox's first command has ended (or 5 s later). Also keeps
   * `count` machine workers started, their modules loaded and the hart's interpreter warmed
   * (Machine.prewarm), which forks use. Each reserved
   * sandbox costs what an idle sandbox does (~90 MiB for tiny) and a restore's CPU once.
   * Resolves when the reserve is full; 0 empties it. Reserved sandboxes do not keep the
   * process alive.
   */
  static prewarm(count = 1, opts: { image?: string; memoryMiB?: number } = {}): Promise<void> {
    if (!Number.isInteger(count) || count < 0 || count > 64) return Promise.reject(new VisorError('InvalidArgument', 'prewarm: count must be an integer from 0 to 64'));
    warmTarget = count;
    if (count > 0) Machine.prewarm(count);
    const spec = { image: opts.image ?? 'tiny', memoryMiB: opts.memoryMiB ?? 256 };
    const key = reserveKey(spec.image, spec.memoryMiB);
    let r = reserves.get(key);
    if (!r) reserves.set(key, (r = { target: 0, spec, ready: [], filling: 0, refill: undefined, waiters: [] }));
    r.target = count;
    for (const extra of r.ready.splice(count)) void discard(extra);
    const full = new Promise<void>((resolve, reject) => r.waiters.push({ resolve, reject }));
    full.catch(() => {}); // a caller that does not wait is not told (the next create restores as usual)
    fillReserve(r);
    return full;
  }

  /** A live sandbox of this process, resumed if paused (E2B's connect). */
  static async connect(sandboxId: string): Promise<Sandbox> {
    const sb = live.get(sandboxId);
    if (!sb) throw new VisorError('NotFound', `no sandbox ${sandboxId} in this process (sandboxes live as long as the process that made them)`);
    if (sb.paused) await sb.resume();
    return sb;
  }

  private static async fromSnapshot(snap: MemorySnapshot, opts: SandboxOptions, firstId: number, disk: OwnDisk | undefined, mac?: string, cut?: AgentCut): Promise<Sandbox> {
    const got = await restoreTemplate(snap, opts, sandboxNetPolicy(opts.network), firstId, disk, mac, cut);
    const sb = new Sandbox(got.vm, got.conn, got.dir, got.disk, opts);
    Object.assign(sb.timings, got.timings);
    return sb;
  }

  /** Offers this sandbox's compiled code to later creates and forks, when it has grown (sharedCode). */
  private shareCode(force = false): Promise<void> {
    if (this.sharing || this.killed || this.machine.state === 'stopped') return this.sharing ?? Promise.resolve();
    const compiled = this.machine.stats().jit.modulesCompiled;
    // Forced (a fork): unless nothing was compiled since the last offer (7-10 ms saved per fork).
    if (force ? compiled === this.codeSharedAt && compiled > 0 : compiled < this.codeSharedAt + SHARE_CODE_EVERY) return Promise.resolve();
    this.codeSharedAt = compiled;
    this.sharing = offerCode(this.machine, templateOf(this.opts)).finally(() => (this.sharing = undefined));
    return this.sharing;
  }

  private armTimeout(ms: number): void {
    clearTimeout(this.lifetime);
    if (ms <= 0) return;
    this.lifetime = setTimeout(() => {
      if (this.opts.onTimeout === 'pause') void this.pause().catch(() => {});
      else void this.kill();
    }, ms);
    this.lifetime.unref();
  }

  private cleanup(): void {
    clearTimeout(this.lifetime);
    live.delete(this.sandboxId);
    void rm(this.sockDir, { recursive: true, force: true });
    // The worker may hold it open a moment longer: unlinking an open file is fine.
    void this.disk?.dispose().catch(() => {});
  }

  private alive(): void {
    if (this.killed || this.machine.state === 'stopped') throw new VisorError('GuestGone', `sandbox ${this.sandboxId} was killed`);
    if (this.paused) throw new VisorError('NotAllowed', `sandbox ${this.sandboxId} is paused: resume() it first`);
  }

  /** Races a request against the request timeout. */
  private async bounded<T>(what: string, p: Promise<T>): Promise<T> {
    const ms = this.opts.requestTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([p, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new TimeoutError(`${what} took longer than ${ms} ms`)), ms)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  private env(extra?: Record<string, string>): string[] {
    return Object.entries({ ...this.opts.envs, ...extra }).map(([k, v]) => `${k}=${v}`);
  }

  private async start(argv: string[], o: RunOptions & { pty?: { cols: number; rows: number }; onData?: (d: Uint8Array) => void }): Promise<CommandHandle> {
    this.alive();
    const max = o.maxOutputBytes ?? 64 << 20;
    let handle: CommandHandle | undefined;
    const early: ['stdout' | 'stderr', string][] = [];
    const dec = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    const out = (which: 'stdout' | 'stderr', d: Uint8Array) => {
      if (o.onData) return o.onData(d);
      const s = dec[which].decode(d, { stream: true });
      if (!s) return;
      (which === 'stdout' ? o.onStdout : o.onStderr)?.(s);
      if (handle) handle.append(which, s, max);
      else early.push([which, s]);
    };
    const exec = this.session.exec(
      { argv, env: this.env(o.envs), cwd: o.cwd ?? '', user: o.user ?? 'root', stdin: !!(o.background || o.stdin || o.pty), ...(o.pty ? { pty: o.pty } : {}) },
      { onStdout: (d) => out('stdout', d), onStderr: (d) => out('stderr', d) },
    );
    const pid = await this.bounded('starting a command', exec.started);
    const timeoutMs = o.timeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    const timeoutKill =
      timeoutMs > 0
        ? new Promise<never>((_, rej) => {
            timer = setTimeout(() => {
              void exec.signal(9).catch(() => {});
              rej(new TimeoutError(`command '${argv.join(' ').slice(0, 200)}' ran past its ${timeoutMs} ms timeout and was killed`));
            }, timeoutMs);
          })
        : undefined;
    timeoutKill?.catch(() => {});
    const exited = exec.exited.finally(() => {
      clearTimeout(timer);
      this.handles.delete(pid);
      void this.shareCode();
      const first = this.afterFirstCommand;
      this.afterFirstCommand = undefined;
      first?.();
    });
    handle = new CommandHandle(exec, pid, exited, timeoutKill);
    for (const [w, s] of early) handle.append(w, s, max);
    this.handles.set(pid, handle);
    return handle;
  }

  readonly commands = {
    run: ((cmd: string, o: RunOptions = {}): Promise<CommandResult | CommandHandle> =>
      this.start(['/bin/sh', '-c', cmd], o).then((h): Promise<CommandResult | CommandHandle> | CommandHandle => (o.background ? h : h.wait()))) as {
      (cmd: string, o: RunOptions & { background: true }): Promise<CommandHandle>;
      (cmd: string, o?: RunOptions & { background?: false }): Promise<CommandResult>;
    },
    /** Commands running in the guest that the agent started (any session's), with pid and command line. */
    list: async (): Promise<{ pid: number; cmd: string }[]> => {
      this.alive();
      return (await this.bounded('listing commands', this.session.procs())).map(({ pid, cmd }) => ({ pid, cmd }));
    },
    /** SIGKILL to a command's process group; false when no such command runs. */
    kill: async (pid: number): Promise<boolean> => {
      this.alive();
      const h = this.handles.get(pid);
      if (h) return h.kill();
      const procs = await this.session.procs();
      if (!procs.some((p) => p.pid === pid)) return false;
      // Not ours (an earlier session's, or a fork parent's): its process group, by the guest's kill.
      await this.start(['/bin/sh', '-c', `kill -9 -${pid} 2>/dev/null || kill -9 ${pid}`], {}).then((x) => x.wait().catch(() => undefined));
      return true;
    },
    sendStdin: async (pid: number, data: string | Uint8Array): Promise<void> => {
      const h = this.handles.get(pid);
      if (!h) throw new VisorError('NotFound', `no command with pid ${pid} started by this sandbox object is running`);
      await h.sendStdin(data);
    },
  };

  readonly pty = {
    /** A login shell on a terminal; onData gets its raw output. */
    create: (o: { cols?: number; rows?: number; onData: (d: Uint8Array) => void; cwd?: string; envs?: Record<string, string>; user?: string; timeoutMs?: number }): Promise<CommandHandle> =>
      this.start(['/bin/sh', '-l'], { ...o, timeoutMs: o.timeoutMs ?? 0, background: true, pty: { cols: o.cols ?? 80, rows: o.rows ?? 24 }, onData: o.onData }),
    sendInput: (pid: number, data: string | Uint8Array) => this.commands.sendStdin(pid, data),
    resize: async (pid: number, size: { cols: number; rows: number }) => {
      const h = this.handles.get(pid);
      if (!h) throw new VisorError('NotFound', `no terminal with pid ${pid}`);
      await h.resize(size.cols, size.rows);
    },
    kill: (pid: number) => this.commands.kill(pid),
  };

  readonly files = {
    /** Writes a file (parents created); data streams in 64 KiB chunks with flow control. */
    write: async (path: string, data: string | Uint8Array | AsyncIterable<Uint8Array | string> | ReadableStream<Uint8Array>): Promise<{ path: string }> => {
      this.alive();
      await this.session.writeFile(path, chunks(data));
      return { path };
    },
    read: (async (path: string, o: { format?: 'text' | 'bytes'; maxBytes?: number } = {}): Promise<string | Uint8Array> => {
      this.alive();
      const parts: Uint8Array[] = [];
      const total = await this.session.readFile(path, (d) => parts.push(d.slice()), o.maxBytes ?? 1 << 30);
      const all = new Uint8Array(total);
      let off = 0;
      for (const p of parts) {
        all.set(p, off);
        off += p.length;
      }
      return o.format === 'bytes' ? all : new TextDecoder().decode(all);
    }) as {
      (path: string, o: { format: 'bytes'; maxBytes?: number }): Promise<Uint8Array>;
      (path: string, o?: { format?: 'text'; maxBytes?: number }): Promise<string>;
    },
    list: async (path: string): Promise<EntryInfoWithPath[]> => {
      this.alive();
      const base = path.endsWith('/') ? path : path + '/';
      return (await this.bounded('listing a directory', this.session.list(path))).map((e) => ({ ...e, path: base + e.name }));
    },
    exists: async (path: string): Promise<boolean> => {
      this.alive();
      return (await this.bounded('stat', this.session.stat(path))) !== undefined;
    },
    getInfo: async (path: string): Promise<EntryInfoWithPath> => {
      this.alive();
      const e = await this.bounded('stat', this.session.stat(path));
      if (!e) throw new VisorError('NotFound', `${path}: no such file or directory in the sandbox`);
      return { ...e, path };
    },
    remove: async (path: string): Promise<void> => {
      this.alive();
      await this.bounded('remove', this.session.remove(path));
    },
    /** mkdir -p; false when the directory existed already. */
    makeDir: async (path: string): Promise<boolean> => {
      this.alive();
      const existed = await this.bounded('stat', this.session.stat(path));
      await this.bounded('mkdir', this.session.mkdir(path));
      return existed === undefined;
    },
    rename: async (from: string, to: string): Promise<EntryInfoWithPath> => {
      this.alive();
      await this.bounded('rename', this.session.rename(from, to));
      return this.files.getInfo(to);
    },
    watchDir: async (path: string, onEvent: (e: FilesystemEvent) => void): Promise<{ stop(): Promise<void> }> => {
      this.alive();
      return this.bounded('watch', this.session.watch(path, (mask, name) => onEvent({ name, type: watchType(mask) })));
    },
  };

  /**
   * `127.0.0.1:PORT`: a host address forwarding TCP to the guest's `port` (fetch(`http://${host}/`)).
   * Unlike E2B's, it is async: binding a loopback port is. One forward per guest port, kept
   * until the sandbox ends; a fork makes its own.
   */
  getHost(port: number): Promise<string> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) return Promise.reject(new VisorError('InvalidArgument', `getHost: port must be an integer from 1 to 65535, got ${port}`));
    try {
      this.alive();
    } catch (err) {
      return Promise.reject(err);
    }
    let host = this.hosts.get(port);
    if (!host) {
      host = this.forward(port);
      this.hosts.set(port, host);
      host.catch(() => this.hosts.delete(port));
    }
    return host;
  }

  private async forward(guestPort: number): Promise<string> {
    // The machine's worker binds the port; a free one is found here first. Should another
    // process take it in between, the next one is tried.
    for (let attempt = 0; ; attempt++) {
      const hostPort = await freeLoopbackPort();
      try {
        await this.machine.addForward({ guestPort, hostPort });
        return `127.0.0.1:${hostPort}`;
      } catch (err) {
        if (!(err instanceof VisorError && err.code === 'NetworkError') || attempt >= 4) throw err;
      }
    }
  }

  /** Stops the guest where it is; files and processes stay (resume(), or Sandbox.connect(id)). */
  async pause(): Promise<void> {
    if (this.killed) throw new VisorError('GuestGone', `sandbox ${this.sandboxId} was killed`);
    if (this.paused) return;
    await this.machine.pause();
    this.paused = true;
  }

  async resume(): Promise<void> {
    if (this.killed) throw new VisorError('GuestGone', `sandbox ${this.sandboxId} was killed`);
    if (!this.paused) return;
    await this.machine.resume();
    this.paused = false;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Resets the lifetime: the sandbox now ends `ms` from now. */
  async setTimeout(ms: number): Promise<void> {
    this.armTimeout(ms);
  }

  async isRunning(): Promise<boolean> {
    return !this.killed && this.machine.state === 'running';
  }

  /** Ends the sandbox at once (its machine is killed: nothing of it is kept). */
  async kill(): Promise<void> {
    if (this.killed) return;
    this.killed = true;
    this.session.end(new VisorError('GuestGone', `sandbox ${this.sandboxId} was killed`));
    await this.machine.kill().catch(() => {});
    this.cleanup();
  }

  /**
   * Children that continue from this instant: the machine is paused for a snapshot of its
   * whole state, then goes on; each child is restored from it with its own vsock, and gets
   * fresh entropy from the host (HELLO) so children do not share their random state.
   */
  async fork(o: ForkOptions = {}): Promise<Sandbox[]> {
    this.alive();
    const count = o.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 64) throw new VisorError('InvalidArgument', 'fork: count must be an integer from 1 to 64');
    if (o.newAddress !== undefined && typeof o.newAddress !== 'boolean') throw new VisorError('InvalidArgument', 'fork: newAddress must be a boolean');
    const t0 = performance.now();
    let t1 = t0;
    let kids: Sandbox[] = [];
    let disks: (OwnDisk | undefined)[] = [];
    await this.shareCode(true); // the children run this code next
    const tCode = performance.now();
    let tCopies = tCode;
    try {
      // The snapshot stays in memory: the children page its RAM in as their guests reach it
      // (host/snapshot/memory.ts), so none copies the parent's RAM up front, and together they
      // hold one copy of it.
      let snap: MemorySnapshot & { link?: VsockLink };
      let cut: AgentCut | undefined;
      // The children continue this session's stream to the agent where the snapshot cuts it
      // (AgentCut): nothing is written to it meanwhile, the snapshot waits until the device has
      // every byte written before, and the bytes the device gave this session by then are
      // counted, so each child's session starts with the partial frame this one had there.
      const sent = this.agentSetsMac ? this.session.cork() : undefined;
      try {
        await this.machine.pause();
        try {
          snap = await this.machine.snapshotInMemory(sent !== undefined ? { vsockBarrier: { guestPort: AGENT_VSOCK_PORT, hostPort: this.agentPort, hostBytes: sent } } : {});
          if (snap.link) cut = await this.cutAt(snap.link);
          tCopies = performance.now();
          // Each child's root disk: a copy of this one as the snapshot saw it (the machine is
          // paused, its writes flushed), made before this sandbox writes to it again.
          disks = await copiesOf(this.disk, count);
        } finally {
          await this.machine.resume();
        }
      } finally {
        this.session.uncork();
      }
      t1 = performance.now();
      // The children's agents still run this session's commands under its ids: start after them.
      const firstId = this.session.nextRequestId + 1_000_000;
      // Each child a MAC of its own (and so a lease of its own): forks never collide.
      const newMac = () => ((o.newAddress ?? true) ? formatMac(randomMac((b) => randomFillSync(b))) : undefined);
      const made = await Promise.allSettled(disks.map((disk) => Sandbox.fromSnapshot(snap, this.opts, firstId, disk, newMac(), cut)));
      disks = []; // each child's now (or disposed with its failed restore)
      kids = made.flatMap((m) => (m.status === 'fulfilled' ? [m.value] : []));
      const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (err) {
      await Promise.all(kids.map((k) => k.kill()));
      await Promise.all(disks.map((d) => d?.dispose()));
      throw err;
    }
    const t2 = performance.now();
    const renew = o.newAddress ?? true;
    try {
      if (renew) await Promise.all(kids.map((k) => k.takeAddress()));
    } catch (err) {
      await Promise.all(kids.map((k) => k.kill()));
      throw err;
    }
    const t3 = performance.now();
    for (const k of kids) {
      k.timings.forkCode = tCode - t0; // offering the parent's compiled code
      k.timings.forkSnapshot = t1 - t0; // that, the pause, the snapshot, the disk copies, the resume
      if (this.disk) k.timings.forkDisks = t1 - tCopies;
      if (renew) k.timings.renew = t3 - t2;
      k.timings.fork = t3 - t0;
    }
    return kids;
  }

  /**
   * This session's stream at the snapshot's cut (the machine is paused, so the guest sends
   * nothing more): waits until every byte the device gave it by then has been fed, then takes
   * the partial frame there. Undefined, and the children connect anew, if that does not come.
   */
  private async cutAt(link: VsockLink): Promise<AgentCut | undefined> {
    const deadline = performance.now() + 1000;
    while (this.session.bytesFed < link.guestBytes && !this.session.closed && performance.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    if (this.session.bytesFed !== link.guestBytes) return undefined;
    return { link, partial: this.session.partialFrame(), agent: this.agentName };
  }

  /**
   * A fork's child: the guest takes its NIC's new MAC. The agent set it at HELLO (macStatus 0);
   * an agent older than that field leaves it to a command (newMacScript).
   */
  private async takeAddress(): Promise<void> {
    const mac = this.machine.config.nets[0]?.mac;
    if (mac === undefined || this.macStatus === 0 || this.adopted) return; // an adopted stream's HELLO: the constructor checks it
    if (this.macStatus !== undefined) {
      throw new VisorError('NetworkError', `fork: the child's guest did not take its new MAC address ${mac} (the agent's SIOCSIFHWADDR on eth0 failed with errno ${this.macStatus})`);
    }
    const r = await this.commands.run(newMacScript(mac), { timeoutMs: 60_000 }).catch((err: unknown) => err);
    if (r instanceof CommandExitError) {
      throw new VisorError('NetworkError', `fork: the child's guest did not take its new MAC address ${mac} (exit ${r.exitCode}: ${r.result.stderr.trim() || 'ip link failed'})`, { cause: r });
    }
    if (r instanceof Error) throw r;
  }
}
