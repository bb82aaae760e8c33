/**
 * Streaming exec over a WebSocket (`WS /v1/machines/{id}/exec`), on the guest agent's session:
 *
 *   client → server  first a text frame {cmd, cwd?, envs?, timeoutMs?, stdin?} (ExecStreamStart);
 *                    then binary frames are stdin (with stdin: true), and text frames
 *                    {"type":"eof"} (end of stdin) or {"type":"signal","signal":N}.
 *   server → client  {"type":"started","pid":N}; binary frames of output, the first byte 1 for
 *                    stdout or 2 for stderr, then the bytes as they came; at the end
 *                    {"type":"exit","exitCode":N,"signal":N,"timedOut"?:true}, and the socket
 *                    closes (1000). A request that cannot start gets {"type":"error","code",
 *                    "message"} and a close (1008 for a bad request, 1011 otherwise).
 *
 * The command is killed (SIGKILL) when the client goes away before it ends, when it runs past
 * timeoutMs, and when the client reads output too slowly for what is buffered to stay under
 * MAX_BUFFERED (the guest cannot be paused, and the daemon's memory must stay bounded).
 */
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { VisorError, isVisorError } from '../base/errors.js';
import type { Machine } from '../sdk/machine.js';
import type { ExecStreamHandle, GuestOps } from './guest-ops.js';
import { ExecStreamStart } from './schemas.js';

/** Output the daemon holds for a slow client before it gives up on the command. */
export const MAX_BUFFERED = 8 * 1024 * 1024;
/** Stdin frames kept while the command is starting. */
const MAX_PENDING_STDIN = 256;
export const STDOUT = 1;
export const STDERR = 2;
const SIGKILL = 9;

const Control = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('signal'), signal: z.number().int().min(1).max(64) }),
  z.strictObject({ type: z.literal('eof') }),
]);

function errorOf(err: unknown): VisorError {
  return isVisorError(err) ? err : new VisorError('Internal', `exec failed: ${(err as Error)?.message ?? String(err)}`);
}

export function attachExecSocket(ws: WebSocket, vm: Machine, guest: GuestOps): void {
  let phase: 'waiting' | 'starting' | 'running' | 'done' = 'waiting';
  let handle: ExecStreamHandle | undefined;
  let stdinOpen = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const pending: Buffer[] = [];

  const text = (m: unknown) => ws.readyState === ws.OPEN && ws.send(JSON.stringify(m));
  const fail = (err: VisorError, closeCode: number) => {
    phase = 'done';
    text({ type: 'error', code: err.code, message: err.message });
    ws.close(closeCode, err.code);
  };
  const kill = () => void handle?.signal(SIGKILL).catch(() => {});
  const output = (stream: number, d: Uint8Array) => {
    if (ws.readyState !== ws.OPEN || phase === 'done') return;
    if (ws.bufferedAmount > MAX_BUFFERED) {
      kill();
      fail(new VisorError('TooLarge', `the client read output too slowly (more than ${MAX_BUFFERED} bytes waiting): the command was killed`), 1009);
      return;
    }
    const frame = Buffer.allocUnsafe(d.length + 1);
    frame[0] = stream;
    frame.set(d, 1);
    ws.send(frame);
  };

  const start = async (raw: string) => {
    let req: z.infer<typeof ExecStreamStart>;
    try {
      const r = ExecStreamStart.safeParse(JSON.parse(raw));
      if (!r.success) {
        const issue = r.error.issues[0]!;
        throw new VisorError('InvalidArgument', `exec request: ${issue.path.join('.') || '(root)'}: ${issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message}`);
      }
      req = r.data;
    } catch (err) {
      return fail(isVisorError(err) ? err : new VisorError('InvalidArgument', 'exec request: the first message must be JSON {cmd, cwd?, envs?, timeoutMs?, stdin?}'), 1008);
    }
    if (!guest.execStream) return fail(new VisorError('Unsupported', 'this daemon has no guest agent binding for streaming exec'), 1011);
    phase = 'starting';
    stdinOpen = req.stdin === true;
    try {
      handle = await guest.execStream(vm, { cmd: req.cmd, ...(req.cwd !== undefined ? { cwd: req.cwd } : {}), ...(req.envs ? { envs: req.envs } : {}), stdin: stdinOpen }, {
        onStdout: (d) => output(STDOUT, d),
        onStderr: (d) => output(STDERR, d),
      });
    } catch (err) {
      return fail(errorOf(err), 1011);
    }
    if ((phase as string) === 'done') return kill(); // the client left while it started (the close handler ran)
    phase = 'running';
    text({ type: 'started', pid: handle.pid });
    if (req.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, req.timeoutMs);
    }
    for (const b of pending.splice(0)) void handle.write(b).catch(() => {});
    handle.exited.then(
      (e) => {
        clearTimeout(timer);
        if (phase === 'done') return;
        phase = 'done';
        text({ type: 'exit', exitCode: e.exitCode, signal: e.signal, ...(timedOut ? { timedOut: true } : {}) });
        ws.close(1000, 'exited');
      },
      (err) => {
        clearTimeout(timer);
        if (phase !== 'done') fail(errorOf(err), 1011);
      },
    );
  };

  const control = (raw: string) => {
    let m: z.infer<typeof Control>;
    try {
      const r = Control.safeParse(JSON.parse(raw));
      if (!r.success) throw new Error('bad');
      m = r.data;
    } catch {
      text({ type: 'error', code: 'InvalidArgument', message: 'control messages are {"type":"eof"} or {"type":"signal","signal":N}' });
      return;
    }
    if (m.type === 'signal') void handle?.signal(m.signal).catch(() => {});
    else if (stdinOpen) {
      stdinOpen = false;
      void handle?.closeStdin().catch(() => {});
    }
  };

  ws.on('message', (data, isBinary) => {
    const b = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (phase === 'waiting') {
      if (isBinary) return fail(new VisorError('InvalidArgument', 'exec request: the first message must be a text frame of JSON'), 1008);
      void start(b.toString('utf8'));
      return;
    }
    if (phase === 'done') return;
    if (!isBinary) return control(b.toString('utf8'));
    if (!stdinOpen) {
      text({ type: 'error', code: 'NotAllowed', message: 'stdin is closed (start with stdin: true to send it)' });
      return;
    }
    if (phase === 'starting') {
      if (pending.length < MAX_PENDING_STDIN) pending.push(b);
      return;
    }
    void handle?.write(b).catch(() => {});
  });

  ws.on('close', () => {
    clearTimeout(timer);
    if (phase !== 'done') {
      phase = 'done';
      kill();
    }
  });
}
