/**
 * Fuzzed API input: random routes with bad JSON, wrong types, unknown fields, huge bodies,
 * path tricks and odd methods. Every answer must be a 4xx `{ error: { code, message } }`
 * (or a success), never a 5xx, and the daemon must keep answering. Seeded: VISOR_FUZZ_SEED
 * repeats a run, VISOR_FUZZ_N sets the count.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createApp, WS_ROUTES, type App } from '../../src/server/app.js';
import { Store } from '../../src/server/store.js';
import { bareImages, FakeGuest, tempDir } from './support.js';

const tmp = tempDir('visord-fuzz-');
let app: App;
let store: Store;
let token: string;
let machine: string;

const SEED = Number(process.env.VISOR_FUZZ_SEED ?? Date.now() % 1e9);
const N = Number(process.env.VISOR_FUZZ_N ?? 300);

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

beforeAll(async () => {
  store = Store.open(join(tmp.dir, 'visor.db'));
  mkdirSync(join(tmp.dir, 'state'));
  mkdirSync(join(tmp.dir, 'web'));
  writeFileSync(join(tmp.dir, 'web', 'index.html'), '<!doctype html><title>visor</title>');
  writeFileSync(join(tmp.dir, 'secret.txt'), 'not for clients');
  app = await createApp({ store, stateDir: join(tmp.dir, 'state'), images: bareImages(tmp.dir), guest: new FakeGuest(), staticDir: join(tmp.dir, 'web'), authFailures: { max: 1e9, windowMs: 1000 } });
  token = app.tokens.create('fuzz', 'admin', 'default').token;
  machine = (await app.machines.create('default', { name: 'target', memoryMiB: 16 })).id;
});

afterAll(async () => {
  await app?.machines.shutdown();
  await app?.close();
  store?.close();
  tmp.cleanup();
});

describe('fuzzed API input', () => {
  it(`answers every request with a 2xx or a 4xx and a reason (seed ${SEED})`, async () => {
    const r = rng(SEED);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
    const junkString = () => pick(['', 'a', '../../etc/passwd', '%2e%2e%2fsecret.txt', '\u0000', 'x'.repeat(5000), '💥', '{"', 'null', '-1', 'm-deadbeef0000', machine]);
    const junkValue = (depth = 0): unknown => {
      switch (Math.floor(r() * 9)) {
        case 0: return null;
        case 1: return r() * 1e12 - 5e11;
        case 2: return junkString();
        case 3: return r() < 0.5;
        case 4: return depth > 2 ? [] : Array.from({ length: Math.floor(r() * 4) }, () => junkValue(depth + 1));
        case 5: return depth > 2 ? {} : Object.fromEntries(Array.from({ length: Math.floor(r() * 4) }, () => [pick(['name', 'memoryMiB', 'image', 'cmd', 'force', '__proto__', 'constructor', 'x']), junkValue(depth + 1)]));
        case 6: return Number.MAX_SAFE_INTEGER;
        case 7: return -0;
        default: return 1.5;
      }
    };
    const routes = app.routes;
    const bad: string[] = [];
    for (let i = 0; i < N; i++) {
      const route = pick(routes);
      const method = r() < 0.85 ? route.method : pick(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD']);
      let url = route.url.replace(/:([A-Za-z]+)/g, () => encodeURIComponent(r() < 0.5 ? machine : junkString()));
      if (r() < 0.3) url += `?${pick(['path', 'timeoutMs', 'after', 'x', 'path[]'])}=${encodeURIComponent(junkString())}`;
      if (r() < 0.1) url = pick(['/../../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/v1/../secret.txt', '/%00', '/%zz', '/v1/machines/%2e%2e', `/${'a/'.repeat(500)}`, '/index.html', '/']);
      const headers: Record<string, string> = {};
      if (r() < 0.9) headers.authorization = `Bearer ${token}`;
      else if (r() < 0.5) headers.authorization = pick(['Bearer', 'Basic abc', `Bearer ${'x'.repeat(300)}`, 'Bearer visor_\u00ff']);
      let payload: string | Buffer | undefined;
      const kind = Math.floor(r() * 6);
      if (kind === 0) {
        headers['content-type'] = 'application/json';
        payload = pick(['{', '{"name":', '[]', 'null', '"x"', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}', '1e999', '\u0000']);
      } else if (kind === 1) {
        headers['content-type'] = 'application/json';
        payload = JSON.stringify(junkValue());
      } else if (kind === 2) {
        headers['content-type'] = 'application/json';
        payload = JSON.stringify({ name: 'x'.repeat(Math.floor(r() * 3) << 20) });
      } else if (kind === 3) {
        headers['content-type'] = pick(['text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x', 'application/xml']);
        payload = Buffer.alloc(Math.floor(r() * 2048), 0x41);
      }
      const res = await app.fastify.inject({ method: method as 'GET', url, headers, ...(payload !== undefined ? { payload } : {}) });
      const what = `${method} ${url.slice(0, 80)} [${kind}] → ${res.statusCode}`;
      if (res.statusCode >= 500) bad.push(`${what}: ${res.body.slice(0, 200)}`);
      else if (res.statusCode >= 400 && method !== 'HEAD') {
        let body: { error?: { code?: string; message?: string } };
        try {
          body = JSON.parse(res.body);
        } catch {
          bad.push(`${what}: not JSON: ${res.body.slice(0, 100)}`);
          continue;
        }
        if (!body.error?.code || !body.error.message) bad.push(`${what}: no error code/message`);
      }
      if (res.body.includes('not for clients')) bad.push(`${what}: served a file outside the static root`);
    }
    expect(bad).toEqual([]);
    const h = await app.fastify.inject({ method: 'GET', url: '/v1/health' });
    expect(h.statusCode).toBe(200);
    expect(app.audit.verify().ok).toBe(true);
  }, 120_000);

  it(`answers junk on the WebSockets with an error, never a crash (seed ${SEED})`, async () => {
    const r = rng(SEED ^ 0x5eed);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
    // The HTTP fuzz may have deleted or stopped `target`: a machine of this test's own.
    const running = (await app.machines.create('default', { name: 'ws-target', memoryMiB: 16 })).id;
    await app.machines.start('default', running);
    const address = (await app.fastify.listen({ host: '127.0.0.1', port: 0 })).replace('http', 'ws');
    const junk = (): string | Buffer => pick<() => string | Buffer>([
      () => 'not json', () => '{', () => 'null', () => '[]', () => '"cmd"', () => JSON.stringify({ cmd: 'x'.repeat(70_000) }),
      () => JSON.stringify({ cmd: 'echo', envs: { 'A=B': 'x' } }), () => JSON.stringify({ cmd: 'cat', stdin: 'yes' }), () => JSON.stringify({ cmd: 'sleep', timeoutMs: -5 }),
      () => JSON.stringify({ cmd: pick(['echo', 'cat', 'sleep', 'fail']), stdin: r() < 0.5, ...(r() < 0.3 ? { timeoutMs: 20 } : {}) }),
      () => JSON.stringify({ type: 'signal', signal: pick([0, 9, 15, 99, -1, 'x']) }), () => JSON.stringify({ type: 'eof' }), () => JSON.stringify({ type: 'resize', cols: 1e9 }),
      () => Buffer.alloc(Math.floor(r() * 3000), 0x41), () => JSON.stringify({ __proto__: { cmd: 'x' } }), () => '\u0000',
    ])();
    const bad: string[] = [];
    const rounds = Math.max(20, Math.floor(N / 5));
    for (let i = 0; i < rounds; i++) {
      const path = r() < 0.85 ? `/v1/machines/${pick([running, 'ws-target', 'target', 'nosuch', '%2e%2e', 'x'.repeat(300)])}/exec` : pick([...WS_ROUTES.map((w) => w.path.replace('{id}', running)), '/v1/nowhere', '/v1/machines//exec', '/v1/machines/%zz/exec']);
      const msgs = Array.from({ length: 1 + Math.floor(r() * 4) }, junk);
      const what = `${path.slice(0, 60)} ${msgs.map((m) => (typeof m === 'string' ? m.slice(0, 30) : `<${m.length} bytes>`)).join(' | ')}`;
      await new Promise<void>((done) => {
        const ws = new WebSocket(address + path, { headers: { authorization: `Bearer ${token}` } });
        const timer = setTimeout(() => { ws.terminate(); done(); }, 2000);
        ws.once('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => {
            if ((res.statusCode ?? 500) >= 500 && res.statusCode !== 501) bad.push(`${what}: upgrade answered ${res.statusCode}`);
            try {
              if (!JSON.parse(body).error?.message) bad.push(`${what}: no error message`);
            } catch {
              bad.push(`${what}: not JSON: ${body.slice(0, 80)}`);
            }
            clearTimeout(timer);
            done();
          });
        });
        ws.once('open', () => {
          for (const m of msgs) ws.send(m);
          setTimeout(() => ws.close(), 50);
        });
        ws.on('message', (data, isBinary) => {
          if (isBinary || !path.endsWith('/exec')) return;
          try {
            const m = JSON.parse(String(data));
            if (!['started', 'exit', 'error'].includes(m.type) || (m.type === 'error' && !(m.code && m.message))) bad.push(`${what}: odd message ${String(data).slice(0, 80)}`);
            if (m.type === 'error' && m.code === 'Internal') bad.push(`${what}: internal error ${m.message}`);
          } catch {
            bad.push(`${what}: not JSON: ${String(data).slice(0, 80)}`);
          }
        });
        ws.once('close', () => { clearTimeout(timer); done(); });
        ws.once('error', () => {});
      });
    }
    expect(bad).toEqual([]);
    expect((await app.fastify.inject({ method: 'GET', url: '/v1/health' })).statusCode).toBe(200);
  }, 120_000);
});
