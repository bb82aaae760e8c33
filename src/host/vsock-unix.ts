/**
 * vsock ↔ Unix sockets with Firecracker's convention:
 * - the guest connects to CID 2 port P → we connect to the Unix socket `${path}_${P}`;
 * - a host program connects to `path`, writes `CONNECT P\n`, gets `OK <hostPort>\n` once the
 *   guest listening on port P accepted, and then the socket is the stream;
 * - ours alone: `ADOPT G H\n` takes over the stream between guest port G and host port H that
 *   a restore kept open (a fork's child continuing its parent's agent connection), `OK H\n`.
 */
import { lstat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { VisorError } from '../base/errors.js';
import type { VirtioVsock, VsockBackend, VsockConnection } from '../virtio/vsock/device.js';

function splice(sock: Socket, conn: VsockConnection): void {
  conn.onData = (d) => void sock.write(d);
  conn.onClose = () => sock.destroy();
  sock.on('data', (d: Buffer) => conn.send(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
  sock.on('close', () => conn.close());
  sock.on('error', () => sock.destroy());
}

/** Guest-initiated connections go to `${path}_${port}`. */
export function unixVsockBackend(path: string): VsockBackend {
  return {
    accept: (conn) =>
      new Promise<boolean>((resolve) => {
        const sock = createConnection(`${path}_${conn.hostPort}`);
        sock.once('error', () => resolve(false));
        sock.once('connect', () => {
          sock.removeAllListeners('error');
          splice(sock, conn);
          resolve(true);
        });
      }),
  };
}

export interface VsockListener {
  close(): Promise<void>;
}

/** Accepts host-initiated connections on `path` (`CONNECT P\n` handshake). */
export async function listenVsockUnix(dev: VirtioVsock, path: string): Promise<VsockListener> {
  await clearStaleSocket(path);
  const sockets = new Set<Socket>();
  const srv: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let line = '';
    const onData = (d: Buffer) => {
      line += d.toString('latin1');
      const nl = line.indexOf('\n');
      if (nl < 0) {
        if (line.length > 64) sock.destroy(); // not a CONNECT line
        return;
      }
      sock.off('data', onData);
      sock.pause();
      const head = line.slice(0, nl).trim();
      const rest = Buffer.from(line.slice(nl + 1), 'latin1');
      const attach = (conn: VsockConnection) => {
        sock.write(`OK ${conn.hostPort}\n`); // before any of the stream's bytes
        splice(sock, conn);
      };
      const started = (conn: VsockConnection) => {
        if (rest.length) conn.send(new Uint8Array(rest));
        sock.resume();
      };
      // ADOPT G H: the stream a restore kept (VirtioVsock.keepOnRestore), continued as it was;
      // guest bytes that waited for it follow the OK line.
      const adopt = /^ADOPT (\d{1,10}) (\d{1,10})$/.exec(head);
      if (adopt) {
        const conn = dev.adopt(Number(adopt[1]), Number(adopt[2]), attach);
        return void (conn ? started(conn) : sock.destroy());
      }
      const m = /^CONNECT (\d{1,10})$/.exec(head);
      if (!m || Number(m[1]) > 0xffff_ffff) return void sock.destroy();
      dev.connect(Number(m[1])).then(
        (conn) => {
          attach(conn);
          started(conn);
        },
        () => sock.destroy(),
      );
    };
    sock.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(path, () => resolve());
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

/**
 * Makes way for a listening socket at `path`: nothing there is fine; a Unix socket nobody
 * answers is a stale one (a visor that died) and is removed. Anything else is refused, never
 * deleted: a file that happens to have that name, or a socket some live process (another VM)
 * still serves.
 */
export async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new VisorError('IoError', `vsock: cannot check ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isSocket()) {
    throw new VisorError('InvalidArgument', `vsock: ${path} exists and is not a socket; visor will not replace it (choose another path or remove it yourself)`);
  }
  const answered = await new Promise<boolean>((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false)); // ECONNREFUSED: nobody listens
  });
  if (answered) throw new VisorError('InUse', `vsock: ${path} is in use: another process (another VM?) listens on it`);
  await unlink(path).catch(() => {});
}
