/**
 * GuestOps through visor's guest agent (src/guest/): the daemon gives every machine a
 * virtio-vsock whose host end is a Unix socket named after the machine's id in one
 * directory, and talks to the agent over it, one session per running machine, opened on
 * first use and dropped when the machine or the agent goes away. Everything the agent sends
 * is bounded by the session (src/guest/session.ts); this layer bounds output and file sizes.
 */
import { join } from 'node:path';
import { VisorError } from '../base/errors.js';
import { connectAgent } from '../guest/connect.js';
import type { AgentSession } from '../guest/session.js';
import type { Machine } from '../sdk/machine.js';
import type { ExecRequest, ExecResult, ExecStreamHandle, ExecStreamHandlers, GuestEntry, GuestOps, PtyHandle } from './guest-ops.js';

/** What exec keeps of a command's stdout and stderr each (the rest is cut, and said so). */
const MAX_OUTPUT = 4 * 1024 * 1024;
/** The largest guest file the files API reads (uploads are bounded by the route, MAX_UPLOAD). */
const MAX_READ = 64 * 1024 * 1024;
/** How long to wait for the agent of a machine that is still booting. */
const CONNECT_TIMEOUT_MS = 60_000;

export class AgentGuestOps implements GuestOps {
  private readonly sessions = new Map<Machine, Promise<AgentSession>>();
  private readonly ids = new WeakMap<Machine, string>();

  /** @param socketDir where the machines' vsock sockets are (the daemon's `sock/` directory). */
  constructor(private readonly socketDir: string) {}

  /** The host end of a daemon machine's vsock. */
  socketPath(machineId: string): string {
    return join(this.socketDir, machineId);
  }

  bindMachine(vm: Machine, machineId: string): void {
    this.ids.set(vm, machineId);
  }

  private session(vm: Machine): Promise<AgentSession> {
    let s = this.sessions.get(vm);
    if (!s) {
      const stopped = new AbortController();
      const onState = (st: string) => {
        if (st === 'stopped') {
          stopped.abort();
          this.sessions.delete(vm);
          void s?.then((x) => x.end(new VisorError('GuestGone', `machine ${vm.name} stopped`))).catch(() => {});
          vm.off('state', onState);
        }
      };
      vm.on('state', onState);
      s = connectAgent(this.socketPath(this.ids.get(vm) ?? vm.name), { timeoutMs: CONNECT_TIMEOUT_MS, signal: stopped.signal }).then((c) => {
        c.session.onClose(() => this.sessions.delete(vm));
        return c.session;
      });
      s.catch(() => this.sessions.delete(vm));
      this.sessions.set(vm, s);
    }
    return s;
  }

  async exec(vm: Machine, req: ExecRequest): Promise<ExecResult> {
    const session = await this.session(vm);
    const out = { stdout: new Collector(), stderr: new Collector() };
    const env = Object.entries(req.envs ?? {}).map(([k, v]) => `${k}=${v}`);
    const h = session.exec(
      { argv: ['/bin/sh', '-c', req.cmd], env, cwd: req.cwd ?? '', user: 'root', stdin: false },
      { onStdout: (d) => out.stdout.push(d), onStderr: (d) => out.stderr.push(d) },
    );
    await h.started;
    const timeoutMs = req.timeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const exit = await Promise.race([
        h.exited,
        new Promise<never>((_, rej) => {
          timer = setTimeout(() => {
            void h.signal(9).catch(() => {});
            rej(new VisorError('Timeout', `command ran past its ${timeoutMs} ms timeout and was killed`));
          }, timeoutMs);
        }),
      ]);
      return { exitCode: exit.signal ? 128 + exit.signal : exit.exitCode, stdout: out.stdout.text(), stderr: out.stderr.text() };
    } finally {
      clearTimeout(timer);
    }
  }

  async execStream(vm: Machine, req: Omit<ExecRequest, 'timeoutMs'> & { stdin: boolean }, handlers: ExecStreamHandlers): Promise<ExecStreamHandle> {
    const session = await this.session(vm);
    const env = Object.entries(req.envs ?? {}).map(([k, v]) => `${k}=${v}`);
    const h = session.exec(
      { argv: ['/bin/sh', '-c', req.cmd], env, cwd: req.cwd ?? '', user: 'root', stdin: req.stdin },
      { onStdout: (d) => handlers.onStdout(d), onStderr: (d) => handlers.onStderr(d) },
    );
    const pid = await h.started;
    return {
      pid,
      exited: h.exited.then((e) => ({ exitCode: e.signal ? 128 + e.signal : e.exitCode, signal: e.signal })),
      write: (d) => h.sendStdin(d),
      closeStdin: () => h.closeStdin(),
      signal: (n) => h.signal(n),
    };
  }

  async readFile(vm: Machine, path: string): Promise<Uint8Array> {
    const session = await this.session(vm);
    const parts: Uint8Array[] = [];
    const total = await session.readFile(path, (d) => parts.push(d.slice()), MAX_READ);
    const outBytes = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      outBytes.set(p.subarray(0, Math.min(p.length, total - at)), at);
      at += p.length;
      if (at >= total) break;
    }
    return outBytes;
  }

  async writeFile(vm: Machine, path: string, data: Uint8Array): Promise<void> {
    const session = await this.session(vm);
    const CHUNK = 64 * 1024;
    function* chunks(): Generator<Uint8Array> {
      for (let i = 0; i < data.length; i += CHUNK) yield data.subarray(i, i + CHUNK);
    }
    await session.writeFile(path, chunks());
  }

  async list(vm: Machine, path: string): Promise<GuestEntry[]> {
    const session = await this.session(vm);
    return (await session.list(path, 100_000)).map((e) => ({ name: e.name, type: e.type, size: e.size }));
  }

  async remove(vm: Machine, path: string): Promise<void> {
    await (await this.session(vm)).remove(path);
  }

  async openPty(vm: Machine, size: { cols: number; rows: number }, onData: (d: Uint8Array) => void, onExit: (code: number) => void): Promise<PtyHandle> {
    const session = await this.session(vm);
    const h = session.exec(
      { argv: ['/bin/sh', '-l'], env: ['TERM=xterm-256color'], cwd: '/root', user: 'root', stdin: true, pty: size },
      { onStdout: onData, onStderr: onData },
    );
    await h.started;
    h.exited.then((e) => onExit(e.signal ? 128 + e.signal : e.exitCode), () => onExit(-1));
    return {
      write: (d) => h.sendStdin(d),
      resize: (cols, rows) => h.resize(cols, rows),
      close: () => h.signal(1).catch(() => {}),
    };
  }
}

/** Keeps up to MAX_OUTPUT bytes of a stream and decodes them once at the end. */
class Collector {
  private readonly parts: Uint8Array[] = [];
  private bytes = 0;
  private cut = false;

  push(d: Uint8Array): void {
    if (this.bytes >= MAX_OUTPUT) { this.cut = true; return; }
    const take = d.subarray(0, MAX_OUTPUT - this.bytes);
    this.parts.push(take.slice());
    this.bytes += take.length;
    if (take.length < d.length) this.cut = true;
  }

  text(): string {
    const all = Buffer.concat(this.parts).toString('utf8');
    return this.cut ? `${all}\n[visor: output cut at ${MAX_OUTPUT} bytes]` : all;
  }
}
