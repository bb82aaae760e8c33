/**
 * Machine configuration, validated once at the edge (zod): unknown keys, bad sizes and
 * missing files are errors that name the field. The core receives typed, valid values.
 */
import { access, constants } from 'node:fs/promises';
import { resolve } from 'node:path';
import { z } from 'zod';
import { VisorError } from '../base/errors.js';
import { MAX_MEMORY_MIB, MIN_MEMORY_MIB } from '../machine/ram-size.js';
import { defaultAccel } from '../host/accel.js';
import { DEFAULT_APPEND, DEFAULT_MEMORY_MIB, hasVirtioConsole, VIRTIO_CONSOLE_ARG, virtioSlotLayout, VIRTIO_SLOTS, type VmSpec } from '../vm/spec.js';

export { DEFAULT_MEMORY_MIB, VIRTIO_CONSOLE_ARG };

const DiskSchema = z.strictObject({
  path: z.string().min(1),
  format: z.enum(['raw', 'qcow2']).optional(),
  readOnly: z.boolean().optional(),
});

const NetSchema = z.strictObject({
  /** An L2 switch shared with every VM on this host that names it (`--net switch=NAME`). */
  switch: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1-64)'),
});

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
  /** Shown in errors and logs; also seeds the NICs' stable MAC addresses. */
  name: z.string().min(1).max(64).optional(),
  /** A visor image name (default 'debian' when no kernel is given). */
  image: z.string().min(1).optional(),
  kernel: z.string().min(1).optional(),
  initrd: z.string().min(1).optional(),
  /** Kernel command line. */
  append: z.string().optional(),
  /** 'builtin' (visor's SBI, default) or an M-mode firmware file. */
  bios: z.string().min(1).optional(),
  memoryMiB: z.number().int().min(MIN_MEMORY_MIB).max(MAX_MEMORY_MIB).optional(),
  disks: z.array(DiskSchema).max(7).optional(),
  nets: z.array(NetSchema).max(7).optional(),
  /** Attach a virtio-rng (default true). Deterministic machines get a seeded generator. */
  rng: z.boolean().optional(),
  /** Attach a virtio-balloon (default false): `vm.balloon(targetMiB)` asks the guest for memory. */
  balloon: z.boolean().optional(),
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
});

export type MachineConfig = z.input<typeof MachineConfigSchema>;

/** The config after validation and image resolution: what a machine worker is given (src/vm/spec.ts). */
export type ResolvedConfig = VmSpec;

export { hasVirtioConsole };


export { defaultAccel, type Accel } from '../host/accel.js';


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
export type ImageResolver = (name: string, opts: { mirror?: string }) => Promise<{ kernel: string; initrd?: string; append?: string }>;

/** virtio-mmio slots a machine uses (the board has VIRTIO_SLOTS). */
export function virtioSlots(c: Pick<ResolvedConfig, 'disks' | 'nets' | 'rng' | 'balloon' | 'vsock' | 'console' | 'agent'>): number {
  return virtioSlotLayout(c).length;
}

/** Validates, resolves the image, and checks every file the machine will open. */
export async function resolveMachineConfig(input: unknown, resolveImage?: ImageResolver): Promise<ResolvedConfig> {
  const c = parseMachineConfig(input);
  let kernel = c.kernel;
  let initrd = c.initrd;
  let append = c.append;
  const fromImage = kernel === undefined;
  if (kernel === undefined) {
    if (!resolveImage) throw new VisorError('InvalidConfig', 'machine config: kernel: required when no image resolver is available');
    const img = await resolveImage(c.image ?? 'debian', c.mirror ? { mirror: c.mirror } : {});
    kernel = img.kernel;
    initrd ??= img.initrd;
    append ??= img.append;
  } else if (c.image !== undefined) {
    throw new VisorError('InvalidConfig', 'machine config: image: give an image or a kernel, not both');
  }
  kernel = resolve(kernel);
  if (initrd !== undefined) initrd = resolve(initrd);
  await mustExist(kernel, 'kernel');
  if (initrd !== undefined) await mustExist(initrd, 'initrd');
  const bios = c.bios === undefined || c.bios === 'builtin' ? 'builtin' : resolve(c.bios);
  if (bios !== 'builtin') await mustExist(bios, 'bios');
  const disks = (c.disks ?? []).map((d) => ({ ...d, path: resolve(d.path) }));
  for (const [i, d] of disks.entries()) await mustExist(d.path, `disks.${i}.path`);
  const r: ResolvedConfig = {
    name: c.name ?? 'vm',
    kernel,
    append: append ?? DEFAULT_APPEND,
    bios,
    memoryMiB: c.memoryMiB ?? DEFAULT_MEMORY_MIB,
    disks: disks.map((d) => ({ path: d.path, ...(d.format ? { format: d.format } : {}), readOnly: d.readOnly ?? false })),
    nets: c.nets ?? [],
    rng: c.rng ?? true,
    deterministic: c.deterministic ?? false,
    accel: c.accel ?? defaultAccel(),
  };
  if (initrd !== undefined) r.initrd = initrd;
  if (c.balloon) r.balloon = true;
  if (c.vsock) r.vsock = { cid: c.vsock.cid ?? 3, path: resolve(c.vsock.path) };
  r.console = c.console ?? 'serial';
  r.agent = c.agent ?? fromImage;
  if (r.console === 'virtio' && !r.append.split(/\s+/).includes(VIRTIO_CONSOLE_ARG)) r.append = `${r.append} ${VIRTIO_CONSOLE_ARG}`.trim();
  if (virtioSlots(r) > VIRTIO_SLOTS) {
    throw new VisorError('InvalidConfig', 'machine config: disks, nets, rng, balloon, vsock and the console/agent need more than the 8 virtio slots (agent: false frees one)');
  }
  return r;
}
