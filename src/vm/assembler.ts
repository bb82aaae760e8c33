/**
 * Spec + opened backends → a virt board with its hart, devices and virtio transports. The one
 * place a hart is created (createHart) and the one walk of the virtio slot order
 * (virtioSlotLayout in spec.ts). Host facilities (files, entropy, clocks, sockets) arrive
 * opened: nothing here touches the host, so the layer bundles for a browser.
 */
import { VisorError } from '../base/errors.js';
import { Hart } from '../cpu/hart.js';
import { jitTier } from '../jit/jit.js';
import type { PhysicalMemory } from '../cpu/memory.js';
import type { MachineClock } from '../machine/clock.js';
import type { BoardHart } from '../machine/hart.js';
import { VirtMachine, type VirtConfig } from '../machine/virt.js';
import type { BlockDevice } from '../storage/block-device.js';
import type { VirtioBalloon } from '../virtio/balloon/device.js';
import { createVirtioBlk, type VirtioBlk } from '../virtio/blk/device.js';
import type { VirtioConsole } from '../virtio/console/device.js';
import type { VirtioDevice } from '../virtio/device.js';
import { VirtioMmioTransport } from '../virtio/mmio/transport.js';
import type { VirtioNet } from '../virtio/net/device.js';
import { createVirtioRng, type EntropySource } from '../virtio/rng/device.js';
import type { VirtioVsock } from '../virtio/vsock/device.js';
import { virtioSlotLayout, type Accel, type VmSpec } from './spec.js';

/** Which tier a hart runs, and what the host does before a JIT hart exists. */
export interface HartTier {
  accel: Accel;
  /** Entries into a page before the JIT compiles it (HartOptions.jitThreshold). */
  jitThreshold?: number;
  /** Called once per JIT hart before any page compiles (the host's V8 tuning). */
  beforeJit?: () => void;
}

/** The hart, as the board sees it. Every machine's hart is made here. */
export function createHart(memory: PhysicalMemory, opts: { hartId: number; timeSource: () => number }, tier: HartTier): BoardHart {
  if (tier.accel === 'jit') tier.beforeJit?.();
  return new Hart(memory, { ...opts, accel: tier.accel, tier: jitTier, ...(tier.jitThreshold !== undefined ? { jitThreshold: tier.jitThreshold } : {}) });
}

/** What a boot reads from files (a restore passes none of it: its state comes from the snapshot). */
export interface BootImage {
  kernel: Uint8Array;
  initrd?: Uint8Array;
  /** Firmware bytes for bios !== 'builtin' (a restore only needs the kind). */
  bios?: Uint8Array;
  /** /chosen/rng-seed (RNG_SEED_BYTES). */
  rngSeed?: Uint8Array;
}

/**
 * The host side of the spec's devices, opened by the owner and kept across reboots (a
 * rebuilt board reattaches the same NIC, balloon, vsock and console; disks are reopened
 * never). Arrays follow the spec's order.
 */
export interface VmBackends {
  disks: BlockDevice[];
  nics: VirtioNet[];
  /** Feeds the virtio-rng (spec.rng). */
  entropy?: EntropySource;
  balloon?: VirtioBalloon;
  vsock?: VirtioVsock;
  console?: VirtioConsole;
}

/** A board built from a spec: the machine and the handles the driver and stats read. */
export interface AssembledVm {
  readonly vm: VirtMachine;
  readonly clock: MachineClock;
  readonly transports: VirtioMmioTransport[];
  readonly blks: { dev: VirtioBlk; transport: VirtioMmioTransport }[];
  readonly nics: VirtioNet[];
  readonly balloon: VirtioBalloon | undefined;
}

export interface AssembleOptions {
  spec: VmSpec;
  backends: VmBackends;
  clock: MachineClock;
  tier: HartTier;
  /** Boot from these; absent: a board for restoreState (not booted). */
  boot?: BootImage;
  /** RAM filled ahead (a restore loads it while the rest starts); memoryMiB long. */
  ram?: Uint8Array;
  /**
   * Devices a test or benchmark attaches after the spec's own (vm.attachVirtio with a free
   * slot): not part of the spec, so not for machines that are snapshotted.
   */
  attachExtra?: (vm: VirtMachine) => void;
}

/** Builds the board, attaches the spec's virtio devices in slot order, and boots it (when `boot` is given). */
export function assembleVm(o: AssembleOptions): AssembledVm {
  const { spec, backends: b } = o;
  const vcfg: VirtConfig = {
    ...(o.ram ? { ram: o.ram } : {}),
    kernel: o.boot?.kernel ?? new Uint8Array(0),
    kernelName: spec.kernel,
    append: spec.append,
    bios: 'builtin',
    memoryMiB: spec.memoryMiB,
    clock: o.clock,
    createHart: (mem, opts) => createHart(mem, opts, o.tier),
  };
  if (o.boot?.initrd) vcfg.initrd = o.boot.initrd;
  if (o.boot?.rngSeed) vcfg.rngSeed = o.boot.rngSeed;
  // The firmware kind must match on restore; the bytes only matter for booting.
  if (spec.bios !== 'builtin') vcfg.bios = o.boot?.bios ?? new Uint8Array(1);
  const vm = new VirtMachine(vcfg);
  const clock = o.clock as MachineClock & { attach?(retired: () => number): void };
  clock.attach?.(() => vm.hart.instructionsRetired);
  const transports: VirtioMmioTransport[] = [];
  const blks: AssembledVm['blks'] = [];
  const attach = (slot: number, device: VirtioDevice) => {
    const made = vm.attachVirtio(slot, (ctx) => new VirtioMmioTransport({ device, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })) as VirtioMmioTransport;
    transports.push(made);
    return made;
  };
  for (const use of virtioSlotLayout(spec)) {
    switch (use.kind) {
      case 'blk': {
        const disk = b.disks[use.index];
        if (!disk) throw new VisorError('Internal', `assembleVm: no opened disk ${use.index}`);
        const dev = createVirtioBlk({ disk });
        blks.push({ dev, transport: attach(use.slot, dev) });
        break;
      }
      case 'net': {
        const nic = b.nics[use.index];
        if (!nic) throw new VisorError('Internal', `assembleVm: no NIC ${use.index}`);
        // A rebuilt board gets the same NIC: its new transport resets it.
        attach(use.slot, nic);
        break;
      }
      case 'rng':
        attach(use.slot, createVirtioRng(b.entropy ? { source: b.entropy } : {}));
        break;
      case 'balloon':
      case 'vsock':
      case 'console': {
        const dev = b[use.kind];
        if (!dev) throw new VisorError('Internal', `assembleVm: no ${use.kind} device`);
        attach(use.slot, dev);
        break;
      }
    }
  }
  o.attachExtra?.(vm);
  if (o.boot) vm.boot();
  return { vm, clock: o.clock, transports, blks, nics: [...b.nics], balloon: b.balloon };
}
