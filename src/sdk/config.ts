/**
 * Machine configuration, validated once at the edge (zod): unknown keys, bad sizes and
 * missing files are errors that name the field. The core receives typed, valid values.
 */
import { access, constants, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { z } from 'zod';
import { VisorError } from '../base/errors.js';
import { MAX_MEMORY_MIB, MIN_MEMORY_MIB } from '../machine/ram-size.js';

const MEMORY_RANGE = `must be from ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB} MiB (the most one WebAssembly memory holds beside the JIT's state)`;
import { defaultAccel } from '../host/accel.js';
import { DEFAULT_APPEND, DEFAULT_MEMORY_MIB, hasVirtioConsole, VIRTIO_CONSOLE_ARG, VIRTIO_STDIO_ARG, virtioSlotLayout, VIRTIO_SLOTS, type NetSpec, type VmSpec } from '../vm/spec.js';
import { formatMac, randomMac, stableMac } from '../net/mac.js';
import { imageMinMemoryMiB } from '../images/recipes.js';
import { parseFirewallEntry, parsePublish } from '../net/user/spec.js';
import { DHCP_ARG as DHCP_FLAG, ROOT_ARG, ROOTINIT_ARG } from '../images/init-script.js';

export { DEFAULT_MEMORY_MIB, VIRTIO_CONSOLE_ARG, VIRTIO_STDIO_ARG };

const DiskSchema = z.strictObject({
  path: z.string().min(1),
  format: z.enum(['raw', 'qcow2']).optional(),
  readOnly: z.boolean().optional(),
});

const NET_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** One direction's limits: Firecracker's token buckets (bytes and packets per second). */
const RateSchema = z.strictObject({
  bytesPerSec: z.number().int().positive().optional(),
  bytesBurst: z.number().int().positive().optional(),
  packetsPerSec: z.number().int().positive().optional(),
  packetsBurst: z.number().int().positive().optional(),
});
const RateLimitSchema = z.strictObject({ tx: RateSchema.optional(), rx: RateSchema.optional() });

const ForwardSchema = z.strictObject({
  proto: z.enum(['tcp', 'udp']).optional(),
  hostAddress: z.ipv4().optional(),
  hostPort: z.number().int().min(1).max(65535),
  guestPort: z.number().int().min(1).max(65535),
});

/** Checks a text with one of src/net/user/spec.ts's parsers, reporting its message. */
const parsedBy = (parse: (t: string) => unknown) =>
  z.string().superRefine((t, ctx) => {
    const r = parse(t);
    if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
  });

const SwitchNetSchema = z.strictObject({
  /** An L2 switch shared with every VM on this host that names it (`--net switch=NAME`). */
  switch: z.string().regex(NET_NAME, 'letters, digits, _ . - (1-64)'),
  rateLimit: RateLimitSchema.optional(),
});

const UserNetSchema = z.strictObject({
  /**
   * User-mode networking (NAT, DHCP, DNS) on 10.0.2.0/24: `true` for a private network, a name
   * to share one with every VM on this host that names it (`--net user=NAME`).
   */
  user: z.union([z.literal(true), z.string().regex(NET_NAME, 'letters, digits, _ . - (1-64)')]),
  /** Port forwards: Docker's `[ADDR:]HOST:GUEST[/udp]` or an object. */
  publish: z.array(z.union([parsedBy(parsePublish), ForwardSchema])).max(64).optional(),
  /** Ordered rules, `allow|deny DIR:PROTO:TARGET[:PORTS]`; the first match decides. */
  firewall: z.array(parsedBy(parseFirewallEntry)).max(256).optional(),
  /** Whether the guest may reach the host itself (10.0.2.2, the host's addresses). Default true. */
  hostAccess: z.boolean().optional(),
  rateLimit: RateLimitSchema.optional(),
});

const NetSchema = z.union([SwitchNetSchema, UserNetSchema]);

const VsockSchema = z.strictObject({
  /** The guest's context ID (3 and up: 0-2 are reserved; default 3). */
  cid: z.number().int().min(3).max(0xffff_fffe).optional(),
  /**
   * Host Unix socket, Firecracker's convention: the guest connecting to CID 2 port P reaches
   * `${path}_${P}`; a host program connects to `path` and writes `CONNECT P\n`.
   */
  path: z.string().min(1),
});

export const MachineConfigSchema = z.strictObject({
  /** Shown in errors and logs; also seeds the NICs' stable MAC addresses (without it each NIC gets a random one). */
  name: z.string().min(1).max(64).optional(),
  /**
   * A visor image name (default 'tiny' when no kernel is given). An image with a root disk
   * (debian) boots it as `visor run` does: the machine gets its own qcow2 overlay on the
   * cached base as vda (deleted when the machine stops) and the initramfs switches to it.
   */
  image: z.string().min(1).optional(),
  kernel: z.string().min(1).optional(),
  initrd: z.string().min(1).optional(),
  /** Kernel command line. */
  append: z.string().optional(),
  /** 'builtin' (visor's SBI, default) or an M-mode firmware file. */
  bios: z.string().min(1).optional(),
  /** Guest RAM in MiB, MIN_MEMORY_MIB to MAX_MEMORY_MIB (machine/ram-size.ts). */
  memoryMiB: z.number().int().min(MIN_MEMORY_MIB, MEMORY_RANGE).max(MAX_MEMORY_MIB, MEMORY_RANGE).optional(),
  disks: z.array(DiskSchema).max(7).optional(),
  nets: z.array(NetSchema).max(7).optional(),
  /** Attach a virtio-rng (default true). Deterministic machines get a seeded generator. */
  rng: z.boolean().optional(),
  /** Attach a virtio-balloon (default false): `vm.balloon(targetMiB)` asks the guest for memory. */
  balloon: z.boolean().optional(),
  /**
   * Disk I/O limits for all of the machine's disks together (token buckets, Firecracker's
   * model): requests per second and bytes per second, each with an optional burst.
   */
  diskLimits: z.strictObject({
    iops: z.number().positive().optional(),
    bytesPerSec: z.number().positive().optional(),
    iopsBurst: z.number().positive().optional(),
    bytesBurst: z.number().positive().optional(),
  }).optional(),
  /** Attach a virtio-vsock mapped to Unix sockets on the host. */
  vsock: VsockSchema.optional(),
  /** Guest time follows retired instructions instead of the host clock (issue 7). */
  deterministic: z.boolean().optional(),
  /** Debian mirror for pulling the image. */
  mirror: z.string().url().optional(),
  /** Execution tier: 'jit' compiles hot guest pages to WebAssembly, 'interp' interprets only. */
  accel: z.enum(['interp', 'jit']).optional(),
  /**
   * The guest's console: 'serial' (the UART, default) or 'virtio' (visor's init runs the
   * shell or command on hvc0; kernel messages stay on the UART). Both reach `vm.console`.
   */
  console: z.enum(['serial', 'virtio']).optional(),
  /**
   * Attach the virtio-console whose port org.visor.agent the guest agent of visor's images
   * serves (graceful stop). Default: true for an image, false for a kernel of your own.
   */
  agent: z.boolean().optional(),
  /**
   * Where a command given on the kernel command line (visor.cmd) gets its stdin, stdout and
   * stderr: 'console' (the console, default) or 'virtio' (three virtio-console ports that
   * visor's init connects to the command: byte-exact, stdout and stderr apart, and
   * `vm.stdin.end()` is end-of-file for the command; docs/guest-init.md).
   */
  stdio: z.enum(['console', 'virtio']).optional(),
  /** PID 1 on an image's root disk: visor's init (default, fast) or 'systemd'. */
  init: z.enum(['visor', 'systemd']).optional(),
});

export type MachineConfig = z.input<typeof MachineConfigSchema>;

/** The config after validation and image resolution: what a machine worker is given (src/vm/spec.ts). */
export type ResolvedConfig = VmSpec;

export { hasVirtioConsole };

export { defaultAccel, type Accel } from '../host/accel.js';

/** What a user network adds to the kernel command line: the image's init asks DHCP. */
const DHCP_ARG = `${DHCP_FLAG}=1`;

function resolveNet(n: z.output<typeof NetSchema>): NetSpec {
  const limits = n.rateLimit ? { rateLimit: n.rateLimit } : {};
  if ('switch' in n) return { switch: n.switch, ...limits };
  return {
    user: n.user === true ? null : n.user,
    publish: (n.publish ?? []).map((p) => {
      if (typeof p !== 'string') return { proto: p.proto ?? 'tcp', hostAddress: p.hostAddress ?? '127.0.0.1', hostPort: p.hostPort, guestPort: p.guestPort };
      const f = parsePublish(p);
      if (typeof f === 'string') throw new VisorError('InvalidConfig', `machine config: publish: ${f}`);
      return { proto: f.proto, hostAddress: f.hostAddress ?? '127.0.0.1', hostPort: f.hostPort, guestPort: f.guestPort };
    }),
    firewall: n.firewall ?? [],
    hostAccess: n.hostAccess ?? true,
    ...limits,
  };
}

/** Validates `input` (untrusted) into a config; the error names the first bad field. */
export function parseMachineConfig(input: unknown): z.output<typeof MachineConfigSchema> {
  const r = MachineConfigSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    let field = issue.path.map(String).join('.');
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const keys = (issue as { keys: string[] }).keys;
      field = [...issue.path.map(String), keys[0]].join('.');
      message = 'unknown key';
    }
    throw new VisorError('InvalidConfig', `machine config: ${field || '(root)'}: ${message}`);
  }
  return r.data;
}

