/**
 * `visor daemon`: one process owning a state directory, serving the API on 127.0.0.1 (or a
 * Unix socket, with TLS if asked). The state directory holds:
 *   visor.db         the store (store.ts)
 *   daemon.pid       the owner's pid: a second daemon on the same directory is refused
 *   admin.token      written on first start (mode 0600): the first admin token
 *   machines/ID/     snapshots, resume snapshots
 *   disks/PROJECT/   qcow2 volumes
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import pino, { type Logger } from 'pino';
import { VisorError } from '../base/errors.js';
import { createApp, type App } from './app.js';
import { AgentGuestOps } from './agent-ops.js';
import type { GuestOps } from './guest-ops.js';
import type { Images, Limits } from './machines.js';
import { Store } from './store.js';
import { pidAlive } from '../host/pid-alive.js';

export interface DaemonOptions {
  stateDir: string;
  /** host:port; the host must be a loopback address unless allowRemote. */
  listen?: string;
  socket?: string;
  tls?: { cert: string; key: string };
  limits?: Limits;
  cpuCapacityPercent?: number;
  images?: Images;
  guest?: GuestOps;
  staticDir?: string;
  logger?: Logger;
  authFailures?: { max: number; windowMs: number };
}

export interface RunningDaemon {
  app: App;
  /** http(s)://host:port, or the socket path. */
  address: string;
  adminTokenFile?: string;
  stop(): Promise<void>;
}

/** The images a daemon offers by default: visor's image recipes, pulled on first use. */
export async function defaultImages(): Promise<Images> {
  const images = await import('../images/index.js');
  return {
    defaultImage: 'tiny',
    names: () => images.knownImageNames(),
    resolve: async (name, opts) => {
      const img = await images.ensureImage(name, opts);
      return { kernel: img.kernel, ...(img.initrd ? { initrd: img.initrd } : {}), ...(img.append ? { append: img.append } : {}) };
    },
  };
}

/** State directories this process holds (the pid file cannot tell: it holds our own pid). */
const held = new Set<string>();

/**
 * Takes the state directory (daemon.pid, O_EXCL); a stale file from a dead daemon is replaced.
 * A file with this process's own pid is stale too (a restarted container's daemon is pid 1
 * again) unless this process holds the directory.
 */
function lockStateDir(dir: string): () => void {
  const pidFile = join(dir, 'daemon.pid');
  const key = resolve(dir);
  if (held.has(key)) throw new VisorError('NotAllowed', `state directory ${dir} is in use by the daemon with pid ${process.pid} (this process)`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(pidFile, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      held.add(key);
      return () => {
        held.delete(key);
        rmSync(pidFile, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new VisorError('NotAllowed', `state directory ${dir} is in use by the daemon with pid ${pid}`);
      }
      rmSync(pidFile, { force: true });
    }
  }
  throw new VisorError('IoError', `state directory ${dir}: cannot take ${pidFile}`);
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  if (!m) throw new VisorError('InvalidArgument', `--listen ${s}: give HOST:PORT, e.g. 127.0.0.1:7780`);
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (port > 65535) throw new VisorError('InvalidArgument', `--listen ${s}: port out of range`);
  if (!LOOPBACK.test(host)) throw new VisorError('InvalidArgument', `--listen ${s}: visor binds loopback addresses only (127.0.0.1, ::1); put a proxy in front for remote access`);
  return { host, port };
}

/** Where the machines' agent sockets live (`STATE_DIR/sock/<machine id>`; keep STATE_DIR short: a Unix socket path has at most 107 bytes). */
export function agentSocketDir(stateDir: string): string {
  const dir = join(stateDir, 'sock');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export async function startDaemon(o: DaemonOptions): Promise<RunningDaemon> {
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  const unlock = lockStateDir(o.stateDir);
  const log = o.logger ?? pino({ base: { svc: 'visord' } });
  let store: Store | undefined;
  try {
    store = Store.open(join(o.stateDir, 'visor.db'));
    const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };
    const app = await createApp({
      store,
      stateDir: o.stateDir,
      images: o.images ?? (await defaultImages()),
      guest: o.guest ?? new AgentGuestOps(agentSocketDir(o.stateDir)),
      logger: log,
      version,
      ...(o.limits ? { limits: o.limits } : {}),
      ...(o.cpuCapacityPercent ? { cpuCapacityPercent: o.cpuCapacityPercent } : {}),
      ...(o.staticDir ? { staticDir: o.staticDir } : {}),
      ...(o.authFailures ? { authFailures: o.authFailures } : {}),
      ...(o.tls ? { https: { cert: readFileSync(o.tls.cert), key: readFileSync(o.tls.key) } } : {}),
    });
    let adminTokenFile: string | undefined;
    if (app.tokens.count() === 0) {
      const t = app.tokens.create('admin', 'admin', 'default');
      adminTokenFile = join(o.stateDir, 'admin.token');
      writeFileSync(adminTokenFile, `${t.token}\n`, { mode: 0o600 });
      chmodSync(adminTokenFile, 0o600);
      log.info({ file: adminTokenFile }, `first start: an admin token (project default) is in ${adminTokenFile}`);
    }
    const recovered = await app.machines.recover();
    log.info(recovered, 'machines recovered');
    let address: string;
    if (o.socket) {
      if (existsSync(o.socket)) rmSync(o.socket);
      await app.fastify.listen({ path: o.socket });
      chmodSync(o.socket, 0o600);
      address = o.socket;
    } else {
      const { host, port } = parseListen(o.listen ?? '127.0.0.1:7780');
      await app.fastify.listen({ host, port });
      const a = app.fastify.server.address();
      const realPort = typeof a === 'object' && a ? a.port : port;
      address = `${o.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${realPort}`;
    }
    log.info({ address, stateDir: o.stateDir }, 'visord listening');
    let stopping: Promise<void> | undefined;
    const s = store;
    return {
      app,
      address,
      ...(adminTokenFile ? { adminTokenFile } : {}),
      stop: () => (stopping ??= (async () => {
        await app.close().catch(() => {});
        await app.ops.drain();
        await app.machines.shutdown();
        s.close();
        unlock();
        log.info('visord stopped');
      })()),
    };
  } catch (err) {
    store?.close();
    unlock();
    throw err;
  }
}
