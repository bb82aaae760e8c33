/**
 * `--net switch=NAME` across processes: the first visor process on a host to use NAME listens
 * on a Unix socket and becomes the hub; later ones connect to it. Each connection is a
 * SwitchLink, so the hub's switch forwards between its own VMs and every other process.
 * If the hub exits, the others lose the link (they can rejoin; one of them becomes hub).
 */
import { lstatSync, mkdirSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VisorError } from '../base/errors.js';
import { SwitchLink } from '../net/link.js';
import type { L2Switch } from '../net/switch.js';

/**
 * Where switch sockets live: $XDG_RUNTIME_DIR (private to the user by the XDG spec), else a
 * directory of our own under the temp dir, made 0700 and checked to be ours: in a shared
 * /tmp, anyone could otherwise put a socket of theirs where a VM's traffic would go.
 */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env, base = tmpdir()): string {
  if (env.XDG_RUNTIME_DIR) return env.XDG_RUNTIME_DIR;
  const uid = process.getuid?.() ?? 0;
  const dir = join(base, `visor-${uid}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new VisorError('IoError', `cannot create ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new VisorError('NotAllowed', `${dir} is not a private directory of this user (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}): set XDG_RUNTIME_DIR, or remove it`);
  }
  return dir;
}

export function switchSocketPath(name: string, dir?: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new VisorError('InvalidArgument', `bad switch name '${name}'`);
  return join(dir ?? runtimeDir(), `visor-net-${name}.sock`);
}

/** The socket of a named user network (`--net user=NAME`): its own namespace beside switches. */
export function userNetSocketPath(name: string, dir = process.env.XDG_RUNTIME_DIR || tmpdir()): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new VisorError('InvalidArgument', `bad network name '${name}'`);
  return join(dir, `visor-usernet-${name}.sock`);
}

export interface SocketSwitchMembership {
  readonly role: 'hub' | 'member';
  readonly path: string;
  close(): Promise<void>;
}

function link(sw: L2Switch, sock: Socket, label: string): SwitchLink {
  const l = new SwitchLink(sw, { write: (d) => void sock.write(d), close: () => sock.destroy() }, label);
  sock.on('data', (d: Buffer) => l.receive(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
  sock.on('close', () => l.close());
  sock.on('error', () => sock.destroy());
  return l;
}

function tryConnect(path: string): Promise<Socket | NodeJS.ErrnoException> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (e) => resolve(e as NodeJS.ErrnoException));
  });
}

function tryListen(path: string): Promise<Server | NodeJS.ErrnoException> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (e) => resolve(e as NodeJS.ErrnoException));
    srv.listen(path, () => {
      srv.removeAllListeners('error');
      resolve(srv);
    });
  });
}

/** Joins `sw` to the host-wide switch at `path` (see switchSocketPath). */
export async function joinSocketSwitch(sw: L2Switch, path: string): Promise<SocketSwitchMembership> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const c = await tryConnect(path);
    if (!(c instanceof Error)) {
      const l = link(sw, c, 'hub');
      return {
        role: 'member',
        path,
        close: async () => {
          l.close();
        },
      };
    }
    // Nobody listening: a stale socket file from a dead hub is removed, then we take over.
    if (c.code === 'ECONNREFUSED') await unlink(path).catch(() => {});
    else if (c.code !== 'ENOENT') throw new VisorError('NetworkError', `switch socket ${path}: ${c.message}`, { cause: c });
    const srv = await tryListen(path);
    if (srv instanceof Error) {
      if (srv.code === 'EADDRINUSE') continue; // another process won the race: connect to it
      throw new VisorError('NetworkError', `switch socket ${path}: ${srv.message}`, { cause: srv });
    }
    const sockets = new Set<Socket>();
    srv.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      link(sw, s, 'member');
    });
    return {
      role: 'hub',
      path,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          srv.close(() => resolve());
        }),
    };
  }
  throw new VisorError('NetworkError', `could not join switch at ${path}`);
}
