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
  /** The guest's console output (kept for the error message and debugging). */
  log: string;
}

const MAX_LOG = 256 * 1024;

export async function configureInGuest(input: ConfigureInput): Promise<ConfigureResult> {
  // images → sdk at run time only: the SDK resolves images through this layer.
  const { Machine } = await import('../sdk/machine.js');
  const t0 = performance.now();
  const task = input.progress.task('configuring packages in a guest', input.packageCount, 'items');
  const append = `${input.append} ${ROOT_ARG}=/dev/vda ${encodeCommand([CONFIGURE_SCRIPT])}`;
  const vm = await Machine.create({
    kernel: input.kernel, initrd: input.initrd, append, memoryMiB: input.memoryMiB ?? 1024,
    disks: [{ path: input.disk, format: 'qcow2' }], agent: false,
  });
  // VISOR_DEBUG_CONFIGURE=1: the guest's console on stderr as it runs.
  const debug = process.env.VISOR_DEBUG_CONFIGURE === '1';
  let log = '';
  let setUp = 0;
  let pending = '';
  let failed: string | undefined;
  vm.console.on('data', (d: Buffer) => {
    const text = d.toString('utf8');
    if (debug) process.stderr.write(text);
    log = (log + text).slice(-MAX_LOG);
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const raw of lines) {
      const line = raw.replace(/\r$/, '');
      if (/^Setting up \S+/.test(line)) task.update(++setUp);
      const m = new RegExp(`^${CONFIGURE_STEP} FAILED (.*)$`).exec(line);
      if (m) failed = m[1];
    }
  });
  const ended = new Promise<string>((resolve) => {
    vm.on('guest', (e: { kind: string }) => resolve(e.kind));
    vm.on('state', (s: string, reason?: string) => { if (s === 'stopped') resolve(reason ?? 'stopped'); });
  });
  const onAbort = () => { vm.kill().catch(() => {}); };
  input.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await vm.start();
    const how = await ended;
    if (vm.state !== 'stopped') await vm.kill().catch(() => {});
    if (input.signal?.aborted) throw new VisorError('NetworkError', 'configuring the image: cancelled');
    const status = new RegExp(`${EXIT_MARKER}=(\\d+)`).exec(log.replace(/\r/g, ''));
    const tail = log.replace(/\r/g, '').split('\n').slice(-25).join('\n');
    if (!status) {
      throw new VisorError('BadImage', `configuring the image: the guest ended (${how}) before the configure script finished; its last output:\n${tail}`);
    }
    if (status[1] !== '0') {
      const what = failed ? `the step '${failed}' failed` : `the configure script exited with status ${status[1]}`;
      throw new VisorError('BadImage', `configuring the image: ${what} (a maintainer script's error is above); pull again, or leave the package out of --packages. Last output:\n${tail}`);
    }
    task.finish(`${setUp} packages set up`);
    return { seconds: (performance.now() - t0) / 1000, log };
  } finally {
    input.signal?.removeEventListener('abort', onAbort);
    if (vm.state !== 'stopped') await vm.kill().catch(() => {});
  }
}
