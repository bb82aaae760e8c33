/**
 * The daemon's API end to end over real HTTP on 127.0.0.1, with tiny assembled guests:
 * lifecycle through operations, exec and files (fake agent), console and events WebSockets,
 * errors, OpenAPI, metrics, audit, admission control and auth-failure rate limiting.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import pino from 'pino';
import { startDaemon, type RunningDaemon } from '../../src/server/daemon.js';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { bareImages, FakeGuest, tempDir } from './support.js';

const tmp = tempDir();
let d: RunningDaemon;
let admin: string;

async function api(method: string, path: string, opts: { token?: string; body?: unknown; raw?: Buffer } = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? admin : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  let body: string | Blob | undefined;
  if (opts.raw) {
    headers['content-type'] = 'application/octet-stream';
    body = new Blob([new Uint8Array(opts.raw)]);
  } else if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const r = await fetch(d.address + path, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = r.headers.get('content-type')?.includes('json') ? await r.text() : undefined;
  return { status: r.status, body: text ? JSON.parse(text) : r.status === 204 ? undefined : Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

async function waitOp(res: { status: number; headers: Headers }, token = admin): Promise<any> {
  expect(res.status).toBe(202);
  const loc = res.headers.get('location')!;
  expect(loc).toMatch(/^\/v1\/operations\/op-/);
  const w = await api('GET', `${loc}/wait?timeoutMs=20000`, { token });
  expect(w.status).toBe(200);
  return w.body;
}

beforeAll(async () => {
  d = await startDaemon({
    stateDir: join(tmp.dir, 'state'), listen: '127.0.0.1:0', images: bareImages(tmp.dir), guest: new FakeGuest(),
    logger: pino({ level: 'silent' }), limits: { maxMemoryMiB: 64 }, cpuCapacityPercent: 100, authFailures: { max: 5, windowMs: 60_000 },
  });
  admin = readFileSync(d.adminTokenFile!, 'utf8').trim();
});
afterAll(async () => {
  await d?.stop();
  tmp.cleanup();
});

describe('visord API', () => {
  it('writes the first admin token 0600 and serves health without a token', async () => {
    expect(statSync(d.adminTokenFile!).mode & 0o777).toBe(0o600);
    const h = await api('GET', '/v1/health', { token: '' });
    expect(h.status).toBe(200);
    expect(h.body.status).toBe('ok');
    expect((await api('GET', '/v1/machines', { token: '' })).body.error.code).toBe('Unauthorized');
  });

  it('runs a machine through its lifecycle as operations, with exec, files, console and events', async () => {
    const events: any[] = [];
    const ev = new WebSocket(`${d.address.replace('http', 'ws')}/v1/events`, { headers: { authorization: `Bearer ${admin}` } });
    ev.on('message', (m) => events.push(JSON.parse(String(m))));
    await new Promise((r) => ev.once('open', r));

    const c = await api('POST', '/v1/machines', { body: { name: 'web1', image: 'echo', memoryMiB: 16 } });
    expect(c.status).toBe(201);
    expect(c.body.state).toBe('created');
    const id = c.body.id;
    const op = await waitOp(await api('POST', `/v1/machines/${id}/start`, { body: {} }));
    expect(op.status).toBe('success');
    expect((await api('GET', `/v1/machines/web1`)).body.state).toBe('running');

    // console: output reaches the socket, input reaches the guest (the echo guest echoes it)
    const con = new WebSocket(`${d.address.replace('http', 'ws')}/v1/machines/${id}/console?token=${admin}`);
    let out = '';
    con.on('message', (m: Buffer) => (out += m.toString('latin1')));
    await new Promise((r) => con.once('open', r));
    con.send(Buffer.from('hello-console'));
    // The echo guest answers each byte plus one.
    for (let i = 0; i < 200 && !out.includes('ifmmp.dpotpmf'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(out).toContain('echo ready');
    expect(out).toContain('ifmmp.dpotpmf');
    con.close();

    const ex = await api('POST', `/v1/machines/${id}/exec`, { body: { cmd: 'echo hi', timeoutMs: 1000 } });
    expect(ex.body).toEqual({ exitCode: 0, stdout: 'echo hi\n', stderr: '' });
    expect((await api('PUT', `/v1/machines/${id}/files?path=/tmp/a.txt`, { raw: Buffer.from('data!') })).status).toBe(204);
    expect((await api('GET', `/v1/machines/${id}/files?path=/tmp/a.txt`)).body.toString()).toBe('data!');
    expect((await api('GET', `/v1/machines/${id}/dir?path=/tmp`)).body.entries).toEqual([{ name: 'a.txt', type: 'file', size: 5 }]);
    expect((await api('DELETE', `/v1/machines/${id}/files?path=/tmp/a.txt`)).status).toBe(204);
    expect((await api('GET', `/v1/machines/${id}/files?path=/tmp/a.txt`)).status).toBe(404);

    expect((await waitOp(await api('POST', `/v1/machines/${id}/pause`, { body: {} }))).status).toBe('success');
    expect((await api('GET', `/v1/machines/${id}`)).body.state).toBe('paused');
    const snap = await waitOp(await api('POST', `/v1/machines/${id}/snapshot`, { body: { name: 'snap1' } }));
    expect(snap.status).toBe('success');
    expect((await api('GET', '/v1/snapshots')).body.snapshots.map((s: any) => s.name)).toEqual(['snap1']);
    expect((await waitOp(await api('POST', `/v1/machines/${id}/resume`, { body: {} }))).status).toBe('success');
    expect((await waitOp(await api('POST', `/v1/machines/${id}/restore`, { body: { snapshot: 'snap1' } }))).status).toBe('success');
    expect((await api('GET', `/v1/machines/${id}`)).body.state).toBe('running');

    const stop = await waitOp(await api('POST', `/v1/machines/${id}/stop`, { body: { force: true } }));
    expect(stop.status).toBe('success');
    expect((await api('GET', `/v1/machines/${id}`)).body).toMatchObject({ state: 'stopped' });
    // A state the table does not allow: an operation that fails, saying why.
    const bad = await waitOp(await api('POST', `/v1/machines/${id}/pause`, { body: {} }));
    expect(bad.status).toBe('failure');
    expect(bad.error.code).toBe('NotAllowed');

    expect(events.some((e) => e.type === 'lifecycle' && e.machine === id && e.state === 'running')).toBe(true);
    expect(events.some((e) => e.type === 'operation' && e.kind === 'start' && e.status === 'success')).toBe(true);
    expect(events.some((e) => e.type === 'audit')).toBe(true);
    ev.close();
    expect((await api('DELETE', `/v1/machines/${id}`)).status).toBe(204);
    expect((await api('GET', `/v1/machines/${id}`)).status).toBe(404);
  }, 60_000);

  it('refuses a start past the daemon\'s memory total, naming the limit', async () => {
    const a = await api('POST', '/v1/machines', { body: { name: 'big1', memoryMiB: 48 } });
    const b = await api('POST', '/v1/machines', { body: { name: 'big2', memoryMiB: 32 } });
    expect((await waitOp(await api('POST', `/v1/machines/${a.body.id}/start`, { body: {} }))).status).toBe('success');
    const r = await waitOp(await api('POST', `/v1/machines/${b.body.id}/start`, { body: {} }));
    expect(r.status).toBe('failure');
    expect(r.error.code).toBe('QuotaExceeded');
    expect(r.error.message).toMatch(/memory limit is 64 MiB: 48 MiB in use, this machine needs 32 MiB/);
    const res = await api('GET', '/v1/resources');
    expect(res.body.daemon.used).toMatchObject({ machines: 1, memoryMiB: 48 });
    await waitOp(await api('POST', `/v1/machines/${a.body.id}/stop`, { body: { force: true } }));
  }, 30_000);

  it('applies CPU limits, and divides a full host by shares', async () => {
    const a = await api('POST', '/v1/machines', { body: { name: 'cpu-a', memoryMiB: 16, cpuLimitPercent: 40, cpuShares: 300 } });
    const b = await api('POST', '/v1/machines', { body: { name: 'cpu-b', memoryMiB: 16, cpuLimitPercent: 100, cpuShares: 100 } });
    expect((await waitOp(await api('POST', `/v1/machines/${a.body.id}/start`, { body: {} }))).status).toBe('success');
    expect((await api('GET', '/v1/machines/cpu-a')).body.resources).toEqual({ cpuLimitPercent: 40, cpuShares: 300, cpuEffectivePercent: 40 });
    // 140% asked of a capacity of 100: 3:1 by shares would give a 75, more than its 40, so a keeps 40 and b gets the 60 left.
    expect((await waitOp(await api('POST', `/v1/machines/${b.body.id}/start`, { body: {} }))).status).toBe('success');
    expect((await api('GET', '/v1/machines/cpu-b')).body.resources.cpuEffectivePercent).toBe(60);
    expect((await api('PATCH', '/v1/machines/cpu-a', { body: { cpuLimitPercent: 90 } })).body.resources).toMatchObject({ cpuLimitPercent: 90, cpuEffectivePercent: 75 });
    expect((await api('GET', '/v1/machines/cpu-b')).body.resources.cpuEffectivePercent).toBe(25);
    await waitOp(await api('POST', `/v1/machines/${a.body.id}/stop`, { body: { force: true } }));
    for (let i = 0; i < 50 && (await api('GET', '/v1/machines/cpu-b')).body.resources.cpuEffectivePercent !== 100; i++) await new Promise((r) => setTimeout(r, 20));
    expect((await api('GET', '/v1/machines/cpu-b')).body.resources.cpuEffectivePercent).toBe(100);
    await waitOp(await api('POST', `/v1/machines/${b.body.id}/stop`, { body: { force: true } }));
  }, 30_000);

  it('keeps disk limits in the spec, shows them and their counters, and exports them as metrics', async () => {
    const limits = { iops: 500, bytesPerSec: 8 << 20 };
    const a = await api('POST', '/v1/machines', { body: { name: 'disk-a', memoryMiB: 16, diskMiB: 1, diskLimits: limits } });
    expect(a.status).toBe(201);
    expect(a.body.resources.diskLimits).toEqual(limits);
    expect((await waitOp(await api('POST', `/v1/machines/${a.body.id}/start`, { body: {} }))).status).toBe('success');
    const g = (await api('GET', '/v1/machines/disk-a')).body;
    expect(g.resources.diskLimits).toEqual(limits);
    expect(g.stats).toMatchObject({ blkThrottled: 0, blkThrottledMs: 0 });
    const text = await (await fetch(`${d.address}/metrics`, { headers: { authorization: `Bearer ${admin}` } })).text();
    expect(text).toMatch(/visor_machine_disk_limit\{[^}]*name="disk-a"[^}]*kind="iops"\} 500/);
    expect(text).toMatch(/visor_machine_disk_limit\{[^}]*name="disk-a"[^}]*kind="bytes_per_second"\} 8388608/);
    expect(text).toMatch(/visor_machine_disk_throttled_total\{[^}]*name="disk-a"[^}]*\} 0/);
    const bad = await api('POST', '/v1/machines', { body: { name: 'disk-b', diskLimits: { iops: 0 } } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/diskLimits\.iops/);
    const p = await api('PATCH', '/v1/machines/disk-a', { body: { diskLimits: null } });
    expect(p.status).toBe(200);
    expect(p.body.resources.diskLimits).toBeUndefined();
    await waitOp(await api('POST', `/v1/machines/${a.body.id}/stop`, { body: { force: true } }));
  }, 30_000);

  it('keeps NIC rate limits in the spec, changes them, and exports them as metrics', async () => {
    const limits = { rx: { bytesPerSec: 1 << 20, bytesBurst: 65536 }, tx: { packetsPerSec: 1000 } };
    const a = await api('POST', '/v1/machines', { body: { name: 'net-a', memoryMiB: 16, netLimits: limits } });
    expect(a.status).toBe(201);
    expect(a.body.resources.netLimits).toEqual(limits);
    const text = await (await fetch(`${d.address}/metrics`, { headers: { authorization: `Bearer ${admin}` } })).text();
    expect(text).toMatch(/visor_machine_net_limit\{[^}]*name="net-a"[^}]*direction="rx",kind="bytes_per_second"\} 1048576/);
    expect(text).toMatch(/visor_machine_net_limit\{[^}]*name="net-a"[^}]*direction="tx",kind="packets_per_second"\} 1000/);
    const bad = await api('POST', '/v1/machines', { body: { name: 'net-b', netLimits: { rx: { bytesPerSec: 10 } } } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/netLimits\.rx\.bytesPerSec/);
    const odd = await api('POST', '/v1/machines', { body: { name: 'net-b', netLimits: { up: {} } } });
    expect(odd.status).toBe(400);
    const p = await api('PATCH', '/v1/machines/net-a', { body: { netLimits: { tx: { bytesPerSec: 65536 } } } });
    expect(p.status).toBe(200);
    expect(p.body.resources.netLimits).toEqual({ tx: { bytesPerSec: 65536 } });
    const cleared = await api('PATCH', '/v1/machines/net-a', { body: { netLimits: null } });
    expect(cleared.body.resources.netLimits).toBeUndefined();
    expect((await api('DELETE', '/v1/machines/net-a')).status).toBeLessThan(300);
  });

  it('answers bad input with a 4xx and a reason', async () => {
    const r1 = await api('POST', '/v1/machines', { body: { name: 'x', bogus: 1 } });
    expect(r1.status).toBe(400);
    expect(r1.body.error.message).toMatch(/bogus: unknown field/);
    const r2 = await fetch(`${d.address}/v1/machines`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: '{"name":' });
    expect(r2.status).toBe(400);
    expect((await r2.json() as any).error.code).toBe('InvalidArgument');
    const r3 = await fetch(`${d.address}/v1/machines`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'y'.repeat(2 << 20) }) });
    expect(r3.status).toBe(413);
    expect((await r3.json() as any).error.code).toBe('TooLarge');
    expect((await api('GET', '/v1/nothing')).status).toBe(404);
  });

  it('serves the OpenAPI document generated from the schemas, and metrics', async () => {
    const doc = (await api('GET', '/openapi.json', { token: '' })).body;
    expect(doc.openapi).toBe('3.1.0');
    const create = doc.paths['/v1/machines'].post.requestBody.content['application/json'].schema;
    expect(create.additionalProperties).toBe(false);
    expect(create.required).toEqual(['name']);
    expect(Object.keys(doc.paths)).toContain('/v1/machines/{id}/exec');
    const m = await fetch(`${d.address}/metrics`, { headers: { authorization: `Bearer ${admin}` } });
    const text = await m.text();
    expect(text).toMatch(/visor_http_requests_total\{route="\/v1\/machines",method="POST",status="201"\} \d+/);
    expect(text).toMatch(/visor_machine_state\{machine="m-[0-9a-f]+",name="big1",project="default",state="stopped"\} 1/);
    expect(text).toMatch(/visor_machine_cpu_limit_percent\{[^}]*name="big1"[^}]*\} 100/);
    expect((await fetch(`${d.address}/metrics`)).status).toBe(401);
  });

  it('keeps an audit chain of every state change and verifies it', async () => {
    const v = await api('GET', '/v1/audit/verify');
    expect(v.body.ok).toBe(true);
    expect(v.body.entries).toBeGreaterThan(10);
    const entries = (await api('GET', '/v1/audit?limit=1000')).body.entries;
    expect(entries.some((e: any) => e.action === 'POST /v1/machines/:id/start' && e.result === 'ok')).toBe(true);
    expect(entries.some((e: any) => e.action === 'POST /v1/machines' && e.result === 'InvalidArgument')).toBe(true);
  });

  it('rate-limits repeated authentication failures', async () => {
    // Earlier tests failed twice on purpose; the limit is 5 per minute.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await api('GET', '/v1/machines', { token: `visor_wrong${i}` })).status);
    expect(statuses).toEqual([401, 401, 401, 429]);
    const r = await api('GET', '/v1/machines', { token: 'visor_wrong' });
    expect(r.status).toBe(429);
    expect(r.body.error.code).toBe('RateLimited');
    // even the right token waits out the window from this client
    expect((await api('GET', '/v1/machines')).status).toBe(429);
  });
});
