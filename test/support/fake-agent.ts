/**
 * A guest agent in TypeScript for host-side tests: speaks protocol v1 (src/guest/protocol.ts)
 * over an in-memory transport, with a tiny command set and a Map for a file system. The real
 * agent (src/guest/agent) is tested in the guest (test/sdk/sandbox-guest.test.ts).
 */
import { FrameDecoder, G, H, PROTOCOL_VERSION, Reader, Writer, frame, type EntryType } from '../../src/guest/protocol.js';
import { AgentSession } from '../../src/guest/session.js';

interface FakeProc {
  id: number;
  pid: number;
  cmd: string;
  stdin: Uint8Array[];
}

export class FakeAgent {
  readonly files = new Map<string, Uint8Array>();
  readonly dirs = new Set<string>(['/', '/root']);
  readonly procs = new Map<number, FakeProc>();
  private writing = new Map<number, { path: string; parts: Uint8Array[] }>();
  private readonly decoder = new FrameDecoder();
  private nextPid = 100;
  /** Everything the host sent, decoded (type, id). */
  readonly seen: { type: number; id: number }[] = [];
  /** Set to stop answering (a hung guest). */
  silent = false;

  constructor(readonly toHost: (b: Uint8Array) => void) {}

  send(type: number, id: number, body?: Uint8Array): void {
    this.toHost(frame(type, id, body));
  }

  receive(bytes: Uint8Array): void {
    this.decoder.push(bytes, (type, id, body) => {
      this.seen.push({ type, id });
      if (!this.silent) this.handle(type, id, new Reader(body), body);
    });
  }

  private err(id: number, errno: number, msg: string): void {
    this.send(G.ERROR, id, new Writer().u32(errno).str(msg).done());
  }

  private entry(w: Writer, name: string, type: EntryType, size: number): Writer {
    return w.u8(['file', 'dir', 'symlink', 'other'].indexOf(type)).u32(size).u32(0).u32(type === 'dir' ? 0o40755 : 0o100644).u32(1_700_000_000).u32(0).str(name);
  }

