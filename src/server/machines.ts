/**
 * The daemon's machines: rows in the store, each with a live SDK Machine (one worker thread)
 * while it runs. Daemon states: created (recorded, never started: no worker), running,
 * paused, stopped (no worker; `start` boots it again from its spec).
 *
 * Restarts: on shutdown (SIGTERM) every running or paused machine is snapshotted and comes
 * back in the same state on the next start; after a crash (kill -9) the store still says
 * running, so recover() marks those stopped, says why, and checks their qcow2 disks.
 *
 * Admission control: starting a machine counts it against the daemon's and its project's
 * totals (machines, memory, CPU percent); a start past a total is refused with the limit
 * named, never overcommitted.
 */
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { VisorError } from '../base/errors.js';
import { NodeFileHandle } from '../host/file-handle.js';
import { Machine, type MachineStats } from '../sdk/machine.js';
import type { ImageResolver, MachineConfig } from '../sdk/config.js';
import { Qcow2Device } from '../storage/qcow2/device.js';
import { createQcow2 } from '../storage/qcow2/create.js';
import { checkQcow2 } from '../storage/qcow2/check.js';
import type { EventBus } from './events.js';
import type { DaemonNetworks } from './networks.js';
import type { ExecRequest, ExecResult, GuestEntry, GuestOps } from './guest-ops.js';
import type { DiskLimits, MachineCreate, MachineView, NetLimits, NetworkSpec, ProjectLimits } from './schemas.js';
import { effectiveLimits } from './shares.js';
import type { Store } from './store.js';

export type DaemonState = 'created' | 'running' | 'paused' | 'stopped';

export interface Images {
  /** The image a machine gets when its spec names none. */
  defaultImage: string;
  names(): string[];
  resolve: ImageResolver;
}

/** Totals over the machines that hold resources (running or paused). */
export interface Totals {
  machines: number;
  memoryMiB: number;
  cpuPercent: number;
}

export type Limits = Partial<{ maxMachines: number; maxMemoryMiB: number; maxCpuPercent: number }>;

interface Spec extends Omit<MachineCreate, 'start'> {
  image: string;
  memoryMiB: number;
  cpuLimitPercent: number;
  cpuShares: number;
  balloonMiB?: number;
  diskLimits?: DiskLimits;
  /** Volume names this machine's disks are, in order (its own from diskMiB first). */
  disks: string[];
  networks: string[];
}

interface Row {
  id: string;
  project: string;
  name: string;
  spec: string;
  state: DaemonState;
  reason: string | null;
  resume_snapshot: string | null;
  created_at: string;
}

const CONSOLE_SCROLLBACK = 64 * 1024;
const DEFAULT_MEMORY_MIB = 128;

/** The last bytes of a machine's console, replayed to a client that (re)connects. */
class Scrollback {
  private chunks: Buffer[] = [];
  private bytes = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.bytes += b.length;
    while (this.bytes > CONSOLE_SCROLLBACK && this.chunks.length > 1) this.bytes -= this.chunks.shift()!.length;
  }
  get(): Buffer {
    const all = Buffer.concat(this.chunks);
    return all.length > CONSOLE_SCROLLBACK ? all.subarray(all.length - CONSOLE_SCROLLBACK) : all;
  }
}

export interface ManagerOptions {
  store: Store;
  stateDir: string;
  images: Images;
  events: EventBus;
  guest: GuestOps;
  /** The user-mode networks the daemon hosts for its machines (networks.ts). */
  networks: DaemonNetworks;
  limits: Limits;
  /** Project limits when the project has none of its own. */
  defaultProjectLimits?: ProjectLimits;
  /** CPU the machines may use together, percent of one core (default: 100 per host core); shares divide it when their limits add up to more. */
  cpuCapacityPercent?: number;
}

const newId = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;

/**
 * A machine's CPU seconds: its thread's own CPU time where the host tells it (what a CPU limit
 * counts), else the wall time its loop was busy (runningMs: sleeps are not in it).
 */
export function machineCpuSeconds(s: Pick<MachineStats, 'threadCpuMs' | 'runningMs'>): number {
  return (s.threadCpuMs ?? s.runningMs) / 1000;
}

export class MachineManager {
  private readonly live = new Map<string, Machine>();
  /** The CPU limit each live machine runs under now (its own, or less by shares on a busy host). */
  private readonly applied = new Map<string, number>();
  private readonly scrollback = new Map<string, Scrollback>();
  /** When each live machine last started running (ISO time), for uptime. */
  private readonly started = new Map<string, string>();
  private readonly cpuSamples = new Map<string, { at: number; cpu: number; percent: number }>();
  /** Machines with an action under way: a second one waits (no two actions interleave). */
  private readonly busy = new Map<string, Promise<unknown>>();
  private readonly store: Store;
  private closing = false;

  constructor(private readonly o: ManagerOptions) {
    this.store = o.store;
  }

  private dir(id: string): string {
    return join(this.o.stateDir, 'machines', id);
  }

