/**
 * Every shape that crosses the API, in zod: bodies and queries are parsed with these (unknown
 * keys rejected), and the OpenAPI document (openapi.ts) is generated from the same objects.
 */
import { z } from 'zod';
import { parseFirewallEntry } from '../net/user/spec.js';
import { ROLES } from './auth.js';

/** Names of machines, disks, snapshots, networks and projects: safe in a path, a URL and a switch name. */
export const Name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'lower-case letters, digits and -, starting with a letter or digit (1-40)');
export const ImageName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'an image name (letters, digits, . _ -)');
export const Id = z.string().regex(/^[a-z]+-[0-9a-f]{8,32}$/, 'an id as the API returned it');

/** Disk I/O limits for all of a machine's disks together (token buckets, as Firecracker's). */
export const DiskLimits = z.strictObject({
  iops: z.number().int().min(1).max(10_000_000).optional().describe('disk requests per second'),
  bytesPerSec: z.number().int().min(4096).max(1e12).optional().describe('disk bytes (read + written) per second'),
  iopsBurst: z.number().int().min(1).max(10_000_000).optional().describe('requests the bucket holds (default a tenth of a second\'s worth)'),
  bytesBurst: z.number().int().min(4096).max(1e12).optional().describe('bytes the bucket holds (default a tenth of a second\'s worth)'),
});
export type DiskLimits = z.infer<typeof DiskLimits>;

/** One direction of a NIC's rate limit: token buckets, as the SDK's `rateLimit` (src/net/nic-shaper.ts). */
const NetRate = z.strictObject({
  bytesPerSec: z.number().int().min(4096).max(1e12).optional().describe('bytes per second'),
  bytesBurst: z.number().int().min(4096).max(1e12).optional().describe('bytes the bucket holds (default a tenth of a second\'s worth)'),
  packetsPerSec: z.number().int().min(1).max(10_000_000).optional().describe('frames per second'),
  packetsBurst: z.number().int().min(1).max(10_000_000).optional().describe('frames the bucket holds'),
});
export const NetLimits = z.strictObject({
  tx: NetRate.optional().describe('guest → network'),
  rx: NetRate.optional().describe('network → guest'),
});
export type NetLimits = z.infer<typeof NetLimits>;

export const MachineCreate = z.strictObject({
  name: Name,
  image: ImageName.optional().describe('a visor image (default: the daemon\'s default image)'),
  memoryMiB: z.number().int().min(16).max(16384).optional(),
  cpuLimitPercent: z.number().int().min(1).max(100).optional().describe('percent of one host core (default 100)'),
  cpuShares: z.number().int().min(1).max(10_000).optional().describe('relative weight when the host is busy (default 100)'),
  diskMiB: z.number().int().min(1).max(1 << 20).optional().describe('a new qcow2 data disk of this size'),
  diskLimits: DiskLimits.optional().describe('I/O limits of all its disks together (takes effect at the next start when changed)'),
  netLimits: NetLimits.optional().describe('rate limits of each of its NICs (takes effect at the next start when changed)'),
  disks: z.array(Name).max(4).optional().describe('existing volumes to attach'),
  networks: z.array(Name).max(4).optional(),
  balloon: z.boolean().optional(),
  console: z.enum(['serial', 'virtio']).optional(),
  start: z.boolean().optional().describe('start it once created'),
});
export type MachineCreate = z.infer<typeof MachineCreate>;

export const MachinePatch = z.strictObject({
  cpuLimitPercent: z.number().int().min(1).max(100).optional(),
  cpuShares: z.number().int().min(1).max(10_000).optional(),
  balloonMiB: z.number().int().min(0).max(16384).optional().describe('memory to take back from the guest (needs balloon: true)'),
  diskLimits: DiskLimits.nullable().optional().describe('new disk I/O limits (null: none); a running machine gets them at its next start'),
  netLimits: NetLimits.nullable().optional().describe('new NIC rate limits (null: none); a running machine gets them at its next start'),
});

export const StopBody = z.strictObject({
  force: z.boolean().optional(),
  timeoutMs: z.number().int().min(0).max(600_000).optional(),
});
export const SnapshotBody = z.strictObject({ name: Name });
export const RestoreBody = z.strictObject({ snapshot: Name });
export const ForkBody = z.strictObject({ name: Name });
export const EmptyBody = z.strictObject({});

export const ExecBody = z.strictObject({
  cmd: z.string().min(1).max(64 * 1024),
  cwd: z.string().max(4096).optional(),
  envs: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/), z.string().max(32 * 1024)).optional(),
  timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
});
export type ExecBody = z.infer<typeof ExecBody>;
/** The first message on `WS /v1/machines/{id}/exec`. */
export const ExecStreamStart = ExecBody.extend({ stdin: z.boolean().optional().describe('keep stdin open: binary frames are its bytes, {"type":"eof"} ends it') });

/** A path in the guest: absolute, no NUL. It names a guest file; the host never opens it. */
export const GuestPath = z.string().min(1).max(4096).regex(/^\/[^\0]*$/, 'an absolute path in the guest');
export const FilesQuery = z.strictObject({ path: GuestPath });

