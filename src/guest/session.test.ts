import { describe, expect, it } from 'vitest';
import { fakePair } from '../../test/support/fake-agent.js';
import { isVisorError } from '../base/errors.js';
import { G, H, HOST_WINDOW, MAX_BODY, Writer, frame } from './protocol.js';
import { AgentRequestError, AgentSession } from './session.js';

const text = (b: Uint8Array[]) => new TextDecoder().decode(Buffer.concat(b));

describe('AgentSession with a fake agent', () => {
  it('handshakes, runs commands with separate streams and exit codes', async () => {
    const { session } = fakePair();
    expect(await session.hello(new Uint8Array(32))).toEqual({ version: 1, agent: 'fake-agent' });
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    const h = session.exec({ argv: ['/bin/sh', '-c', 'echo hi'], env: [], cwd: '', user: 'root', stdin: false }, { onStdout: (d) => out.push(d), onStderr: (d) => err.push(d) });
    expect(await h.started).toBe(100);
    expect(await h.exited).toEqual({ exitCode: 0, signal: 0 });
    expect(text(out)).toBe('hi\n');
    expect(err).toEqual([]);
    const f = session.exec({ argv: ['/bin/sh', '-c', 'fail 3'], env: [], cwd: '', user: 'root', stdin: false }, { onStderr: (d) => err.push(d) });
    expect(await f.exited).toEqual({ exitCode: 3, signal: 0 });
    expect(text(err)).toBe('failing\n');
    expect(session.pendingRequests).toBe(0);
  });

  it('passes the environment, streams stdin with acknowledgements, signals and lists', async () => {
    const { session, agent } = fakePair();
    const out: Uint8Array[] = [];
    await session.exec({ argv: ['/bin/sh', '-c', 'env'], env: ['A=1', 'B=two'], cwd: '', user: 'root', stdin: false }, { onStdout: (d) => out.push(d) }).exited;
    expect(text(out)).toBe('A=1\nB=two\n');
    const catOut: Uint8Array[] = [];
    const cat = session.exec({ argv: ['/bin/sh', '-c', 'cat'], env: [], cwd: '', user: 'root', stdin: true }, { onStdout: (d) => catOut.push(d) });
    await cat.started;
    const big = new Uint8Array(3 * HOST_WINDOW + 5).map((_, i) => i);
    await cat.sendStdin(big);
    await cat.closeStdin();
    await cat.exited;
    expect(Buffer.concat(catOut).equals(Buffer.from(big))).toBe(true);
    const sleeper = session.exec({ argv: ['/bin/sh', '-c', 'sleep 100'], env: [], cwd: '', user: 'root', stdin: false });
    await sleeper.started;
    expect((await session.procs()).map((p) => p.cmd)).toEqual(['sleep 100']);
    await sleeper.signal(9);
    expect(await sleeper.exited).toEqual({ exitCode: -1, signal: 9 });
    await expect(sleeper.signal(9)).rejects.toThrow(/exited/);
    expect(agent.procs.size).toBe(0);
  });

  it('an exec the agent refuses rejects both promises', async () => {
    const { session } = fakePair();
    const h = session.exec({ argv: ['x'], env: [], cwd: '', user: 'nobody', stdin: false });
    await expect(h.started).rejects.toBeInstanceOf(AgentRequestError);
    await expect(h.exited).rejects.toThrow(/no such user/);
  });

  it('moves files in both directions and maps errno to codes', async () => {
    const { session, agent } = fakePair();
    const data = new Uint8Array(200_000).map((_, i) => (i * 13) & 255);
    await session.writeFile('/root/a.bin', [data.subarray(0, 70_000), data.subarray(70_000)]);
    expect(Buffer.from(agent.files.get('/root/a.bin')!).equals(Buffer.from(data))).toBe(true);
    const parts: Uint8Array[] = [];
    expect(await session.readFile('/root/a.bin', (d) => parts.push(d.slice()), 1 << 20)).toBe(data.length);
    expect(Buffer.concat(parts).equals(Buffer.from(data))).toBe(true);
    await expect(session.readFile('/root/a.bin', () => {}, 1000)).rejects.toThrow(/larger than the 1000 bytes/);
    expect((await session.list('/root')).map((e) => [e.name, e.size])).toEqual([['a.bin', 200_000]]);
    expect(await session.stat('/root/a.bin')).toMatchObject({ type: 'file', size: 200_000 });
    expect(await session.stat('/nope')).toBeUndefined();
    await session.rename('/root/a.bin', '/root/b.bin');
    await session.mkdir('/root/d');
    await session.remove('/root/b.bin');
    expect(agent.files.size).toBe(0);
    const e = await session.readFile('/nope', () => {}, 10).catch((x) => x);
    expect(isVisorError(e, 'NotFound')).toBe(true);
    await expect(session.writeFile('/proc/x', [new Uint8Array(1)])).rejects.toSatisfy((x) => isVisorError(x, 'NotAllowed'));
    const events: string[] = [];
    const w = await session.watch('/root', (mask, name) => events.push(`${mask}:${name}`));
    await w.stop();
    expect(events).toEqual(['256:new-file']);
    expect(session.pendingRequests).toBe(0);
  });

  it('rejects everything pending with GuestGone when the connection ends', async () => {
    const { session, agent } = fakePair();
    agent.silent = true;
    const p = session.procs();
    const h = session.exec({ argv: ['x'], env: [], cwd: '', user: 'root', stdin: false });
    await Promise.resolve();
    session.end(new (await import('../base/errors.js')).VisorError('GuestGone', 'machine stopped'));
    await expect(p).rejects.toSatisfy((x) => isVisorError(x, 'GuestGone'));
    await expect(h.exited).rejects.toSatisfy((x) => isVisorError(x, 'GuestGone'));
    await expect(session.procs()).rejects.toSatisfy((x) => isVisorError(x, 'GuestGone'));
    expect(session.pendingRequests).toBe(0);
  });
});

