/**
 * The user-mode network's host side on Node: net.Socket for TCP, dgram for UDP, the host's
 * resolver (dns.lookup, which follows /etc/hosts and nsswitch as every other program on the
 * host does) for DNS. src/net/user/ is the stack; this only moves bytes.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { HostListener, HostSockets, HostTcpSocket, HostUdpSocket, TcpSocketEvents } from '../net/user/host-sockets.js';

const view = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

/** Wraps a net.Socket for the stack; `events` may be set later (accepted sockets). */
function wrapTcp(sock: Socket, events: { current: TcpSocketEvents | null }): HostTcpSocket {
  sock.setNoDelay(true);
  let closed = false;
  sock.on('connect', () => events.current?.onConnect());
  sock.on('data', (d: Buffer) => events.current?.onData(view(d)));
  sock.on('end', () => events.current?.onEnd());
  sock.on('drain', () => events.current?.onDrain());
  sock.on('error', () => {}); // 'close' follows with hadError
  sock.on('close', (hadError: boolean) => {
    closed = true;
    events.current?.onClose(hadError);
  });
  return {
    write: (d) => {
      if (!closed && !sock.destroyed) sock.write(d);
    },
    get bufferedBytes() {
      return sock.writableLength;
    },
    end: () => {
      if (!closed) sock.end();
    },
    destroy: () => {
      if (closed) return;
      // resetAndDestroy sends RST where the peer should see an abort (Node 16.17+). Not after
      // end(): while that shutdown is in flight libuv refuses the reset (EINVAL), and Node then
      // drops the handle without closing it. The socket never closes, and a worker holding it
      // never finishes terminating: its teardown spins at 100 % CPU waiting for that handle
      // (Machine.kill() hung so in the user-network guest test when a guest's FIN and the
      // kill came together). Nor while connecting, where it waits for a connect that may never
      // come. Both get a plain destroy: after a FIN the peer has the end it needs.
      if (sock.writableEnded || sock.connecting || !sock.resetAndDestroy) sock.destroy();
      else sock.resetAndDestroy();
    },
    pause: () => void sock.pause(),
    resume: () => void sock.resume(),
    remoteAddress: sock.remoteAddress,
    remotePort: sock.remotePort,
  };
}

function wrapUdp(s: UdpSocket): HostUdpSocket {
  let closed = false;
  s.on('error', () => {});
  return {
    send: (data, port, address) => {
      if (!closed) s.send(data, port, address, () => {});
    },
    close: () => {
      if (!closed) {
        closed = true;
        s.close();
      }
    },
  };
}

export class NodeHostSockets implements HostSockets {
  connectTcp(address: string, port: number, events: TcpSocketEvents): HostTcpSocket {
    const sock = createConnection({ host: address, port });
    return wrapTcp(sock, { current: events });
  }

  bindUdp(onMessage: (data: Uint8Array, address: string, port: number) => void): HostUdpSocket {
    const s = createSocket('udp4');
    s.on('message', (msg, rinfo) => onMessage(view(msg), rinfo.address, rinfo.port));
    s.bind(0);
    return wrapUdp(s);
  }

  listenTcp(address: string, port: number, accept: (socket: HostTcpSocket) => TcpSocketEvents): Promise<HostListener> {
    return new Promise((resolve, reject) => {
      const srv = createServer({ pauseOnConnect: true }, (sock) => {
        const events: { current: TcpSocketEvents | null } = { current: null };
        const wrapped = wrapTcp(sock, events);
        events.current = accept(wrapped);
      });
      srv.once('error', reject);
      srv.listen({ host: address, port }, () => {
        srv.removeListener('error', reject);
        srv.on('error', () => {});
        resolve({ close: () => void srv.close() });
      });
    });
  }

  listenUdp(address: string, port: number, onMessage: (data: Uint8Array, address: string, port: number) => void): Promise<HostUdpSocket> {
    return new Promise((resolve, reject) => {
      const s = createSocket('udp4');
      s.once('error', reject);
      s.on('message', (msg, rinfo) => onMessage(view(msg), rinfo.address, rinfo.port));
      s.bind(port, address, () => {
        s.removeListener('error', reject);
        resolve(wrapUdp(s));
      });
    });
  }

  async resolve(name: string, family: 4 | 6): Promise<string[]> {
    try {
      const r = await lookup(name, { family, all: true });
      return r.map((a) => a.address);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
      throw err;
    }
  }

  hostAddresses(): string[] {
    const out = ['127.0.0.1', '0.0.0.0'];
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4') out.push(a.address);
    return out;
  }
}
