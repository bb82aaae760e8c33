/**
 * Daemons for tests: a state directory in tmp, images that are tiny assembled guests (no
 * Debian needed), and a fake guest agent (GuestOps) keeping files in memory.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { counterGuest, echoGuest, spinGuest } from '../sdk/guest.js';
import type { Machine } from '../../src/sdk/machine.js';
import { VisorError } from '../../src/base/errors.js';
import type { ExecStreamHandle, ExecStreamHandlers, GuestEntry, GuestOps, PtyHandle } from '../../src/server/guest-ops.js';
import type { Images } from '../../src/server/machines.js';

export function tempDir(prefix = 'visord-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** 'spin' (busy forever), 'echo' (echoes the console), 'counter' (prints ticks, idles between). */
export function bareImages(dir: string): Images {
  const files: Record<string, string> = {};
  const put = (name: string, bytes: Uint8Array) => {
    const p = join(dir, `${name}.img`);
    writeFileSync(p, bytes);
    files[name] = p;
  };
  put('spin', spinGuest());
  put('echo', echoGuest());
  put('counter', counterGuest({ ticks: 0, work: 300, sleepTicks: 5_000_000, printTime: false }));
  return {
    defaultImage: 'counter',
    names: () => Object.keys(files),
    resolve: async (name) => {
      const kernel = files[name];
      if (!kernel) throw new VisorError('ImageNotFound', `no test image ${name}`);
      return { kernel, append: '' };
    },
  };
}

/**
 * A guest agent that is a map of files per machine; exec echoes its command. Streaming exec:
 * `cat` echoes stdin until its end; `sleep` runs until a signal; `fail` says 'bad' on stderr
 * and exits 3; anything else prints itself on stdout and 'done' on stderr, and exits 0.
 * Every signal sent is recorded in `signals`.
 */
export class FakeGuest implements GuestOps {
  readonly files = new Map<Machine, Map<string, Uint8Array>>();
  readonly signals: { cmd: string; signo: number }[] = [];
  private nextPid = 100;

  /** A pty whose shell echoes what is typed. */
  async openPty(_vm: Machine, _size: { cols: number; rows: number }, onData: (d: Uint8Array) => void, onExit: (code: number) => void): Promise<PtyHandle> {
    return { write: async (d) => onData(d.slice()), resize: async () => {}, close: async () => onExit(129) };
  }

  async execStream(_vm: Machine, req: { cmd: string; stdin: boolean }, h: ExecStreamHandlers): Promise<ExecStreamHandle> {
    const enc = new TextEncoder();
    let end!: (e: { exitCode: number; signal: number }) => void;
    let ended = false;
    const exited = new Promise<{ exitCode: number; signal: number }>((r) => (end = (e) => { if (!ended) { ended = true; r(e); } }));
    const later = (fn: () => void) => setTimeout(fn, 5);
    if (req.cmd === 'fail') later(() => { h.onStderr(enc.encode('bad\n')); end({ exitCode: 3, signal: 0 }); });
    else if (req.cmd !== 'cat' && req.cmd !== 'sleep') later(() => { h.onStdout(enc.encode(`${req.cmd}\n`)); h.onStderr(enc.encode('done\n')); end({ exitCode: 0, signal: 0 }); });
    return {
      pid: this.nextPid++,
      exited,
      write: async (d) => {
        if (req.cmd === 'cat' && !ended) h.onStdout(d.slice());
      },
      closeStdin: async () => {
        if (req.cmd === 'cat') later(() => end({ exitCode: 0, signal: 0 }));
      },
      signal: async (signo) => {
        this.signals.push({ cmd: req.cmd, signo });
        if (req.cmd === 'sleep' || req.cmd === 'cat') end({ exitCode: 128 + signo, signal: signo });
      },
    };
  }

  private fs(vm: Machine): Map<string, Uint8Array> {
    let m = this.files.get(vm);
    if (!m) this.files.set(vm, (m = new Map()));
    return m;
  }
  async exec(_vm: Machine, req: { cmd: string; envs?: Record<string, string> }) {
    if (req.cmd === 'false') return { exitCode: 1, stdout: '', stderr: '' };
    return { exitCode: 0, stdout: `${req.cmd}\n`, stderr: '' };
  }
  async readFile(vm: Machine, path: string) {
    const f = this.fs(vm).get(path);
    if (!f) throw new VisorError('NotFound', `${path}: no such file in the guest`);
    return f;
  }
  async writeFile(vm: Machine, path: string, data: Uint8Array) {
    this.fs(vm).set(path, data);
  }
  async list(vm: Machine, path: string): Promise<GuestEntry[]> {
    const pre = path.endsWith('/') ? path : `${path}/`;
    return [...this.fs(vm).entries()].filter(([p]) => p.startsWith(pre)).map(([p, d]) => ({ name: p.slice(pre.length), type: 'file' as const, size: d.length }));
  }
  async remove(vm: Machine, path: string) {
    if (!this.fs(vm).delete(path)) throw new VisorError('NotFound', `${path}: no such file in the guest`);
  }
}
