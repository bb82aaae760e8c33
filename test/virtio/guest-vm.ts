/**
 * Boots the Debian guest image on visor's virt board with whatever virtio devices a test
 * attaches, runs one command through the image's init (docs/guest-init.md) and returns the
 * console output and the command's exit status. Used by the in-guest virtio tests and by
 * bench/blk.ts and bench/net.ts.
 */
import { readFile } from 'node:fs/promises';
import { PacedClock } from '../../src/host/clock-host.js';
import { RunLoop } from '../../src/host/run-loop.js';
import { ConsoleOutputFilter } from '../../src/host/run-output-filter.js';
import { defaultAccel } from '../../src/host/accel.js';
import { Hart } from '../../src/cpu/hart.js';
import type { BoardHart } from '../../src/machine/hart.js';
import { encodeCommand, ensureImage, findImage, type GuestImage } from '../../src/images/index.js';
import { VirtMachine, type VirtConfig } from '../../src/machine/virt.js';

export interface GuestRun {
  output: string;
  status: number | undefined;
  exit: string;
  instructions: number;
  wallMs: number;
}

export interface GuestOptions {
  command: string[];
  /** Attach devices (vm.attachVirtio) before boot. */
  attach?: (vm: VirtMachine) => void;
  memoryMiB?: number;
  /** Extra kernel arguments (e.g. visor.ip=...). */
  append?: string;
  timeoutMs: number;
  /** Live console output (diagnostics). */
  onOutput?: (text: string) => void;
  /** Keep the kernel's messages (drops `quiet`). */
  verbose?: boolean;
  /** The hart (default: the tier VISOR_ACCEL names, else the JIT, as machines get). */
  createHart?: VirtConfig['createHart'];
}

/**
 * The Debian image from the cache. With `pull`, a missing one is built from the mirror first
 * (the in-guest tests, so CI needs no separate step); benchmarks only look in the cache.
 */
export async function guestImage(o: { pull?: boolean } = {}): Promise<GuestImage | undefined> {
  if (o.pull) return ensureImage('tiny', { progress: false });
  return findImage('tiny');
}

export class GuestVm {
  readonly vm: VirtMachine;
  readonly loop: RunLoop;
  private out = '';
  private status: number | undefined;

  private constructor(vm: VirtMachine, loop: RunLoop) {
    this.vm = vm;
    this.loop = loop;
  }

  static async create(img: GuestImage, o: GuestOptions): Promise<GuestVm> {
    // Host time paced by guest progress (as `visor run` and the SDK do): on a loaded host,
    // plain host time makes the kernel report soft lockups that are the host's, not ours.
    const clock = new PacedClock();
    let append = `${img.append} ${encodeCommand(o.command)}`;
    if (o.verbose) append = append.replace(/\bquiet\b/, '');
    if (o.append) append += ` ${o.append}`;
    const vm = new VirtMachine({
      kernel: new Uint8Array(await readFile(img.kernel)),
      initrd: new Uint8Array(await readFile(img.initrd)),
      append,
      bios: 'builtin',
      clock,
      createHart: o.createHart ?? ((mem, opts) => new Hart(mem, { ...opts, accel: defaultAccel() }) as unknown as BoardHart),
      ...(o.memoryMiB ? { memoryMiB: o.memoryMiB } : {}),
    });
    clock.attach(() => vm.hart.instructionsRetired);
    o.attach?.(vm);
    const loop = new RunLoop(vm, { clock });
    const g = new GuestVm(vm, loop);
    const filter = new ConsoleOutputFilter({ initStart: () => {}, exitStatus: (s) => (g.status = s), panic: () => loop.stop('panic') }, !o.verbose);
    vm.onConsoleOutput = (b) => {
      const text = new TextDecoder().decode(filter.feed(b));
      g.out += text;
      o.onOutput?.(text);
    };
    vm.boot();
    return g;
  }

  async run(timeoutMs: number): Promise<GuestRun> {
    const timer = setTimeout(() => this.loop.stop('timeout'), timeoutMs);
    try {
      const r = await this.loop.run();
      return {
        output: this.out.replace(/\r/g, ''),
        status: this.status,
        exit: r.kind === 'stopped' ? r.reason : r.kind,
        instructions: this.loop.stats.instructions,
        wallMs: this.loop.stats.wallMs,
      };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Boots, runs `o.command`, powers off. */
export async function runGuest(img: GuestImage, o: GuestOptions): Promise<GuestRun> {
  const g = await GuestVm.create(img, o);
  return g.run(o.timeoutMs);
}