  private handle(type: number, id: number, r: Reader, body: Uint8Array): void {
    switch (type) {
      case H.HELLO:
        return this.send(G.READY, id, new Writer().u32(PROTOCOL_VERSION).str('fake-agent').done());
      case H.EXEC: {
        r.u32();
        r.u32();
        r.str();
        const user = r.str();
        const argc = r.u32();
        const argv = Array.from({ length: argc }, () => r.str());
        const envc = r.u32();
        const env = Array.from({ length: envc }, () => r.str());
        if (user !== 'root') return this.err(id, 2, 'exec: no such user');
        const pid = this.nextPid++;
        this.send(G.STARTED, id, new Writer().u32(pid).done());
        const cmd = argv[argv.length - 1]!;
        // A few commands, enough to drive the session: echo, fail N, env, cat (stdin), sleep.
        let m: RegExpExecArray | null;
        if ((m = /^echo (.*)$/.exec(cmd))) {
          this.send(G.STDOUT, id, new TextEncoder().encode(m[1] + '\n'));
          this.send(G.EXIT, id, new Writer().u32(0).u32(0).done());
        } else if ((m = /^fail (\d+)$/.exec(cmd))) {
          this.send(G.STDERR, id, new TextEncoder().encode('failing\n'));
          this.send(G.EXIT, id, new Writer().u32(Number(m[1])).u32(0).done());
        } else if (cmd === 'env') {
          this.send(G.STDOUT, id, new TextEncoder().encode(env.join('\n') + '\n'));
          this.send(G.EXIT, id, new Writer().u32(0).u32(0).done());
        } else this.procs.set(id, { id, pid, cmd, stdin: [] });
        return;
      }
      case H.STDIN: {
        this.send(G.ACK, id, new Writer().u32(body.length).done());
        const p = this.procs.get(id);
        if (!p) return;
        if (body.length === 0 && p.cmd === 'cat') {
          for (const c of p.stdin) this.send(G.STDOUT, id, c);
          this.procs.delete(id);
          this.send(G.EXIT, id, new Writer().u32(0).u32(0).done());
        } else p.stdin.push(body.slice());
        return;
      }
      case H.SIGNAL: {
        const sig = r.u32();
        const p = this.procs.get(id);
        if (!p) return this.err(id, 3, 'signal: no such process');
        this.send(G.OK, id);
        this.procs.delete(id);
        this.send(G.EXIT, id, new Writer().u32(0xffff_ffff).u32(sig).done());
        return;
      }
      case H.PROCS: {
        const w = new Writer().u32(this.procs.size);
        for (const p of this.procs.values()) w.u32(p.id).u32(p.pid).str(p.cmd);
        return this.send(G.PROC_LIST, id, w.done());
      }
      case H.WRITE_OPEN: {
        r.u32();
        const path = r.str();
        if (path.startsWith('/proc/')) return this.err(id, 13, `${path}: Permission denied`);
        this.writing.set(id, { path, parts: [] });
        return this.send(G.OK, id);
      }
      case H.WRITE_DATA:
        this.writing.get(id)?.parts.push(body.slice());
        return this.send(G.ACK, id, new Writer().u32(body.length).done());
      case H.WRITE_END: {
        const w = this.writing.get(id);
        if (!w) return this.err(id, 2, 'no transfer');
        this.writing.delete(id);
        this.files.set(w.path, Buffer.concat(w.parts));
        return this.send(G.OK, id);
      }
      case H.READ: {
        const path = r.str();
        const data = this.files.get(path);
        if (!data) return this.err(id, 2, `${path}: No such file or directory`);
        for (let off = 0; off < data.length; off += 65536) this.send(G.DATA, id, data.subarray(off, off + 65536));
        return this.send(G.OK, id);
      }
      case H.LIST: {
        const dir = r.str().replace(/\/$/, '');
        const names = [...this.files.keys()].filter((p) => p.startsWith(dir + '/') && !p.slice(dir.length + 1).includes('/'));
        const w = new Writer().u32(names.length);
        for (const n of names) this.entry(w, n.slice(dir.length + 1), 'file', this.files.get(n)!.length);
        this.send(G.ENTRIES, id, w.done());
        return this.send(G.OK, id);
      }
      case H.STAT: {
        const path = r.str();
        if (this.dirs.has(path)) return this.send(G.STAT_RESULT, id, this.entry(new Writer(), path, 'dir', 4096).done());
        const f = this.files.get(path);
        if (!f) return this.err(id, 2, `${path}: No such file or directory`);
        return this.send(G.STAT_RESULT, id, this.entry(new Writer(), path.slice(path.lastIndexOf('/') + 1), 'file', f.length).done());
      }
      case H.MKDIR:
        this.dirs.add(r.str());
        return this.send(G.OK, id);
      case H.REMOVE: {
        const path = r.str();
        if (!this.files.delete(path) && !this.dirs.delete(path)) return this.err(id, 2, `${path}: No such file or directory`);
        return this.send(G.OK, id);
      }
      case H.RENAME: {
        const from = r.str();
        const to = r.str();
        const f = this.files.get(from);
        if (!f) return this.err(id, 2, `${from}: No such file or directory`);
        this.files.delete(from);
        this.files.set(to, f);
        return this.send(G.OK, id);
      }
      case H.WATCH:
        this.send(G.OK, id);
        return this.send(G.WATCH_EVENT, id, new Writer().u32(0x100).str('new-file').done());
      case H.UNWATCH:
        return this.send(G.OK, id);
      default:
        return this.err(id, 71, 'unknown request');
    }
  }
}

/** A session wired to a fake agent; bytes cross on microtasks, as a socket's would. */
export function fakePair(): { session: AgentSession; agent: FakeAgent; closed: () => boolean } {
  let closed = false;
  let session!: AgentSession;
  const agent = new FakeAgent((b) => queueMicrotask(() => session.feed(b)));
  session = new AgentSession({
    write: (b) => {
      const copy = b.slice();
      queueMicrotask(() => agent.receive(copy));
    },
    close: () => (closed = true),
  });
  return { session, agent, closed: () => closed };
}
