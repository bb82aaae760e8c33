/**
 * The daemon's HTTP + WebSocket server (fastify, ws): authentication, authorization, the route
 * table (routes.ts), errors as `{ error: { code, message } }` with the status from
 * base/errors.ts, the audit of every state-changing request, one JSON log line per request,
 * Prometheus metrics, the OpenAPI document and the web console's static files.
 */
import { readFileSync, statSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import pino, { type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { VisorError, isVisorError } from '../base/errors.js';
import { AuditLog } from './audit.js';
import { AuthFailureLimiter, Tokens, roleAllows, type Principal } from './auth.js';
import { EventBus } from './events.js';
import type { GuestOps } from './guest-ops.js';
import { MachineManager, type Images, type Limits } from './machines.js';
import { DaemonNetworks } from './networks.js';
import { attachExecSocket } from './exec-ws.js';
import { DaemonMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { Operations } from './operations.js';
import { MAX_UPLOAD, buildRoutes, type RouteDef } from './routes.js';
import type { Store } from './store.js';
import type { Machine } from '../sdk/machine.js';

export interface AppOptions {
  store: Store;
  stateDir: string;
  images: Images;
  guest: GuestOps;
  limits?: Limits;
  /** CPU the machines may use together (percent of one core); default 100 per host core. */
  cpuCapacityPercent?: number;
  logger?: Logger;
  /** Auth failures per client before it is refused, and the window (default 10 per minute). */
  authFailures?: { max: number; windowMs: number };
  /** The web console's files, served at / (issue 18). */
  staticDir?: string;
  version?: string;
  https?: { cert: Buffer; key: Buffer };
}

export interface App {
  fastify: FastifyInstance;
  machines: MachineManager;
  networks: DaemonNetworks;
  tokens: Tokens;
  audit: AuditLog;
  events: EventBus;
  ops: Operations;
  routes: RouteDef[];
  close(): Promise<void>;
}

/** The WebSockets, for the OpenAPI document, the docs and the authorization matrix test. */
export const WS_ROUTES = [
  { path: '/v1/events', role: 'viewer', summary: 'WebSocket: lifecycle and operation events of the project (audit entries for admins)' },
  { path: '/v1/machines/{id}/console', role: 'viewer', summary: 'WebSocket: the machine\'s console, binary frames both ways (a viewer\'s input is dropped); the last 64 KiB replayed on connect' },
  { path: '/v1/machines/{id}/pty', role: 'operator', summary: 'WebSocket: a root shell on a pty through the guest agent; binary frames are keystrokes, {"type":"resize","cols","rows"} resizes' },
  { path: '/v1/machines/{id}/exec', role: 'operator', summary: 'WebSocket: streaming exec. Send {cmd, cwd?, envs?, timeoutMs?, stdin?}; receive {"type":"started","pid"}, binary output frames (first byte 1 stdout, 2 stderr), then {"type":"exit","exitCode","signal"}; binary frames are stdin, {"type":"eof"} ends it, {"type":"signal","signal":N} signals' },
] as const;

/** JSON request bodies: at most 1 MiB. Uploads have their own bound (MAX_UPLOAD). */
export const MAX_JSON_BODY = 1024 * 1024;

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    visorError?: VisorError;
  }
}

function zodMessage(err: z.ZodError, what: string): string {
  const issue = err.issues[0]!;
  let field = issue.path.map(String).join('.');
  let msg = issue.message;
  if (issue.code === 'unrecognized_keys') {
    field = [...issue.path.map(String), (issue as { keys: string[] }).keys[0]].filter(Boolean).join('.');
    msg = 'unknown field';
  }
  return `${what}: ${field || '(root)'}: ${msg}`;
}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new VisorError('InvalidArgument', zodMessage(r.error, what));
  return r.data;
}

/** Maps anything thrown in a request to the API's error. */
function toVisorError(err: unknown): VisorError {
  if (isVisorError(err)) return err;
  const e = err as { statusCode?: number; code?: string; message?: string };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    if (e.statusCode === 413) return new VisorError('TooLarge', `request body too large (JSON at most ${MAX_JSON_BODY} bytes, uploads at most ${MAX_UPLOAD})`);
    if (e.statusCode === 415) return new VisorError('InvalidArgument', `unsupported content type: send application/json (or application/octet-stream for uploads)`);
    return new VisorError('InvalidArgument', `bad request: ${e.message ?? 'malformed'}`);
  }
  return new VisorError('Internal', 'internal error (the daemon log has the details)', { cause: err });
}