describe('AgentSession cut for a fork (cork, bytes counted, the partial frame)', () => {
  it('holds frames while corked and counts what went before', async () => {
    const wrote: Uint8Array[] = [];
    const session = new AgentSession({ write: (b) => void wrote.push(b), close: () => {} });
    void session.procs().catch(() => {});
    const before = wrote.reduce((n, b) => n + b.length, 0);
    expect(session.cork()).toBe(before);
    void session.procs().catch(() => {});
    void session.mkdir('/x').catch(() => {});
    expect(wrote).toHaveLength(1); // held
    session.uncork();
    expect(wrote).toHaveLength(3);
    expect(wrote.map((b) => b[4])).toEqual([H.PROCS, H.PROCS, H.MKDIR]); // in order
    expect(session.cork()).toBe(wrote.reduce((n, b) => n + b.length, 0));
    session.uncork();
  });

  it('a child session continues a stream cut inside a frame, and drops the frames of the parent requests', async () => {
    const parent = new AgentSession({ write: () => {}, close: () => {} });
    const parentOut: string[] = [];
    const ph = parent.exec({ argv: ['x'], env: [], cwd: '', user: 'root', stdin: false }, { onStdout: (d) => parentOut.push(new TextDecoder().decode(d)) });
    const stream = Buffer.concat([
      frame(G.STARTED, ph.id, new Writer().u32(7).done()),
      frame(G.STDOUT, ph.id, new TextEncoder().encode('first')),
      frame(G.STDOUT, ph.id, new TextEncoder().encode('second, cut in two')),
    ]);
    const cut = stream.length - 6; // inside the last frame
    parent.feed(stream.subarray(0, cut));
    expect(parent.bytesFed).toBe(cut);
    expect(await ph.started).toBe(7);
    const partial = parent.partialFrame();
    expect(partial.length).toBe(9 + 'second, cut in two'.length - 6);
    // The child's stream goes on from the cut; its own request comes after.
    const child = new AgentSession({ write: () => {}, close: () => {} }, 1_000_000);
    child.continueAfter(partial);
    expect(child.bytesFed).toBe(0);
    const procs = child.procs();
    child.feed(stream.subarray(cut));
    child.feed(frame(G.PROC_LIST, 1_000_000, new Writer().u32(0).done()));
    expect(await procs).toEqual([]);
    expect(child.dropped).toBe(1); // the parent's output, finished in the child
    expect(child.closed).toBeUndefined();
    // Without the partial frame the child would read the rest of a frame as a header.
    const lost = new AgentSession({ write: () => {}, close: () => {} });
    lost.feed(stream.subarray(cut));
    lost.feed(frame(G.PROC_LIST, 1, new Writer().u32(0).done()));
    expect(lost.closed?.code).toBe('AgentProtocol'); // "in two" and the next header announce a frame past the limit
    expect(parentOut).toEqual(['first']);
  });
});

