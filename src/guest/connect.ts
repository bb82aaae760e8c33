/**
 * Reaching the guest agent from the host: the machine's virtio-vsock listens on a Unix socket
 * (src/host/vsock-unix.ts, Firecracker's convention): connect, write `CONNECT <port>\n`, read
 * `OK <hostPort>\n`, and the socket is the stream to the agent. The calling thread talks to
 * it directly; the machine's worker only moves vsock packets.
 */
import { randomBytes } from 'node:crypto';
import { createConnection, type Socket } from 'node:net';
import { VisorError } from '../base/errors.js';
import { AGENT_VSOCK_PORT, PROTOCOL_VERSION } from './protocol.js';
import { AgentSession } from './session.js';

export interface AgentConnectOptions {
  /** Give up after this long (the agent may still be starting: refused connections are retried). */
  timeoutMs: number;
  /** First request id (a fork's agent still runs its parent's commands under the parent's ids). */
  firstId?: number;
  /** Stop retrying early (the machine stopped). */
  signal?: AbortSignal;
  /** eth0's new MAC, which the agent sets at HELLO (a fork's child: its NIC has it already). */
  mac?: Uint8Array;
}

export interface AgentConnection {
  session: AgentSession;
  socket: Socket;
  agent: string;
  /** What came of `mac` (AgentConnectOptions): 0, an errno; undefined from an agent without the field. */
  macStatus?: number;
  /** The stream's host port (vsock), which a fork's children adopt (adoptAgent). */
  hostPort: number;
  /** An adopted stream's HELLO, answered later (adoptAgent): its READY, with macStatus. */
  ready?: Promise<{ version: number; agent: string; macStatus?: number }>;
}

interface Opened {
  socket: Socket;
  rest: Buffer;
  hostPort: number;
}

/** Opens the vsock socket and writes `request`; resolves once `OK <hostPort>` came back (undefined: refused, closed or timed out). */
function once(path: string, timeoutMs: number, request = `CONNECT ${AGENT_VSOCK_PORT}\n`): Promise<Opened | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    let line = '';
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const finish = (v: Opened | undefined) => {
      clearTimeout(timer);
      socket.off('data', onData);
      if (!v) socket.destroy();
      resolve(v);
    };
    const onData = (d: Buffer) => {
      line += d.toString('latin1');
      const nl = line.indexOf('\n');
      if (nl < 0) {
        if (line.length > 64) finish(undefined);
        return;
      }
      socket.pause();
      const ok = /^OK (\d{1,10})$/.exec(line.slice(0, nl));
      if (!ok) return finish(undefined);
      finish({ socket, rest: Buffer.from(line.slice(nl + 1), 'latin1'), hostPort: Number(ok[1]) });
    };
    socket.on('data', onData);
    socket.once('error', () => finish(undefined));
    socket.once('close', () => finish(undefined));
    socket.once('connect', () => socket.write(request));
  });
}

/** Connects, retrying while nobody listens, then says HELLO (with fresh entropy for the guest). */
export async function connectAgent(path: string, opts: AgentConnectOptions): Promise<AgentConnection> {
  const deadline = Date.now() + opts.timeoutMs;
  for (let attempt = 0; ; attempt++) {
    if (opts.signal?.aborted) throw new VisorError('GuestGone', 'the machine stopped before its agent answered');
    const left = deadline - Date.now();
    if (left <= 0) throw new VisorError('Timeout', `the guest agent did not answer on vsock port ${AGENT_VSOCK_PORT} within ${opts.timeoutMs} ms`);
    const c = await once(path, Math.min(left, 2000));
    if (!c) {
      await new Promise((r) => setTimeout(r, Math.min(attempt < 20 ? 5 : 100, Math.max(0, deadline - Date.now()))));
      continue;
    }
    const { socket, rest } = c;
    const session = attachSession(c, opts.firstId);
    if (rest.length) session.feed(new Uint8Array(rest));
    let timer: NodeJS.Timeout | undefined;
    try {
      const hello = await Promise.race([
        session.hello(randomBytes(32), opts.mac),
        new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new VisorError('Timeout', 'the guest agent accepted the connection but did not answer HELLO')), Math.max(1, deadline - Date.now())))),
      ]);
      if (hello.version !== PROTOCOL_VERSION) {
        session.end(new VisorError('AgentProtocol', `the guest agent speaks protocol ${hello.version}, visor ${PROTOCOL_VERSION}`));
        throw session.closed!;
      }
      return { session, socket, agent: hello.agent, hostPort: c.hostPort, ...(hello.macStatus !== undefined ? { macStatus: hello.macStatus } : {}) };
    } catch (err) {
      socket.destroy();
      // The connection was accepted by the device but reset (a restored guest dropping its old
      // connections): try again.
      if (err instanceof VisorError && err.code === 'GuestGone') continue;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A session over an opened socket: the socket's bytes feed it; its close ends it. */
function attachSession(c: Opened, firstId: number | undefined, partial?: Uint8Array): AgentSession {
  const { socket } = c;
  socket.removeAllListeners('error');
  socket.removeAllListeners('close');
  const session = new AgentSession(
    {
      write: (b) => void socket.write(b),
      close: () => socket.destroy(),
    },
    firstId,
  );
  if (partial) session.continueAfter(partial);
  socket.on('data', (d: Buffer) => session.feed(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
  socket.on('error', () => {});
  socket.on('close', () => session.end(new VisorError('GuestGone', 'the connection to the guest agent closed (the machine stopped or the agent exited)')));
  socket.resume();
  return session;
}

/** Where a fork's child takes up its parent's agent stream (the parent's snapshot link and session). */
export interface AdoptOptions {
  /** The stream's ports. */
  guestPort: number;
  hostPort: number;
  /** The parent's partialFrame() at the snapshot: the start of a frame the child's agent is still sending. */
  partial: Uint8Array;
  firstId: number;
  timeoutMs: number;
  /** eth0's new MAC, set by the HELLO sent on the adopted stream. */
  mac?: Uint8Array;
}

/**
 * Takes over the agent stream a restored machine kept (Machine.restore keepVsock): no new
 * connection, so the guest does nothing before the session is usable. HELLO (fresh entropy,
 * the new MAC) is sent at once and goes first: the agent handles requests in order, so it runs
 * before any command; `ready` says how it went. Frames the agent still sends for its parent's
 * requests find no handler and are dropped.
 */
export async function adoptAgent(path: string, o: AdoptOptions): Promise<{ session: AgentSession; socket: Socket; hostPort: number; ready: Promise<{ version: number; agent: string; macStatus?: number }> }> {
  const c = await once(path, o.timeoutMs, `ADOPT ${o.guestPort} ${o.hostPort}\n`);
  if (!c) throw new VisorError('GuestGone', `the restored machine did not hand over its agent stream (vsock ${o.guestPort}:${o.hostPort}): the guest reset it, or the machine stopped`);
  const session = attachSession(c, o.firstId, o.partial);
  if (c.rest.length) session.feed(new Uint8Array(c.rest));
  const ready = session.hello(randomBytes(32), o.mac);
  ready.catch(() => {}); // the caller looks when it needs to
  return { session, socket: c.socket, hostPort: c.hostPort, ready };
}
