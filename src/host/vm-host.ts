/**
 * The Node side of src/vm/: what the assembler and driver need from the host, once. Boot
 * files read (with errors that name the file), disks opened, the clock a spec asks for, the
 * tier with V8 tuned for the JIT, the warm-up. The SDK runner, tests and benchmarks call these
 * rather than repeating them.
 */
import { readFile } from 'node:fs/promises';
import { VisorError } from '../base/errors.js';
import type { MachineClock } from '../machine/clock.js';
import { InstructionClock } from '../machine/instruction-clock.js';
import { RNG_SEED_BYTES } from '../machine/virt.js';
import { closeDisk, openDisk, type OpenedDisk } from '../storage/open.js';
import type { EntropySource } from '../virtio/rng/device.js';
import type { BootImage, HartTier } from '../vm/assembler.js';
import type { Accel, VmDiskSpec, VmSpec } from '../vm/spec.js';
import { PacedClock } from './clock-host.js';
import { NodeFileOpener, mapFsError } from './file-handle.js';
import { inflateInitrd } from './initrd.js';
import { tuneV8ForJit } from './v8-tuning.js';
import { nodeEntropy } from './virtio-entropy.js';
import { warmUp } from './warmup.js';

/** Reads a file the machine needs; a failure names what it was for. */
export async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (err) {
    const e = mapFsError(err, path);
    throw new VisorError(e.code, `${what}: ${e.message}`, { cause: err });
  }
}

/**
 * Kernel, initrd (inflated), firmware and /chosen/rng-seed for a boot. `seed` draws the
 * seed (deterministic machines pass their own source so their boots repeat).
 */
export async function readBootImage(spec: Pick<VmSpec, 'kernel' | 'initrd' | 'bios' | 'memoryMiB'>, seed: EntropySource = nodeEntropy): Promise<BootImage> {
  const img: BootImage = { kernel: await readInput(spec.kernel, 'kernel') };
  if (spec.initrd) img.initrd = inflateInitrd(await readInput(spec.initrd, 'initrd'), spec.memoryMiB * 2 ** 20);
  if (spec.bios !== 'builtin') img.bios = await readInput(spec.bios, 'bios');
  img.rngSeed = new Uint8Array(RNG_SEED_BYTES);
  seed.fill(img.rngSeed);
  return img;
}

/** Opens the spec's disks in order; on a failure closes those already open. */
export async function openDisks(disks: readonly VmDiskSpec[]): Promise<OpenedDisk[]> {
  const opener = new NodeFileOpener();
  const opened: OpenedDisk[] = [];
  try {
    for (const d of disks) {
      try {
        opened.push(await openDisk(opener, d.path, { readOnly: d.readOnly, format: d.format }));
      } catch (err) {
        throw err instanceof VisorError ? err : mapFsError(err, d.path);
      }
    }
  } catch (err) {
    await closeDisks(opened, false);
    throw err;
  }
  return opened;
}

/** Flushes (when asked) and closes disks; never throws (the machine is going away). */
export async function closeDisks(disks: readonly OpenedDisk[], flush: boolean): Promise<void> {
  for (const d of disks) {
    if (flush) await d.device.flush().catch(() => {});
    await closeDisk(d).catch(() => {});
  }
}

/** Guest time: instructions for a deterministic machine, else host time paced by progress (PacedClock). */
export function clockFor(spec: Pick<VmSpec, 'deterministic'>): MachineClock {
  return spec.deterministic ? new InstructionClock() : new PacedClock();
}

/**
 * A tier whose JIT harts find V8 tuned for them (v8-tuning.ts). VISOR_JIT_THRESHOLD (entries
 * into a page before it compiles; 0 compiles at first execution) is a knob for measurements
 * and the differential tests, not a setting machines keep.
 */
export function hostTier(accel: Accel, jitThreshold = thresholdFromEnv(process.env['VISOR_JIT_THRESHOLD'])): HartTier {
  return { accel, beforeJit: tuneV8ForJit, ...(jitThreshold !== undefined ? { jitThreshold } : {}) };
}

function thresholdFromEnv(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,9}$/.test(v)) return undefined;
  return Number(v);
}

export { nodeEntropy, warmUp };
