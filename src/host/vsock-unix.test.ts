import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MockDriver, collect } from '../virtio/testing/driver.js';
import {
  VIRTIO_VSOCK_HDR_SIZE,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_TYPE_STREAM,
  VirtioVsock,
  encodeHeader,
  parseHeader,
} from '../virtio/vsock/device.js';
import { listenVsockUnix, unixVsockBackend } from './vsock-unix.js';

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!cond()) throw new Error('timed out');
};

function guest(dev: VirtioVsock) {
  const { driver } = MockDriver.create(dev);
  driver.probe(3);
  for (let i = 0; i < 16; i++) driver.add(0, [], [VIRTIO_VSOCK_HDR_SIZE + 4096]);
  const got: { op: number; srcPort: number; data: string }[] = [];
  const poll = () => {
    for (const u of driver.used(0)) {
      const b = collect(u);
      const h = parseHeader(b);
      got.push({ op: h.op, srcPort: h.srcPort, data: new TextDecoder().decode(b.subarray(VIRTIO_VSOCK_HDR_SIZE)) });
      driver.add(0, [], [VIRTIO_VSOCK_HDR_SIZE + 4096]);
    }
    return got;
  };
  const send = (op: number, srcPort: number, dstPort: number, data = '') => {
    const d = new TextEncoder().encode(data);
    driver.add(1, [
      encodeHeader({ srcCid: 3, dstCid: 2, srcPort, dstPort, len: d.length, type: VIRTIO_VSOCK_TYPE_STREAM, op, flags: 0, bufAlloc: 65536, fwdCnt: 0 }),
      ...(d.length ? [d] : []),
    ], []);
  };
  return { poll, send };
}

