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
}

function once(path: string, timeoutMs: number): Promise<{ socket: Socket; rest: Buffer } | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    let line = '';
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const finish = (v: { socket: Socket; rest: Buffer } | undefined) => {
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
      if (!/^OK \d{1,10}$/.test(line.slice(0, nl))) return finish(undefined);
      finish({ socket, rest: Buffer.from(line.slice(nl + 1), 'latin1') });
    };
    socket.on('data', onData);
    socket.once('error', () => finish(undefined));
    socket.once('close', () => finish(undefined));
    socket.once('connect', () => socket.write(`CONNECT ${AGENT_VSOCK_PORT}\n`));
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
    socket.removeAllListeners('error');
    socket.removeAllListeners('close');
    const session = new AgentSession(
      {
        write: (b) => void socket.write(b),
        close: () => socket.destroy(),
      },
      opts.firstId,
    );
    socket.on('data', (d: Buffer) => session.feed(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    socket.on('error', () => {});
    socket.on('close', () => session.end(new VisorError('GuestGone', 'the connection to the guest agent closed (the machine stopped or the agent exited)')));
    socket.resume();
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
      return { session, socket, agent: hello.agent, ...(hello.macStatus !== undefined ? { macStatus: hello.macStatus } : {}) };
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
