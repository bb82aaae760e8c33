/**
 * `WS /v1/machines/{id}/exec` over real HTTP on 127.0.0.1 with the fake agent (support.ts):
 * the message order, stdin, signals, kill on disconnect and on timeout, bad requests, and
 * who may open one. The real agent is test/server/guest-agent.test.ts (opt-in).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startDaemon, type RunningDaemon } from '../../src/server/daemon.js';
import { bareImages, FakeGuest, tempDir } from './support.js';

const tmp = tempDir('visord-execws-');
const guest = new FakeGuest();
let d: RunningDaemon;
let admin: string;
let machine: string;
let stopped: string;

async function http(method: string, path: string, body?: unknown, token = admin): Promise<any> {
  const r = await fetch(d.address + path, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const t = await r.text();
  return { status: r.status, json: t ? JSON.parse(t) : undefined, location: r.headers.get('location') };
}

interface Session {
  ws: WebSocket;
  /** Text messages parsed, and output frames as {stream, text}. */
  events: ({ type: string; [k: string]: unknown } | { stream: number; text: string })[];
  closed: Promise<{ code: number; reason: string }>;
  opened: Promise<void>;
}

function open(id: string, token = admin): Session {
  const ws = new WebSocket(`${d.address.replace('http', 'ws')}/v1/machines/${id}/exec`, { headers: { authorization: `Bearer ${token}` } });
  const events: Session['events'] = [];
  ws.on('message', (data, isBinary) => {
    const b = data as Buffer;
    events.push(isBinary ? { stream: b[0]!, text: b.subarray(1).toString('utf8') } : JSON.parse(b.toString('utf8')));
  });
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  const opened = new Promise<void>((res, rej) => {
    ws.once('open', () => res());
    ws.once('unexpected-response', (_req, resp) => rej(new Error(`status ${resp.statusCode}`)));
    ws.once('error', rej);
  });
  return { ws, events, closed, opened };
}

const until = async (what: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!what() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return what();
};

beforeAll(async () => {
  d = await startDaemon({
    stateDir: join(tmp.dir, 'state'), listen: '127.0.0.1:0', images: bareImages(tmp.dir), guest,
    logger: pino({ level: 'silent' }), authFailures: { max: 1e9, windowMs: 1000 },
  });
  admin = readFileSync(d.adminTokenFile!, 'utf8').trim();
  machine = (await http('POST', '/v1/machines', { name: 'box', memoryMiB: 16 })).json.id;
  const op = await http('POST', `/v1/machines/${machine}/start`, {});
  expect((await http('GET', `${op.location}/wait?timeoutMs=20000`)).json.status).toBe('success');
  stopped = (await http('POST', '/v1/machines', { name: 'idle', memoryMiB: 16 })).json.id;
}, 60_000);

afterAll(async () => {
  await d?.stop();
  tmp.cleanup();
});