  private diskPath(project: string, name: string): string {
    return join(this.o.stateDir, 'disks', project, `${name}.qcow2`);
  }

  private row(project: string, id: string): Row {
    const r = this.store.get<Row>('SELECT * FROM machines WHERE id = ? AND project = ?', [id, project]);
    // Another project's machine is not found, not forbidden: its existence is not disclosed.
    if (!r) throw new VisorError('NotFound', `machine ${id}: no such machine`);
    return r;
  }

  /** A machine by id or by name within the project. */
  resolveId(project: string, idOrName: string): string {
    const r = this.store.get<{ id: string }>('SELECT id FROM machines WHERE project = ? AND (id = ? OR name = ?)', [project, idOrName, idOrName]);
    if (!r) throw new VisorError('NotFound', `machine ${idOrName}: no such machine`);
    return r.id;
  }

  private setState(r: Pick<Row, 'id' | 'project' | 'name'>, state: DaemonState, reason: string | null): void {
    this.store.run('UPDATE machines SET state = ?, reason = ?, updated_at = ? WHERE id = ?', [state, reason, new Date().toISOString(), r.id]);
    this.o.events.publish({ type: 'lifecycle', project: r.project, machine: r.id, name: r.name, state, reason });
  }

  view(r: Row): MachineView {
    const spec = JSON.parse(r.spec) as Spec;
    const vm = this.live.get(r.id);
    const s = vm?.stats();
    return {
      id: r.id,
      name: r.name,
      project: r.project,
      state: r.state,
      reason: r.reason,
      image: spec.image,
      memoryMiB: spec.memoryMiB,
      resources: {
        cpuLimitPercent: spec.cpuLimitPercent,
        cpuShares: spec.cpuShares,
        ...(this.applied.has(r.id) ? { cpuEffectivePercent: this.applied.get(r.id)! } : {}),
        ...(spec.balloonMiB !== undefined ? { balloonMiB: spec.balloonMiB } : {}),
        ...(spec.diskLimits ? { diskLimits: spec.diskLimits } : {}),
        ...(spec.netLimits ? { netLimits: spec.netLimits } : {}),
      },
      disks: spec.disks,
      networks: spec.networks,
      ...(s ? { stats: { instructions: s.instructions, mips: s.recentMips, cpuSeconds: machineCpuSeconds(s), cpuPercent: this.cpuPercent(r.id, machineCpuSeconds(s)), blkBytesRead: s.io.blkBytesRead, blkBytesWritten: s.io.blkBytesWritten, blkThrottled: s.io.blkThrottled, blkThrottledMs: Math.round(s.io.blkThrottledMs), netRxBytes: s.io.netRxBytes, netTxBytes: s.io.netTxBytes, netRateDelayed: s.net.rateDelayed } } : {}),
      ...(this.started.has(r.id) ? { startedAt: this.started.get(r.id)! } : {}),
      createdAt: r.created_at,
    };
  }

  /** Busy share of one host core since the previous look at this machine (at least 1 s apart), in percent. */
  private cpuPercent(id: string, cpuSeconds: number): number {
    const now = Date.now();
    const prev = this.cpuSamples.get(id);
    if (!prev || cpuSeconds < prev.cpu) {
      this.cpuSamples.set(id, { at: now, cpu: cpuSeconds, percent: 0 });
      return 0;
    }
    if (now - prev.at < 1000) return prev.percent;
    const percent = Math.max(0, Math.min(100, ((cpuSeconds - prev.cpu) * 100_000) / (now - prev.at)));
    this.cpuSamples.set(id, { at: now, cpu: cpuSeconds, percent });
    return percent;
  }

  list(project: string): MachineView[] {
    return this.store.all<Row>('SELECT * FROM machines WHERE project = ? ORDER BY created_at, name', [project]).map((r) => this.view(r));
  }

  /** Every row (all projects), for metrics and shutdown. */
  allRows(): Row[] {
    return this.store.all<Row>('SELECT * FROM machines');
  }

  get(project: string, id: string): MachineView {
    return this.view(this.row(project, id));
  }

  liveMachine(id: string): Machine | undefined {
    return this.live.get(id);
  }

  // ---- admission control -------------------------------------------------------------

  private totals(project?: string): Totals {
    const rows = project === undefined
      ? this.store.all<Row>(`SELECT * FROM machines WHERE state IN ('running', 'paused')`)
      : this.store.all<Row>(`SELECT * FROM machines WHERE state IN ('running', 'paused') AND project = ?`, [project]);
    const t: Totals = { machines: 0, memoryMiB: 0, cpuPercent: 0 };
    for (const r of rows) {
      const s = JSON.parse(r.spec) as Spec;
      t.machines++;
      t.memoryMiB += s.memoryMiB;
      t.cpuPercent += s.cpuLimitPercent;
    }
    return t;
  }

  projectLimits(project: string): ProjectLimits {
    const r = this.store.get<{ limits: string }>('SELECT limits FROM projects WHERE name = ?', [project]);
    return r ? (JSON.parse(r.limits) as ProjectLimits) : (this.o.defaultProjectLimits ?? {});
  }

