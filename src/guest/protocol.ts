/**
 * visor's guest agent protocol, version 1: the one definition. The agent (src/guest/agent/*.c)
 * mirrors these numbers in protocol.h; docs/sandbox.md describes the messages.
 *
 * Transport: one virtio-vsock stream (guest port AGENT_VSOCK_PORT), reached from the host as
 * the Unix socket the machine's vsock device listens on (src/host/vsock-unix.ts). Frames:
 *
 *   u32 LE length of the body · u8 type · u32 LE id · body (length bytes)
 *
 * `id` names the request a frame belongs to (a command, a file transfer); 0 is the session.
 * Body fields are little-endian integers and strings/byte strings as u32 length + bytes.
 * Everything the guest sends is untrusted: the decoder bounds every length (MAX_BODY) before
 * buffering, and each body is parsed by a reader that refuses to read past its end.
 */
import { concatBytes } from '../base/bytes.js';

export const PROTOCOL_VERSION = 1;
/** The agent's vsock port (an arbitrary unprivileged number, as Firecracker's examples use). */
export const AGENT_VSOCK_PORT = 1024;
export const HEADER_SIZE = 9;
/** Largest body either side sends or accepts. Data moves in DATA_CHUNK pieces. */
export const MAX_BODY = 1 << 20;
/** Size of file and stdin chunks the host sends (and the agent's read size for files and pipes). */
export const DATA_CHUNK = 64 * 1024;
/**
 * Host → guest bytes in flight (sent, not yet acknowledged by the agent with ACK): the vsock
 * device holds at most 1 MiB per connection waiting for guest credit and drops the rest.
 */
export const HOST_WINDOW = 256 * 1024;
/** Strings (paths, names, arguments) are at most this long. */
export const MAX_STRING = 64 * 1024;
/** READY's MAC result when HELLO asked for none (agent.c HELLO_NO_MAC). */
export const HELLO_NO_MAC = 0xffff_ffff;

/** Host → guest. */
export const H = {
  HELLO: 0x01,
  EXEC: 0x10,
  STDIN: 0x11,
  SIGNAL: 0x12,
  RESIZE: 0x13,
  PROCS: 0x14,
  WRITE_OPEN: 0x20,
  WRITE_DATA: 0x21,
  WRITE_END: 0x22,
  READ: 0x23,
  LIST: 0x24,
  STAT: 0x25,
  MKDIR: 0x26,
  REMOVE: 0x27,
  RENAME: 0x28,
  WATCH: 0x29,
  UNWATCH: 0x2a,
} as const;

/** Guest → host. */
export const G = {
  READY: 0x81,
  STARTED: 0x90,
  STDOUT: 0x91,
  STDERR: 0x92,
  EXIT: 0x93,
  PROC_LIST: 0x94,
  OK: 0xa0,
  ERROR: 0xa1,
  ACK: 0xa2,
  DATA: 0xa3,
  ENTRIES: 0xa4,
  STAT_RESULT: 0xa5,
  WATCH_EVENT: 0xa6,
} as const;

/** EXEC flags. */
export const EXEC_PTY = 1;
/** Keep stdin open (background commands, pty); otherwise the command's stdin is /dev/null. */
export const EXEC_STDIN = 2;

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';
const ENTRY_TYPES: readonly EntryType[] = ['file', 'dir', 'symlink', 'other'];

export interface EntryInfo {
  name: string;
  type: EntryType;
  size: number;
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
}

/** inotify's bits, as the agent reports them (linux/inotify.h). */
export const WATCH_BITS = { create: 0x100, delete: 0x200, modify: 0x2, movedFrom: 0x40, movedTo: 0x80, closeWrite: 0x8 } as const;

export type GuestMessage =
  /** macStatus: HELLO's MAC applied (0), an errno, HELLO_NO_MAC; absent from agents older than it. */
  | { type: typeof G.READY; id: number; version: number; agent: string; macStatus?: number }
  | { type: typeof G.STARTED; id: number; pid: number }
  | { type: typeof G.STDOUT | typeof G.STDERR | typeof G.DATA; id: number; data: Uint8Array }
  | { type: typeof G.EXIT; id: number; exitCode: number; signal: number }
  | { type: typeof G.PROC_LIST; id: number; procs: { id: number; pid: number; cmd: string }[] }
  | { type: typeof G.OK; id: number }
  | { type: typeof G.ERROR; id: number; errno: number; message: string }
  | { type: typeof G.ACK; id: number; bytes: number }
  | { type: typeof G.ENTRIES; id: number; entries: EntryInfo[] }
  | { type: typeof G.STAT_RESULT; id: number; entry: EntryInfo }
  | { type: typeof G.WATCH_EVENT; id: number; mask: number; name: string };

