/**
 * The second stage of a Debian image, in a visor guest: boot the image's kernel and initramfs
 * with the freshly written root disk, let the initramfs switch to it, run
 * /usr/lib/visor/configure as the command (docs/guest-init.md contract: its status comes back
 * in the VISOR_EXIT marker), power off. The disk is then the configured base.
 */
import { VisorError } from '../base/errors.js';
import { EXIT_MARKER, ROOT_ARG, encodeCommand } from './init-script.js';
import type { Progress } from './progress.js';
import { CONFIGURE_SCRIPT, CONFIGURE_STEP } from './root-init.js';

export interface ConfigureInput {
  kernel: string;
  initrd: string;
  append: string;
  disk: string;
  /** Packages dpkg will set up (for the progress bar). */
  packageCount: number;
  progress: Progress;
  signal?: AbortSignal;
  /** Guest RAM; dpkg and python's byte-compiling want some room. */
  memoryMiB?: number;
}

export interface ConfigureResult {
  seconds: number;
  /** The slowest steps (a package being set up, a trigger, a script phase), longest first. */
  slowest: { step: string; seconds: number }[];
  /** The guest's console output (kept for the error message and debugging). */
  log: string;
}

const MAX_LOG = 256 * 1024;

export interface GuestCommand {
  kernel: string;
  initrd: string;
  /** The image's command line; visor.root=/dev/vda and the command are added. */
  append: string;
  /** The root disk first (vda), then any others (vdb, ...). */
  disks: { path: string; format: 'qcow2' | 'raw'; readOnly?: boolean }[];
  argv: string[];
  memoryMiB?: number;
  signal?: AbortSignal;
  /** Each console line as it comes (without the line end). */
  onLine?: (line: string) => void;
}

/**
 * Boots the image on its root disk, runs `argv` with visor's init, and returns the command's
 * exit status (the VISOR_EXIT marker) and the console output. Throws when the guest ends
 * without reporting one.
 */
export async function runGuestCommand(c: GuestCommand): Promise<{ status: number; log: string }> {
  // images → sdk at run time only: the SDK resolves images through this layer.
  const { Machine } = await import('../sdk/machine.js');
  const append = `${c.append} ${ROOT_ARG}=/dev/vda ${encodeCommand(c.argv)}`;
  const vm = await Machine.create({
    kernel: c.kernel, initrd: c.initrd, append, memoryMiB: c.memoryMiB ?? 512,
    disks: c.disks.map((d) => ({ path: d.path, format: d.format, readOnly: d.readOnly ?? false })), agent: false,
  });
  // VISOR_DEBUG_CONFIGURE=1: the guest's console on stderr as it runs.
  const debug = process.env.VISOR_DEBUG_CONFIGURE === '1';
  let log = '';
  let pending = '';
  vm.console.on('data', (d: Buffer) => {
    const text = d.toString('utf8');
    if (debug) process.stderr.write(text);
    log = (log + text).slice(-MAX_LOG);
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const raw of lines) c.onLine?.(raw.replace(/\r$/, ''));
  });
  const ended = new Promise<string>((resolve) => {
    vm.on('guest', (e: { kind: string }) => resolve(e.kind));
    vm.on('state', (s: string, reason?: string) => { if (s === 'stopped') resolve(reason ?? 'stopped'); });
  });
  // The disk is closed (and flushed) once the worker is gone, not at the poweroff event.
  const stopped = vm.whenStopped();
  const onAbort = () => { vm.kill().catch(() => {}); };
  c.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await vm.start();
    const how = await ended;
    await Promise.race([stopped, new Promise((r) => setTimeout(r, 30_000))]);
    if (c.signal?.aborted) throw new VisorError('NetworkError', 'cancelled');
    const clean = log.replace(/\r/g, '');
    const status = new RegExp(`${EXIT_MARKER}=(\\d+)`).exec(clean);
    if (!status) {
      throw new VisorError('BadImage', `the guest ended (${how}) before the command finished; its last output:\n${clean.split('\n').slice(-25).join('\n')}`);
    }
    return { status: Number(status[1]), log: clean };
  } finally {
    c.signal?.removeEventListener('abort', onAbort);
    if (vm.state !== 'stopped') await vm.kill().catch(() => {});
  }
}

