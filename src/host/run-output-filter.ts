/**
 * Watches the guest console on its way to the user: strips visor's init markers
 * (VISOR_INIT_START, VISOR_BOOT_WAIT, VISOR_EXIT=<status>; see docs/guest-init.md) and spots
 * kernel panics.
 * Bytes pass through as latin1 so the output is byte-for-byte what the guest wrote.
 */
import { BOOT_WAIT_MARKER as BOOT_WAIT, EXIT_PREFIX, INIT_START_MARKER as INIT_START, KERNEL_PANIC as PANIC } from '../guest/boot-protocol.js';

export { EXIT_PREFIX, INIT_START };

export interface OutputEvents {
  initStart?(): void;
  /** /init waits for its run's arguments (a boot snapshot's point: src/sdk/boot-snapshot.ts). */
  bootWait?(): void;
  exitStatus?(status: number): void;
  panic?(line: string): void;
}

/** Markers that are a whole line, without a value. */
const LINE_MARKERS = [INIT_START, BOOT_WAIT] as const;

export class ConsoleOutputFilter {
  /** Withheld text that may still turn out to be a marker line. */
  private pending = '';
  /** Whether the next emitted character starts a line. */
  private atLineStart = true;
  private line = '';
  /** Command mode, after VISOR_EXIT: the guest is powering off; its last kernel lines are not the command's output. */
  private ended = false;

  /**
   * `holdNewline`: also swallow the newline printed just before VISOR_EXIT (command mode; the
   * init prints "\nVISOR_EXIT=N\n" so the marker is alone on its line whatever came before).
   */
  constructor(
    private readonly events: OutputEvents,
    private readonly holdNewline = false,
  ) {}

  /** Feeds guest output; returns what to show the user. */
  feed(chunk: Uint8Array): Uint8Array {
    const s = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1');
    let out = '';
    for (let i = 0; i < s.length; i++) {
      const c = s[i]!;
      this.watchLine(c);
      if (this.ended) continue;
      this.pending += c;
      const full = this.complete(this.pending);
      if (full) {
        this.pending = '';
        this.atLineStart = true;
        continue;
      }
      while (this.pending.length > 0 && !this.couldBeMarker(this.pending)) {
        const h = this.pending[0]!;
        out += h;
        this.atLineStart = h === '\n';
        this.pending = this.pending.slice(1);
      }
    }
    return Buffer.from(out, 'latin1');
  }

  /** Whatever is still withheld (end of run). */
  flush(): Uint8Array {
    const out = this.pending;
    this.pending = '';
    return Buffer.from(out, 'latin1');
  }

  private watchLine(c: string): void {
    if (c === '\n') {
      if (this.line.includes(PANIC)) this.events.panic?.(this.line.replace(/\r$/, '').replace(/^\[[ \d.]+\]\s*/, ''));
      this.line = '';
    } else if (this.line.length < 512) {
      this.line += c;
    }
  }

  /** Splits off a leading newline (command mode) and says whether a marker may start after it. */
  private body(p: string): string | undefined {
    if (this.holdNewline) {
      if (p === '\r') return '';
      if (p.startsWith('\r\n')) return p.slice(2);
      if (p.startsWith('\n')) return p.slice(1);
    }
    return this.atLineStart ? p : undefined;
  }

  private couldBeMarker(p: string): boolean {
    const q = this.body(p);
    if (q === undefined) return false;
    if (q === '') return true;
    for (const m of LINE_MARKERS) {
      if (m.startsWith(q)) return true;
      if (q.startsWith(m)) return q.length === m.length || q === m + '\r';
    }
    if (EXIT_PREFIX.startsWith(q)) return true;
    return q.startsWith(EXIT_PREFIX) && /^\d{0,4}\r?$/.test(q.slice(EXIT_PREFIX.length));
  }

  private complete(p: string): boolean {
    const q = this.body(p);
    if (q === undefined) return false;
    if (q === INIT_START + '\n' || q === INIT_START + '\r\n') {
      this.events.initStart?.();
      return true;
    }
    if (q === BOOT_WAIT + '\n' || q === BOOT_WAIT + '\r\n') {
      this.events.bootWait?.();
      return true;
    }
    const m = /^VISOR_EXIT=(\d{1,4})\r?\n$/.exec(q);
    if (m) {
      this.events.exitStatus?.(Number(m[1]));
      if (this.holdNewline) this.ended = true;
      return true;
    }
    return false;
  }
}