/** A frame or body that breaks the protocol: the session ends (the agent is not trusted). */
export class ProtocolError extends Error {}

/** Builds frame bodies. */
export class Writer {
  private buf = new Uint8Array(256);
  private len = 0;
  private view = new DataView(this.buf.buffer);

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }

  u8(v: number): this {
    this.room(1);
    this.buf[this.len++] = v;
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.view.setUint16(this.len, v, true);
    this.len += 2;
    return this;
  }

  u32(v: number): this {
    this.room(4);
    this.view.setUint32(this.len, v >>> 0, true);
    this.len += 4;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.u32(b.length);
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  str(s: string): this {
    const b = new TextEncoder().encode(s);
    if (b.length > MAX_STRING) throw new ProtocolError(`string of ${b.length} bytes is longer than ${MAX_STRING}`);
    return this.bytes(b);
  }

  strs(list: readonly string[]): this {
    this.u32(list.length);
    for (const s of list) this.str(s);
    return this;
  }

  done(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

/** Reads a frame body; every read checks the bounds. */
export class Reader {
  private pos = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new ProtocolError('body ends before its fields');
  }

  /** No bytes left (an optional trailing field is absent). */
  get atEnd(): boolean {
    return this.pos >= this.buf.length;
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A u64 that must fit a double exactly (sizes, times). */
  u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    if (hi > 0x1f_ffff) throw new ProtocolError('64-bit field out of range');
    return hi * 2 ** 32 + lo;
  }

  bytes(max = MAX_BODY): Uint8Array {
    const n = this.u32();
    if (n > max) throw new ProtocolError(`field of ${n} bytes is longer than ${max}`);
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  str(): string {
    return new TextDecoder('utf-8', { fatal: false }).decode(this.bytes(MAX_STRING));
  }

  /** Counted items, each at least `minSize` bytes: a count the body cannot hold is refused before any allocation. */
  count(minSize: number): number {
    const n = this.u32();
    if (n * minSize > this.buf.length - this.pos) throw new ProtocolError(`count ${n} does not fit the body`);
    return n;
  }

  end(): void {
    if (this.pos !== this.buf.length) throw new ProtocolError('trailing bytes after the fields');
  }

  rest(): Uint8Array {
    const b = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return b;
  }
}

/** A whole frame, header included. */
export function frame(type: number, id: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (body.length > MAX_BODY) throw new ProtocolError(`frame body of ${body.length} bytes is larger than ${MAX_BODY}`);
  const f = new Uint8Array(HEADER_SIZE + body.length);
  const v = new DataView(f.buffer);
  v.setUint32(0, body.length, true);
  f[4] = type;
  v.setUint32(5, id >>> 0, true);
  f.set(body, HEADER_SIZE);
  return f;
}

/**
 * Splits a byte stream into frames. Holds at most one frame's bytes (HEADER_SIZE + MAX_BODY):
 * a header announcing more is a ProtocolError before anything is buffered.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private held = 0;

  /** Bytes buffered, waiting for the rest of a frame (never more than HEADER_SIZE + MAX_BODY + one push). */
  get buffered(): number {
    return this.held;
  }

  /** A copy of what is buffered: the start of a frame whose rest has not come yet. */
  partial(): Uint8Array {
    return concatBytes(this.chunks, this.held);
  }

  push(data: Uint8Array, onFrame: (type: number, id: number, body: Uint8Array) => void): void {
    if (data.length === 0) return;
    this.chunks.push(data);
    this.held += data.length;
    for (;;) {
      if (this.held < HEADER_SIZE) return;
      const head = this.peek(HEADER_SIZE);
      const v = new DataView(head.buffer, head.byteOffset, HEADER_SIZE);
      const len = v.getUint32(0, true);
      if (len > MAX_BODY) throw new ProtocolError(`frame of ${len} bytes announced (the limit is ${MAX_BODY})`);
      if (this.held < HEADER_SIZE + len) return;
      const type = head[4]!;
      const id = v.getUint32(5, true);
      const whole = this.take(HEADER_SIZE + len);
      onFrame(type, id, whole.subarray(HEADER_SIZE));
    }
  }

  private peek(n: number): Uint8Array {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    this.chunks = [concatBytes(this.chunks, this.held)];
    return this.chunks[0]!;
  }

  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    let out: Uint8Array;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = concatBytes(this.chunks, this.held);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.held -= n;
    return out;
  }
}