describe('AgentSession against a hostile agent', () => {
  function hostile() {
    let closed = false;
    const session = new AgentSession({ write: () => {}, close: () => (closed = true) });
    return { session, closed: () => closed };
  }

  it('an oversized frame ends the session with AgentProtocol, without buffering it', async () => {
    const { session, closed } = hostile();
    const p = session.procs();
    const head = new Uint8Array(9);
    new DataView(head.buffer).setUint32(0, 0xffff_ffff, true);
    session.feed(head);
    expect(closed()).toBe(true);
    expect(session.closed?.code).toBe('AgentProtocol');
    await expect(p).rejects.toSatisfy((x) => isVisorError(x, 'AgentProtocol'));
    expect(session.bufferedBytes).toBeLessThanOrEqual(9);
  });

  it('frames for ids nobody asked about are dropped and counted; lies about lengths end it', () => {
    const { session } = hostile();
    session.feed(frame(G.STDOUT, 1234, new Uint8Array(10)));
    session.feed(frame(G.EXIT, 99, new Writer().u32(0).u32(0).done()));
    expect(session.dropped).toBe(2);
    expect(session.closed).toBeUndefined();
    session.feed(frame(G.PROC_LIST, 1, new Writer().u32(1_000_000).done()));
    expect(session.closed?.code).toBe('AgentProtocol');
  });

  it('survives random and mutated frames: never throws, stays bounded (fuzz, seed printed)', async () => {
    const seed = Number(process.env.VISOR_FUZZ_SEED ?? Date.now() % 1_000_000);
    let s = seed >>> 0 || 1;
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0), s / 2 ** 32);
    const valid = [
      frame(G.READY, 1, new Writer().u32(1).str('x').done()),
      frame(G.STARTED, 2, new Writer().u32(5).done()),
      frame(G.STDOUT, 2, new Uint8Array(100)),
      frame(G.EXIT, 2, new Writer().u32(1).u32(0).done()),
      frame(G.ENTRIES, 3, new Writer().u32(1).u8(0).u32(1).u32(0).u32(0).u32(0).u32(0).str('a').done()),
      frame(G.ACK, 4, new Writer().u32(65536).done()),
      frame(G.ERROR, 5, new Writer().u32(2).str('e').done()),
    ];
    for (let round = 0; round < 120; round++) {
      const session = new AgentSession({ write: () => {}, close: () => {} });
      // requests for the fuzzed frames to land on
      const pending: Promise<unknown>[] = [session.hello(new Uint8Array(4)), session.procs(), session.list("/"), session.stat("/")];
      const h = session.exec({ argv: ['x'], env: [], cwd: '', user: 'root', stdin: true }, {});
      pending.push(h.started, h.exited, h.sendStdin(new Uint8Array(HOST_WINDOW * 2)));
      for (const p of pending) (p as Promise<unknown>).catch(() => {});
      for (let i = 0; i < 40; i++) {
        let f: Uint8Array;
        const pick = rnd();
        if (pick < 0.3) f = Uint8Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256));
        else {
          f = valid[Math.floor(rnd() * valid.length)]!.slice();
          if (pick < 0.8) for (let k = 0; k < 3; k++) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 256);
          if (rnd() < 0.1) f[0] = 0xff; // a huge length
        }
        // fed in random splits
        let off = 0;
        while (off < f.length) {
          const n = 1 + Math.floor(rnd() * f.length);
          expect(() => session.feed(f.subarray(off, off + n))).not.toThrow();
          off += n;
        }
        expect(session.bufferedBytes).toBeLessThanOrEqual(MAX_BODY + 9 + 64);
      }
      session.end(new (await import('../base/errors.js')).VisorError('GuestGone', 'done'));
      await Promise.allSettled(pending);
      expect(session.pendingRequests, `seed ${seed}`).toBe(0);
    }
  });
});