  setProjectLimits(project: string, limits: ProjectLimits): void {
    this.store.run('INSERT INTO projects (name, limits, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET limits = excluded.limits', [
      project, JSON.stringify(limits), new Date().toISOString(),
    ]);
  }

  usage(project: string): { daemon: { used: Totals; limits: Limits }; project: { used: Totals; limits: ProjectLimits } } {
    return { daemon: { used: this.totals(), limits: this.o.limits }, project: { used: this.totals(project), limits: this.projectLimits(project) } };
  }

  /** Refuses (QuotaExceeded, naming the limit) when running `spec` would pass a total. */
  private admit(project: string, spec: Spec, excludeId?: string): void {
    const check = (who: string, used: Totals, l: Limits) => {
      if (l.maxMachines !== undefined && used.machines + 1 > l.maxMachines) {
        throw new VisorError('QuotaExceeded', `${who} runs at most ${l.maxMachines} machines (${used.machines} running): stop one first`);
      }
      if (l.maxMemoryMiB !== undefined && used.memoryMiB + spec.memoryMiB > l.maxMemoryMiB) {
        throw new VisorError('QuotaExceeded', `${who}'s memory limit is ${l.maxMemoryMiB} MiB: ${used.memoryMiB} MiB in use, this machine needs ${spec.memoryMiB} MiB`);
      }
      if (l.maxCpuPercent !== undefined && used.cpuPercent + spec.cpuLimitPercent > l.maxCpuPercent) {
        throw new VisorError('QuotaExceeded', `${who}'s CPU limit is ${l.maxCpuPercent}% of a core: ${used.cpuPercent}% given out, this machine takes ${spec.cpuLimitPercent}% (lower its cpuLimitPercent)`);
      }
    };
    const without = (t: Totals): Totals => {
      if (!excludeId) return t;
      const r = this.store.get<Row>(`SELECT * FROM machines WHERE id = ? AND state IN ('running', 'paused')`, [excludeId]);
      if (!r) return t;
      const s = JSON.parse(r.spec) as Spec;
      return { machines: t.machines - 1, memoryMiB: t.memoryMiB - s.memoryMiB, cpuPercent: t.cpuPercent - s.cpuLimitPercent };
    };
    check('the daemon', without(this.totals()), this.o.limits);
    check(`project ${project}`, without(this.totals(project)), this.projectLimits(project));
  }

  // ---- actions -------------------------------------------------------------------------

