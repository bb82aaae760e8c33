/**
 * The terminal and pipes (issue 20 items 4-6), through `visor run` on the 'tiny' image:
 * with `-- CMD` and stdin or stdout not a terminal, the command's stdio are virtio-console
 * ports: end of input reaches it, nothing is echoed, and stdout and stderr come out byte for
 * byte, apart. On the console, Ctrl-C reaches the foreground process and nothing in the
 * guest ignores SIGINT. Opt-in (a boot each): VISOR_BOOT_TESTS=1.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Machine } from '../../src/sdk/index.js';

const ON = process.env.VISOR_BOOT_TESTS === '1';
const TIMEOUT = 900_000; // a loaded 2-core machine took 150 s for one boot
const root = new URL('../..', import.meta.url).pathname;

/** `visor run ARGS` from the sources, stdin from `input` (undefined: /dev/null); stdout and stderr as bytes. */
function visor(args: string[], input?: Buffer): Promise<{ code: number | null; stdout: Buffer; stderr: Buffer }> {
  const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
    `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(args)}))`], { cwd: root, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout!.on('data', (d: Buffer) => out.push(d));
  p.stderr!.on('data', (d: Buffer) => err.push(d));
  if (input !== undefined) p.stdin!.end(input);
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err) })));
}

/** Lets the machine run for `ms` of wall time (it goes on running). */
async function runFor(vm: Machine, ms: number): Promise<void> {
  if (vm.state === 'paused') await vm.resume();
  await new Promise((r) => setTimeout(r, ms));
}

describe.skipIf(!ON)('visor run: stdin, stdout and stderr of a guest command (issue 20)', () => {
  it('end of input reaches the command and piped input is not echoed', async () => {
    const r = await visor(['run', '--image', 'tiny', '--', 'head', '-1'], Buffer.from('hi\nthere\n'));
    expect(r.stdout.toString('latin1'), r.stderr.toString()).toBe('hi\n');
    expect(r.code).toBe(0);
    const cat = await visor(['run', '--image', 'tiny', '--', 'cat'], Buffer.from('one line\n'));
    expect(cat.stdout.toString('latin1')).toBe('one line\n');
    expect(cat.code).toBe(0);
  }, TIMEOUT);

  it('stdout and stderr come out byte for byte and apart; the exit status is the command\'s', async () => {
    const blob = randomBytes(200_000);
    const script = 'sha256sum; printf "x\\ry\\n"; echo to-stderr >&2; printf "no newline" >&2; exit 3';
    const r = await visor(['run', '--image', 'tiny', '--', 'sh', '-c', script], blob);
    const want = `${createHash('sha256').update(blob).digest('hex')}  -\nx\ry\n`;
    expect(r.stdout.toString('latin1'), r.stderr.toString()).toBe(want);
    expect(r.stderr.toString('latin1')).toBe('to-stderr\nno newline');
    expect(r.code).toBe(3);
    // Binary output through cat, unchanged.
    const c = await visor(['run', '--image', 'tiny', '--', 'cat'], blob);
    expect(c.stdout.equals(blob)).toBe(true);
  }, TIMEOUT);

  it('a command that does not exist: "command not found", status 127', async () => {
    const r = await visor(['run', '--image', 'tiny', '--', 'nosuchcmd'], Buffer.alloc(0));
    expect(r.stderr.toString()).toBe('nosuchcmd: command not found\n');
    expect(r.stdout.length).toBe(0);
    expect(r.code).toBe(127);
  }, TIMEOUT);

  it('Ctrl-C on the console stops the foreground process; nothing ignores SIGINT or SIGQUIT', async () => {
    const vm = await Machine.create({ image: 'tiny', memoryMiB: 256 });
    try {
      await vm.runUntil({ output: "'poweroff' (or exit)" });
      // A child of the login shell: no signal ignored (SigIgn 6 was SIGINT and SIGQUIT).
      vm.console.write('grep SigIgn /proc/self/status; sleep 100\n');
      await vm.runUntil({ output: 'SigIgn:\t0000000000000000' });
      // Let the shell start the sleep (a Ctrl-C before it would interrupt grep instead). Wall
      // time, not an instruction count: an idle guest (in sleep, at a prompt) retires few.
      await runFor(vm, 5_000);
      vm.console.write('\x03');
      await runFor(vm, 5_000);
      // The shell is back at its prompt well before the 100 s, and the sleep died of SIGINT
      // (an interactive shell drops the rest of a line Ctrl-C interrupted, so ask afterwards).
      vm.console.write('echo after-sleep-$?\n');
      await vm.runUntil({ output: 'after-sleep-130', timeoutMs: 120_000 });
    } finally {
      await vm.kill();
    }
  }, TIMEOUT);

  it('poweroff typed at the shell powers off; `visor restore </dev/null` ends: the end of input is a Ctrl-D', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'visor-term-'));
    const vm = await Machine.create({ image: 'tiny', memoryMiB: 256 });
    try {
      await vm.runUntil({ output: "'poweroff' (or exit)" });
      // Let the shell reach its prompt and wait for input there.
      await runFor(vm, 5_000);
      await vm.pause();
      await vm.snapshot(join(dir, 'shell.snap'));
      // busybox ash runs its own poweroff applet before PATH; the login profile routes it to
      // visor's (it used to signal PID 1, which ignored it, and nothing happened).
      await vm.resume();
      vm.console.write('poweroff\n');
      const stopped = await Promise.race([vm.whenStopped().then(() => true), new Promise((r) => setTimeout(() => r(false), 300_000))]);
      expect(stopped).toBe(true);
      // A restored shell with no input: the Ctrl-D after it ends the shell, and so the run.
      const r = await visor(['restore', join(dir, 'shell.snap')]);
      expect(r.code, r.stderr.toString()).toBe(0);
    } finally {
      if (vm.state !== 'stopped') await vm.kill();
      await rm(dir, { recursive: true, force: true });
    }
  }, TIMEOUT);
});
