/**
 * Boot snapshots: an image's machine saved once at the point its /init waits for the run's
 * arguments (docs/guest-init.md "Boot snapshots"), restored by later runs instead of booting.
 *
 * A run of a visor image spends most of its time before its command starts: the kernel's
 * boot and the drivers the initramfs loads, the same work on every run of one image and one
 * machine shape. With `visor.bootwait=1` on its command line, visor's /init stops right after
 * loading the drivers (nothing of the run decided, no disk written yet: the root is not even
 * mounted), prints BOOT_WAIT_MARKER and reads one line, VISOR_ARGS, from the console: the
 * time, entropy and the run's own arguments (its command). The first run of a shape saves the
 * machine there; each later run restores that file, on a fresh overlay of the same base disk
 * (which holds what the saved machine's disk held: RestoreOptions.disks checks it), and sends
 * its own line.
 *
 * What the snapshot must not leak from one run to the next is handled by the line: the clock
 * stood still in the file (`date -s` from the host's time), every restore starts from one
 * random state (the host's entropy is credited and the kernel's CRNG reseeded before anything
 * draws from it), and the MAC address is the saved one (so a boot snapshot serves only
 * machines alone on a private user network: a named network would see two machines with one
 * address).
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BOOT_ARGS_TAG, BOOT_WAIT_ARG } from '../guest/boot-protocol.js';
import { VISOR_VERSION } from '../host/snapshot/meta.js';
import type { MachineConfig } from './config.js';

/** Bumped when what a boot snapshot's machine is waiting for changes (the VISOR_ARGS line). */
const BOOT_SNAPSHOT_FORMAT = 1;
/** Boot snapshots kept per image (one per machine shape used; the oldest go first). */
const KEEP_PER_IMAGE = 4;
/** The longest VISOR_ARGS line sent (the guest reads it through the tty's line discipline, 4095 bytes at most). */
export const MAX_ARGS_LINE = 3800;
const FILE_PREFIX = 'boot-';
const FILE_SUFFIX = '.snap';

export interface BootSnapshotImage {
  /** The image's directory in the cache: its boot snapshots live there and go with it. */
  dir: string;
  kernel: string;
  initrd: string;
  rootfs?: string;
}

async function fileId(p: string): Promise<string> {
  const s = await stat(p);
  return `${p}:${s.size}:${s.mtimeMs}`;
}

/**
 * The shape of a machine as far as its saved boot depends on it: everything in the config
 * but the disks' paths (each run has its own overlay), the NICs' forwards and firewall (set
 * at restore) and the tier (a restore picks its own).
 */
function shapeOf(config: MachineConfig): unknown {
  const { disks, nets, accel: _accel, ...rest } = config;
  return {
    ...rest,
    disks: (disks ?? []).map((d) => ({ format: d.format ?? 'raw', readOnly: d.readOnly ?? false })),
    nets: (nets ?? []).map((n) => ('user' in n ? { user: n.user } : n)),
  };
}

/** Where the boot snapshot of this machine (config with bootWaitAppend) on this image is kept. */
export async function bootSnapshotPath(image: BootSnapshotImage, config: MachineConfig): Promise<string> {
  const key = createHash('sha256')
    .update(JSON.stringify({
      v: BOOT_SNAPSHOT_FORMAT,
      visor: VISOR_VERSION,
      kernel: await fileId(image.kernel),
      initrd: await fileId(image.initrd),
      rootfs: image.rootfs ? await fileId(image.rootfs) : null,
      shape: shapeOf(config),
    }))
    .digest('hex')
    .slice(0, 24);
  return join(image.dir, `${FILE_PREFIX}${key}${FILE_SUFFIX}`);
}

/** The command line of a machine that waits for its run's arguments. */
export function bootWaitAppend(append: string): string {
  return `${append} ${BOOT_WAIT_ARG}=1`;
}

/**
 * The line a waiting /init reads: the host's time (whole seconds), 32 bytes of entropy in hex
 * and this run's kernel-style arguments (`visor.cmd=…`). Undefined when the arguments would
 * not fit the line (the run then boots with them on the command line).
 */
export function bootArgsLine(args: readonly string[], now = Date.now(), entropy: Uint8Array = randomBytes(32)): string | undefined {
  if (args.some((a) => /\s/.test(a) || a === '')) throw new TypeError('bootArgsLine: arguments are single words');
  const line = [BOOT_ARGS_TAG, String(Math.floor(now / 1000)), Buffer.from(entropy).toString('hex'), ...args].join(' ');
  return line.length <= MAX_ARGS_LINE ? `${line}\n` : undefined;
}

/** Drops the image's older boot snapshots beyond KEEP_PER_IMAGE (by age), keeping `keep`. */
export async function pruneBootSnapshots(dir: string, keep: string): Promise<void> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.startsWith(FILE_PREFIX) && n.endsWith(FILE_SUFFIX));
  } catch {
    return;
  }
  const aged = await Promise.all(names.map(async (n) => ({ path: join(dir, n), at: (await stat(join(dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })));
  aged.sort((a, b) => b.at - a.at);
  const old = aged.filter((f) => f.path !== keep).slice(KEEP_PER_IMAGE - 1);
  await Promise.all(old.map((f) => rm(f.path, { force: true })));
}
