/**
 * The API as one table: each route's method, path, the role it needs, its zod schemas, whether
 * it changes state (audited) and its handler. The server registers exactly these, the OpenAPI
 * document is generated from them, and the authorization matrix test walks them.
 */
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import { VisorError } from '../base/errors.js';
import type { AuditLog } from './audit.js';
import type { Principal, Role, Tokens } from './auth.js';
import type { MachineManager } from './machines.js';
import type { DaemonNetworks } from './networks.js';
import type { OperationView, Operations } from './operations.js';
import * as S from './schemas.js';
import type { Store } from './store.js';

export interface RouteContext {
  principal: Principal;
  params: Record<string, string>;
  body: unknown;
  query: unknown;
}

export interface RouteResult {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Raw bytes (file downloads) instead of JSON. */
  raw?: Uint8Array;
}

export interface RouteDef {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Fastify's syntax: /v1/machines/:id */
  url: string;
  /** The least role that may call it ('public': no token). */
  role: Role | 'public';
  summary: string;
  body?: z.ZodType;
  query?: z.ZodType;
  /** The body is raw bytes (application/octet-stream), bounded by MAX_UPLOAD. */
  rawBody?: boolean;
  /** Admin routes act on the whole daemon, not on the token's project. */
  global?: boolean;
  handler(ctx: RouteContext): Promise<RouteResult> | RouteResult;
}

export interface RouteDeps {
  store: Store;
  machines: MachineManager;
  networks: DaemonNetworks;
  ops: Operations;
  tokens: Tokens;
  audit: AuditLog;
  images: { names(): string[]; defaultImage: string };
  version: string;
}

export const MAX_UPLOAD = 64 * 1024 * 1024;

function accepted(op: OperationView): RouteResult {
  return { status: 202, body: op, headers: { location: `/v1/operations/${op.id}` } };
}