describe('WS /v1/machines/{id}/exec', () => {
  it('says started, streams stdout and stderr as they come, then the exit code, then closes', async () => {
    const s = open(machine);
    await s.opened;
    s.ws.send(JSON.stringify({ cmd: 'echo hi', envs: { A: '1' }, cwd: '/' }));
    expect(await s.closed).toMatchObject({ code: 1000 });
    expect(s.events).toEqual([
      { type: 'started', pid: expect.any(Number) },
      { stream: 1, text: 'echo hi\n' },
      { stream: 2, text: 'done\n' },
      { type: 'exit', exitCode: 0, signal: 0 },
    ]);
    const f = open('box');
    await f.opened;
    f.ws.send(JSON.stringify({ cmd: 'fail' }));
    await f.closed;
    expect(f.events.slice(1)).toEqual([{ stream: 2, text: 'bad\n' }, { type: 'exit', exitCode: 3, signal: 0 }]);
  });

  it('passes stdin through until eof', async () => {
    const s = open(machine);
    await s.opened;
    s.ws.send(JSON.stringify({ cmd: 'cat', stdin: true }));
    s.ws.send(Buffer.from('one ')); // sent before it started: kept until it has
    expect(await until(() => s.events.some((e) => 'type' in e && e.type === 'started'))).toBe(true);
    s.ws.send(Buffer.from('two'));
    expect(await until(() => s.events.filter((e) => 'stream' in e).map((e) => (e as { text: string }).text).join('') === 'one two')).toBe(true);
    s.ws.send(JSON.stringify({ type: 'eof' }));
    expect(await s.closed).toMatchObject({ code: 1000 });
    expect(s.events.at(-1)).toEqual({ type: 'exit', exitCode: 0, signal: 0 });
  });

  it('sends signals, and kills the command when the client goes away or its time is up', async () => {
    const s = open(machine);
    await s.opened;
    s.ws.send(JSON.stringify({ cmd: 'sleep' }));
    expect(await until(() => s.events.length > 0)).toBe(true);
    s.ws.send(JSON.stringify({ type: 'signal', signal: 15 }));
    await s.closed;
    expect(s.events.at(-1)).toEqual({ type: 'exit', exitCode: 143, signal: 15 });

    const before = guest.signals.length;
    const gone = open(machine);
    await gone.opened;
    gone.ws.send(JSON.stringify({ cmd: 'sleep' }));
    expect(await until(() => gone.events.length > 0)).toBe(true);
    gone.ws.terminate();
    expect(await until(() => guest.signals.length > before)).toBe(true);
    expect(guest.signals.at(-1)).toEqual({ cmd: 'sleep', signo: 9 });

    const slow = open(machine);
    await slow.opened;
    slow.ws.send(JSON.stringify({ cmd: 'sleep', timeoutMs: 50 }));
    await slow.closed;
    expect(slow.events.at(-1)).toEqual({ type: 'exit', exitCode: 137, signal: 9, timedOut: true });
  });

  it('answers a bad request with an error message and a 1008 close', async () => {
    for (const bad of ['not json', JSON.stringify({ cmd: '' }), JSON.stringify({ cmd: 'x', bogus: 1 }), JSON.stringify({ cmd: 'x', envs: { '1A': 'x' } })]) {
      const s = open(machine);
      await s.opened;
      s.ws.send(bad);
      expect(await s.closed).toMatchObject({ code: 1008 });
      expect(s.events).toEqual([{ type: 'error', code: 'InvalidArgument', message: expect.stringMatching(/exec request/) }]);
    }
    const s = open(machine);
    await s.opened;
    s.ws.send(JSON.stringify({ cmd: 'echo' }));
    await s.closed;
    const late = open(machine);
    await late.opened;
    late.ws.send(JSON.stringify({ cmd: 'sleep' }));
    expect(await until(() => late.events.length > 0)).toBe(true);
    late.ws.send(JSON.stringify({ type: 'dance' }));
    expect(await until(() => late.events.some((e) => 'type' in e && e.type === 'error'))).toBe(true);
    late.ws.send(Buffer.from('stdin was not asked for'));
    expect(await until(() => late.events.filter((e) => 'type' in e && e.type === 'error').length === 2)).toBe(true);
    late.ws.close();
  });

  it('lets operators in only, to their own project\'s running machines', async () => {
    const viewer = (await http('POST', '/v1/tokens', { name: 'v', role: 'viewer', project: 'default' })).json.token;
    const other = (await http('POST', '/v1/tokens', { name: 'o', role: 'operator', project: 'other' })).json.token;
    await expect(open(machine, viewer).opened).rejects.toThrow('status 403');
    await expect(open(machine, other).opened).rejects.toThrow('status 404');
    await expect(open(machine, 'visor_nope').opened).rejects.toThrow('status 401');
    await expect(open(stopped).opened).rejects.toThrow('status 409');
    await expect(open('nosuch').opened).rejects.toThrow('status 404');
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await http('GET', '/openapi.json')).json;
    expect(doc.paths['/v1/machines/{id}/exec'].get).toMatchObject({ 'x-visor-websocket': true, 'x-visor-role': 'operator' });
    expect(doc.paths['/v1/machines/{id}/exec'].post).toBeDefined();
  });
});
