/**
 * The authorization matrix: every route of the table × no token / viewer / operator / admin ×
 * the token's own project / another project's resources → the status the rules give:
 *   no token → 401; a role below the route's → 403; another project's machine, operation,
 *   disk, snapshot or network → 404 (its existence is not disclosed); otherwise the route's
 *   own answer. Runs in-process (fastify.inject) against one running machine per project.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createApp, WS_ROUTES, type App } from '../../src/server/app.js';
import { ROLES, type Role } from '../../src/server/auth.js';
import { Store } from '../../src/server/store.js';
import { bareImages, FakeGuest, tempDir } from './support.js';

const tmp = tempDir('visord-authz-');
let app: App;
let store: Store;
const tokens: Record<string, Record<Role, string>> = {};
const fixture: Record<string, { running: string; idle: string; op: string }> = {};
let n = 0;
const uniq = (p: string) => `${p}${++n}`;

interface Case {
  /** The request against project `alpha`'s resources. */
  make(): Promise<{ url: string; body?: unknown; raw?: Buffer }> | { url: string; body?: unknown; raw?: Buffer };
  /** Status for an allowed role in its own project. */
  own: number;
  /** The URL names a project resource: another project's token gets 404. */
  scoped: boolean;
}

async function call(method: string, c: { url: string; body?: unknown; raw?: Buffer }, token?: string): Promise<number> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: string | Buffer | undefined;
  if (c.raw) {
    headers['content-type'] = 'application/octet-stream';
    payload = c.raw;
  } else if (c.body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(c.body);
  }
  const r = await app.fastify.inject({ method: method as 'GET', url: c.url, headers, ...(payload !== undefined ? { payload } : {}) });
  if (r.statusCode >= 400) expect(JSON.parse(r.body).error.message.length).toBeGreaterThan(0);
  return r.statusCode;
}

beforeAll(async () => {
  store = Store.open(join(tmp.dir, 'visor.db'));
  mkdirSync(join(tmp.dir, 'state'));
  app = await createApp({ store, stateDir: join(tmp.dir, 'state'), images: bareImages(tmp.dir), guest: new FakeGuest(), authFailures: { max: 1e9, windowMs: 1000 } });
  for (const p of ['alpha', 'beta']) {
    tokens[p] = Object.fromEntries(ROLES.map((r) => [r, app.tokens.create(`${p}-${r}`, r, p).token])) as Record<Role, string>;
    const running = (await app.machines.create(p, { name: 'run', memoryMiB: 16 })).id;
    await app.machines.start(p, running);
    const idle = (await app.machines.create(p, { name: 'idle', memoryMiB: 16 })).id;
    const op = app.ops.start(p, 'noop', idle, async () => 'done').id;
    await app.ops.wait(p, op, 1000);
    await app.machines.fork(p, running, 'kid').catch(() => {});
    fixture[p] = { running, idle, op };
    await app.machines.writeFile(p, running, '/etc/hostname', new TextEncoder().encode(p));
  }
  // Starts past this fail inside their operation (202 all the same): no more workers.
  app.machines.setProjectLimits('alpha', { maxMachines: 2 });
}, 60_000);

afterAll(async () => {
  await app?.machines.shutdown();
  await app?.close();
  store?.close();
  tmp.cleanup();
});

