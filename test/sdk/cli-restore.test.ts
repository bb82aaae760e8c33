/** `visor restore FILE` end to end: the CLI resumes an SDK snapshot on the console. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Machine } from '../../src/sdk/index.js';
import { counterGuest, rebootGuest, spinGuest } from './guest.js';
import { collect, settle } from './support.js';

const ROOT = resolve(__dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'visor-cli-restore-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function visor(args: string[], onOut?: (out: string, p: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
      `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(args)}))`], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
      onOut?.(out, p);
    });
    p.stderr.on('data', (d) => (err += d));
    p.on('error', rej);
    p.on('exit', (code) => res({ code, out, err }));
    p.stdin.end();
  });
}

describe('visor run on the SDK', () => {
  it('--deterministic: two runs print the same guest times', async () => {
    const kernel = join(dir, 'timed.img');
    writeFileSync(kernel, counterGuest({ ticks: 5, work: 200, sleepTicks: 50_000, printTime: true }));
    const a = await visor(['run', '--kernel', kernel, '--memory', '16', '--deterministic']);
    const b = await visor(['run', '--kernel', kernel, '--memory', '16', '--deterministic']);
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/^counter guest\n(?:[0-9a-f]{16} [0-9a-f]{16} [0-9a-f]{16}\n){5}done\n$/);
    expect(b.out).toBe(a.out);
    // The host clock makes the times differ from run to run (50 ms sleeps at least).
    const c = await visor(['run', '--kernel', kernel, '--memory', '16']);
    expect(c.out).not.toBe(a.out);
  });

  it('SIGTERM asks the guest first; without an agent it stops at once and says so', async () => {
    const kernel = join(dir, 'spin.img');
    writeFileSync(kernel, spinGuest());
    let sent = false;
    const r = await visor(['run', '--kernel', kernel, '--memory', '16'], (out, p) => {
      if (!sent && out.includes('spin')) {
        sent = true;
        p.kill('SIGTERM');
      }
    });
    expect(r.code).toBe(143);
    expect(r.err).toMatch(/visor: SIGTERM: asking the guest to power off \(send it again to stop at once\)/);
    expect(r.err).toMatch(/visor: stopped without the guest \(no guest agent listened\)/);
    const bad = await visor(['run', '--kernel', kernel, '--memory', '16', '--console', 'tty']);
    expect(bad.code).toBe(64);
    expect(bad.err).toMatch(/--console must be serial or hvc, got 'tty'/);
  });

  it('a second SIGTERM stops at once while the first waits for an agent', async () => {
    const kernel = join(dir, 'spin.img');
    writeFileSync(kernel, spinGuest());
    let sent = 0;
    const t0 = Date.now();
    // --console hvc attaches the virtio-console (so stop waits up to 10 s for an agent that
    // this guest never starts); the second signal must not wait for that.
    const r = await visor(['run', '--kernel', kernel, '--memory', '16', '--console', 'hvc'], (out, p) => {
      if (sent === 0 && out.includes('spin')) {
        sent = 1;
        p.kill('SIGTERM');
        setTimeout(() => p.kill('SIGTERM'), 300);
      }
    });
    expect(r.code).toBe(143);
    expect(Date.now() - t0).toBeLessThan(9000);
  });

  it('gives up on a guest that keeps rebooting', async () => {
    const kernel = join(dir, 'reboot.img');
    writeFileSync(kernel, rebootGuest());
    const r = await visor(['run', '--kernel', kernel, '--memory', '16']);
    expect(r.out).toMatch(/^(?:boot\n){4,}$/); // the 4th reboot event races the next boot's banner
    expect(r.code).toBe(70);
    expect(r.err).toMatch(/^visor: the guest keeps rebooting\n$/);
  });

  it('--net attaches a NIC to a switch; a bad spec names the flag', async () => {
    const kernel = join(dir, 'short.img');
    writeFileSync(kernel, counterGuest({ ticks: 1, work: 10, sleepTicks: 0 }));
    const ok = await visor(['run', '--kernel', kernel, '--memory', '16', '--net', `switch=cli-${process.pid}`, '--name', 'cli']);
    expect(ok.err).toBe('');
    expect(ok.code).toBe(0);
    const bad = await visor(['run', '--kernel', kernel, '--memory', '16', '--net', 'tap0']);
    expect(bad.code).toBe(64);
    expect(bad.err).toMatch(/^visor: --net: expected user, user=NAME, switch=NAME or none, got 'tap0'\n$/);
  });
});

describe('visor restore', () => {
  it('resumes a snapshot where it was and exits with the guest', async () => {
    const kernel = join(dir, 'counter.img');
    writeFileSync(kernel, counterGuest({ ticks: 10, work: 1000, sleepTicks: 10_000, printTime: true }));
    const ref = await Machine.create({ kernel, memoryMiB: 16, deterministic: true });
    const refOut = collect(ref);
    await ref.start();
    await ref.whenStopped();
    const vm = await Machine.create({ kernel, memoryMiB: 16, deterministic: true });
    const out = collect(vm);
    await vm.runUntil({ output: '0000000000000002 ' });
    await settle();
    const snap = join(dir, 'vm.snap');
    await vm.snapshot(snap);
    await vm.kill();
    const r = await visor(['restore', snap]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(out.text() + r.out).toBe(refOut.text());
  });

  it('fails with a one-line reason for a file that is no snapshot', async () => {
    const junk = join(dir, 'junk');
    writeFileSync(junk, 'hello');
    const r = await visor(['restore', junk]);
    expect(r.code).toBe(65);
    expect(r.err).toMatch(/^visor: not a visor snapshot \(bad magic\)\n$/);
  });
});
