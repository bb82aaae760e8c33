import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { L2Switch } from '../net/switch.js';
import { joinSocketSwitch, runtimeDir, switchSocketPath, type SocketSwitchMembership } from './net-socket.js';

const BCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const mac = (n: number) => [2, 0, 0, 0, 0, n];
const frame = (dst: number[], src: number[], tag: number) => Uint8Array.from([...dst, ...src, 0x88, 0xb5, tag]);
const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe('switch over a Unix socket', () => {
  const open: SocketSwitchMembership[] = [];
  let dir = '';
  afterEach(async () => {
    for (const m of open.splice(0)) await m.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('joins switches of separate "processes" into one network, hub first', async () => {
    dir = mkdtempSync(join(tmpdir(), 'visor-net-'));
    const path = switchSocketPath('lab', dir);
    // A stale socket file (dead hub) must not stop us.
    writeFileSync(path, '');
    const sws = [0, 1, 2].map((i) => new L2Switch(`p${i}`));
    const got: string[] = [];
    const ports = sws.map((sw, i) => sw.attach((f) => got.push(`${i}:${f[14]}`)));
    for (const sw of sws) open.push(await joinSocketSwitch(sw, path));
    expect(open.map((m) => m.role)).toEqual(['hub', 'member', 'member']);
    ports[1]!.send(frame(BCAST, mac(1), 1));
    await until(() => got.length >= 2);
    expect(got.sort()).toEqual(['0:1', '2:1']);
    got.length = 0;
    ports[2]!.send(frame(mac(1), mac(2), 2)); // unicast to the learned address in process 1
    await until(() => got.length >= 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(['1:2']);
  });

  it('rejects switch names that could escape the directory', () => {
    expect(() => switchSocketPath('../x')).toThrow(/bad switch name/);
  });

  it('without XDG_RUNTIME_DIR, sockets go to a private directory of ours, never a shared one (issue 20)', () => {
    const base = mkdtempSync(join(tmpdir(), 'visor-rt-'));
    try {
      const d = runtimeDir({}, base);
      expect(d).toBe(join(base, `visor-${process.getuid!()}`));
      expect(statSync(d).mode & 0o777).toBe(0o700);
      expect(runtimeDir({}, base)).toBe(d); // exists already, still ours
      chmodSync(d, 0o777); // someone opened it up: refused
      expect(() => runtimeDir({}, base)).toThrow(/not a private directory/);
      expect(runtimeDir({ XDG_RUNTIME_DIR: '/run/user/1' }, base)).toBe('/run/user/1');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
