/**
 * The host's side of one connection to the guest agent: sends requests, matches the agent's
 * frames to them by id, and turns everything into promises and callbacks.
 *
 * The agent is untrusted (a guest's root can replace it). So: frames are bounded before they
 * are buffered (FrameDecoder), every body is parsed by a bounds-checked reader, a frame for an
 * id nobody asked about is dropped (counted), a malformed one ends the session with an
 * AgentProtocol error, and what the session keeps for a request is bounded by the caller's
 * limits (collected output, file size). No host path is ever derived from what it says.
 */
import { VisorError } from '../base/errors.js';
import {
  DATA_CHUNK,
  FrameDecoder,
  G,
  H,
  HOST_WINDOW,
  ProtocolError,
  decodeGuest,
  encode,
  frame,
  type EntryInfo,
  type ExecRequest,
  type GuestMessage,
} from './protocol.js';

/** Where the session's bytes go: a socket in production, a fake agent in tests. */
export interface AgentTransport {
  write(bytes: Uint8Array): void;
  close(): void;
}

type Handler = (m: GuestMessage) => void;

export interface ExecHandlers {
  onStdout?(data: Uint8Array): void;
  onStderr?(data: Uint8Array): void;
}

export interface ExitInfo {
  exitCode: number;
  /** The signal that ended it (0: it exited). */
  signal: number;
}

/** A command the agent runs. */
export interface ExecHandle {
  readonly id: number;
  /** Its pid in the guest, once started (rejects when it could not start). */
  readonly started: Promise<number>;
  readonly exited: Promise<ExitInfo>;
  sendStdin(data: Uint8Array): Promise<void>;
  closeStdin(): Promise<void>;
  signal(signo: number): Promise<void>;
  resize(cols: number, rows: number): Promise<void>;
}

export interface WatchHandle {
  stop(): Promise<void>;
}

/** An error the agent reported for a request (errno and its message). */
export class AgentRequestError extends VisorError {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    // ENOENT; EPERM, EACCES; EIO, ENOSPC, EDQUOT
    super(errno === 2 ? 'NotFound' : errno === 1 || errno === 13 ? 'NotAllowed' : errno === 5 || errno === 28 || errno === 122 ? 'IoError' : 'InvalidArgument', message);
  }
}

const ENOENT = 2;

export class AgentSession {
  private readonly decoder = new FrameDecoder();
  private readonly handlers = new Map<number, Handler>();
  private nextId = 1;
  private inflight = 0;
  private windowWaiters: (() => void)[] = [];
  private _closed: VisorError | undefined;
  private readonly closeListeners: ((err: VisorError) => void)[] = [];
  /** Frames for ids nobody is waiting for (a confused or hostile agent; or late output). */
  dropped = 0;
  /** Bytes written to the agent and bytes fed from it, since the connection began (a fork's cut of the stream: Sandbox.fork). */
  private written = 0;
  private fed = 0;
  /** Frames held back while corked (cork()). */
  private corked: Uint8Array[] | null = null;

  constructor(
    private readonly transport: AgentTransport,
    firstId = 1,
  ) {
    this.nextId = firstId;
  }

  /** The id the next request gets (a fork's session starts after its parent's). */
  get nextRequestId(): number {
    return this.nextId;
  }

  get closed(): VisorError | undefined {
    return this._closed;
  }

  private write(f: Uint8Array): void {
    this.written += f.length;
    this.transport.write(f);
  }

  /**
   * Holds every frame sent from now on until uncork(), so the stream to the agent stays at a
   * frame boundary (a fork snapshots its machine meanwhile); says how many bytes went before.
   */
  cork(): number {
    this.corked ??= [];
    return this.written;
  }

  /** Sends what cork() held, in order. */
  uncork(): void {
    const held = this.corked;
    this.corked = null;
    if (held && !this._closed) for (const f of held) this.write(f);
  }

  /** Bytes fed from the agent so far (feed). */
  get bytesFed(): number {
    return this.fed;
  }

  /** The start of a frame whose rest has not been fed yet (a copy). */
  partialFrame(): Uint8Array {
    return this.decoder.partial();
  }