export function buildRoutes(d: RouteDeps): RouteDef[] {
  const mid = (c: RouteContext) => d.machines.resolveId(c.principal.project, c.params.id!);
  const project = (c: RouteContext) => c.principal.project;
  const op = (c: RouteContext, kind: string, target: string, work: () => Promise<unknown>) => accepted(d.ops.start(project(c), kind, target, work));
  const file = (c: RouteContext) => (c.query as z.infer<typeof S.FilesQuery>).path;

  return [
    { method: 'GET', url: '/v1/health', role: 'public', summary: 'liveness; no token needed', handler: () => ({ body: { status: 'ok', version: d.version } }) },
    { method: 'GET', url: '/v1/whoami', role: 'viewer', summary: 'the calling token: its name, role and project (the web console shows the buttons the role may use)', handler: (c) => ({ body: { name: c.principal.name, role: c.principal.role, project: c.principal.project } }) },

    // ---- machines
    { method: 'GET', url: '/v1/machines', role: 'viewer', summary: 'the project\'s machines', handler: (c) => ({ body: { machines: d.machines.list(project(c)) } }) },
    {
      method: 'POST', url: '/v1/machines', role: 'operator', summary: 'create a machine (an operation; start: true also starts it)', body: S.MachineCreate,
      handler: async (c) => {
        const b = c.body as S.MachineCreate;
        const m = await d.machines.create(project(c), b);
        if (!b.start) return { status: 201, body: m, headers: { location: `/v1/machines/${m.id}` } };
        return op(c, 'start', m.id, () => d.machines.start(project(c), m.id));
      },
    },
    { method: 'GET', url: '/v1/machines/:id', role: 'viewer', summary: 'one machine, its resources and counters', handler: (c) => ({ body: d.machines.get(project(c), mid(c)) }) },
    { method: 'PATCH', url: '/v1/machines/:id', role: 'operator', summary: 'change CPU limit, shares, balloon target, disk and NIC limits (these two apply from the next start)', body: S.MachinePatch, handler: async (c) => ({ body: await d.machines.patch(project(c), mid(c), c.body as z.infer<typeof S.MachinePatch>) }) },
    { method: 'DELETE', url: '/v1/machines/:id', role: 'operator', summary: 'delete a stopped machine, its own disk and snapshots', handler: async (c) => { await d.machines.delete(project(c), mid(c)); return { status: 204 }; } },
    { method: 'POST', url: '/v1/machines/:id/start', role: 'operator', summary: 'boot (an operation)', body: S.EmptyBody, handler: (c) => { const id = mid(c); return op(c, 'start', id, () => d.machines.start(project(c), id)); } },
    { method: 'POST', url: '/v1/machines/:id/stop', role: 'operator', summary: 'shut down (graceful unless force; an operation)', body: S.StopBody, handler: (c) => { const id = mid(c); return op(c, 'stop', id, () => d.machines.stop(project(c), id, c.body as z.infer<typeof S.StopBody>)); } },
    { method: 'POST', url: '/v1/machines/:id/pause', role: 'operator', summary: 'pause (an operation)', body: S.EmptyBody, handler: (c) => { const id = mid(c); return op(c, 'pause', id, () => d.machines.pause(project(c), id)); } },
    { method: 'POST', url: '/v1/machines/:id/resume', role: 'operator', summary: 'resume (an operation)', body: S.EmptyBody, handler: (c) => { const id = mid(c); return op(c, 'resume', id, () => d.machines.resume(project(c), id)); } },
    { method: 'POST', url: '/v1/machines/:id/snapshot', role: 'operator', summary: 'snapshot the whole machine (an operation)', body: S.SnapshotBody, handler: (c) => { const id = mid(c); return op(c, 'snapshot', id, () => d.machines.snapshot(project(c), id, (c.body as { name: string }).name)); } },
    { method: 'POST', url: '/v1/machines/:id/restore', role: 'operator', summary: 'continue from one of its snapshots (an operation)', body: S.RestoreBody, handler: (c) => { const id = mid(c); return op(c, 'restore', id, () => d.machines.restore(project(c), id, (c.body as { snapshot: string }).snapshot)); } },
    { method: 'POST', url: '/v1/machines/:id/fork', role: 'operator', summary: 'a new machine continuing from this one (an operation)', body: S.ForkBody, handler: (c) => { const id = mid(c); return op(c, 'fork', id, () => d.machines.fork(project(c), id, (c.body as { name: string }).name)); } },

    // ---- exec and files (through the guest agent)
    { method: 'POST', url: '/v1/machines/:id/exec', role: 'operator', summary: 'run a command in the guest', body: S.ExecBody, handler: async (c) => ({ body: await d.machines.exec(project(c), mid(c), c.body as S.ExecBody) }) },
    { method: 'GET', url: '/v1/machines/:id/files', role: 'viewer', summary: 'download a guest file', query: S.FilesQuery, handler: async (c) => ({ raw: await d.machines.readFile(project(c), mid(c), file(c)) }) },
    { method: 'PUT', url: '/v1/machines/:id/files', role: 'operator', summary: 'upload a guest file (application/octet-stream, at most 64 MiB)', query: S.FilesQuery, rawBody: true, handler: async (c) => { await d.machines.writeFile(project(c), mid(c), file(c), c.body as Uint8Array); return { status: 204 }; } },
    { method: 'DELETE', url: '/v1/machines/:id/files', role: 'operator', summary: 'remove a guest file', query: S.FilesQuery, handler: async (c) => { await d.machines.removeFile(project(c), mid(c), file(c)); return { status: 204 }; } },
    { method: 'GET', url: '/v1/machines/:id/dir', role: 'viewer', summary: 'list a guest directory', query: S.FilesQuery, handler: async (c) => ({ body: { entries: await d.machines.listDir(project(c), mid(c), file(c)) } }) },

    // ---- operations
    { method: 'GET', url: '/v1/operations', role: 'viewer', summary: 'recent operations', handler: (c) => ({ body: { operations: d.ops.list(project(c)) } }) },
    { method: 'GET', url: '/v1/operations/:id', role: 'viewer', summary: 'one operation', handler: (c) => ({ body: d.ops.get(project(c), c.params.id!) }) },
    {
      method: 'GET', url: '/v1/operations/:id/wait', role: 'viewer', summary: 'the operation once done (or after timeoutMs, default 30 s)', query: S.WaitQuery,
      handler: async (c) => ({ body: await d.ops.wait(project(c), c.params.id!, (c.query as { timeoutMs?: number }).timeoutMs ?? 30_000) }),
    },

    // ---- images, disks, snapshots, networks
    { method: 'GET', url: '/v1/images', role: 'viewer', summary: 'images machines can be created from', handler: () => ({ body: { images: d.images.names().map((name) => ({ name, default: name === d.images.defaultImage })) } }) },
    { method: 'GET', url: '/v1/disks', role: 'viewer', summary: 'the project\'s volumes', handler: (c) => ({ body: { disks: d.machines.listDisks(project(c)) } }) },
    { method: 'POST', url: '/v1/disks', role: 'operator', summary: 'create a qcow2 volume', body: S.DiskCreate, handler: async (c) => { const b = c.body as z.infer<typeof S.DiskCreate>; return { status: 201, body: await d.machines.createDisk(project(c), b.name, b.sizeMiB) }; } },
    { method: 'DELETE', url: '/v1/disks/:name', role: 'operator', summary: 'delete a volume no machine uses', handler: (c) => { d.machines.deleteDisk(project(c), c.params.name!); return { status: 204 }; } },
    { method: 'GET', url: '/v1/snapshots', role: 'viewer', summary: 'the project\'s snapshots', handler: (c) => ({ body: { snapshots: d.machines.listSnapshots(project(c)) } }) },
    { method: 'DELETE', url: '/v1/snapshots/:name', role: 'operator', summary: 'delete a snapshot', handler: (c) => { d.machines.deleteSnapshot(project(c), c.params.name!); return { status: 204 }; } },
    { method: 'GET', url: '/v1/networks', role: 'viewer', summary: 'the project\'s networks, their forwards and rules, and which machines use them now', handler: (c) => ({ body: { networks: listNetworks(d, project(c)) } }) },
    { method: 'GET', url: '/v1/networks/:name', role: 'viewer', summary: 'one network', handler: (c) => ({ body: oneNetwork(d, project(c), c.params.name!) }) },
    {
      method: 'POST', url: '/v1/networks', role: 'operator', summary: 'create a user-mode network (NAT, DHCP, DNS) with forwards and firewall rules', body: S.NetworkCreate,
      handler: (c) => {
        const b = c.body as z.infer<typeof S.NetworkCreate>;
        if (d.store.get('SELECT id FROM networks WHERE project = ? AND name = ?', [project(c), b.name])) throw new VisorError('AlreadyExists', `network ${b.name} already exists`);
        d.store.run('INSERT INTO networks (id, project, name, spec, created_at) VALUES (?, ?, ?, ?, ?)', [`n-${randomBytes(6).toString('hex')}`, project(c), b.name, JSON.stringify(networkSpec(b)), new Date().toISOString()]);
        return { status: 201, body: oneNetwork(d, project(c), b.name), headers: { location: `/v1/networks/${b.name}` } };
      },
    },
    {
      method: 'PUT', url: '/v1/networks/:name', role: 'operator', summary: 'replace a network\'s forwards, rules and host access (while none of its machines runs)', body: S.NetworkSpec,
      handler: (c) => {
        const name = c.params.name!;
        oneNetwork(d, project(c), name);
        const running = d.networks.status(project(c), name).machines;
        if (running.length) throw new VisorError('NotAllowed', `network ${name} is in use by ${running.length} running machine(s): stop them, change it, start them again`);
        d.store.run('UPDATE networks SET spec = ? WHERE project = ? AND name = ?', [JSON.stringify(networkSpec(c.body as z.infer<typeof S.NetworkSpec>)), project(c), name]);
        return { body: oneNetwork(d, project(c), name) };
      },
    },
    {
      method: 'DELETE', url: '/v1/networks/:name', role: 'operator', summary: 'delete a network no machine uses',
      handler: (c) => {
        const name = c.params.name!;
        oneNetwork(d, project(c), name);
        const users = d.machines.list(project(c)).filter((m) => m.networks.includes(name));
        if (users.length) throw new VisorError('NotAllowed', `network ${name} is used by ${users.map((m) => m.name).join(', ')}`);
        d.store.run('DELETE FROM networks WHERE project = ? AND name = ?', [project(c), name]);
        return { status: 204 };
      },
    },

    // ---- resources
    { method: 'GET', url: '/v1/resources', role: 'viewer', summary: 'totals in use against the daemon\'s and the project\'s limits', handler: (c) => ({ body: d.machines.usage(project(c)) }) },
    { method: 'PUT', url: '/v1/projects/:name/limits', role: 'admin', global: true, summary: 'set a project\'s limits', body: S.ProjectLimits, handler: (c) => { d.machines.setProjectLimits(c.params.name!, c.body as S.ProjectLimits); return { body: d.machines.projectLimits(c.params.name!) }; } },

    // ---- tokens and audit (admin)
    { method: 'GET', url: '/v1/tokens', role: 'admin', global: true, summary: 'every token (never the secrets)', handler: () => ({ body: { tokens: d.tokens.list() } }) },
    { method: 'POST', url: '/v1/tokens', role: 'admin', global: true, summary: 'a new token; its secret is shown once', body: S.TokenCreate, handler: (c) => { const b = c.body as z.infer<typeof S.TokenCreate>; const t = d.tokens.create(b.name, b.role, b.project); return { status: 201, body: { token: t.token, ...t.info } }; } },
    { method: 'DELETE', url: '/v1/tokens/:id', role: 'admin', global: true, summary: 'revoke a token', handler: (c) => { d.tokens.revoke(c.params.id!); return { status: 204 }; } },
    { method: 'GET', url: '/v1/audit', role: 'admin', global: true, summary: 'audit entries after a sequence number', query: S.AuditQuery, handler: (c) => { const q = c.query as { after?: number; limit?: number }; return { body: { entries: d.audit.list({ ...(q.after !== undefined ? { afterSeq: q.after } : {}), ...(q.limit !== undefined ? { limit: q.limit } : {}) }) } }; } },
    { method: 'GET', url: '/v1/audit/verify', role: 'admin', global: true, summary: 'walk the hash chain', handler: () => ({ body: d.audit.verify() }) },
  ];
}

