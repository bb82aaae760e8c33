import { createServer, createConnection, type AddressInfo } from 'node:net';
import { createSocket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN } from '../net/user/tcp.js';
import { FakeGuest } from '../net/user/testing.js';
import { UserNet } from '../net/user/user-net.js';
import { NodeHostSockets } from './usernet-sockets.js';

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

describe('user network over Node sockets (127.0.0.1 only)', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => cleanup.splice(0).forEach((f) => f()));

  it('a guest fetches from a host server through 10.0.2.2', async () => {
    const srv = createServer((s) => s.end('hello from the host'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanup.push(() => srv.close());
    const port = (srv.address() as AddressInfo).port;
    const net = new UserNet({ sockets: new NodeHostSockets() });
    cleanup.push(() => net.close());
    const g = new FakeGuest(net);
    g.tcp('10.0.2.2', 40000, port, 100, 0, TCP_SYN, undefined, { options: [2, 4, 5, 180] });
    await until(() => g.frames.length > 0);
    const [synack] = g.segments();
    expect(synack!.flags).toBe(TCP_SYN | TCP_ACK);
    g.tcp('10.0.2.2', 40000, port, 101, synack!.seq + 1, TCP_ACK);
    let got = '';
    let fin = false;
    let next = synack!.seq + 1;
    while (!fin) {
      await until(() => g.frames.length > 0);
      for (const s of g.segments()) {
        got += new TextDecoder().decode(s.payload);
        next = s.seq + s.payload.length + (s.flags & TCP_FIN ? 1 : 0);
        if (s.flags & TCP_FIN) fin = true;
      }
      g.tcp('10.0.2.2', 40000, port, 101, next, TCP_ACK);
    }
    expect(got).toBe('hello from the host');
    g.tcp('10.0.2.2', 40000, port, 101, next, TCP_ACK | TCP_FIN);
    expect(net.activeFlows.tcp).toBe(0);
  });

  it('a host client reaches the guest through a TCP forward, and UDP goes both ways', async () => {
    const net = new UserNet({ sockets: new NodeHostSockets() });
    cleanup.push(() => net.close());
    const g = new FakeGuest(net);
    g.udp('10.0.2.2', 1, 9, new Uint8Array(1)); // the gateway learns the guest's MAC
    g.take();
    const hostPort = await freePort();
    await net.addForward({ proto: 'tcp', hostPort, guestPort: 80 });
    const client = createConnection({ host: '127.0.0.1', port: hostPort });
    cleanup.push(() => client.destroy());
    let reply = '';
    client.on('data', (d) => (reply += d.toString()));
    client.write('GET /');
    await until(() => g.frames.length > 0);
    const [syn] = g.segments();
    expect(syn!.flags).toBe(TCP_SYN);
    g.tcp('10.0.2.2', 80, syn!.srcPort, 7000, syn!.seq + 1, TCP_SYN | TCP_ACK);
    await until(() => g.frames.length > 1);
    const data = g.segments().find((s) => s.payload.length > 0)!;
    expect(new TextDecoder().decode(data.payload)).toBe('GET /');
    g.tcp('10.0.2.2', 80, syn!.srcPort, 7001, data.seq + 5, TCP_ACK | TCP_PSH, new TextEncoder().encode('200 OK'));
    await until(() => reply === '200 OK');

    // UDP: the guest sends to a host echo server on 127.0.0.1 and gets the reply.
    const echo = createSocket('udp4');
    cleanup.push(() => echo.close());
    echo.on('message', (m, r) => echo.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    g.take();
    g.udp('10.0.2.2', 33333, echo.address().port, new TextEncoder().encode('hi'));
    await until(() => g.frames.length > 0);
    const [u] = g.udps();
    expect(new TextDecoder().decode(u!.payload)).toBe('echo:hi');
    expect(u!.dstPort).toBe(33333);
  });

  // Node's resetAndDestroy() right after end() fails with EINVAL and leaks the handle: no
  // 'close' ever, and a worker holding it spins forever in its teardown (Machine.kill hung).
  it('a host socket destroyed right after end() still closes (no leaked handle)', async () => {
    const srv = createServer((s) => {
      s.on('error', () => {});
      s.write('x');
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanup.push(() => srv.close());
    for (const when of ['connecting', 'same tick as end()'] as const) {
      let closed = false;
      let connected = false;
      const sock = new NodeHostSockets().connectTcp('127.0.0.1', (srv.address() as AddressInfo).port, {
        onConnect: () => {
          connected = true;
          if (when === 'same tick as end()') {
            sock.end();
            sock.destroy();
          }
        },
        onData() {},
        onEnd() {},
        onClose: () => (closed = true),
        onDrain() {},
      });
      if (when === 'connecting') sock.destroy();
      else await until(() => connected);
      await until(() => closed, 3000).catch(() => {
        throw new Error(`the socket destroyed ${when} never closed`);
      });
    }
  });

  it('resolves localhost with the host resolver', async () => {
    expect(await new NodeHostSockets().resolve('localhost', 4)).toContain('127.0.0.1');
  });
});