export async function configureInGuest(input: ConfigureInput): Promise<ConfigureResult> {
  const t0 = performance.now();
  const task = input.progress.task('configuring packages in a guest', input.packageCount, 'items');
  let setUp = 0;
  let failed: string | undefined;
  const failRe = new RegExp(`^${CONFIGURE_STEP} FAILED (.*)$`);
  const steps = new StepClock();
  let r: { status: number; log: string };
  try {
    r = await runGuestCommand({
      kernel: input.kernel, initrd: input.initrd, append: input.append, argv: [CONFIGURE_SCRIPT],
      disks: [{ path: input.disk, format: 'qcow2' }], memoryMiB: input.memoryMiB ?? 1024,
      ...(input.signal ? { signal: input.signal } : {}),
      onLine: (line) => {
        steps.line(line);
        if (/^Setting up \S+/.test(line)) task.update(++setUp);
        const m = failRe.exec(line);
        if (m) failed = m[1];
      },
    });
  } catch (err) {
    if (err instanceof VisorError && err.code === 'BadImage') {
      throw new VisorError('BadImage', `configuring the image: ${err.message}; pull again (VISOR_DEBUG_CONFIGURE=1 shows the guest's console)`, { cause: err });
    }
    throw err;
  }
  if (r.status !== 0) throw configureFailure(r.log, failed, r.status);
  task.finish(`${setUp} packages set up`);
  return { seconds: (performance.now() - t0) / 1000, slowest: steps.slowest(15), log: r.log };
}

/**
 * The error for a configure run that failed, naming the package whose maintainer script
 * failed (from dpkg's "error processing package P" lines, or the script's own step name for
 * a preinst) and what the script said, with what to do.
 */
export function configureFailure(log: string, step: string | undefined, status: number): VisorError {
  const lines = log.replace(/\r/g, '').split('\n');
  const pkgs = new Set<string>();
  const reasons: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^dpkg: error processing package (\S+) \(--(\S+)\):/.exec(lines[i]!);
    if (!m) continue;
    pkgs.add(m[1]!.replace(/:\S+$/, ''));
    const why = lines[i + 1]?.trim();
    if (why) reasons.push(`${m[1]}: ${why}`);
  }
  const pre = step && /^preinst:(\S+)$/.exec(step);
  if (pre) pkgs.add(pre[1]!);
  if (/No space left on device/.test(log)) reasons.push('the root filesystem is full');
  const tail = lines.slice(-25).join('\n');
  const what = pkgs.size
    ? `the maintainer script of ${[...pkgs].join(', ')} failed${reasons.length ? ` (${reasons.slice(0, 3).join('; ')})` : ''}`
    : step ? `the step '${step}' failed` : `the configure script exited with status ${status}`;
  const todo = pkgs.size
    ? `leave ${[...pkgs].join(', ')} (or the package that pulled it in) out of --packages, or pull again later (the archive may have fixed it)`
    : 'pull again (VISOR_DEBUG_CONFIGURE=1 shows the guest\'s console)';
  return new VisorError('BadImage', `configuring the image: ${what}; nothing was cached; ${todo}. Last output:\n${tail}`);
}

const STEP_RE = new RegExp(`^(?:Setting up (\\S+)|Processing triggers for (\\S+)|${CONFIGURE_STEP} (\\S+))`);

/**
 * Attributes the host's wall time to what the guest said it was doing: from one "Setting up
 * P", "Processing triggers for P" or configure-step line to the next. Where the pull's time goes.
 */
export class StepClock {
  private current = 'boot';
  private since = performance.now();
  private readonly spent = new Map<string, number>();

  constructor(private readonly now: () => number = () => performance.now()) {
    this.since = now();
  }

  line(line: string): void {
    const m = STEP_RE.exec(line);
    if (!m) return;
    const step = m[1] ? m[1].replace(/:\S+$/, '') : m[2] ? `triggers:${m[2].replace(/:\S+$/, '')}` : `step:${m[3]}`;
    this.switchTo(step);
  }

  private switchTo(step: string): void {
    const t = this.now();
    this.spent.set(this.current, (this.spent.get(this.current) ?? 0) + (t - this.since) / 1000);
    this.current = step;
    this.since = t;
  }

  slowest(n: number): { step: string; seconds: number }[] {
    this.switchTo('end');
    return [...this.spent].map(([step, seconds]) => ({ step, seconds: Math.round(seconds * 10) / 10 }))
      .sort((a, b) => b.seconds - a.seconds).slice(0, n);
  }
}
