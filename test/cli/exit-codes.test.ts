/**
 * visor's exit statuses (README "Exit codes"), one case per row, through the CLI's own
 * entry point (issue 20: one table, and no internal error with a stack trace for bad input).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { terminalExitCode } from '../../src/cli/commands/terminal.js';
import { NodeFileHandle } from '../../src/host/file-handle.js';
import { Qcow2Device } from '../../src/storage/qcow2/device.js';
import { HAVE_QEMU_IMG, qemuImg } from '../storage/qemu-img.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-exit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  process.exitCode = undefined;
  vi.restoreAllMocks();
});

class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** Runs `visor ARGS` in this process: its exit status and what it wrote. */
async function visor(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  process.exitCode = undefined;
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  vi.spyOn(process, 'exit').mockImplementation((code?: string | number | null) => {
    throw new Exit(Number(code ?? 0));
  });
  let code: number;
  try {
    await main(args);
    code = Number(process.exitCode ?? 0);
  } catch (e) {
    if (!(e instanceof Exit)) throw e;
    code = e.code;
  } finally {
    vi.restoreAllMocks();
  }
  return { code, out, err };
}

const kernel = join(dir, 'Image');
writeFileSync(kernel, 'not a kernel');

describe('visor exit statuses', () => {
  it('0: success', async () => {
    expect((await visor('disk', 'create', join(dir, 'ok.qcow2'), '1M')).code).toBe(0);
  });

  it('64: a bad argument, including a directory given as a disk image, and an unsupported operation for the format', async () => {
    expect((await visor('run', '--memory', '1', '--kernel', kernel)).code).toBe(64);
    // Below what the image boots in: said before booting, not a guest kernel panic.
    const small = await visor('run', '--image', 'tiny', '--memory', '64', '--', 'true');
    expect(small.code).toBe(64);
    expect(small.err).toMatch(/needs at least 96 MiB/);
    const d = await visor('disk', 'info', dir);
    expect(d.code).toBe(64);
    expect(d.err).toMatch(/is a directory/);
    expect(d.err).not.toMatch(/internal error|    at /);
    const asDisk = await visor('run', '--kernel', kernel, '--disk', dir);
    expect(asDisk.code).toBe(64);
    expect(asDisk.err).toMatch(/is a directory/);
    const raw = join(dir, 'r.raw');
    await visor('disk', 'create', raw, '1M', '-f', 'raw');
    expect((await visor('disk', 'snapshot', 'create', raw, 's')).code).toBe(64);
    const q = join(dir, 'shrink.qcow2');
    await visor('disk', 'create', q, '4M');
    const shrink = await visor('disk', 'resize', q, '1M');
    expect(shrink.code).toBe(64);
    expect(shrink.err).toMatch(/cannot shrink/);
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    const pool = await visor('pool', 'init', file);
    expect(pool.code).toBe(64);
    expect(pool.err).toMatch(/not a directory/);
  });

  it('65: a bad kernel or a corrupt image', async () => {
    const bad = join(dir, 'bad.qcow2');
    // The magic and version 3, then nothing: a truncated header.
    writeFileSync(bad, Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3, 0, 0]));
    expect((await visor('disk', 'info', bad)).code).toBe(65);
  });

  it('66: a missing file or image', async () => {
    expect((await visor('disk', 'info', join(dir, 'missing.qcow2'))).code).toBe(66);
  });

  it('69: a service (the Debian mirror) unavailable', async () => {
    const r = await visor('image', 'pull', 'tiny', '--force', '--quiet', '--mirror', 'http://127.0.0.1:9/debian');
    expect(r.code).toBe(69);
  });

  it('70: a guest panic (and internal errors)', () => {
    expect(() => terminalExitCode({ kind: 'panic', line: 'Kernel panic - not syncing: x' }, true)).toThrow(expect.objectContaining({ exitCode: 70 }));
  });

  it('74: an I/O error', async () => {
    // Reading /proc/self/mem at offset 0 fails with EIO.
    const r = await visor('disk', 'info', '/proc/self/mem');
    expect(r.code, r.err).toBe(74);
  });

  it('75: a disk image or socket in use (here: the same image attached twice)', async () => {
    const raw = join(dir, 'twice.raw');
    await visor('disk', 'create', raw, '1M', '-f', 'raw');
    const r = await visor('run', '--kernel', kernel, '--disk', raw, '--disk', raw);
    expect(r.code).toBe(75);
    expect(r.err).toMatch(/in use/);
  });

  it('77: not allowed (deleting a pool volume another one is backed by)', async () => {
    const p = join(dir, 'pool');
    await visor('pool', 'init', p);
    await visor('pool', 'create', p, 'base.qcow2', '4M');
    await visor('pool', 'clone', p, 'base.qcow2', 'vm.qcow2');
    expect((await visor('pool', 'delete', p, 'base.qcow2')).code).toBe(77);
  });

  it('128+N: the signal that stopped visor run (SIGINT 130, SIGTERM 143, SIGHUP 129)', () => {
    expect(terminalExitCode({ kind: 'signal', signal: 'SIGINT' }, true)).toBe(130);
    expect(terminalExitCode({ kind: 'signal', signal: 'SIGTERM' }, false)).toBe(143);
    expect(terminalExitCode({ kind: 'signal', signal: 'SIGHUP' }, false)).toBe(129);
  });

  it.skipIf(!HAVE_QEMU_IMG)('disk check: 0 clean, 2 corrupt, 3 leaks only, 63 a format without checks (as qemu-img check)', async () => {
    const clean = join(dir, 'clean.qcow2');
    qemuImg('create', '-f', 'qcow2', clean, '4M');
    expect((await visor('disk', 'check', clean)).code).toBe(0);
    // A leak: a cluster with a refcount that nothing references.
    const leaky = join(dir, 'leaky.qcow2');
    qemuImg('create', '-f', 'qcow2', leaky, '4M');
    const end = statSync(leaky).size;
    truncateSync(leaky, end + 65536);
    let dev = await Qcow2Device.open(await NodeFileHandle.open(leaky, { readOnly: false }), { readOnly: false });
    await dev.refs.update(end, 65536, 1);
    await dev.close();
    expect((await visor('disk', 'check', leaky)).code).toBe(3);
    expect((await visor('disk', 'check', '--repair', leaky)).code).toBe(0);
    // A corruption: a referenced cluster whose refcount is zero.
    const bad = join(dir, 'corrupt.qcow2');
    qemuImg('create', '-f', 'qcow2', bad, '4M');
    dev = await Qcow2Device.open(await NodeFileHandle.open(bad, { readOnly: false }), { readOnly: false });
    await dev.write(0, new Uint8Array(65536).fill(1));
    await dev.refs.update((await dev.lookup(0)).host, 65536, -1);
    await dev.close();
    expect((await visor('disk', 'check', bad)).code).toBe(2);
    const raw = join(dir, 'check.raw');
    writeFileSync(raw, Buffer.alloc(65536));
    expect((await visor('disk', 'check', raw)).code).toBe(63);
  });

  it('a reader that stops early (visor disk info | head) is no error: no stack trace, status 0', async () => {
    const img = join(dir, 'pipe.qcow2');
    await visor('disk', 'create', img, '1M');
    mkdirSync(join(dir, 'cwd'), { recursive: true });
    const root = new URL('../..', import.meta.url).pathname;
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
      `import('./src/cli/main.ts').then((m) => m.main(['disk', 'info', ${JSON.stringify(img)}]))`], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout!.destroy(); // the reader is gone before visor writes
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => p.on('close', r));
    expect(err).not.toMatch(/internal error|EPIPE/);
    expect(code).toBe(0);
  });
});
