/**
 * What a machine is made of, resolved (every default applied, every path absolute): the one
 * description the assembler builds a board from, the driver runs, and a snapshot stores.
 * sdk/config.ts validates user input into it (zod, at the edge); nothing here loads zod, so a
 * machine's worker thread does not pay for it.
 */
import { DEFAULT_MEMORY_MIB } from '../machine/ram-size.js';
import type { NicRateLimits } from '../net/user/spec.js';
import type { DiskLimits } from '../storage/throttle.js';

/** The CPU tier: 'jit' compiles hot guest pages to WebAssembly, 'interp' interprets only. */
export type Accel = 'interp' | 'jit';

/** A port forward of a user network: host address:port to the guest's port. */
export interface ForwardSpec {
  proto: 'tcp' | 'udp';
  hostAddress: string;
  hostPort: number;
  guestPort: number;
}

/** A NIC as a resolved machine config names it (plain data: it goes into snapshots). */
export type NetSpec =
  | { switch: string; rateLimit?: NicRateLimits }
  | { user: string | null; publish: ForwardSpec[]; firewall: string[]; hostAccess: boolean; rateLimit?: NicRateLimits };

export interface VmDiskSpec {
  path: string;
  format?: 'raw' | 'qcow2';
  readOnly: boolean;
}

/** The config after validation and image resolution: what a machine worker is given. */
export interface VmSpec {
  name: string;
  kernel: string;
  initrd?: string;
  append: string;
  bios: string;
  memoryMiB: number;
  disks: VmDiskSpec[];
  /** I/O limits shared by all the disks (storage/throttle.ts); absent: unlimited. */
  diskLimits?: DiskLimits;
  /** Each NIC: a switch or a user network; mac "aa:bb:cc:dd:ee:ff", fixed at creation so a snapshot keeps it (absent in older snapshots: from the name). */
  nets: (NetSpec & { mac?: string })[];
  rng: boolean;
  /** Absent in snapshots from before the device existed: no balloon. */
  balloon?: boolean;
  vsock?: { cid: number; path: string };
  deterministic: boolean;
  accel: Accel;
  /** Absent in snapshots from before the virtio-console: serial, no agent. */
  console?: 'serial' | 'virtio';
  agent?: boolean;
  /** Absent in older snapshots: the console. 'virtio': stdin/stdout/stderr on their own console ports. */
  stdio?: 'console' | 'virtio';
}

export { DEFAULT_MEMORY_MIB };
/** The kernel command line when nobody gave one (a kernel of the user's own, no image). */
export const DEFAULT_APPEND = 'console=ttyS0 earlycon';
/** What `console: 'virtio'` adds to the kernel command line (docs/guest-init.md). */
export const VIRTIO_CONSOLE_ARG = 'visor.console=hvc0';
/** What `stdio: 'virtio'` adds to the kernel command line. */
export const VIRTIO_STDIO_ARG = 'visor.stdio=virtio';
/** virtio-mmio slots on the virt board. */
export const VIRTIO_SLOTS = 8;

/** The machine has the virtio-console (hvc0, the agent port and the data port; the stdio ports). */
export function hasVirtioConsole(c: Pick<VmSpec, 'console' | 'agent' | 'stdio'>): boolean {
  return c.console === 'virtio' || c.agent === true || c.stdio === 'virtio';
}

export type VirtioSlotKind = 'blk' | 'net' | 'rng' | 'balloon' | 'vsock' | 'console';

/** One occupied virtio-mmio slot: which device, and which of its kind (disk 0, NIC 1...). */
export interface VirtioSlotUse {
  slot: number;
  kind: VirtioSlotKind;
  index: number;
}

/**
 * The virtio slot order, defined here only. It is part of a machine's identity: a snapshot
 * stores each slot's device and a restore checks them, so devices added later go after the
 * older ones (rng after disks and NICs, balloon and vsock after rng, the console last) and
 * machines without them keep their slots.
 */
export function virtioSlotLayout(c: Pick<VmSpec, 'disks' | 'nets' | 'rng' | 'balloon' | 'vsock' | 'console' | 'agent' | 'stdio'>): VirtioSlotUse[] {
  const uses: VirtioSlotUse[] = [];
  const add = (kind: VirtioSlotKind, index = 0) => uses.push({ slot: uses.length, kind, index });
  c.disks.forEach((_, i) => add('blk', i));
  c.nets.forEach((_, i) => add('net', i));
  if (c.rng) add('rng');
  if (c.balloon) add('balloon');
  if (c.vsock) add('vsock');
  if (hasVirtioConsole(c)) add('console');
  return uses;
}
