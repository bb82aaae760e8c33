/**
 * Loading kernel modules on demand in the guest, as udev and kmod do on a full system, but in
 * a few lines of busybox shell.
 *
 * Why: loading every module the board might need costs the guest more than the boot itself.
 * Measured with QEMU TCG and `-icount shift=0` (one nanosecond of guest time per instruction)
 * on the Debian image: the kernel reaches /init after 0.81 G instructions, and the eager
 * module loading that followed took 2.7 G more before `true` could run (ext4 alone 1.03 G,
 * crc32c 0.21 G, virtio_net with failover 0.31 G: RISC-V module relocation is costly). A
 * machine with no disk never needs ext4.
 *
 * So the image carries two tables beside the modules, computed by the builder from modinfo:
 * - `visor.alias`: `PATTERN MODULE` per line, every `alias=` of every shipped module
 *   (`virtio:d00000002v*` → virtio_blk, `fs-ext4` → ext4, `net-pf-40` → vsock);
 * - `visor.deps`: `MODULE SEQUENCE...` per line, the module and everything it needs in load
 *   order (the same order `visor.order` gives the whole set).
 * and `/lib/visor/modprobe`, which the kernel runs for request_module() (init points
 * /proc/sys/kernel/modprobe at it: `mount -t ext4` loads ext4, a vsock socket loads vsock)
 * and which init runs once per virtio device present (coldplug, by its modalias).
 */
import type { ModuleInfo } from './modinfo.js';
import { moduleLoadOrder } from './modinfo.js';

export const MODALIAS_FILE = 'visor.alias';
export const MODDEPS_FILE = 'visor.deps';
/** Path in the initramfs (no leading slash, as the cpio entries spell paths). */
export const MODPROBE_PATH = 'lib/visor/modprobe';
/** Filesystems busybox `mount` tries when no -t is given (it reads /etc/filesystems first). */
export const ETC_FILESYSTEMS = 'ext4\n';

export interface ModuleTables {
  alias: string;
  deps: string;
}

/** The two tables for the modules in `order` (the builder's full load order). */
export function moduleTables(order: string[], available: Map<string, ModuleInfo>, builtin: Set<string>): ModuleTables {
  const alias: string[] = [];
  const deps: string[] = [];
  for (const name of order) {
    const info = available.get(name);
    if (!info) continue;
    for (const a of info.aliases) {
      // A pattern is one shell word: modinfo aliases never hold blanks, but be sure.
      if (/^\S+$/.test(a)) alias.push(`${a} ${name}`);
    }
    deps.push(`${name} ${moduleLoadOrder([name], available, builtin).order.join(' ')}`);
  }
  return { alias: alias.join('\n') + '\n', deps: deps.join('\n') + '\n' };
}

/**
 * The modprobe script. Options are accepted and ignored except -q (the kernel passes
 * `-q -- NAME`). Exit status 0 when the module is loaded (or already was), 1 otherwise.
 * VISOR_MODDIR and VISOR_SYSMODULE exist for the host-side test only.
 */
export const MODPROBE_SCRIPT = `#!/bin/sh
# visor's modprobe (src/images/modprobe.ts): resolves a module name or alias through
# visor.alias, then insmods the module's load sequence from visor.deps.
d=\${VISOR_MODDIR:-/lib/modules/$(uname -r)}
sysmod=\${VISOR_SYSMODULE:-/sys/module}
quiet=
while [ $# -gt 0 ]; do
  case "$1" in
    -q) quiet=1; shift ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
want=$1
[ -n "$want" ] || { echo "usage: modprobe [-q] NAME|ALIAS" >&2; exit 1; }
name=
while read -r pat mod; do
  case "$want" in $pat) name=$mod; break ;; esac
done < "$d/${MODALIAS_FILE}"
[ -n "$name" ] || name=$(echo "$want" | tr - _)
line=$(grep "^$name " "$d/${MODDEPS_FILE}")
if [ -z "$line" ]; then
  [ -n "$quiet" ] || echo "modprobe: no module $want in this image" >&2
  exit 1
fi
set -- $line
shift
for m in "$@"; do
  [ -d "$sysmod/$m" ] && continue
  insmod "$d/$m.ko" || [ -d "$sysmod/$m" ] || { echo "modprobe: cannot load $m (for $want)" >&2; exit 1; }
done
exit 0
`;
