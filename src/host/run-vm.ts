import { defaultAccel } from './accel.js';
import { inflateInitrd } from './initrd.js';
import { readFile } from 'node:fs/promises';
import { VisorError } from '../base/errors.js';
import { Hart } from '../cpu/hart.js';
import type { BoardHart } from '../machine/hart.js';
import { VirtMachine, type VirtConfig, DEFAULT_MEMORY_MIB, RNG_SEED_BYTES } from '../machine/virt.js';
import { closeDisk, openDisk, type DiskFormat, type OpenedDisk } from '../storage/open.js';
import { createVirtioBlk } from '../virtio/blk/device.js';
import { VirtioMmioTransport } from '../virtio/mmio/transport.js';
import { createVirtioRng } from '../virtio/rng/device.js';
import { PacedClock } from './clock-host.js';
import { NodeFileOpener, mapFsError } from './file-handle.js';
import { RunLoop, type RunStats } from './run-loop.js';
import { ConsoleOutputFilter } from './run-output-filter.js';
import { nodeEntropy } from './virtio-entropy.js';
import { tuneV8ForJit } from './v8-tuning.js';
import { warmUp } from './warmup.js';

export interface DiskSpec {
  path: string;
  format?: DiskFormat;
  readOnly: boolean;
}

/** Parses `FILE[,format=raw|qcow2][,readonly]` (the --disk syntax). */
export function parseDiskSpec(spec: string): DiskSpec {
  const parts = spec.split(',');
  const path = parts.shift() ?? '';
  if (path === '') throw new VisorError('InvalidArgument', `--disk needs a file name: '${spec}'`);
  const d: DiskSpec = { path, readOnly: false };
  for (const p of parts) {
    if (p === 'readonly' || p === 'readonly=on') d.readOnly = true;
    else if (p === 'format=raw' || p === 'format=qcow2') d.format = p.slice(7) as DiskFormat;
    else throw new VisorError('InvalidArgument', `--disk: unknown option '${p}' in '${spec}' (format=raw|qcow2, readonly)`);
  }
  return d;
}

/** Where the console goes and where its input comes from. */
export interface VmConsole {
  write(bytes: Uint8Array): void;
  /** Called once; `input` feeds the guest, `quit` ends the run. */
  start(h: { input(bytes: Uint8Array): void; quit(): void }): void;
  dispose(): void;
}

export interface RunVmOptions {
  kernel: string;
  initrd?: string;
  append: string;
  /** 'builtin' or a firmware file (OpenSBI fw_jump.bin / fw_dynamic.bin). */
  bios: string;
  memoryMiB?: number;
  disks?: DiskSpec[];
  console: VmConsole;
  /** A guest command was given: expect VISOR_EXIT=<status> and swallow its extra newline. */
  commandMode?: boolean;
  /** Attach a virtio-rng so the guest's entropy pool fills at boot (default true). */
  rng?: boolean;
  /** How many guest reboots to follow before giving up (default 3). */
  maxReboots?: number;
  /** CPU tier: the JIT or the interpreter alone (default: defaultAccel(), i.e. VISOR_ACCEL or the JIT). */
  accel?: 'interp' | 'jit';
  /** Entries into a page before the JIT compiles it (HartOptions.jitThreshold). */
  jitThreshold?: number;
  /** Observers (bench/boot.ts, tests). */
  onInitStart?(): void;
  /** Called with each machine once built, before it boots (bench/boot.ts reads its counters). */
  onMachine?(vm: VirtMachine): void;
  signal?: AbortSignal;
}

export type RunVmResult =
  | { kind: 'poweroff'; guestStatus: number | undefined; stats: RunStats }
  | { kind: 'fail'; code: number; stats: RunStats }
  | { kind: 'panic'; line: string; stats: RunStats }
  | { kind: 'quit'; stats: RunStats }
  | { kind: 'reboot-loop'; stats: RunStats };

const PANIC_GRACE_MS = 500;

/** The hart, adapted to the board's view of it. */
export function createHart(...args: Parameters<VirtConfig['createHart']>): BoardHart {
  return withJitTuning(new Hart(args[0], args[1]));
}

/** Tunes V8 for the JIT (v8-tuning.ts) when the hart runs one; before any page compiles. */
function withJitTuning(h: Hart): BoardHart {
  if (h.jit !== null) tuneV8ForJit();
  return h as unknown as BoardHart;
}