describe('vsock over Unix sockets (Firecracker convention)', () => {
  let dir = '';
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('guest → host: CID 2 port P reaches PATH_P and echoes', async () => {
    dir = mkdtempSync(join(tmpdir(), 'visor-vsock-'));
    const path = join(dir, 'v.sock');
    const open = new Set<import('node:net').Socket>();
    const echo = createServer((s) => {
      open.add(s);
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(`${path}_5000`, r));
    cleanups.push(() => new Promise<void>((r) => {
      for (const s of open) s.destroy();
      echo.close(() => r());
    }));
    const dev = new VirtioVsock({ guestCid: 3, backend: unixVsockBackend(path) });
    const g = guest(dev);
    g.send(VIRTIO_VSOCK_OP_REQUEST, 1111, 5000);
    await until(() => g.poll().some((p) => p.op === VIRTIO_VSOCK_OP_RESPONSE));
    g.send(VIRTIO_VSOCK_OP_RW, 1111, 5000, 'round trip');
    await until(() => g.poll().some((p) => p.op === VIRTIO_VSOCK_OP_RW));
    expect(g.poll().filter((p) => p.op === VIRTIO_VSOCK_OP_RW).map((p) => p.data).join('')).toBe('round trip');
    // A port with no socket is refused.
    g.send(VIRTIO_VSOCK_OP_REQUEST, 1112, 5001);
    await until(() => dev.counters.refused === 1);
  });

  /** A device listening on PATH and a host client that said `CONNECT 52\n…` and was answered by the guest. */
  async function hostConnected(first: string) {
    dir = mkdtempSync(join(tmpdir(), 'visor-vsock-'));
    const path = join(dir, 'v.sock');
    const dev = new VirtioVsock({ guestCid: 3 });
    const g = guest(dev);
    const l = await listenVsockUnix(dev, path);
    cleanups.push(() => l.close());
    const c = createConnection(path);
    cleanups.push(() => void c.destroy());
    const got = { reply: '' };
    c.on('data', (d) => (got.reply += d.toString()));
    c.write(first);
    await until(() => g.poll().some((p) => p.op === VIRTIO_VSOCK_OP_REQUEST));
    const hostPort = g.poll().find((p) => p.op === VIRTIO_VSOCK_OP_REQUEST)!.srcPort;
    g.send(VIRTIO_VSOCK_OP_RESPONSE, 52, hostPort);
    await until(() => got.reply.includes('\n'));
    return { dev, g, c, got, hostPort };
  }

  it('host → guest: CONNECT P on PATH, OK, then a byte stream', async () => {
    const { g, got, hostPort } = await hostConnected('CONNECT 52\nhello');
    expect(got.reply).toBe(`OK ${hostPort}\n`);
    await until(() => g.poll().some((p) => p.op === VIRTIO_VSOCK_OP_RW));
    expect(g.poll().filter((p) => p.op === VIRTIO_VSOCK_OP_RW).map((p) => p.data).join('')).toBe('hello');
    g.send(VIRTIO_VSOCK_OP_RW, 52, hostPort, 'from guest');
    await until(() => got.reply.includes('from guest'));
  });

  it('ADOPT G H takes over a stream a restore kept; anything else is refused', async () => {
    const { dev, c, hostPort } = await hostConnected('CONNECT 52\n');
    c.write('abc');
    await until(() => dev.connection(52, hostPort)?.fromHost === 3);
    // The machine restored from this state keeps that stream for its host to take over.
    const dev2 = new VirtioVsock({ guestCid: 3 });
    dev2.keepOnRestore = [{ guestPort: 52, hostPort }];
    dev2.restore(JSON.parse(JSON.stringify(dev.saveState())));
    const path2 = join(dir, 'w.sock');
    const l2 = await listenVsockUnix(dev2, path2);
    cleanups.push(() => l2.close());
    const ask = (line: string) =>
      new Promise<string>((resolve) => {
        const s = createConnection(path2);
        cleanups.push(() => void s.destroy());
        let got = '';
        s.on('data', (d) => {
          got += d.toString();
          if (got.includes('\n')) {
            s.write('more');
            resolve(got);
          }
        });
        s.on('close', () => resolve(got || 'closed'));
        s.on('error', () => {});
        s.write(line);
      });
    expect(await ask(`ADOPT 52 ${hostPort + 1}\n`)).toBe('closed');
    expect(await ask('ADOPT 52\n')).toBe('closed');
    expect(await ask(`ADOPT 52 ${hostPort + 2 ** 32}\n`)).toBe('closed'); // past 32 bits: not wrapped onto the stream
    expect(await ask(`ADOPT 52 ${hostPort}\n`)).toBe(`OK ${hostPort}\n`);
    await until(() => dev2.connection(52, hostPort)?.fromHost === 7);
    expect(dev2.connection(52, hostPort)!.pendingBytes).toBe(4); // 'abc' reached the guest before the save: 'more' waits for this one's
    expect(await ask(`ADOPT 52 ${hostPort}\n`)).toBe('closed'); // taken once
  });

  it('never deletes what is at PATH: a file or a live socket is refused, a stale socket replaced (issue 20)', async () => {
    dir = mkdtempSync(join(tmpdir(), 'visor-vsock-'));
    const dev = new VirtioVsock({ guestCid: 3 });
    // A regular file: refused, and still there with its contents.
    const file = join(dir, 'important.txt');
    writeFileSync(file, 'important\n');
    await expect(listenVsockUnix(dev, file)).rejects.toMatchObject({ code: 'InvalidArgument', message: expect.stringMatching(/not a socket/) });
    expect(readFileSync(file, 'utf8')).toBe('important\n');
    // A socket another VM serves: refused (InUse), and that VM keeps it.
    const path = join(dir, 'v.sock');
    const first = await listenVsockUnix(dev, path);
    await expect(listenVsockUnix(new VirtioVsock({ guestCid: 3 }), path)).rejects.toMatchObject({ code: 'InUse' });
    const c = createConnection(path);
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    c.destroy();
    await first.close();
    // A stale socket (a listener that died without removing it): replaced.
    // A stale socket: what a process killed while listening leaves behind.
    const stale = join(dir, 'stale.sock');
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(existsSync(stale)).toBe(true);
    const second = await listenVsockUnix(dev, stale);
    cleanups.push(() => second.close());
  });
});
