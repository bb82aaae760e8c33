/**
 * Progress reporting for downloads and builds. On a terminal: one redrawn bar per task. Not on
 * a terminal (CI logs, pipes): one line when a task starts and one when it ends, so logs stay
 * readable. Written to stderr, so `visor run -- cmd > out` and `--json` keep stdout clean.
 */
export interface ProgressTask {
  update(done: number): void;
  finish(note?: string): void;
}

export interface Progress {
  /** `unit` 'items' counts steps (packages, scripts) instead of bytes. */
  task(label: string, total?: number, unit?: 'bytes' | 'items'): ProgressTask;
  info(message: string): void;
  warn(message: string): void;
}

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export const silentProgress: Progress = {
  task: () => ({ update() {}, finish() {} }),
  info() {},
  warn() {},
};

export function plainProgress(out: ProgressStream): Progress {
  return {
    task(label, total, unit) {
      out.write(`${label}${total !== undefined ? ` (${unit === 'items' ? total : formatBytes(total)})` : ''}...\n`);
      const t0 = Date.now();
      return {
        update() {},
        finish(note) {
          out.write(`${label}: ${note ?? 'done'} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
        },
      };
    },
    info: (m) => { out.write(`${m}\n`); },
    warn: (m) => { out.write(`warning: ${m}\n`); },
  };
}

export function ttyProgress(out: ProgressStream): Progress {
  return {
    task(label, total, unit) {
      const fmt = (n: number) => (unit === 'items' ? `${n}/${total ?? '?'}` : formatBytes(n));
      let last = 0;
      const t0 = Date.now();
      const draw = (done: number, final = false) => {
        const now = Date.now();
        if (!final && now - last < 100) return; // ~10 redraws a second is plenty
        last = now;
        const width = Math.max(10, Math.min(40, (out.columns ?? 80) - label.length - 30));
        let line: string;
        if (total) {
          const frac = Math.min(1, done / total);
          const fill = Math.round(frac * width);
          line = `${label} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmt(done)}`;
        } else {
          line = `${label} ${done ? fmt(done) : '...'}`;
        }
        out.write(`\r\x1b[2K${line}`);
      };
      draw(0, true);
      return {
        update: (done) => draw(done),
        finish(note) {
          out.write(`\r\x1b[2K${label}: ${note ?? 'done'} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
        },
      };
    },
    info: (m) => { out.write(`${m}\n`); },
    warn: (m) => { out.write(`warning: ${m}\n`); },
  };
}

export function progressFor(out: ProgressStream, enabled: boolean): Progress {
  // Without progress, warnings (an unverifiable signature) must still reach the user.
  if (!enabled) return { ...silentProgress, warn: (m) => { out.write(`warning: ${m}\n`); } };
  return out.isTTY ? ttyProgress(out) : plainProgress(out);
}
