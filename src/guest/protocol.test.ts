import { describe, expect, it } from 'vitest';
import { FrameDecoder, G, H, HEADER_SIZE, HELLO_NO_MAC, MAX_BODY, ProtocolError, Reader, Writer, decodeGuest, encode, frame } from './protocol.js';

function frames(bytes: Uint8Array, split: number[]): { type: number; id: number; body: number[] }[] {
  const d = new FrameDecoder();
  const out: { type: number; id: number; body: number[] }[] = [];
  let last = 0;
  for (const at of [...split, bytes.length]) {
    d.push(bytes.subarray(last, at), (type, id, body) => out.push({ type, id, body: [...body] }));
    last = at;
  }
  return out;
}

describe('guest protocol codec', () => {
  it('frames carry type, id and body, however the stream is split', () => {
    const a = frame(G.STDOUT, 7, new Uint8Array([1, 2, 3]));
    const b = frame(G.OK, 0xffff_fff0);
    const all = new Uint8Array([...a, ...b]);
    const want = [
      { type: G.STDOUT, id: 7, body: [1, 2, 3] },
      { type: G.OK, id: 0xffff_fff0, body: [] },
    ];
    expect(frames(all, [])).toEqual(want);
    for (let i = 1; i < all.length; i++) expect(frames(all, [i])).toEqual(want);
    expect(frames(all, Array.from({ length: all.length - 1 }, (_, i) => i + 1))).toEqual(want);
  });

  it('refuses a frame announcing more than MAX_BODY before buffering it', () => {
    const d = new FrameDecoder();
    const head = new Uint8Array(HEADER_SIZE);
    new DataView(head.buffer).setUint32(0, MAX_BODY + 1, true);
    expect(() => d.push(head, () => {})).toThrow(ProtocolError);
    expect(() => frame(G.DATA, 1, new Uint8Array(MAX_BODY + 1))).toThrow(ProtocolError);
  });

  it('decodes every guest message and rejects trailing or missing bytes', () => {
    const w = () => new Writer();
    const entry = (x: Writer, name: string) => x.u8(1).u32(4096).u32(0).u32(0o40755).u32(1_700_000_000).u32(0).str(name);
    expect(decodeGuest(G.READY, 0, w().u32(1).str('visor-agent').done())).toEqual({ type: G.READY, id: 0, version: 1, agent: 'visor-agent' });
    // HELLO: version, entropy, and a fork child's MAC only when given
    expect(encode.hello(new Uint8Array(2)).length).toBe(4 + 4 + 2);
    const withMac = encode.hello(new Uint8Array(2), new Uint8Array([2, 0, 0, 0, 0, 7]));
    expect([...withMac.subarray(10)]).toEqual([6, 0, 0, 0, 2, 0, 0, 0, 0, 7]);
    // READY's optional MAC result (a HELLO that carried a MAC), and nothing after it
    expect(decodeGuest(G.READY, 0, w().u32(1).str('a').u32(0).done())).toEqual({ type: G.READY, id: 0, version: 1, agent: 'a', macStatus: 0 });
    expect(decodeGuest(G.READY, 0, w().u32(1).str('a').u32(HELLO_NO_MAC).done())).toMatchObject({ macStatus: HELLO_NO_MAC });
    expect(() => decodeGuest(G.READY, 0, w().u32(1).str('a').u32(0).u8(1).done())).toThrow(ProtocolError);
    expect(() => decodeGuest(G.READY, 0, w().u32(1).str('a').u8(1).done())).toThrow(ProtocolError);
    expect(decodeGuest(G.STARTED, 3, w().u32(42).done())).toEqual({ type: G.STARTED, id: 3, pid: 42 });
    expect(decodeGuest(G.EXIT, 3, w().u32(0xffff_ffff).u32(9).done())).toEqual({ type: G.EXIT, id: 3, exitCode: -1, signal: 9 });
    expect(decodeGuest(G.PROC_LIST, 1, w().u32(1).u32(5).u32(99).str('sleep 9').done())).toEqual({ type: G.PROC_LIST, id: 1, procs: [{ id: 5, pid: 99, cmd: 'sleep 9' }] });
    expect(decodeGuest(G.ERROR, 1, w().u32(2).str('nope').done())).toEqual({ type: G.ERROR, id: 1, errno: 2, message: 'nope' });
    expect(decodeGuest(G.ENTRIES, 1, entry(w().u32(1), 'etc').done())).toEqual({
      type: G.ENTRIES,
      id: 1,
      entries: [{ type: 'dir', size: 4096, mode: 0o40755, mtime: 1_700_000_000, name: 'etc' }],
    });
    expect(decodeGuest(G.STAT_RESULT, 1, entry(w(), 'x').done())).toMatchObject({ entry: { name: 'x', type: 'dir' } });
    expect(decodeGuest(G.WATCH_EVENT, 1, w().u32(0x100).str('new').done())).toEqual({ type: G.WATCH_EVENT, id: 1, mask: 0x100, name: 'new' });
    expect(() => decodeGuest(G.STARTED, 1, w().u32(1).u8(0).done())).toThrow(/trailing/);
    expect(() => decodeGuest(G.STARTED, 1, new Uint8Array(2))).toThrow(/ends before/);
    expect(() => decodeGuest(0x7f, 1, new Uint8Array(0))).toThrow(/unknown message type/);
    // a count the body cannot hold is refused before any allocation
    expect(() => decodeGuest(G.ENTRIES, 1, w().u32(0x7fff_ffff).done())).toThrow(/does not fit/);
    // sizes beyond 2^53 are refused, not rounded
    expect(() => decodeGuest(G.STAT_RESULT, 1, w().u8(0).u32(0).u32(0x0020_0000).u32(0).u32(0).u32(0).str('x').done())).toThrow(/out of range/);
  });

  it('encodes requests the agent parses field by field', () => {
    const r = new Reader(encode.exec({ argv: ['/bin/sh', '-c', 'echo é'], env: ['A=1'], cwd: '/root', user: 'root', pty: { cols: 100, rows: 30 }, stdin: true }));
    expect(r.u32()).toBe(3);
    expect([r.u8() | (r.u8() << 8), r.u8() | (r.u8() << 8)]).toEqual([100, 30]);
    expect(r.str()).toBe('/root');
    expect(r.str()).toBe('root');
    expect(r.u32()).toBe(3);
    expect([r.str(), r.str(), r.str()]).toEqual(['/bin/sh', '-c', 'echo é']);
    expect(r.u32()).toBe(1);
    expect(r.str()).toBe('A=1');
    r.end();
    expect(H.EXEC).toBe(0x10);
  });
});
