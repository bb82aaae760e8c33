/**
 * The serial console on the user's terminal. On a TTY: raw mode, and QEMU's escape keys
 * (Ctrl-A x quits, Ctrl-A h lists the keys, Ctrl-A Ctrl-A sends Ctrl-A). With stdin a pipe or
 * a file, bytes go to the guest untouched (no escape processing, so binary input is safe);
 * with stdin closed, the guest simply gets no input.
 */
export const CTRL_A = 0x01;

export const ESCAPE_HELP = [
  'C-a h    print this help',
  'C-a s    save a snapshot of the machine (when the command offers it)',
  'C-a x    exit visor',
  'C-a C-a  send C-a to the guest',
].join('\n') + '\n';

export interface ConsoleStreams {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(mode: boolean): unknown };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export interface ConsoleHandlers {
  input(bytes: Uint8Array): void;
  /** stdin ended (a pipe or file ran out, Ctrl-D on a cooked terminal). */
  end?(): void;
  quit(): void;
  /** Ctrl-A s: save a snapshot (visor run / visor restore on the SDK). */
  snapshot?(): void;
}

/** Escape-key state machine, separate from the streams so it can be tested alone. */
export class EscapeDecoder {
  private sawCtrlA = false;
  constructor(private readonly h: ConsoleHandlers & { help(): void }) {}

  feed(data: Uint8Array): void {
    let start = 0;
    for (let i = 0; i < data.length; i++) {
      const b = data[i]!;
      if (this.sawCtrlA) {
        this.sawCtrlA = false;
        start = i + 1;
        if (b === 0x78 /* x */) {
          this.h.quit();
          return;
        }
        if (b === 0x68 /* h */) this.h.help();
        else if (b === 0x73 /* s */) this.h.snapshot?.();
        else if (b === CTRL_A) this.h.input(new Uint8Array([CTRL_A]));
        // Anything else after C-a is dropped, as QEMU does with unknown escapes.
      } else if (b === CTRL_A) {
        if (i > start) this.h.input(data.slice(start, i));
        this.sawCtrlA = true;
        start = i + 1;
      }
    }
    if (!this.sawCtrlA && start < data.length) this.h.input(data.slice(start));
  }
}

export class StdioConsole {
  private rawMode = false;
  private onData: ((d: Buffer | string) => void) | undefined;
  private onEnd: (() => void) | undefined;
  readonly isTTY: boolean;
  /** Whether the terminal is in raw mode (then visor's own messages need \r\n). */
  get raw(): boolean {
    return this.rawMode;
  }

  constructor(private readonly s: ConsoleStreams = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }) {
    this.isTTY = s.stdin.isTTY === true;
  }

  /**
   * `raw: false` leaves a terminal in cooked mode (the host's line editing, Ctrl-D ends input,
   * Ctrl-C signals visor): for input to a command's stdin rather than to a guest terminal.
   */
  start(h: ConsoleHandlers, opts: { raw?: boolean } = {}): void {
    const stdin = this.s.stdin;
    if (this.isTTY && stdin.setRawMode && opts.raw !== false) {
      stdin.setRawMode(true);
      this.rawMode = true;
      const dec = new EscapeDecoder({ ...h, help: () => this.s.stderr.write(`\n${ESCAPE_HELP}`) });
      this.onData = (d) => dec.feed(typeof d === 'string' ? Buffer.from(d) : d);
    } else {
      this.onData = (d) => h.input(typeof d === 'string' ? Buffer.from(d) : d);
    }
    stdin.on('data', this.onData);
    if (h.end) {
      this.onEnd = h.end;
      stdin.on('end', this.onEnd);
    }
    stdin.on('error', () => {}); // a closed or broken stdin just means no more input
    stdin.resume();
  }

  write(bytes: Uint8Array): void {
    if (bytes.length) this.s.stdout.write(bytes);
  }

  /** Restores the terminal and lets go of stdin (so the process can exit). */
  dispose(): void {
    const stdin = this.s.stdin;
    if (this.onData) stdin.off('data', this.onData);
    if (this.onEnd) stdin.off('end', this.onEnd);
    this.onData = undefined;
    this.onEnd = undefined;
    if (this.rawMode && stdin.setRawMode) stdin.setRawMode(false);
    this.rawMode = false;
    stdin.pause();
  }
}
