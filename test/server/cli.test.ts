/**
 * The CLI against daemons: `visor daemon` itself (first start, SIGTERM, `audit verify
 * --state-dir`), and the remote verbs (ls, create, start, exec, cp, stop, token) against a
 * daemon with the tiny test images and the fake guest agent.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, spawnDaemon } from './process.js';
import { tempDir } from './support.js';

const tmp = tempDir('visord-cli-');
afterAll(() => tmp.cleanup());

function visor(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(args)}))`], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', rej);
    p.on('exit', (code) => res({ code, out, err }));
  });
}

describe('visor CLI and the daemon', () => {
  it('visor daemon: first start writes the admin token; SIGTERM stops it; audit verify --state-dir', async () => {
    const state = join(tmp.dir, 'd1');
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(['daemon', '--listen', '127.0.0.1:0', '--state-dir', state])}))`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const url = await new Promise<string>((res, rej) => {
      p.stderr.on('data', (d) => {
        err += d;
        const m = /listening on (\S+)/.exec(err);
        if (m) res(m[1]!);
      });
      p.once('exit', (c) => rej(new Error(`exited ${c}: ${err}`)));
    });
    expect(err).toContain(`the admin token is in ${join(state, 'admin.token')}`);
    const token = readFileSync(join(state, 'admin.token'), 'utf8').trim();
    const env = { VISOR_REMOTE: url, VISOR_TOKEN: token };
    const c = await visor(['create', 'one', '--memory', '64', '--net-rate', 'rx=1M,tx-pps=500', '--json'], env);
    expect(c.code, c.err).toBe(0);
    expect(JSON.parse(c.out)).toMatchObject({ name: 'one', state: 'created', memoryMiB: 64, image: 'tiny', resources: { netLimits: { rx: { bytesPerSec: 1_000_000 }, tx: { packetsPerSec: 500 } } } });
    const badRate = await visor(['create', 'odd', '--net-rate', 'up=1'], env);
    expect(badRate.code).not.toBe(0);
    expect(badRate.err).toMatch(/--net-rate: expected tx=BYTES/);
    const t = await visor(['token', 'create', 'ro', '--role', 'viewer', '--project', 'default', '--json'], env);
    const viewer = JSON.parse(t.out).token as string;
    const refused = await visor(['create', 'two'], { VISOR_REMOTE: url, VISOR_TOKEN: viewer });
    expect(refused.code).toBe(77);
    expect(refused.err).toMatch(/a viewer token cannot POST \/v1\/machines/);
    const ls = await visor(['token', 'ls'], env);
    expect(ls.out).toMatch(/ro\s+viewer\s+default/);
    expect((await visor(['audit', 'verify'], env)).out).toMatch(/^audit log verifies: \d+ entries/);
    p.kill('SIGTERM');
    expect(await new Promise((r) => p.once('exit', r))).toBe(0);
    const v = await visor(['audit', 'verify', '--state-dir', state]);
    expect(v.code).toBe(0);
    expect(v.out).toMatch(/audit log verifies: 3 entries/); // create, token create, refused create
  }, 120_000);

  it('remote ls, create --start, exec, cp, stop', async () => {
    const state = join(tmp.dir, 'd2');
    const images = join(tmp.dir, 'img');
    mkdirSync(images);
    const d = await spawnDaemon(state, images);
    const env = { VISOR_REMOTE: d.url, VISOR_TOKEN: readFileSync(join(state, 'admin.token'), 'utf8').trim() };
    try {
      const c = await visor(['create', 'box', '--memory', '16', '--start'], env);
      expect(c.code, c.err).toBe(0);
      expect(c.out).toMatch(/^box\s+running\s+counter\s+16 MiB/);
      const e = await visor(['exec', 'box', 'echo', 'hi'], env);
      expect(e).toMatchObject({ code: 0, out: 'echo hi\n' });
      expect((await visor(['exec', 'box', 'false'], env)).code).toBe(1);
      writeFileSync(join(tmp.dir, 'up.txt'), 'uploaded');
      expect((await visor(['cp', join(tmp.dir, 'up.txt'), 'box:/root/up.txt'], env)).code).toBe(0);
      expect((await visor(['cp', 'box:/root/up.txt', join(tmp.dir, 'down.txt')], env)).code).toBe(0);
      expect(readFileSync(join(tmp.dir, 'down.txt'), 'utf8')).toBe('uploaded');
      const s = await visor(['stop', 'box', '--force'], env);
      expect(s.out).toMatch(/^box\s+stopped/);
      const ls = await visor(['ls', '--json'], env);
      expect(JSON.parse(ls.out).map((m: { name: string; state: string }) => `${m.name}:${m.state}`)).toEqual(['box:stopped']);
      const missing = await visor(['start', 'nope'], env);
      expect(missing.code).toBe(66);
      expect(missing.err).toMatch(/machine nope: no such machine/);
    } finally {
      d.p.kill('SIGKILL');
      await d.exited;
    }
  }, 180_000);
});