function cases(): Record<string, Case> {
  const a = () => fixture.alpha!;
  const newMachine = async () => (await app.machines.create('alpha', { name: uniq('tmp-') })).id;
  const newDisk = async () => (await app.machines.createDisk('alpha', uniq('disk-'), 1)).name;
  const newSnapshot = () => {
    const name = uniq('snap-');
    store.run('INSERT INTO snapshots (id, project, machine_id, name, bytes, created_at) VALUES (?, ?, ?, ?, 0, ?)', [`s-${(n * 7919).toString(16).padStart(8, '0')}`, 'alpha', a().idle, name, '']);
    return name;
  };
  const newNetwork = () => {
    const name = uniq('net-');
    store.run('INSERT INTO networks (id, project, name, spec, created_at) VALUES (?, ?, ?, ?, ?)', [`n-${n}`, 'alpha', name, '{"forwards":[],"rules":[]}', '']);
    return name;
  };
  const f = '?path=/etc/hostname';
  return {
    'GET /v1/health': { make: () => ({ url: '/v1/health' }), own: 200, scoped: false },
    'GET /v1/whoami': { make: () => ({ url: '/v1/whoami' }), own: 200, scoped: false },
    'GET /v1/machines': { make: () => ({ url: '/v1/machines' }), own: 200, scoped: false },
    'POST /v1/machines': { make: () => ({ url: '/v1/machines', body: { name: uniq('new-'), memoryMiB: 16 } }), own: 201, scoped: false },
    'GET /v1/machines/:id': { make: () => ({ url: `/v1/machines/${a().running}` }), own: 200, scoped: true },
    'PATCH /v1/machines/:id': { make: () => ({ url: `/v1/machines/${a().idle}`, body: { cpuShares: 50 } }), own: 200, scoped: true },
    'DELETE /v1/machines/:id': { make: async () => ({ url: `/v1/machines/${await newMachine()}` }), own: 204, scoped: true },
    'POST /v1/machines/:id/start': { make: () => ({ url: `/v1/machines/${a().idle}/start`, body: {} }), own: 202, scoped: true },
    'POST /v1/machines/:id/stop': { make: async () => ({ url: `/v1/machines/${await newMachine()}/stop`, body: {} }), own: 202, scoped: true },
    'POST /v1/machines/:id/pause': { make: () => ({ url: `/v1/machines/${a().idle}/pause`, body: {} }), own: 202, scoped: true },
    'POST /v1/machines/:id/resume': { make: () => ({ url: `/v1/machines/${a().idle}/resume`, body: {} }), own: 202, scoped: true },
    'POST /v1/machines/:id/snapshot': { make: () => ({ url: `/v1/machines/${a().idle}/snapshot`, body: { name: uniq('s') } }), own: 202, scoped: true },
    'POST /v1/machines/:id/restore': { make: () => ({ url: `/v1/machines/${a().idle}/restore`, body: { snapshot: 'none' } }), own: 202, scoped: true },
    'POST /v1/machines/:id/fork': { make: () => ({ url: `/v1/machines/${a().idle}/fork`, body: { name: uniq('f') } }), own: 202, scoped: true },
    'POST /v1/machines/:id/exec': { make: () => ({ url: `/v1/machines/${a().running}/exec`, body: { cmd: 'true' } }), own: 200, scoped: true },
    'GET /v1/machines/:id/files': { make: () => ({ url: `/v1/machines/${a().running}/files${f}` }), own: 200, scoped: true },
    'PUT /v1/machines/:id/files': { make: () => ({ url: `/v1/machines/${a().running}/files${f}`, raw: Buffer.from('alpha\n') }), own: 204, scoped: true },
    'DELETE /v1/machines/:id/files': {
      make: async () => {
        await app.machines.writeFile('alpha', a().running, '/tmp/x', new Uint8Array(1));
        return { url: `/v1/machines/${a().running}/files?path=/tmp/x` };
      },
      own: 204, scoped: true,
    },
    'GET /v1/machines/:id/dir': { make: () => ({ url: `/v1/machines/${a().running}/dir?path=/` }), own: 200, scoped: true },
    'GET /v1/operations': { make: () => ({ url: '/v1/operations' }), own: 200, scoped: false },
    'GET /v1/operations/:id': { make: () => ({ url: `/v1/operations/${a().op}` }), own: 200, scoped: true },
    'GET /v1/operations/:id/wait': { make: () => ({ url: `/v1/operations/${a().op}/wait?timeoutMs=10` }), own: 200, scoped: true },
    'GET /v1/images': { make: () => ({ url: '/v1/images' }), own: 200, scoped: false },
    'GET /v1/disks': { make: () => ({ url: '/v1/disks' }), own: 200, scoped: false },
    'POST /v1/disks': { make: () => ({ url: '/v1/disks', body: { name: uniq('vol-'), sizeMiB: 1 } }), own: 201, scoped: false },
    'DELETE /v1/disks/:name': { make: async () => ({ url: `/v1/disks/${await newDisk()}` }), own: 204, scoped: true },
    'GET /v1/snapshots': { make: () => ({ url: '/v1/snapshots' }), own: 200, scoped: false },
    'DELETE /v1/snapshots/:name': { make: () => ({ url: `/v1/snapshots/${newSnapshot()}` }), own: 204, scoped: true },
    'GET /v1/networks': { make: () => ({ url: '/v1/networks' }), own: 200, scoped: false },
    'POST /v1/networks': { make: () => ({ url: '/v1/networks', body: { name: uniq('n-'), forwards: [{ hostPort: 8080, guestPort: 80 }] } }), own: 201, scoped: false },
    'GET /v1/networks/:name': { make: () => ({ url: `/v1/networks/${newNetwork()}` }), own: 200, scoped: true },
    'PUT /v1/networks/:name': { make: () => ({ url: `/v1/networks/${newNetwork()}`, body: { rules: [{ action: 'deny', cidr: '10.0.0.0/8' }] } }), own: 200, scoped: true },
    'DELETE /v1/networks/:name': { make: () => ({ url: `/v1/networks/${newNetwork()}` }), own: 204, scoped: true },
    'GET /v1/resources': { make: () => ({ url: '/v1/resources' }), own: 200, scoped: false },
    'PUT /v1/projects/:name/limits': { make: () => ({ url: '/v1/projects/gamma/limits', body: { maxMachines: 3 } }), own: 200, scoped: false },
    'GET /v1/tokens': { make: () => ({ url: '/v1/tokens' }), own: 200, scoped: false },
    'POST /v1/tokens': { make: () => ({ url: '/v1/tokens', body: { name: 'x', role: 'viewer', project: 'alpha' } }), own: 201, scoped: false },
    'DELETE /v1/tokens/:id': { make: () => ({ url: `/v1/tokens/${app.tokens.create('victim', 'viewer', 'alpha').info.id}` }), own: 204, scoped: false },
    'GET /v1/audit': { make: () => ({ url: '/v1/audit' }), own: 200, scoped: false },
    'GET /v1/audit/verify': { make: () => ({ url: '/v1/audit/verify' }), own: 200, scoped: false },
  };
}