export const DiskCreate = z.strictObject({ name: Name, sizeMiB: z.number().int().min(1).max(1 << 20) });

export const Forward = z.strictObject({
  hostPort: z.number().int().min(1024).max(65535).describe('listened on at 127.0.0.1 while a machine of the network runs'),
  guestPort: z.number().int().min(1).max(65535),
  protocol: z.enum(['tcp', 'udp']).optional(),
  machine: Name.optional().describe('the machine it reaches (its NIC on this network); none: the first DHCP lease, 10.0.2.15'),
});

/** A rule's text for the firewall (src/net/user/firewall.ts): `allow out:tcp:10.0.0.0/8:80`. */
export function ruleText(r: { action: string; direction?: string | undefined; protocol?: string | undefined; cidr: string; port?: number | undefined; ports?: string | undefined }): string {
  const ports = r.ports ?? (r.port !== undefined ? String(r.port) : undefined);
  return `${r.action} ${r.direction ?? 'out'}:${r.protocol ?? 'any'}:${r.cidr}${ports !== undefined ? `:${ports}` : ''}`;
}

/** A firewall rule; the first that matches a flow decides, none matching allows it. */
export const NetworkRule = z.strictObject({
  action: z.enum(['allow', 'deny']),
  direction: z.enum(['out', 'in']).optional().describe('out (guest to world, default) or in (through a forward, by client address)'),
  protocol: z.enum(['tcp', 'udp', 'icmp', 'any']).optional().describe('default any'),
  cidr: z.string().max(64).describe("a CIDR or address, 'any', or 'host' (the gateway and the host's own addresses)"),
  port: z.number().int().min(1).max(65535).optional(),
  ports: z.string().regex(/^\d{1,5}(-\d{1,5})?$/).optional().describe('N or N-M'),
}).superRefine((r, ctx) => {
  const parsed = parseFirewallEntry(ruleText(r));
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  if (r.port !== undefined && r.ports !== undefined) ctx.addIssue({ code: 'custom', message: 'give port or ports, not both' });
});
export type NetworkRule = z.infer<typeof NetworkRule>;

/** What a network is: forwards, rules, and whether guests may reach the host itself. */
export const NetworkSpec = z.strictObject({
  forwards: z.array(Forward).max(32).optional(),
  rules: z.array(NetworkRule).max(64).optional(),
  hostAccess: z.boolean().optional().describe('guests may reach the host itself (10.0.2.2, its addresses); default false'),
});
export const NetworkCreate = NetworkSpec.extend({ name: Name });
export type NetworkSpec = { forwards: z.infer<typeof Forward>[]; rules: NetworkRule[]; hostAccess?: boolean };

export const TokenCreate = z.strictObject({ name: z.string().min(1).max(64), role: z.enum(ROLES), project: Name });

export const ProjectLimits = z.strictObject({
  maxMachines: z.number().int().min(0).max(10_000).optional(),
  maxMemoryMiB: z.number().int().min(0).max(1 << 24).optional(),
  maxCpuPercent: z.number().int().min(0).max(100_000).optional(),
});
export type ProjectLimits = z.infer<typeof ProjectLimits>;

export const WaitQuery = z.strictObject({ timeoutMs: z.coerce.number().int().min(0).max(600_000).optional() });
export const AuditQuery = z.strictObject({ after: z.coerce.number().int().min(0).optional(), limit: z.coerce.number().int().min(1).max(1000).optional() });

export const ErrorBody = z.strictObject({ error: z.strictObject({ code: z.string(), message: z.string() }) });

export const Operation = z.object({
  id: z.string(),
  kind: z.string(),
  target: z.string(),
  status: z.enum(['running', 'success', 'failure']),
  result: z.unknown().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const MachineView = z.object({
  id: z.string(),
  name: z.string(),
  project: z.string(),
  state: z.enum(['created', 'running', 'paused', 'stopped']),
  reason: z.string().nullable(),
  image: z.string(),
  memoryMiB: z.number(),
  resources: z.object({ cpuLimitPercent: z.number(), cpuShares: z.number(), cpuEffectivePercent: z.number().optional(), balloonMiB: z.number().optional(), diskLimits: DiskLimits.optional(), netLimits: NetLimits.optional() }),
  disks: z.array(z.string()),
  networks: z.array(z.string()),
  stats: z.object({ instructions: z.number(), mips: z.number(), cpuSeconds: z.number().describe("CPU seconds of the machine's thread (Linux; elsewhere busy wall time)"), cpuPercent: z.number().describe('share of one host core recently, in percent'), blkBytesRead: z.number(), blkBytesWritten: z.number(), blkThrottled: z.number().describe('disk requests that waited for the disk limits'), blkThrottledMs: z.number(), netRxBytes: z.number(), netTxBytes: z.number(), netRateDelayed: z.number().describe('frames that waited for the NIC rate limits') }).optional(),
  startedAt: z.string().optional().describe('when the machine last started running'),
  createdAt: z.string(),
});
export type MachineView = z.infer<typeof MachineView>;
