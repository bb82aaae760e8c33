/**
 * A snapshot's JSON sections (file.ts writes and reads the container): `meta` (what visor
 * wrote it, the machine's spec, the disks' fingerprints) and `machine` (the board's state and
 * the runner's own). The zod schemas here are their only validator: a snapshot file is
 * untrusted input, checked before any of it is used. The board's state (VirtState) is checked
 * by the board and each component on restore, so here it only has to be an object.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { VisorError } from '../../base/errors.js';
import type { VirtState } from '../../machine/virt.js';
import type { NetSpec, VmSpec } from '../../vm/spec.js';
import { parseMac } from '../../net/mac.js';
import { isNetSpec } from '../net-attach.js';
import type { DiskFingerprint, ReadSnapshot } from './file.js';

/** visor's version, as package.json has it (src/ and dist/ sit at the same depth). */
export const VISOR_VERSION: string = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const u32 = z.number().int().min(0).max(0xffff_ffff);
const u16 = z.number().int().min(0).max(0xffff);

/** VmSpec as a snapshot stores it; fields newer than the first snapshots are optional. */
const SpecSchema = z.object({
  name: z.string(),
  kernel: z.string(),
  initrd: z.string().optional(),
  append: z.string(),
  bios: z.string(),
  memoryMiB: z.number().int(),
  disks: z.array(z.object({ path: z.string(), format: z.enum(['raw', 'qcow2']).optional(), readOnly: z.boolean() })),
  // A switch or a user network (attachSpec checks the rest on restore), with the MAC it was given.
  nets: z.array(
    z.custom<NetSpec & { mac?: string }>(
      (n) => {
        if (!isNetSpec(n)) return false;
        const mac: unknown = (n as { mac?: unknown }).mac;
        return mac === undefined || (typeof mac === 'string' && parseMac(mac) !== null);
      },
      'a NIC must be a switch or user network spec with an optional MAC',
    ),
  ),
  rng: z.boolean(),
  balloon: z.boolean().optional(),
  vsock: z.object({ cid: z.number().int().min(3).max(0xffff_fffe), path: z.string().min(1) }).optional(),
  deterministic: z.boolean(),
  // Snapshots from before the tier was configurable carry none; a restore picks its own anyway.
  accel: z.enum(['interp', 'jit']).optional(),
  console: z.enum(['serial', 'virtio']).optional(),
  agent: z.boolean().optional(),
  stdio: z.enum(['console', 'virtio']).optional(),
});

const FingerprintSchema = z.object({
  path: z.string(),
  format: z.enum(['raw', 'qcow2']),
  readOnly: z.boolean(),
  size: z.number(),
  mtimeMs: z.number(),
  headSha256: z.string(),
  qcow2HeaderSha256: z.string().optional(),
});

export const SnapshotMetaSchema = z.object({
  format: z.literal('visor-snapshot'),
  visorVersion: z.string(),
  createdAt: z.string(),
  config: SpecSchema,
  disks: z.array(FingerprintSchema),
});

/** What the runner keeps of its own in a snapshot, next to the board's state. */
export const RunnerStateSchema = z.object({
  version: z.literal(1),
  /** Instructions since boot: where the batch grid stands. */
  executed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  deterministic: z.boolean(),
  /** The seeded entropy source's state (deterministic machines with an rng). */
  rngState: z.tuple([u32, u32, u32, u32]).nullable(),
  /**
   * Per NIC, the guest's TCP connections through a user network's NAT: a restore resets
   * them in the guest (host/net-attach.ts). Absent in older snapshots.
   */
  natFlows: z
    .array(z.array(z.object({ guestIp: u32, guestPort: u16, remoteIp: u32, remotePort: u16, seq: u32, ack: u32 })).max(4096))
    .max(64)
    .optional(),
});

const MachineSectionSchema = z.object({
  runner: RunnerStateSchema,
  // The board checks its state itself on restore (VirtMachine.restoreState): here, an object.
  board: z.custom<VirtState>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'the board state must be an object'),
});

export type RunnerState = z.infer<typeof RunnerStateSchema>;

export interface SnapshotMeta {
  format: 'visor-snapshot';
  visorVersion: string;
  createdAt: string;
  config: VmSpec;
  disks: DiskFingerprint[];
}

export interface MachineSnapshotState {
  runner: RunnerState;
  board: VirtState;
}

/** The meta section for a machine being snapshotted now. */
export function snapshotMeta(config: VmSpec, disks: DiskFingerprint[]): SnapshotMeta {
  return { format: 'visor-snapshot', visorVersion: VISOR_VERSION, createdAt: new Date().toISOString(), config, disks };
}

/** Checks the JSON parts of a snapshot before any of it is used. */
export function validateSnapshot(snap: Pick<ReadSnapshot, 'meta' | 'machine'>): { meta: SnapshotMeta; state: MachineSnapshotState } {
  const bad = (section: string, err: z.ZodError): never => {
    const issue = err.issues[0]!;
    const where = issue.path.map(String).join('.');
    throw new VisorError('CorruptImage', `snapshot: the ${section} section is malformed${where ? ` at ${where}` : ''}: ${issue.message}`);
  };
  const m = SnapshotMetaSchema.safeParse(snap.meta);
  if (!m.success) {
    if (typeof snap.meta !== 'object' || snap.meta === null || (snap.meta as { format?: unknown }).format !== 'visor-snapshot') {
      throw new VisorError('CorruptImage', 'snapshot: meta section is not visor snapshot metadata');
    }
    return bad('meta', m.error);
  }
  const s = MachineSectionSchema.safeParse(snap.machine);
  if (!s.success) return bad('machine', s.error);
  const meta = m.data;
  const c = meta.config;
  if (meta.disks.length !== c.disks.length || meta.disks.some((d, i) => d.path !== c.disks[i]!.path)) {
    throw new VisorError('CorruptImage', 'snapshot: disk fingerprints do not match the disks');
  }
  if (s.data.runner.deterministic !== c.deterministic) throw new VisorError('CorruptImage', 'snapshot: runner state is malformed (deterministic differs from the config)');
  // accel is filled in by the restoring process (the tier is not part of the saved machine).
  return { meta: { ...meta, config: { ...c, accel: c.accel ?? 'jit' } }, state: s.data };
}