  /**
   * A session continuing another's stream mid-way (a fork's child on its parent's agent
   * connection): `partial`, the other's partialFrame() at the cut, comes before what is fed next.
   * Frames for the other's requests then find no handler here and are dropped.
   */
  continueAfter(partial: Uint8Array): void {
    if (this.fed !== 0 || this.written !== 0) throw new Error('continueAfter: the session has started already');
    if (partial.length > 0) this.feed(partial);
    this.fed = 0;
  }

  /** Bytes from the agent. Never throws: a protocol violation ends the session. */
  feed(bytes: Uint8Array): void {
    if (this._closed) return;
    this.fed += bytes.length;
    try {
      this.decoder.push(bytes, (type, id, body) => this.onFrame(decodeGuest(type, id, body)));
    } catch (err) {
      const msg = err instanceof ProtocolError ? err.message : `unexpected failure: ${(err as Error)?.message ?? String(err)}`;
      this.end(new VisorError('AgentProtocol', `the guest agent broke the protocol (${msg}); its connection was closed`));
    }
  }

  /** Ends the session: every pending request rejects with `err`. */
  end(err: VisorError): void {
    if (this._closed) return;
    this._closed = err;
    try {
      this.transport.close();
    } catch {
      // closing a transport that failed already
    }
    const hs = [...this.handlers.values()];
    this.handlers.clear();
    for (const h of hs) h({ type: G.ERROR, id: 0, errno: -1, message: err.message });
    for (const w of this.windowWaiters.splice(0)) w();
    for (const l of this.closeListeners.splice(0)) l(err);
  }

  onClose(l: (err: VisorError) => void): void {
    if (this._closed) l(this._closed);
    else this.closeListeners.push(l);
  }

  private onFrame(m: GuestMessage): void {
    if (m.type === G.ACK) {
      this.inflight = Math.max(0, this.inflight - m.bytes);
      while (this.windowWaiters.length > 0 && this.inflight < HOST_WINDOW) this.windowWaiters.shift()!();
      return;
    }
    const h = this.handlers.get(m.id);
    if (!h) {
      this.dropped++;
      return;
    }
    h(m);
  }

  private send(type: number, id: number, body?: Uint8Array): void {
    if (this._closed) throw this._closed;
    const f = frame(type, id, body);
    if (this.corked) this.corked.push(f);
    else this.write(f);
  }

  /** Sends data that counts against the window (the agent ACKs it once consumed). */
  private async sendData(type: number, id: number, data: Uint8Array): Promise<void> {
    for (let off = 0; off < data.length || (data.length === 0 && off === 0); off += DATA_CHUNK) {
      const chunk = data.subarray(off, Math.min(data.length, off + DATA_CHUNK));
      while (!this._closed && this.inflight + chunk.length > HOST_WINDOW && this.inflight > 0) {
        await new Promise<void>((r) => this.windowWaiters.push(r));
      }
      this.inflight += chunk.length;
      this.send(type, id, chunk);
      if (data.length === 0) break;
    }
  }

  private dead(): VisorError {
    return this._closed ?? new VisorError('GuestGone', 'the guest agent is gone');
  }

