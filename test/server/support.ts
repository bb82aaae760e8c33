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
import type { GuestEntry, GuestOps } from '../../src/server/guest-ops.js';
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

/** A guest agent that is a map of files per machine; exec echoes its command. */
export class FakeGuest implements GuestOps {
  readonly files = new Map<Machine, Map<string, Uint8Array>>();
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
