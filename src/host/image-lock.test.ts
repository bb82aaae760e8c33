import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { closeDisk, openDisk, type OpenedDisk } from '../storage/open.js';
import { firstDiff, pattern } from '../storage/testing.js';
import { HAVE_QEMU_IMG, qemuCheck, qemuImg } from '../../test/storage/qemu-img.js';
import { NodeFileHandle, NodeFileOpener } from './file-handle.js';
import { imageLocksAvailable } from './image-lock.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-lock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const opener = new NodeFileOpener();
const open: OpenedDisk[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const d of open.splice(0)) await closeDisk(d).catch(() => {});
  for (const c of children.splice(0)) c.kill('SIGKILL');
});
const attach = async (path: string, readOnly: boolean) => {
  const d = await openDisk(opener, path, { readOnly });
  open.push(d);
  return d;
};
const raw = (name: string) => {
  const p = join(dir, name);
  writeFileSync(p, new Uint8Array(1 << 20));
  return p;
};
/** Resolves with the child's stdout once it contains `text`. */
function waitFor(c: ChildProcess, text: string, stream: 'stdout' | 'stderr' = 'stdout'): Promise<string> {
  return new Promise((res, rej) => {
    let out = '';
    c[stream]!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(text)) res(out);
    });
    c.once('exit', (code) => rej(new Error(`exited (${code}) before printing ${text}: ${out}`)));
  });
}

describe.skipIf(!imageLocksAvailable())('disk image locks (QEMU-compatible OFD byte-range locks, issue 20)', () => {
  it('one writer or many readers per image, in one process too (--disk r.raw --disk r.raw)', async () => {
    const r = raw('r.raw');
    await attach(r, false);
    await expect(attach(r, false)).rejects.toMatchObject({ code: 'InUse', message: expect.stringMatching(/in use: this process/) });
    await expect(attach(r, true)).rejects.toMatchObject({ code: 'InUse' });
    await closeDisk(open.pop()!);
    const a = await attach(r, true);
    await attach(r, true); // readers share
    await expect(attach(r, false)).rejects.toMatchObject({ code: 'InUse' });
    expect(a.device.size).toBe(1 << 20);
    await closeDisk(open.pop()!);
    await closeDisk(open.pop()!);
    await attach(r, false); // free again once closed
  });

  it('a file being created with truncate is not emptied while another process holds it', async () => {
    const r = raw('t.raw');
    const d = await attach(r, false);
    await d.device.write(0, pattern(4096, 9));
    await d.device.flush();
    await expect(NodeFileHandle.open(r, { readOnly: false, create: 'truncate' })).rejects.toMatchObject({ code: 'InUse' });
    const back = new Uint8Array(4096);
    await d.device.read(0, back);
    expect(firstDiff(back, pattern(4096, 9))).toBe(-1);
  });

  it.skipIf(!HAVE_QEMU_IMG)('backing files are shared; the base cannot be written while an overlay uses it', async () => {
    const base = join(dir, 'base.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '4M');
    for (const o of ['o1.qcow2', 'o2.qcow2']) qemuImg('create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, o));
    await attach(join(dir, 'o1.qcow2'), false);
    await attach(join(dir, 'o2.qcow2'), false);
    await attach(base, true);
    await expect(attach(base, false)).rejects.toMatchObject({ code: 'InUse' });
  });

  it.skipIf(!HAVE_QEMU_IMG)('QEMU and visor refuse each other, and the error names the holder', async () => {
    const img = join(dir, 'q.qcow2');
    qemuImg('create', '-f', 'qcow2', img, '4M');
    // qemu-io holds the image read-write while it waits at its prompt.
    const q = spawn('qemu-io', [img], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(q);
    q.stdin!.write('help\n');
    await waitFor(q, 'qemu-io>');
    await expect(attach(img, false)).rejects.toMatchObject({ code: 'InUse', message: expect.stringContaining(`pid ${q.pid} (qemu-io)`) });
    await expect(attach(img, true)).rejects.toMatchObject({ code: 'InUse' });
    q.stdin!.end();
    await new Promise((r) => q.once('exit', r));
    // visor holds it: qemu-img and qemu-io are refused.
    await attach(img, false);
    const info = spawnSync('qemu-img', ['info', img], { encoding: 'utf8' });
    expect(info.status).not.toBe(0);
    expect(info.stderr).toMatch(/lock/);
    const write = spawnSync('qemu-io', ['-c', 'write 0 512', img], { encoding: 'utf8' });
    expect(write.stdout + write.stderr).toMatch(/lock/);
    // visor holding it read-only: qemu-img info (a reader) is fine, a qemu-io writer is not.
    await closeDisk(open.pop()!);
    await attach(img, true);
    expect(spawnSync('qemu-img', ['info', img]).status).toBe(0);
    expect(spawnSync('qemu-io', ['-c', 'write 0 512', img], { encoding: 'utf8' }).stdout).not.toMatch(/wrote/);
  });

  it.skipIf(!HAVE_QEMU_IMG)('two writers in two processes: the second is refused, and the image checks clean after the first', async () => {
    const img = join(dir, 'w.qcow2');
    qemuImg('create', '-f', 'qcow2', img, '8M');
    const writer = spawn(process.execPath, ['--import', 'tsx', resolve(__dirname, '../../test/storage/lock-writer.ts'), img], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(writer);
    await waitFor(writer, 'ready');
    await expect(attach(img, false)).rejects.toMatchObject({ code: 'InUse', message: expect.stringContaining(`pid ${writer.pid}`) });
    const done = waitFor(writer, 'done');
    writer.stdin!.end();
    await done;
    await new Promise((r) => writer.once('exit', r));
    const c = qemuCheck(img);
    expect(c.corruptions + c.leaks + c.checkErrors, c.raw).toBe(0);
    const d = await attach(img, true);
    const got = new Uint8Array(65536);
    await d.device.read(0, got);
    expect(firstDiff(got, pattern(65536, 0))).toBe(-1);
  });
});