  /** One request, one answer: resolves with the first frame `accept` takes, rejects on ERROR. */
  private request<T>(type: number, body: Uint8Array, accept: (m: GuestMessage) => T | undefined): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.handlers.set(id, (m) => {
        if (m.type === G.ERROR) {
          this.handlers.delete(id);
          reject(m.id === 0 ? this.dead() : new AgentRequestError(m.errno, m.message));
          return;
        }
        let v: T | undefined;
        try {
          v = accept(m);
        } catch (err) {
          this.handlers.delete(id);
          reject(err);
          return;
        }
        if (v !== undefined) {
          this.handlers.delete(id);
          resolve(v);
        }
      });
      try {
        this.send(type, id, body);
      } catch (err) {
        this.handlers.delete(id);
        reject(err);
      }
    });
  }

  /**
   * The handshake: fresh entropy for the guest's pool, and eth0's new MAC for a fork's child;
   * the agent's version in return, and what came of the MAC (macStatus: 0 done, an errno, or
   * undefined from an agent that does not know the field).
   */
  hello(entropy: Uint8Array, mac?: Uint8Array): Promise<{ version: number; agent: string; macStatus?: number }> {
    return this.request(H.HELLO, encode.hello(entropy, mac), (m) =>
      m.type === G.READY ? { version: m.version, agent: m.agent, ...(m.macStatus !== undefined ? { macStatus: m.macStatus } : {}) } : undefined);
  }

  exec(req: ExecRequest, h: ExecHandlers = {}): ExecHandle {
    const id = this.nextId++;
    let startedResolve!: (pid: number) => void, startedReject!: (e: unknown) => void;
    let exitResolve!: (e: ExitInfo) => void, exitReject!: (e: unknown) => void;
    const started = new Promise<number>((res, rej) => ((startedResolve = res), (startedReject = rej)));
    const exited = new Promise<ExitInfo>((res, rej) => ((exitResolve = res), (exitReject = rej)));
    // Callers may await only one of them.
    started.catch(() => {});
    exited.catch(() => {});
    /** Replies to signal/resize (OK or ERROR) queue here, in order. */
    const controls: { resolve(): void; reject(e: unknown): void }[] = [];
    let isStarted = false;
    this.handlers.set(id, (m) => {
      switch (m.type) {
        case G.STARTED:
          isStarted = true;
          startedResolve(m.pid);
          return;
        case G.STDOUT:
          h.onStdout?.(m.data);
          return;
        case G.STDERR:
          h.onStderr?.(m.data);
          return;
        case G.EXIT:
          this.handlers.delete(id);
          for (const c of controls.splice(0)) c.reject(new VisorError('NotFound', 'the command has exited'));
          exitResolve({ exitCode: m.exitCode, signal: m.signal });
          return;
        case G.OK:
          controls.shift()?.resolve();
          return;
        case G.ERROR: {
          if (m.id === 0) {
            // the session ended
            const e = this.dead();
            startedReject(e);
            exitReject(e);
            for (const c of controls.splice(0)) c.reject(e);
            return;
          }
          const e = new AgentRequestError(m.errno, m.message);
          if (!isStarted) {
            this.handlers.delete(id);
            startedReject(e);
            exitReject(e);
          } else controls.shift()?.reject(e);
          return;
        }
        default:
          this.dropped++;
      }
    });
    const control = (type: number, body: Uint8Array) =>
      new Promise<void>((resolve, reject) => {
        if (!this.handlers.has(id)) return reject(new VisorError('NotFound', 'the command has exited'));
        controls.push({ resolve, reject });
        try {
          this.send(type, id, body);
        } catch (err) {
          controls.pop();
          reject(err);
        }
      });
    try {
      this.send(H.EXEC, id, encode.exec(req));
    } catch (err) {
      this.handlers.delete(id);
      startedReject(err);
      exitReject(err);
    }
    return {
      id,
      started,
      exited,
      sendStdin: (data) => (data.length === 0 ? Promise.resolve() : this.sendData(H.STDIN, id, data)),
      closeStdin: () => this.sendData(H.STDIN, id, new Uint8Array(0)),
      signal: (signo) => control(H.SIGNAL, encode.signal(signo)),
      resize: (cols, rows) => control(H.RESIZE, encode.resize(cols, rows)),
    };
  }

  procs(): Promise<{ id: number; pid: number; cmd: string }[]> {
    return this.request(H.PROCS, new Uint8Array(0), (m) => (m.type === G.PROC_LIST ? m.procs : undefined));
  }

  /** Writes a file from chunks; parents are created. Each chunk is at most DATA_CHUNK on the wire. */
  async writeFile(path: string, data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, mode = 0o644): Promise<void> {
    const id = this.nextId++;
    let failure: unknown;
    let isOpen = false;
    let openOk!: () => void, openFail!: (e: unknown) => void, endDone!: () => void;
    const opened = new Promise<void>((res, rej) => ((openOk = res), (openFail = rej)));
    const ended = new Promise<void>((res) => (endDone = res));
    this.handlers.set(id, (m) => {
      if (m.type === G.ERROR) {
        failure = m.id === 0 ? this.dead() : new AgentRequestError(m.errno, m.message);
        this.handlers.delete(id);
        if (!isOpen) openFail(failure);
        endDone();
      } else if (m.type === G.OK) {
        if (!isOpen) {
          isOpen = true;
          openOk();
        } else {
          this.handlers.delete(id);
          endDone();
        }
      } else this.dropped++;
    });
    try {
      this.send(H.WRITE_OPEN, id, encode.writeOpen(path, mode));
    } catch (err) {
      this.handlers.delete(id);
      throw err;
    }
    await opened;
    for await (const chunk of data) {
      if (failure) break;
      await this.sendData(H.WRITE_DATA, id, chunk);
    }
    if (!failure && !this._closed) this.send(H.WRITE_END, id);
    await ended; // end() reaches every handler, so a dead session settles this too
    if (failure) throw failure;
  }

  /**
   * Reads a file, chunk by chunk, into `onChunk`. Rejects past `maxBytes` (the guest decides
   * how much it sends: the host decides how much it keeps).
   */
  readFile(path: string, onChunk: (data: Uint8Array) => void, maxBytes: number): Promise<number> {
    let total = 0;
    const id = this.nextId;
    return this.request(H.READ, encode.path(path), (m) => {
      if (m.type === G.DATA) {
        total += m.data.length;
        if (total > maxBytes) {
          this.handlers.delete(id);
          throw new VisorError('InvalidArgument', `${path} is larger than the ${maxBytes} bytes allowed to read`);
        }
        onChunk(m.data);
        return undefined;
      }
      return m.type === G.OK ? total : undefined;
    });
  }

  /** Directory entries, bounded by `maxEntries`. */
  list(path: string, maxEntries = 1_000_000): Promise<EntryInfo[]> {
    const out: EntryInfo[] = [];
    return this.request(H.LIST, encode.path(path), (m) => {
      if (m.type === G.ENTRIES) {
        if (out.length + m.entries.length > maxEntries) throw new VisorError('InvalidArgument', `${path} has more than ${maxEntries} entries`);
        out.push(...m.entries);
        return undefined;
      }
      return m.type === G.OK ? out : undefined;
    });
  }

  /** lstat; undefined when it does not exist. */
  async stat(path: string): Promise<EntryInfo | undefined> {
    try {
      return await this.request(H.STAT, encode.path(path), (m) => (m.type === G.STAT_RESULT ? m.entry : undefined));
    } catch (err) {
      if (err instanceof AgentRequestError && err.errno === ENOENT) return undefined;
      throw err;
    }
  }

  private ok(type: number, body: Uint8Array): Promise<void> {
    return this.request(type, body, (m) => (m.type === G.OK ? true : undefined)).then(() => {});
  }

  mkdir(path: string): Promise<void> {
    return this.ok(H.MKDIR, encode.path(path));
  }

  remove(path: string): Promise<void> {
    return this.ok(H.REMOVE, encode.path(path));
  }

  rename(from: string, to: string): Promise<void> {
    return this.ok(H.RENAME, encode.rename(from, to));
  }

  /** inotify on a directory: onEvent gets the raw mask (WATCH_BITS) and the entry's name. */
  async watch(path: string, onEvent: (mask: number, name: string) => void): Promise<WatchHandle> {
    const id = this.nextId++;
    let stopped: (() => void) | undefined;
    await new Promise<void>((resolve, reject) => {
      let first = true;
      this.handlers.set(id, (m) => {
        if (first && m.type === G.OK) {
          first = false;
          resolve();
        } else if (m.type === G.ERROR) {
          this.handlers.delete(id);
          reject(m.id === 0 ? this.dead() : new AgentRequestError(m.errno, m.message));
          stopped?.();
        } else if (m.type === G.WATCH_EVENT) onEvent(m.mask, m.name);
        else if (m.type === G.OK) {
          // the UNWATCH reply
          this.handlers.delete(id);
          stopped?.();
        }
      });
      try {
        this.send(H.WATCH, id, encode.path(path));
      } catch (err) {
        this.handlers.delete(id);
        reject(err);
      }
    });
    return {
      stop: async () => {
        if (!this.handlers.has(id) || this._closed) return;
        const done = new Promise<void>((r) => (stopped = r));
        this.send(H.UNWATCH, id);
        await done;
      },
    };
  }

  /** Requests still waiting for the agent (tests check nothing leaks). */
  get pendingRequests(): number {
    return this.handlers.size;
  }

  /** Bytes of an incomplete frame held (bounded by one frame). */
  get bufferedBytes(): number {
    return this.decoder.buffered;
  }
}
