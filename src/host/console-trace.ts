/**
 * `visor run --verbose`: the guest's console as stamped lines on stderr, for seeing where a
 * boot spends its time or where a run stalls. Each line is prefixed with the host's seconds
 * since visor started and, when given, a counter (the guest's instructions so far), so a phase
 * can be read both as wall time and as guest work. Guest output is untrusted: lines are cut at
 * MAX_LINE characters and control characters other than tab (escape sequences too) are shown as '.'.
 */

const MAX_LINE = 1024;

export class ConsoleLineStamper {
  private line = '';

  /**
   * `out` receives each finished line (no newline); `now` gives the stamp in seconds;
   * `counter`, when given, is printed after the stamp (e.g. "1234 Mi").
   */
  constructor(
    private readonly out: (line: string) => void,
    private readonly now: () => number,
    private readonly counter?: () => string,
  ) {}

  feed(bytes: Uint8Array): void {
    const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    for (const c of s) {
      if (c === '\n') this.emit();
      else if (c === '\r') continue;
      else {
        this.line += (c < ' ' && c !== '\t') || (c >= '\x7f' && c <= '\x9f') ? '.' : c;
        if (this.line.length >= MAX_LINE) this.emit();
      }
    }
  }

  /** A message of visor's own, stamped like the guest's lines. */
  note(text: string): void {
    this.out(`${this.stamp()} visor: ${text}`);
  }

  /** Emits a last line that had no newline. */
  flush(): void {
    if (this.line !== '') this.emit();
  }

  private stamp(): string {
    const t = this.now().toFixed(3).padStart(8);
    return this.counter ? `[${t} ${this.counter()}]` : `[${t}]`;
  }

  private emit(): void {
    this.out(`${this.stamp()} ${this.line}`);
    this.line = '';
  }
}