async function readInput(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (err) {
    throw mapFsError(err, path);
  }
}

/**
 * Boots a virt machine from files on the host and runs it to the end: poweroff, a failure
 * code, a kernel panic, or the user quitting. Reboots restart the machine from the same files.
 */
export async function runVm(o: RunVmOptions): Promise<RunVmResult> {
  const kernel = await readInput(o.kernel);
  const initrd = o.initrd ? inflateInitrd(await readInput(o.initrd), (o.memoryMiB ?? DEFAULT_MEMORY_MIB) * 2 ** 20) : undefined;
  const bios = o.bios === 'builtin' ? 'builtin' : await readInput(o.bios);
  const opener = new NodeFileOpener();
  const disks: OpenedDisk[] = [];
  let guestStatus: number | undefined;
  let panicLine: string | undefined;
  let quit = false;
  let loop: RunLoop | undefined;
  const total: RunStats = { instructions: 0, wallMs: 0, idleMs: 0 };
  const filter = new ConsoleOutputFilter({
    initStart: () => o.onInitStart?.(),
    exitStatus: (s) => (guestStatus = s),
    panic: (line) => {
      if (panicLine !== undefined) return;
      panicLine = line;
      // Let the backtrace reach the console, then stop.
      setTimeout(() => loop?.stop('panic'), PANIC_GRACE_MS);
    },
  }, o.commandMode ?? false);
  const onAbort = () => loop?.stop('aborted');
  o.signal?.addEventListener('abort', onAbort);
  let consoleInput: (b: Uint8Array) => void = () => {};
  o.console.start({
    input: (b) => consoleInput(b),
    quit: () => {
      quit = true;
      loop?.stop('quit');
    },
  });
  try {
    for (const d of o.disks ?? []) {
      try {
        disks.push(await openDisk(opener, d.path, { readOnly: d.readOnly, format: d.format }));
      } catch (err) {
        throw err instanceof VisorError ? err : mapFsError(err, d.path);
      }
    }
    const maxReboots = o.maxReboots ?? 3;
    const accel = o.accel ?? defaultAccel();
    warmUp(accel);
    for (let boot = 0; ; boot++) {
      const clock = new PacedClock();
      const cfg: VirtConfig = {
        kernel, kernelName: o.kernel, append: o.append, bios, clock,
        createHart: (m, opts) => withJitTuning(new Hart(m, {
          ...opts, accel, ...(o.jitThreshold !== undefined ? { jitThreshold: o.jitThreshold } : {}),
        })),
      };
      if (initrd) cfg.initrd = initrd;
      if (o.memoryMiB !== undefined) cfg.memoryMiB = o.memoryMiB;
      cfg.rngSeed = new Uint8Array(RNG_SEED_BYTES);
      nodeEntropy.fill(cfg.rngSeed);
      const vm = new VirtMachine(cfg);
      o.onMachine?.(vm);
      clock.attach(() => vm.hart.instructionsRetired);
      disks.forEach((d, i) =>
        vm.attachVirtio(i, (ctx) => new VirtioMmioTransport({ device: createVirtioBlk({ disk: d.device }), ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })),
      );
      if (o.rng ?? true) {
        const slot = vm.freeVirtioSlot();
        if (slot >= 0) vm.attachVirtio(slot, (ctx) => new VirtioMmioTransport({ device: createVirtioRng({ source: nodeEntropy }), ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource }));
      }
      vm.onConsoleOutput = (b) => o.console.write(filter.feed(b));
      consoleInput = (b) => vm.consoleInput(b);
      vm.boot();
      loop = new RunLoop(vm, { clock });
      if (quit) loop.stop('quit');
      const out = await loop.run();
      total.instructions += loop.stats.instructions;
      total.wallMs += loop.stats.wallMs;
      total.idleMs += loop.stats.idleMs;
      if (panicLine !== undefined) return { kind: 'panic', line: panicLine, stats: total };
      if (out.kind === 'stopped') return { kind: 'quit', stats: total };
      if (out.kind === 'poweroff') return { kind: 'poweroff', guestStatus, stats: total };
      if (out.kind === 'fail') return { kind: 'fail', code: out.code, stats: total };
      if (boot >= maxReboots) return { kind: 'reboot-loop', stats: total };
    }
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    o.console.write(filter.flush());
    o.console.dispose();
    for (const d of disks) await closeDisk(d).catch(() => {});
  }
}