  /** Runs one action on a machine at a time. */
  private async exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.busy.get(id) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(fn);
    const tail = mine.catch(() => {});
    this.busy.set(id, tail);
    try {
      return await mine;
    } finally {
      if (this.busy.get(id) === tail) this.busy.delete(id);
    }
  }

  /** Records a machine (state created) after checking its image, disks and networks exist. */
  async create(project: string, body: MachineCreate): Promise<MachineView> {
    if (this.closing) throw new VisorError('NotAllowed', 'the daemon is shutting down');
    const image = body.image ?? this.o.images.defaultImage;
    if (!this.o.images.names().includes(image)) throw new VisorError('ImageNotFound', `image ${image}: no such image (GET /v1/images lists them)`);
    for (const d of body.disks ?? []) {
      const disk = this.store.get<{ machine_id: string | null }>('SELECT machine_id FROM disks WHERE project = ? AND name = ?', [project, d]);
      if (!disk) throw new VisorError('NotFound', `disk ${d}: no such disk`);
      if (disk.machine_id) throw new VisorError('NotAllowed', `disk ${d} is attached to another machine`);
    }
    for (const n of body.networks ?? []) {
      if (!this.store.get('SELECT id FROM networks WHERE project = ? AND name = ?', [project, n])) throw new VisorError('NotFound', `network ${n}: no such network`);
    }
    if (this.store.get('SELECT id FROM machines WHERE project = ? AND name = ?', [project, body.name])) {
      throw new VisorError('AlreadyExists', `machine ${body.name} already exists in project ${project}`);
    }
    const id = newId('m');
    const spec: Spec = {
      name: body.name,
      image,
      memoryMiB: body.memoryMiB ?? DEFAULT_MEMORY_MIB,
      cpuLimitPercent: body.cpuLimitPercent ?? 100,
      cpuShares: body.cpuShares ?? 100,
      disks: [],
      networks: body.networks ?? [],
      ...(body.balloon ? { balloon: true } : {}),
      ...(body.diskLimits ? { diskLimits: body.diskLimits } : {}),
      ...(body.netLimits ? { netLimits: body.netLimits } : {}),
      ...(body.console ? { console: body.console } : {}),
    };
    const now = new Date().toISOString();
    mkdirSync(this.dir(id), { recursive: true });
    if (body.diskMiB !== undefined) {
      const diskName = `${body.name}-root`;
      if (this.store.get('SELECT id FROM disks WHERE project = ? AND name = ?', [project, diskName])) throw new VisorError('AlreadyExists', `disk ${diskName} already exists`);
      await this.createDiskFile(project, diskName, body.diskMiB);
      this.store.run('INSERT INTO disks (id, project, name, machine_id, format, size_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [newId('d'), project, diskName, id, 'qcow2', body.diskMiB * 1048576, now]);
      spec.disks.push(diskName);
    }
    this.store.tx(() => {
      for (const d of body.disks ?? []) {
        this.store.run('UPDATE disks SET machine_id = ? WHERE project = ? AND name = ?', [id, project, d]);
        spec.disks.push(d);
      }
      this.store.run('INSERT INTO machines (id, project, name, spec, state, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [id, project, body.name, JSON.stringify(spec), 'created', null, now, now]);
    });
    this.o.events.publish({ type: 'lifecycle', project, machine: id, name: body.name, state: 'created', reason: null });
    return this.get(project, id);
  }

  private async createDiskFile(project: string, name: string, sizeMiB: number): Promise<void> {
    const path = this.diskPath(project, name);
    mkdirSync(join(this.o.stateDir, 'disks', project), { recursive: true });
    // A file left by a create the daemon did not finish (crash) is no one's: replace it.
    rmSync(path, { force: true });
    const f = await NodeFileHandle.open(path, { readOnly: false, create: 'exclusive' });
    try {
      await createQcow2(f, { size: sizeMiB * 1048576 });
    } finally {
      await f.close();
    }
  }

  createDisk(project: string, name: string, sizeMiB: number): Promise<{ name: string; sizeBytes: number }> {
    return (async () => {
      if (this.store.get('SELECT id FROM disks WHERE project = ? AND name = ?', [project, name])) throw new VisorError('AlreadyExists', `disk ${name} already exists`);
      await this.createDiskFile(project, name, sizeMiB);
      this.store.run('INSERT INTO disks (id, project, name, machine_id, format, size_bytes, created_at) VALUES (?, ?, ?, NULL, ?, ?, ?)', [newId('d'), project, name, 'qcow2', sizeMiB * 1048576, new Date().toISOString()]);
      return { name, sizeBytes: sizeMiB * 1048576 };
    })();
  }

  listDisks(project: string): { name: string; machine: string | null; format: string; sizeBytes: number; allocatedBytes: number }[] {
    return this.store.all<{ name: string; machine_id: string | null; format: string; size_bytes: number }>('SELECT * FROM disks WHERE project = ? ORDER BY name', [project]).map((d) => {
      let allocated = 0;
      try {
        allocated = statSync(this.diskPath(project, d.name)).blocks * 512;
      } catch {
        // missing file: shown as 0
      }
      return { name: d.name, machine: d.machine_id, format: d.format, sizeBytes: d.size_bytes, allocatedBytes: allocated };
    });
  }

  deleteDisk(project: string, name: string): void {
    const d = this.store.get<{ machine_id: string | null }>('SELECT machine_id FROM disks WHERE project = ? AND name = ?', [project, name]);
    if (!d) throw new VisorError('NotFound', `disk ${name}: no such disk`);
    if (d.machine_id) throw new VisorError('NotAllowed', `disk ${name} is attached to machine ${d.machine_id}: delete the machine first`);
    this.store.run('DELETE FROM disks WHERE project = ? AND name = ?', [project, name]);
    rmSync(this.diskPath(project, name), { force: true });
  }

  private machineConfig(r: Row): MachineConfig & { name: string } {
    const spec = JSON.parse(r.spec) as Spec;
    return {
      name: r.id,
      image: spec.image,
      memoryMiB: spec.memoryMiB,
      disks: spec.disks.map((d) => ({ path: this.diskPath(r.project, d), format: 'qcow2' as const })),
      // Each network is a user network the daemon hosts (netsUp): the worker's NIC joins it as a member.
      // The NIC rate limits apply to each NIC on its own (src/net/nic-shaper.ts, in the worker).
      nets: spec.networks.map((n) => ({ user: this.o.networks.switchName(r.project, n), ...(spec.netLimits ? { rateLimit: spec.netLimits } : {}) })),
      ...(spec.balloon ? { balloon: true } : {}),
      ...(spec.diskLimits ? { diskLimits: spec.diskLimits } : {}),
      ...(spec.console ? { console: spec.console } : {}),
      // The guest agent's channel (exec, files, pty): a vsock whose host end is a Unix socket.
      ...(this.o.guest.socketPath ? { vsock: { path: this.o.guest.socketPath(r.id) } } : {}),
    };
  }

  /** Hosts the machine's networks (their rules and its forwards) before its worker joins them. */
  private async netsUp(r: Pick<Row, 'id' | 'project' | 'name' | 'spec'>): Promise<void> {
    const nets = (JSON.parse(r.spec) as Spec).networks;
    const done: string[] = [];
    try {
      for (const [nic, n] of nets.entries()) {
        const row = this.store.get<{ spec: string }>('SELECT spec FROM networks WHERE project = ? AND name = ?', [r.project, n]);
        if (!row) throw new VisorError('NotFound', `network ${n}: no such network (machine ${r.name} names it)`);
        const s = JSON.parse(row.spec) as Partial<NetworkSpec>;
        await this.o.networks.up(r.project, n, { forwards: s.forwards ?? [], rules: s.rules ?? [], ...(s.hostAccess !== undefined ? { hostAccess: s.hostAccess } : {}) }, { id: r.id, name: r.name, nic });
        done.push(n);
      }
    } catch (err) {
      for (const n of done) await this.o.networks.down(r.project, n, r.id);
      throw err;
    }
  }

  private async netsDown(r: Pick<Row, 'id' | 'project' | 'spec'>): Promise<void> {
    for (const n of (JSON.parse(r.spec) as Spec).networks) await this.o.networks.down(r.project, n, r.id).catch(() => {});
  }

  /** Takes a new live Machine into the daemon: its state changes, its console, its limits. */
  private async adopt(r: Row, vm: Machine): Promise<void> {
    this.live.set(r.id, vm);
    this.o.guest.bindMachine?.(vm, r.id);
    this.started.set(r.id, new Date().toISOString());
    this.cpuSamples.delete(r.id);
    this.applied.delete(r.id); // a new worker: whatever the last one ran under is gone
    const sb = this.scrollback.get(r.id) ?? new Scrollback();
    this.scrollback.set(r.id, sb);
    vm.console.on('data', (b: Buffer) => sb.push(b));
    vm.on('error', () => {}); // reported through the state change and its reason
    vm.on('state', (s, reason) => {
      if (this.closing && s === 'stopped') return; // shutdown() records the outcome itself
      if (s === 'stopped') {
        this.live.delete(r.id);
        this.started.delete(r.id);
        void this.rebalance().catch(() => {});
        void this.netsDown(r);
      }
      try {
        this.setState(r, s, reason ?? null);
      } catch {
        // store closed
      }
    });
    await this.rebalance();
  }

  /**
   * Applies CPU limits to the live machines: each its own, or its part of the host by shares
   * when the limits add up to more than the capacity (shares.ts). Called whenever the set of
   * live machines or a limit changes.
   */
  async rebalance(): Promise<void> {
    const inputs = [...this.live.keys()].flatMap((id) => {
      const r = this.store.get<Row>('SELECT * FROM machines WHERE id = ?', [id]);
      if (!r) return [];
      const spec = JSON.parse(r.spec) as Spec;
      return [{ id, limitPercent: spec.cpuLimitPercent, shares: spec.cpuShares }];
    });
    const want = effectiveLimits(inputs, this.o.cpuCapacityPercent ?? cpus().length * 100);
    for (const id of this.applied.keys()) if (!this.live.has(id)) this.applied.delete(id);
    await Promise.all([...want].map(async ([id, pct]) => {
      const vm = this.live.get(id);
      if (!vm || this.applied.get(id) === pct || vm.state === 'stopped') return;
      if (!this.applied.has(id) && pct === 100) {
        this.applied.set(id, 100); // a new machine runs unlimited already
        return;
      }
      try {
        await vm.setCpuLimit(pct);
        this.applied.set(id, pct);
      } catch {
        // it stopped meanwhile
      }
    }));
  }

  async start(project: string, id: string): Promise<MachineView> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      if (r.state === 'running' || r.state === 'paused') throw new VisorError('NotAllowed', `machine ${r.name} is ${r.state}: cannot start it`);
      if (this.closing) throw new VisorError('NotAllowed', 'the daemon is shutting down');
      this.admit(project, JSON.parse(r.spec) as Spec);
      await this.netsUp(r);
      let vm: Machine;
      try {
        vm = await Machine.create(this.machineConfig(r), { resolveImage: this.o.images.resolve });
      } catch (err) {
        await this.netsDown(r);
        throw err;
      }
      try {
        await this.adopt(r, vm);
        await vm.start();
      } catch (err) {
        this.live.delete(r.id);
        await vm.kill().catch(() => {});
        await this.netsDown(r);
        throw err;
      }
      this.setState(r, 'running', null);
      return this.get(project, id);
    });
  }

  private mustLive(r: Row): Machine {
    const vm = this.live.get(r.id);
    if (!vm) throw new VisorError('NotAllowed', `machine ${r.name} is ${r.state}`);
    return vm;
  }

  async stop(project: string, id: string, opts: { force?: boolean; timeoutMs?: number }): Promise<MachineView> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      if (r.state === 'created') {
        this.setState(r, 'stopped', 'stopped before it was started');
        return this.get(project, id);
      }
      const vm = this.mustLive(r);
      const res = await vm.stop({ graceful: !opts.force, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
      this.live.delete(r.id);
      this.setState(r, 'stopped', res.graceful ? 'the guest shut down' : `stopped by force (${opts.force ? 'asked' : (res.forced ?? 'no agent')})`);
      return this.get(project, id);
    });
  }

  async pause(project: string, id: string): Promise<MachineView> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      await this.mustLive(r).pause();
      this.setState(r, 'paused', null);
      return this.get(project, id);
    });
  }

  async resume(project: string, id: string): Promise<MachineView> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      await this.mustLive(r).resume();
      this.setState(r, 'running', null);
      return this.get(project, id);
    });
  }

  private snapshotPath(r: Pick<Row, 'id'>, snapId: string): string {
    return join(this.dir(r.id), 'snapshots', `${snapId}.snap`);
  }

  async snapshot(project: string, id: string, name: string): Promise<{ name: string; bytes: number }> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      const vm = this.mustLive(r);
      if (this.store.get('SELECT id FROM snapshots WHERE project = ? AND name = ?', [project, name])) throw new VisorError('AlreadyExists', `snapshot ${name} already exists`);
      const snapId = newId('s');
      mkdirSync(join(this.dir(r.id), 'snapshots'), { recursive: true });
      const info = await vm.snapshot(this.snapshotPath(r, snapId));
      this.store.run('INSERT INTO snapshots (id, project, machine_id, name, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)', [snapId, project, r.id, name, info.bytes, new Date().toISOString()]);
      return { name, bytes: info.bytes };
    });
  }

  listSnapshots(project: string): { name: string; machine: string; bytes: number; createdAt: string }[] {
    return this.store.all<{ name: string; machine_id: string; bytes: number; created_at: string }>('SELECT * FROM snapshots WHERE project = ? ORDER BY created_at', [project]).map((s) => ({
      name: s.name, machine: s.machine_id, bytes: s.bytes, createdAt: s.created_at,
    }));
  }

  deleteSnapshot(project: string, name: string): void {
    const s = this.store.get<{ id: string; machine_id: string }>('SELECT id, machine_id FROM snapshots WHERE project = ? AND name = ?', [project, name]);
    if (!s) throw new VisorError('NotFound', `snapshot ${name}: no such snapshot`);
    this.store.run('DELETE FROM snapshots WHERE id = ?', [s.id]);
    rmSync(this.snapshotPath({ id: s.machine_id }, s.id), { force: true });
  }

  /** Replaces the machine's run with the snapshot's (the current one, if any, is ended). */
  async restore(project: string, id: string, snapshot: string): Promise<MachineView> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      const s = this.store.get<{ id: string }>('SELECT id FROM snapshots WHERE project = ? AND name = ? AND machine_id = ?', [project, snapshot, r.id]);
      if (!s) throw new VisorError('NotFound', `snapshot ${snapshot}: no such snapshot of machine ${r.name}`);
      const old = this.live.get(r.id);
      if (!old) this.admit(project, JSON.parse(r.spec) as Spec);
      if (old) {
        this.live.delete(r.id);
        old.removeAllListeners('state');
        await old.kill().catch(() => {});
      }
      await this.netsUp(r);
      let vm: Machine;
      try {
        vm = await Machine.restore(this.snapshotPath(r, s.id), { start: true });
      } catch (err) {
        await this.netsDown(r);
        throw err;
      }
      await this.adopt(r, vm);
      this.setState(r, 'running', `restored from snapshot ${snapshot}`);
      return this.get(project, id);
    });
  }

  /** A new machine continuing where this one is (memory and devices copied; no writable disks). */
  async fork(project: string, id: string, name: string): Promise<MachineView> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      const vm = this.mustLive(r);
      const spec = JSON.parse(r.spec) as Spec;
      if (spec.disks.length > 0) throw new VisorError('Unsupported', `machine ${r.name} has writable disks: forking would share them (fork a machine without disks)`);
      if (spec.networks.length > 0) throw new VisorError('Unsupported', `machine ${r.name} is on networks: its fork would have the same MAC and address there (fork a machine without networks)`);
      if (this.store.get('SELECT id FROM machines WHERE project = ? AND name = ?', [project, name])) throw new VisorError('AlreadyExists', `machine ${name} already exists in project ${project}`);
      const childSpec: Spec = { ...spec, name };
      this.admit(project, childSpec);
      const childId = newId('m');
      mkdirSync(this.dir(childId), { recursive: true });
      const tmp = join(this.dir(childId), 'fork.snap');
      await vm.snapshot(tmp);
      const now = new Date().toISOString();
      const child: Row = { id: childId, project, name, spec: JSON.stringify(childSpec), state: 'running', reason: `forked from ${r.name}`, resume_snapshot: null, created_at: now };
      // The child's agent channel is its own socket (the parent's is in use).
      const vsockPath = this.o.guest.socketPath?.(childId);
      await this.netsUp(child);
      const cvm = await Machine.restore(tmp, { start: r.state === 'running', ...(vsockPath ? { vsockPath } : {}) }).catch(async (err) => {
        await this.netsDown(child);
        throw err;
      });
      rmSync(tmp, { force: true });
      this.store.run('INSERT INTO machines (id, project, name, spec, state, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [childId, project, name, child.spec, cvm.state === 'paused' ? 'paused' : 'running', child.reason, now, now]);
      await this.adopt(child, cvm);
      this.o.events.publish({ type: 'lifecycle', project, machine: childId, name, state: cvm.state, reason: child.reason });
      return this.get(project, childId);
    });
  }

  async patch(project: string, id: string, p: { cpuLimitPercent?: number; cpuShares?: number; balloonMiB?: number; diskLimits?: DiskLimits | null; netLimits?: NetLimits | null }): Promise<MachineView> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      const spec = JSON.parse(r.spec) as Spec;
      const next: Spec = { ...spec, ...(p.cpuLimitPercent !== undefined ? { cpuLimitPercent: p.cpuLimitPercent } : {}), ...(p.cpuShares !== undefined ? { cpuShares: p.cpuShares } : {}) };
      if (p.balloonMiB !== undefined) {
        if (!spec.balloon) throw new VisorError('NotAllowed', `machine ${r.name} has no balloon (create it with balloon: true)`);
        next.balloonMiB = p.balloonMiB;
      }
      // Disk and NIC limits live in the machine's worker: a running machine gets new ones at its next start.
      if (p.diskLimits === null) delete next.diskLimits;
      else if (p.diskLimits !== undefined) next.diskLimits = p.diskLimits;
      if (p.netLimits === null) delete next.netLimits;
      else if (p.netLimits !== undefined) next.netLimits = p.netLimits;
      const vm = this.live.get(r.id);
      if (vm && next.cpuLimitPercent > spec.cpuLimitPercent) this.admit(project, next, r.id);
      if (vm && p.balloonMiB !== undefined) await vm.balloon(p.balloonMiB);
      this.store.run('UPDATE machines SET spec = ?, updated_at = ? WHERE id = ?', [JSON.stringify(next), new Date().toISOString(), r.id]);
      await this.rebalance();
      return this.get(project, id);
    });
  }

  async delete(project: string, id: string): Promise<void> {
    return this.exclusive(id, async () => {
      const r = this.row(project, id);
      if (r.state === 'running' || r.state === 'paused') throw new VisorError('NotAllowed', `machine ${r.name} is ${r.state}: stop it first`);
      const spec = JSON.parse(r.spec) as Spec;
      const own = `${r.name}-root`;
      this.store.tx(() => {
        this.store.run('DELETE FROM snapshots WHERE machine_id = ?', [r.id]);
        this.store.run('DELETE FROM disks WHERE machine_id = ? AND name = ?', [r.id, own]);
        this.store.run('UPDATE disks SET machine_id = NULL WHERE machine_id = ?', [r.id]);
        this.store.run('DELETE FROM machines WHERE id = ?', [r.id]);
      });
      if (spec.disks.includes(own)) rmSync(this.diskPath(project, own), { force: true });
      rmSync(this.dir(r.id), { recursive: true, force: true });
      this.scrollback.delete(r.id);
      this.o.events.publish({ type: 'lifecycle', project, machine: r.id, name: r.name, state: 'deleted', reason: null });
    });
  }

  // ---- console, exec, files ------------------------------------------------------------

  console(project: string, id: string): { scrollback: Buffer; machine: Machine | undefined } {
    const r = this.row(project, id);
    return { scrollback: this.scrollback.get(r.id)?.get() ?? Buffer.alloc(0), machine: this.live.get(r.id) };
  }

  private runningVm(project: string, id: string): Machine {
    const r = this.row(project, id);
    const vm = this.live.get(r.id);
    if (!vm || r.state !== 'running') throw new VisorError('NotAllowed', `machine ${r.name} is ${r.state}: exec and files need it running`);
    return vm;
  }

  /** Runs a command through the agent; the daemon gives up 5 s past its timeout (default 60 s) whatever the agent does. */
  async exec(project: string, id: string, req: ExecRequest): Promise<ExecResult> {
    const vm = this.runningVm(project, id);
    const limit = (req.timeoutMs ?? 60_000) + 5000;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.o.guest.exec(vm, req),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new VisorError('Timeout', `exec: no answer from the guest agent in ${limit} ms`)), limit))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  readFile(project: string, id: string, path: string): Promise<Uint8Array> {
    return this.o.guest.readFile(this.runningVm(project, id), path);
  }

  writeFile(project: string, id: string, path: string, data: Uint8Array): Promise<void> {
    return this.o.guest.writeFile(this.runningVm(project, id), path, data);
  }

  listDir(project: string, id: string, path: string): Promise<GuestEntry[]> {
    return this.o.guest.list(this.runningVm(project, id), path);
  }

  removeFile(project: string, id: string, path: string): Promise<void> {
    return this.o.guest.remove(this.runningVm(project, id), path);
  }

  // ---- daemon start and shutdown -------------------------------------------------------

  /**
   * At daemon start: machines snapshotted by a clean shutdown come back as they were; those
   * the store says were live when the daemon died come back stopped, saying why, with their
   * qcow2 disks checked (leaks repaired). Returns what happened, machine by machine.
   */
  async recover(): Promise<{ resumed: string[]; crashed: string[]; failed: string[]; orphans: string[] }> {
    const out = { resumed: [] as string[], crashed: [] as string[], failed: [] as string[], orphans: this.removeOrphans() };
    for (const r of this.allRows()) {
      if (r.resume_snapshot) {
        const { path, state } = JSON.parse(r.resume_snapshot) as { path: string; state: 'running' | 'paused' };
        try {
          await this.netsUp(r);
          const vm = await Machine.restore(path, { start: state === 'running' }).catch(async (err) => {
            await this.netsDown(r);
            throw err;
          });
          this.store.run('UPDATE machines SET resume_snapshot = NULL WHERE id = ?', [r.id]);
          await this.adopt(r, vm);
          this.setState(r, state, 'resumed after the daemon restarted');
          rmSync(path, { force: true });
          out.resumed.push(r.id);
        } catch (err) {
          this.store.run('UPDATE machines SET resume_snapshot = NULL WHERE id = ?', [r.id]);
          this.setState(r, 'stopped', `could not resume after the daemon restarted: ${(err as Error).message}`);
          out.failed.push(r.id);
        }
      } else if (r.state === 'running' || r.state === 'paused') {
        const problems = await this.checkDisks(r);
        this.setState(r, 'stopped', `the daemon ended without stopping it (crash or kill -9)${problems ? `; disks: ${problems}` : ''}`);
        out.crashed.push(r.id);
      }
    }
    return out;
  }

  /**
   * Files a killed daemon left behind without a row (a disk being created, a machine's folder
   * before its row was committed, a snapshot before its row): the row is the commit point, so
   * these belong to no one and are removed.
   */
  private removeOrphans(): string[] {
    const removed: string[] = [];
    const ls = (d: string) => {
      try {
        return readdirSync(d);
      } catch {
        return [];
      }
    };
    const disksRoot = join(this.o.stateDir, 'disks');
    for (const project of ls(disksRoot)) {
      const known = new Set(this.store.all<{ name: string }>('SELECT name FROM disks WHERE project = ?', [project]).map((d) => `${d.name}.qcow2`));
      for (const f of ls(join(disksRoot, project))) {
        if (!known.has(f)) {
          rmSync(join(disksRoot, project, f), { force: true });
          removed.push(`disks/${project}/${f}`);
        }
      }
    }
    const machinesRoot = join(this.o.stateDir, 'machines');
    const ids = new Set(this.store.all<{ id: string }>('SELECT id FROM machines').map((m) => m.id));
    const snaps = new Set(this.store.all<{ id: string }>('SELECT id FROM snapshots').map((s) => `${s.id}.snap`));
    for (const id of ls(machinesRoot)) {
      if (!ids.has(id)) {
        rmSync(join(machinesRoot, id), { recursive: true, force: true });
        removed.push(`machines/${id}`);
        continue;
      }
      for (const f of ls(join(machinesRoot, id, 'snapshots'))) {
        if (!snaps.has(f)) {
          rmSync(join(machinesRoot, id, 'snapshots', f), { force: true });
          removed.push(`machines/${id}/snapshots/${f}`);
        }
      }
      rmSync(join(machinesRoot, id, 'fork.snap'), { force: true });
    }
    return removed;
  }

  private async checkDisks(r: Row): Promise<string> {
    const notes: string[] = [];
    for (const d of (JSON.parse(r.spec) as Spec).disks) {
      const path = this.diskPath(r.project, d);
      try {
        const f = await NodeFileHandle.open(path, { readOnly: false });
        const dev = await Qcow2Device.open(f, { readOnly: false });
        try {
          const c = await checkQcow2(dev, { repair: true });
          if (c.corruptions > 0 || c.leaks > 0) notes.push(`${d}: ${c.leaks} leaked clusters repaired, ${c.corruptions} corruptions`);
        } finally {
          await dev.close();
        }
      } catch (err) {
        notes.push(`${d}: ${(err as Error).message}`);
      }
    }
    return notes.join('; ');
  }

  /**
   * Daemon shutdown: waits for actions under way, then snapshots each running or paused
   * machine so recover() brings it back as it was; a machine that cannot be snapshotted is
   * stopped and says why.
   */
  async shutdown(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.busy.values()]);
    await Promise.allSettled([...this.live.entries()].map(async ([id, vm]) => {
      const r = this.store.get<Row>('SELECT * FROM machines WHERE id = ?', [id]);
      if (!r) return;
      const state = vm.state === 'paused' ? 'paused' : 'running';
      const path = join(this.dir(id), 'resume.snap');
      try {
        if (vm.state === 'running') await vm.pause();
        await vm.snapshot(path);
        await vm.kill();
        this.store.run('UPDATE machines SET resume_snapshot = ?, state = ?, reason = ?, updated_at = ? WHERE id = ?', [
          JSON.stringify({ path, state }), 'stopped', 'the daemon shut down: it resumes when the daemon starts', new Date().toISOString(), id,
        ]);
      } catch (err) {
        await vm.kill().catch(() => {});
        this.store.run('UPDATE machines SET state = ?, reason = ?, updated_at = ? WHERE id = ?', ['stopped', `the daemon shut down and could not snapshot it: ${(err as Error).message}`, new Date().toISOString(), id]);
      }
    }));
    this.live.clear();
    await this.o.networks.close();
  }
}
