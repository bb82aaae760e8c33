/**
 * Boots the Debian guest image on visor's virt board with whatever virtio devices a test
 * attaches, runs one command through the image's init (docs/guest-init.md) and returns the
 * console output and the command's exit status. Used by the in-guest virtio tests and by
 * bench/blk.ts and bench/net.ts.
 */
import { ConsoleOutputFilter } from '../../src/host/run-output-filter.js';
import { defaultAccel } from '../../src/host/accel.js';
import { clockFor, hostTier, readBootImage } from '../../src/host/vm-host.js';
import { encodeCommand, ensureImage, findImage, type GuestImage } from '../../src/images/index.js';
import type { VirtMachine } from '../../src/machine/virt.js';
import * as vmModules from '../../src/vm/index.js';
import type { Accel, VmSpec } from '../../src/vm/spec.js';

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
  /** The tier (default: the one VISOR_ACCEL names, else the JIT, as machines get). */
  accel?: Accel;
  /**
   * The vm layer to assemble and drive with (default: this source tree's). Benchmarks pass
   * the build's (dist/vm/index.js): tsc inlines the hart's opcode enum there, tsx does not.
   */
  vm?: typeof vmModules;
  /** Sample the pc (VmDriver's pcSamples; bench/guest-profile.ts). */
  pcSamples?: vmModules.PcSamples;
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
  private out = '';
  private status: number | undefined;
  private stopped: string | undefined;

  private constructor(readonly driver: vmModules.VmDriver) {}

  /** The board (to reach its devices). */
  get vm(): VirtMachine {
    return this.driver.machine.vm;
  }

  static async create(img: GuestImage, o: GuestOptions): Promise<GuestVm> {
    let append = `${img.append} ${encodeCommand(o.command)}`;
    if (o.verbose) append = append.replace(/\bquiet\b/, '');
    if (o.append) append += ` ${o.append}`;
    // The spec of a plain machine: no devices but those the test attaches (no virtio-rng).
    const spec: VmSpec = {
      name: 'guest', kernel: img.kernel, initrd: img.initrd, append, bios: 'builtin', memoryMiB: o.memoryMiB ?? 512,
      disks: [], nets: [], rng: false, deterministic: false, accel: o.accel ?? defaultAccel(),
    };
    const vm = o.vm ?? vmModules;
    // Host time paced by guest progress (as `visor run` and the SDK do): on a loaded host,
    // plain host time makes the kernel report soft lockups that are the host's, not ours.
    const m = vm.assembleVm({
      spec, backends: { disks: [], nics: [] }, clock: clockFor(spec), tier: hostTier(spec.accel),
      boot: await readBootImage(spec), ...(o.attach ? { attachExtra: o.attach } : {}),
    });
    const g = new GuestVm(new vm.VmDriver(m, { name: 'guest', ...(o.pcSamples ? { pcSamples: o.pcSamples } : {}) }));
    const filter = new ConsoleOutputFilter({ initStart: () => {}, exitStatus: (s) => (g.status = s), panic: () => void g.stop('panic') }, !o.verbose);
    // One streaming decoder: a UTF-8 character split across two output chunks must not
    // turn into two U+FFFD (the ext4 guest test's 'grüße' failed in CI that way).
    const decoder = new TextDecoder();
    g.driver.on('output', (b) => {
      const text = decoder.decode(filter.feed(b), { stream: true });
      g.out += text;
      o.onOutput?.(text);
    });
    return g;
  }

  /** Ends the run at the next batch boundary; run() then reports `reason`. */
  async stop(reason: string): Promise<void> {
    this.stopped ??= reason;
    await this.driver.park();
  }

  async run(timeoutMs: number): Promise<GuestRun> {
    const timer = setTimeout(() => void this.stop('timeout'), timeoutMs);
    let exit: string | undefined;
    let error: Error | undefined;
    this.driver.on('exit', (e) => (exit = e.kind));
    this.driver.on('error', (e) => (error = e));
    const t0 = performance.now();
    try {
      await this.driver.run();
      if (error) throw error;
      return {
        output: this.out.replace(/\r/g, ''),
        status: this.status,
        exit: exit ?? this.stopped ?? 'stopped',
        instructions: this.driver.executed,
        wallMs: performance.now() - t0,
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