function entry(r: Reader): EntryInfo {
  const t = r.u8();
  const size = r.u64();
  const mode = r.u32();
  const mtime = r.u64();
  const name = r.str();
  return { type: ENTRY_TYPES[t] ?? 'other', size, mode, mtime, name };
}

/** Smallest encoded entry: type, size, mode, mtime, empty name. */
const ENTRY_MIN = 1 + 8 + 4 + 8 + 4;

/** Parses one guest frame; a ProtocolError for an unknown type or a malformed body. */
export function decodeGuest(type: number, id: number, body: Uint8Array): GuestMessage {
  const r = new Reader(body);
  let m: GuestMessage;
  switch (type) {
    case G.READY:
      m = { type, id, version: r.u32(), agent: r.str() };
      if (!r.atEnd) m.macStatus = r.u32();
      break;
    case G.STARTED:
      m = { type, id, pid: r.u32() };
      break;
    case G.STDOUT:
    case G.STDERR:
    case G.DATA:
      m = { type, id, data: r.rest() };
      break;
    case G.EXIT:
      m = { type, id, exitCode: r.i32(), signal: r.u32() };
      break;
    case G.PROC_LIST: {
      const n = r.count(12);
      const procs: { id: number; pid: number; cmd: string }[] = [];
      for (let i = 0; i < n; i++) procs.push({ id: r.u32(), pid: r.u32(), cmd: r.str() });
      m = { type, id, procs };
      break;
    }
    case G.OK:
      m = { type, id };
      break;
    case G.ERROR:
      m = { type, id, errno: r.u32(), message: r.str() };
      break;
    case G.ACK:
      m = { type, id, bytes: r.u32() };
      break;
    case G.ENTRIES: {
      const n = r.count(ENTRY_MIN);
      const entries: EntryInfo[] = [];
      for (let i = 0; i < n; i++) entries.push(entry(r));
      m = { type, id, entries };
      break;
    }
    case G.STAT_RESULT:
      m = { type, id, entry: entry(r) };
      break;
    case G.WATCH_EVENT:
      m = { type, id, mask: r.u32(), name: r.str() };
      break;
    default:
      throw new ProtocolError(`unknown message type 0x${type.toString(16)}`);
  }
  r.end();
  return m;
}

export interface ExecRequest {
  argv: readonly string[];
  env: readonly string[];
  cwd: string;
  user: string;
  pty?: { cols: number; rows: number };
  stdin: boolean;
}

/** Host → guest bodies. */
export const encode = {
  /** `mac`: eth0's new address (a fork's child); agents older than it ignore it. */
  hello: (entropy: Uint8Array, mac?: Uint8Array) => {
    const w = new Writer().u32(PROTOCOL_VERSION).bytes(entropy);
    return (mac ? w.bytes(mac) : w).done();
  },
  exec: (e: ExecRequest) =>
    new Writer()
      .u32((e.pty ? EXEC_PTY : 0) | (e.stdin ? EXEC_STDIN : 0))
      .u16(e.pty?.cols ?? 0)
      .u16(e.pty?.rows ?? 0)
      .str(e.cwd)
      .str(e.user)
      .strs(e.argv)
      .strs(e.env)
      .done(),
  signal: (signo: number) => new Writer().u32(signo).done(),
  resize: (cols: number, rows: number) => new Writer().u16(cols).u16(rows).done(),
  path: (p: string) => new Writer().str(p).done(),
  writeOpen: (p: string, mode: number) => new Writer().u32(mode).str(p).done(),
  rename: (from: string, to: string) => new Writer().str(from).str(to).done(),
};