/** A path segment of a WebSocket's URL, decoded; bad percent-encoding is the client's error. */
function pathParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new VisorError('InvalidArgument', `bad percent-encoding in the path: '${raw.slice(0, 100)}'`);
  }
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.ico': 'image/x-icon', '.woff2': 'font/woff2', '.map': 'application/json', '.txt': 'text/plain; charset=utf-8',
};

export async function createApp(o: AppOptions): Promise<App> {
  const log = o.logger ?? pino({ level: 'silent' });
  const events = new EventBus();
  const tokens = new Tokens(o.store);
  const audit = new AuditLog(o.store);
  const ops = new Operations(o.store, events);
  const networks = new DaemonNetworks(o.stateDir);
  const machines = new MachineManager({ store: o.store, stateDir: o.stateDir, images: o.images, events, guest: o.guest, networks, limits: o.limits ?? {}, ...(o.cpuCapacityPercent ? { cpuCapacityPercent: o.cpuCapacityPercent } : {}) });
  const limiter = new AuthFailureLimiter(o.authFailures?.max ?? 10, o.authFailures?.windowMs ?? 60_000);
  const version = o.version ?? '0';
  const routes = buildRoutes({ store: o.store, machines, networks, ops, tokens, audit, images: o.images, version });
  const metrics = new DaemonMetrics(machines, ops);

  const fastify = Fastify({
    logger: false,
    bodyLimit: MAX_JSON_BODY,
    // On shutdown, long polls (/wait) end at once; the operations themselves run to the end.
    forceCloseConnections: true,
    ...(o.https ? { https: o.https } : {}),
    // Client ids in logs; a proxy in front is not assumed (trustProxy off).
    genReqId: (() => { let n = 0; return () => `r${(++n).toString(36)}`; })(),
    // Errors the router meets before any handler (a bad URL, a parameter past 100 chars).
    frameworkErrors: (err, _req, reply) => {
      const e = (err as { statusCode?: number }).statusCode === 414
        ? new VisorError('TooLarge', 'the URL is too long (path parameters at most 100 characters)')
        : new VisorError('InvalidArgument', `bad request URL: ${err.message}`);
      void (reply as unknown as FastifyReply).code(e.httpStatus).type('application/json').send({ error: { code: e.code, message: e.message } });
    },
  }) as unknown as FastifyInstance;

  fastify.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: MAX_UPLOAD }, (_req, body, done) => done(null, body));

  /** Who is calling: the principal, or an error (401 / 429). */
  const authenticate = (header: string | undefined, client: string): Principal => {
    limiter.check(client);
    const m = /^Bearer ([^\s]{1,200})$/.exec(header ?? '');
    const p = m ? tokens.verify(m[1]!) : undefined;
    if (!p) {
      limiter.fail(client);
      throw new VisorError('Unauthorized', header ? 'the token is not valid (unknown or revoked)' : 'this needs a token: Authorization: Bearer <token>');
    }
    return p;
  };

  const send = (reply: FastifyReply, err: VisorError) => {
    reply.request.visorError = err;
    return reply.code(err.httpStatus).type('application/json').send({ error: { code: err.code, message: err.message } });
  };

  fastify.setErrorHandler((err, req, reply) => {
    const e = toVisorError(err);
    if (e.code === 'Internal') log.error({ reqId: req.id, err }, 'internal error');
    return send(reply, e);
  });
  fastify.setNotFoundHandler((req, reply) => send(reply, new VisorError('NotFound', `${req.method} ${req.url.split('?')[0]}: no such route`)));

  fastify.addHook('onResponse', async (req, reply) => {
    metrics.observe(req.routeOptions.url ?? 'unmatched', req.method, reply.statusCode, reply.elapsedTime / 1000);
    log.info({
      reqId: req.id, method: req.method, url: req.url.split('?')[0], route: req.routeOptions.url, status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10, client: req.ip, actor: req.principal?.name,
      ...(req.visorError ? { error: req.visorError.code } : {}),
    }, 'request');
  });

  for (const r of routes) {
    const changes = r.method !== 'GET';
    fastify.route({
      method: r.method,
      url: r.url,
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        let principal: Principal = { tokenId: '', name: 'anonymous', role: 'viewer', project: '' };
        if (r.role !== 'public') {
          principal = authenticate(req.headers.authorization, req.ip);
          req.principal = principal;
        }
        const params = req.params as Record<string, string>;
        const target = params.id ?? params.name ?? '';
        const record = (result: string) => {
          if (!changes) return;
          const e = audit.append({ actor: `${principal.name}(${principal.tokenId})`, project: principal.project, action: `${r.method} ${r.url}`, target, result });
          events.publish({ type: 'audit', project: principal.project, seq: e.seq, actor: e.actor, action: e.action, target, result });
        };
        try {
          if (r.role !== 'public' && !roleAllows(principal.role, r.role)) {
            throw new VisorError('Forbidden', `a ${principal.role} token cannot ${r.method} ${r.url} (needs ${r.role})`);
          }
          const body = r.rawBody
            ? (Buffer.isBuffer(req.body) ? new Uint8Array(req.body) : (() => { throw new VisorError('InvalidArgument', 'send the file as application/octet-stream'); })())
            : r.body ? parse(r.body, req.body ?? {}, 'body') : req.body === undefined || req.body === null ? undefined : parse(z.strictObject({}), req.body, 'body');
          const query = r.query ? parse(r.query, req.query, 'query') : parse(z.strictObject({}), req.query, 'query');
          const res = await r.handler({ principal, params, body, query });
          record('ok');
          if (res.headers) reply.headers(res.headers);
          reply.code(res.status ?? 200);
          if (res.raw) return reply.type('application/octet-stream').send(Buffer.from(res.raw.buffer, res.raw.byteOffset, res.raw.byteLength));
          return res.body === undefined ? reply.send() : reply.send(res.body);
        } catch (err) {
          const e = toVisorError(err);
          record(e.code);
          throw e;
        }
      },
    });
  }

  fastify.get('/openapi.json', async () => openApiDocument(routes, version, WS_ROUTES));
  fastify.get('/metrics', async (req, reply) => {
    const p = authenticate(req.headers.authorization, req.ip);
    req.principal = p;
    reply.type('text/plain; version=0.0.4');
    return metrics.text(p.role === 'admin' ? undefined : p.project);
  });

  // ---- the web console's files (issue 18): GET / and anything not under /v1
  const staticRoot = o.staticDir ? resolve(o.staticDir) : undefined;
  const serveStatic = async (req: FastifyRequest, reply: FastifyReply) => {
    const url = req.url.split('?')[0]!;
    if (!staticRoot) throw new VisorError('NotFound', `${url}: this daemon serves no web console`);
    let rel: string;
    try {
      rel = decodeURIComponent(url);
    } catch {
      throw new VisorError('InvalidArgument', 'bad percent-encoding in the path');
    }
    if (rel.includes('\0')) throw new VisorError('InvalidArgument', 'NUL in the path');
    if (rel === '/' || rel.endsWith('/')) rel += 'index.html';
    const path = normalize(join(staticRoot, rel));
    if (!path.startsWith(staticRoot + sep)) throw new VisorError('NotFound', `${url}: not found`);
    try {
      if (!statSync(path).isFile()) throw new Error('not a file');
    } catch {
      throw new VisorError('NotFound', `${url}: not found`);
    }
    return reply.type(CONTENT_TYPES[extname(path)] ?? 'application/octet-stream').send(readFileSync(path));
  };
  fastify.get('/', serveStatic);
  fastify.get('/*', serveStatic);

  // ---- WebSockets: /v1/events and /v1/machines/:id/console
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  const sockets = new Set<WebSocket>();
  const refuse = (socket: Duplex, status: number, err: VisorError) => {
    const body = JSON.stringify({ error: { code: err.code, message: err.message } });
    socket.end(`HTTP/1.1 ${status} ${err.code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  };
  fastify.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://visor');
    const client = req.socket.remoteAddress ?? '?';
    let principal: Principal;
    try {
      // Browsers cannot set headers on a WebSocket: the token may come as ?token= (never logged).
      const q = url.searchParams.get('token');
      principal = authenticate(req.headers.authorization ?? (q ? `Bearer ${q}` : undefined), client);
    } catch (err) {
      const e = toVisorError(err);
      return refuse(socket, e.httpStatus, e);
    }
    const consolePath = /^\/v1\/machines\/([^/]+)\/console$/.exec(url.pathname);
    const pty = /^\/v1\/machines\/([^/]+)\/pty$/.exec(url.pathname);
    const exec = /^\/v1\/machines\/([^/]+)\/exec$/.exec(url.pathname);
    let attach: (ws: WebSocket) => void;
    if (url.pathname === '/v1/events') {
      attach = (ws) => {
        const off = events.subscribe((e) => {
          if (e.project !== principal.project && !(principal.role === 'admin' && e.type === 'audit')) return;
          if (e.type === 'audit' && principal.role !== 'admin') return;
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(e));
        });
        ws.on('close', off);
      };
    } else if (consolePath) {
      let id: string;
      let con: ReturnType<MachineManager['console']>;
      try {
        id = machines.resolveId(principal.project, pathParam(consolePath[1]!));
        con = machines.console(principal.project, id);
      } catch (err) {
        const e = toVisorError(err);
        return refuse(socket, e.httpStatus, e);
      }
      attach = (ws) => {
        ws.send(con.scrollback);
        const vm = con.machine;
        if (!vm) {
          ws.close(1000, 'the machine is not running');
          return;
        }
        const onData = (b: Buffer) => ws.readyState === ws.OPEN && ws.send(b);
        const onEnd = () => ws.close(1000, 'the machine stopped');
        vm.console.on('data', onData);
        vm.console.once('end', onEnd);
        ws.on('message', (data, isBinary) => {
          // A viewer watches; typing is an operator's.
          if (!roleAllows(principal.role, 'operator')) return;
          if (!isBinary) {
            // Text frames are control messages ({"type":"resize",...}); the serial console has no size.
            return;
          }
          vm.console.write(Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer));
        });
        ws.on('close', () => {
          vm.console.off('data', onData);
          vm.console.off('end', onEnd);
        });
      };
    } else if (pty) {
      // A shell on a pty through the guest agent: binary frames are keystrokes, text frames
      // control messages ({"type":"resize","cols":N,"rows":N}). Operators only: it is a root shell.
      if (!roleAllows(principal.role, 'operator')) return refuse(socket, 403, new VisorError('Forbidden', 'a shell in a machine needs the operator role'));
      let vm: Machine;
      try {
        const id = machines.resolveId(principal.project, pathParam(pty[1]!));
        const m = machines.console(principal.project, id).machine;
        if (!m || m.state !== 'running') throw new VisorError('NotAllowed', `machine ${id} is not running`);
        if (!o.guest.openPty) throw new VisorError('Unsupported', 'this daemon has no guest agent binding for shells');
        vm = m;
      } catch (err) {
        const e = toVisorError(err);
        return refuse(socket, e.httpStatus, e);
      }
      attach = (ws) => {
        let handle: Awaited<ReturnType<NonNullable<GuestOps['openPty']>>> | undefined;
        const pending: Buffer[] = [];
        let size = { cols: 80, rows: 24 };
        const control = (text: string) => {
          try {
            const m = JSON.parse(text) as { type?: unknown; cols?: unknown; rows?: unknown };
            if (m.type === 'resize' && Number.isInteger(m.cols) && Number.isInteger(m.rows)) {
              size = { cols: Math.min(1000, Math.max(1, m.cols as number)), rows: Math.min(1000, Math.max(1, m.rows as number)) };
              void handle?.resize(size.cols, size.rows).catch(() => {});
            }
          } catch { /* not a control message: ignored */ }
        };
        ws.on('message', (data, isBinary) => {
          const b = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
          if (!isBinary) return control(b.toString('utf8'));
          if (handle) void handle.write(b).catch(() => {});
          else if (pending.length < 64) pending.push(b);
        });
        ws.on('close', () => void handle?.close());
        o.guest.openPty!(vm, size, (d) => ws.readyState === ws.OPEN && ws.send(d), (code) => ws.close(1000, `the shell exited (${code})`))
          .then((h) => {
            handle = h;
            void h.resize(size.cols, size.rows).catch(() => {});
            for (const b of pending.splice(0)) void h.write(b).catch(() => {});
          })
          .catch((err) => ws.close(1011, toVisorError(err).message.slice(0, 120)));
      };
    } else if (exec) {
      // Streaming exec (exec-ws.ts): as POST .../exec, operators only.
      if (!roleAllows(principal.role, 'operator')) return refuse(socket, 403, new VisorError('Forbidden', `a ${principal.role} token cannot exec in a machine (needs operator)`));
      let vm: Machine;
      try {
        const id = machines.resolveId(principal.project, pathParam(exec[1]!));
        const m = machines.console(principal.project, id).machine;
        if (!m || m.state !== 'running') throw new VisorError('NotAllowed', `machine ${id} is not running: exec needs it running`);
        vm = m;
      } catch (err) {
        const e = toVisorError(err);
        return refuse(socket, e.httpStatus, e);
      }
      attach = (ws) => attachExecSocket(ws, vm, o.guest);
    } else {
      return refuse(socket, 404, new VisorError('NotFound', `${url.pathname}: no WebSocket here (${WS_ROUTES.map((w) => w.path).join(', ')})`));
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('error', () => {});
      attach(ws);
    });
  });

  ops.recover();
  return {
    fastify, machines, networks, tokens, audit, events, ops, routes,
    async close() {
      for (const ws of sockets) ws.terminate();
      wss.close();
      await fastify.close();
    },
  };
}