function networkSpec(b: z.infer<typeof S.NetworkSpec>): S.NetworkSpec {
  return { forwards: b.forwards ?? [], rules: b.rules ?? [], ...(b.hostAccess !== undefined ? { hostAccess: b.hostAccess } : {}) };
}

interface NetworkView extends S.NetworkSpec {
  name: string;
  hostAccess: boolean;
  /** Whether the daemon hosts it now, the running machines on it, and its NAT's firewall drops. */
  active: boolean;
  machines: string[];
  firewallDrops?: number;
  createdAt: string;
}

function toView(d: RouteDeps, project: string, n: { name: string; spec: string; created_at: string }): NetworkView {
  const spec = JSON.parse(n.spec) as Partial<S.NetworkSpec>;
  const st = d.networks.status(project, n.name);
  const counters = d.networks.counters(project, n.name);
  return {
    name: n.name, forwards: spec.forwards ?? [], rules: spec.rules ?? [], hostAccess: spec.hostAccess ?? false,
    active: st.active, machines: st.machines, ...(counters ? { firewallDrops: counters.drops.firewall } : {}), createdAt: n.created_at,
  };
}

function listNetworks(d: RouteDeps, project: string): NetworkView[] {
  return d.store.all<{ name: string; spec: string; created_at: string }>('SELECT name, spec, created_at FROM networks WHERE project = ? ORDER BY name', [project]).map((n) => toView(d, project, n));
}

function oneNetwork(d: RouteDeps, project: string, name: string): NetworkView {
  const n = d.store.get<{ name: string; spec: string; created_at: string }>('SELECT name, spec, created_at FROM networks WHERE project = ? AND name = ?', [project, name]);
  if (!n) throw new VisorError('NotFound', `network ${name}: no such network`);
  return toView(d, project, n);
}