async function mustExist(path: string, field: string): Promise<void> {
  try {
    await access(path, constants.R_OK);
  } catch {
    throw new VisorError('InvalidConfig', `machine config: ${field}: no such readable file '${path}'`);
  }
}

/** Image resolution is injected so tests and the CLI decide how images are pulled. */
export type ImageResolver = (name: string, opts: { mirror?: string }) => Promise<ResolvedImage>;

export interface ResolvedImage {
  kernel: string;
  initrd?: string;
  append?: string;
  /** The machine's own root disk (an overlay on the image's base); `dispose` deletes it. */
  rootDisk?: { path: string; dispose?: () => Promise<void> };
}

/** The systemd binary visor's initramfs hands PID 1 to with `init: 'systemd'`. */
export const SYSTEMD_INIT = '/lib/systemd/systemd';

/** virtio-mmio slots a machine uses (the board has VIRTIO_SLOTS). */
export function virtioSlots(c: Pick<ResolvedConfig, 'disks' | 'nets' | 'rng' | 'balloon' | 'vsock' | 'console' | 'agent' | 'stdio'>): number {
  return virtioSlotLayout(c).length;
}

/** Validates, resolves the image, and checks every file the machine will open. */
export async function resolveMachineConfig(input: unknown, resolveImage?: ImageResolver, disposers: (() => Promise<void>)[] = []): Promise<ResolvedConfig> {
  const c = parseMachineConfig(input);
  let rootDisk: string | undefined;
  let kernel = c.kernel;
  let initrd = c.initrd;
  let append = c.append;
  const fromImage = kernel === undefined;
  if (kernel === undefined) {
    const min = imageMinMemoryMiB(c.image ?? 'debian');
    if (c.memoryMiB !== undefined && min !== undefined && c.memoryMiB < min) {
      throw new VisorError('InvalidConfig', `machine config: memoryMiB: the image '${c.image ?? 'debian'}' needs at least ${min} MiB to boot, got ${c.memoryMiB}`);
    }
    if (!resolveImage) throw new VisorError('InvalidConfig', 'machine config: kernel: required when no image resolver is available');
    const img = await resolveImage(c.image ?? 'tiny', c.mirror ? { mirror: c.mirror } : {});
    kernel = img.kernel;
    initrd ??= img.initrd;
    append ??= img.append;
    if (img.rootDisk) {
      rootDisk = img.rootDisk.path;
      if (img.rootDisk.dispose) disposers.push(img.rootDisk.dispose);
    }
  } else if (c.image !== undefined) {
    throw new VisorError('InvalidConfig', 'machine config: image: give an image or a kernel, not both');
  }
  kernel = resolve(kernel);
  if (initrd !== undefined) initrd = resolve(initrd);
  await mustExist(kernel, 'kernel');
  if (initrd !== undefined) await mustExist(initrd, 'initrd');
  const bios = c.bios === undefined || c.bios === 'builtin' ? 'builtin' : resolve(c.bios);
  if (bios !== 'builtin') await mustExist(bios, 'bios');
  if (c.init !== undefined && rootDisk === undefined) {
    throw new VisorError('InvalidConfig', `machine config: init: needs an image with a root disk (debian)${c.image ? `; '${c.image}' has none` : ''}`);
  }
  const disks = (c.disks ?? []).map((d) => ({ ...d, path: resolve(d.path) }));
  if (rootDisk !== undefined) {
    // The root disk is vda: the initramfs mounts it and hands PID 1 to its init.
    disks.unshift({ path: rootDisk, format: 'qcow2' as const, readOnly: false });
    append = `${append ?? DEFAULT_APPEND} ${ROOT_ARG}=/dev/vda`;
    if (c.init === 'systemd') append = `${append} ${ROOTINIT_ARG}=${SYSTEMD_INIT}`;
  }
  for (const [i, d] of disks.entries()) {
    await mustExist(d.path, `disks.${i}.path`);
    const st = await stat(d.path);
    if (!st.isFile() && !st.isBlockDevice()) throw new VisorError('InvalidConfig', `machine config: disks.${i}.path: '${d.path}' is ${st.isDirectory() ? 'a directory' : 'not a file'}, not a disk image`);
  }
  const r: ResolvedConfig = {
    name: c.name ?? 'vm',
    kernel,
    append: append ?? DEFAULT_APPEND,
    bios,
    memoryMiB: c.memoryMiB ?? DEFAULT_MEMORY_MIB,
    disks: disks.map((d) => ({ path: d.path, ...(d.format ? { format: d.format } : {}), readOnly: d.readOnly ?? false })),
    // A named machine keeps its MAC across runs; unnamed ones would all share the MAC of
    // the default name, and two of them on one switch could not reach each other.
    // A second NIC of a named machine gets its own address too.
    nets: (c.nets ?? []).map((n, i) => ({ ...resolveNet(n), mac: formatMac(c.name === undefined ? randomMac() : stableMac(i === 0 ? c.name : `${c.name}#${i}`)) })),
    rng: c.rng ?? true,
    deterministic: c.deterministic ?? false,
    accel: c.accel ?? defaultAccel(),
  };
  if (initrd !== undefined) r.initrd = initrd;
  if (c.balloon) r.balloon = true;
  if (c.diskLimits && (c.diskLimits.iops !== undefined || c.diskLimits.bytesPerSec !== undefined)) r.diskLimits = { ...c.diskLimits };
  if (c.vsock) r.vsock = { cid: c.vsock.cid ?? 3, path: resolve(c.vsock.path) };
  r.console = c.console ?? 'serial';
  r.agent = c.agent ?? fromImage;
  if (r.console === 'virtio' && !r.append.split(/\s+/).includes(VIRTIO_CONSOLE_ARG)) r.append = `${r.append} ${VIRTIO_CONSOLE_ARG}`.trim();
  if (c.stdio === 'virtio') {
    r.stdio = 'virtio';
    if (!r.append.split(/\s+/).includes(VIRTIO_STDIO_ARG)) r.append = `${r.append} ${VIRTIO_STDIO_ARG}`.trim();
  }
  // visor's init runs its DHCP client when told a DHCP server is there (docs/guest-init.md).
  if (r.nets.some((n) => 'user' in n) && !/(^|\s)visor\.(ip|dhcp)=/.test(r.append)) r.append = `${r.append} ${DHCP_ARG}`.trim();
  if (virtioSlots(r) > VIRTIO_SLOTS) {
    throw new VisorError('InvalidConfig', 'machine config: disks, nets, rng, balloon, vsock and the console/agent need more than the 8 virtio slots (agent: false frees one)');
  }
  return r;
}