describe('authorization matrix', () => {
  it('covers every route of the table', () => {
    expect(Object.keys(cases()).sort()).toEqual(app.routes.map((r) => `${r.method} ${r.url}`).sort());
  });

  it('gives each route × role × project the status the rules say', async () => {
    const table = cases();
    const got: string[] = [];
    const want: string[] = [];
    for (const r of app.routes) {
      const key = `${r.method} ${r.url}`;
      const c = table[key]!;
      const anon = await call(r.method, await c.make());
      got.push(`${key} anonymous → ${anon}`);
      want.push(`${key} anonymous → ${r.role === 'public' ? c.own : 401}`);
      for (const role of ROLES) {
        for (const project of ['alpha', 'beta'] as const) {
          const status = await call(r.method, await c.make(), tokens[project]![role]);
          const allowed = r.role === 'public' || ROLES.indexOf(role) >= ROLES.indexOf(r.role);
          const expected = !allowed ? 403 : project === 'beta' && c.scoped ? 404 : c.own;
          got.push(`${key} ${role}@${project === 'alpha' ? 'own' : 'other'} → ${status}`);
          want.push(`${key} ${role}@${project === 'alpha' ? 'own' : 'other'} → ${expected}`);
        }
      }
    }
    expect(got).toEqual(want);
  }, 60_000);

  it('gives each WebSocket × role × project the status the rules say (101: upgraded)', async () => {
    const address = await app.fastify.listen({ host: '127.0.0.1', port: 0 });
    const upgrade = (path: string, token?: string) => new Promise<number>((resolve) => {
      const ws = new WebSocket(address.replace('http', 'ws') + path, token ? { headers: { authorization: `Bearer ${token}` } } : {});
      ws.once('open', () => {
        ws.terminate();
        resolve(101);
      });
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          expect(JSON.parse(body).error.message.length).toBeGreaterThan(0);
          resolve(res.statusCode ?? 0);
        });
      });
      ws.once('error', () => {});
    });
    const got: string[] = [];
    const want: string[] = [];
    for (const w of WS_ROUTES) {
      const path = w.path.replace('{id}', fixture.alpha!.running);
      const scoped = w.path.includes('{id}');
      got.push(`${w.path} anonymous → ${await upgrade(path)}`);
      want.push(`${w.path} anonymous → 401`);
      for (const role of ROLES) {
        for (const project of ['alpha', 'beta'] as const) {
          const allowed = ROLES.indexOf(role) >= ROLES.indexOf(w.role);
          got.push(`${w.path} ${role}@${project === 'alpha' ? 'own' : 'other'} → ${await upgrade(path, tokens[project]![role])}`);
          want.push(`${w.path} ${role}@${project === 'alpha' ? 'own' : 'other'} → ${!allowed ? 403 : project === 'beta' && scoped ? 404 : 101}`);
        }
      }
    }
    expect(got).toEqual(want);
  }, 60_000);

  it('lists only the token\'s project', async () => {
    const r = await app.fastify.inject({ method: 'GET', url: '/v1/machines', headers: { authorization: `Bearer ${tokens.beta!.viewer}` } });
    const names = (JSON.parse(r.body).machines as { project: string }[]).map((m) => m.project);
    expect(new Set(names)).toEqual(new Set(['beta']));
  });
});
