/**
 * A hostile agent behind a real Unix socket that speaks the vsock device's CONNECT handshake
 * (src/host/vsock-unix.ts), as a guest whose root replaced visor's agent would: the host gets
 * a typed error or a bounded session, never an exception or a hang.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isVisorError } from '../base/errors.js';
import { connectAgent } from './connect.js';
import { G, H, HEADER_SIZE, MAX_BODY, Writer, frame } from './protocol.js';

let server: Server | undefined;
let dir: string | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A fake vsock endpoint: answers CONNECT, then hands the socket to `agent`. */
async function endpoint(agent: (sock: Socket, fromHost: (cb: (type: number, id: number) => void) => void) => void): Promise<string> {
  dir = mkdtempSync(join(tmpdir(), 'visor-hostile-'));
  const path = join(dir, 'v.sock');
  server = createServer((sock) => {
    sock.on('error', () => {});
    sock.once('data', (d) => {
      expect(d.toString()).toBe('CONNECT 1024\n');
      sock.write('OK 1073741824\n');
      agent(sock, (cb) => {
        let buf = Buffer.alloc(0);
        sock.on('data', (x) => {
          buf = Buffer.concat([buf, x]);
          while (buf.length >= HEADER_SIZE && buf.length >= HEADER_SIZE + buf.readUInt32LE(0)) {
            cb(buf[4]!, buf.readUInt32LE(5));
            buf = buf.subarray(HEADER_SIZE + buf.readUInt32LE(0));
          }
        });
      });
    });
  });
  await new Promise<void>((r) => server!.listen(path, () => r()));
  return path;
}

const ready = (id: number) => frame(G.READY, id, new Writer().u32(1).str('hostile').done());

describe('a hostile guest agent', () => {
  it('an agent that never answers HELLO: Timeout, not a hang', async () => {
    const path = await endpoint(() => {});
    const e = await connectAgent(path, { timeoutMs: 300 }).catch((x) => x);
    expect(isVisorError(e, 'Timeout')).toBe(true);
  });

  it('another protocol version: AgentProtocol', async () => {
    const path = await endpoint((sock, on) => on((type, id) => type === H.HELLO && sock.write(frame(G.READY, id, new Writer().u32(99).str('x').done()))));
    const e = await connectAgent(path, { timeoutMs: 2000 }).catch((x) => x);
    expect(isVisorError(e, 'AgentProtocol')).toBe(true);
  });

  it('garbage after the handshake ends the session with AgentProtocol and rejects what waits', async () => {
    let agentSock: Socket | undefined;
    const path = await endpoint((sock, on) => {
      agentSock = sock;
      on((type, id) => type === H.HELLO && sock.write(ready(id)));
    });
    const { session } = await connectAgent(path, { timeoutMs: 2000 });
    const pending = session.procs().catch((x) => x);
    // a frame claiming 4 GiB: refused from its header, nothing buffered
    const head = Buffer.alloc(HEADER_SIZE);
    head.writeUInt32LE(0xffff_fff0, 0);
    head[4] = G.DATA;
    agentSock!.write(head);
    expect(isVisorError(await pending, 'AgentProtocol')).toBe(true);
    expect(session.bufferedBytes).toBeLessThanOrEqual(HEADER_SIZE);
  });

  it('a flood of output for a command is delivered, never buffered whole; unknown ids are dropped', async () => {
    const path = await endpoint((sock, on) =>
      on((type, id) => {
        if (type === H.HELLO) sock.write(ready(id));
        if (type === H.EXEC) {
          sock.write(frame(G.STARTED, id, new Writer().u32(7).done()));
          const chunk = frame(G.STDOUT, id, new Uint8Array(MAX_BODY));
          for (let i = 0; i < 32; i++) sock.write(chunk); // 32 MiB
          for (let i = 0; i < 100; i++) sock.write(frame(G.STDOUT, 0xdead_0000 + i, new Uint8Array(10)));
          sock.write(frame(G.EXIT, id, new Writer().u32(0).u32(0).done()));
        }
      }),
    );
    const { session, socket } = await connectAgent(path, { timeoutMs: 2000 });
    let got = 0;
    let maxBuffered = 0;
    const h = session.exec({ argv: ['x'], env: [], cwd: '', user: 'root', stdin: false }, {
      onStdout: (d) => {
        got += d.length;
        maxBuffered = Math.max(maxBuffered, session.bufferedBytes);
      },
    });
    expect(await h.exited).toEqual({ exitCode: 0, signal: 0 });
    expect(got).toBe(32 * MAX_BODY);
    expect(maxBuffered).toBeLessThanOrEqual(HEADER_SIZE + MAX_BODY + 65536 * 2);
    expect(session.dropped).toBe(100);
    socket.destroy();
  });

  it('the agent hanging up: GuestGone for everything pending', async () => {
    let agentSock: Socket | undefined;
    const path = await endpoint((sock, on) => {
      agentSock = sock;
      on((type, id) => type === H.HELLO && sock.write(ready(id)));
    });
    const { session } = await connectAgent(path, { timeoutMs: 2000 });
    const p = session.list('/').catch((x) => x);
    agentSock!.destroy();
    expect(isVisorError(await p, 'GuestGone')).toBe(true);
  });
});
