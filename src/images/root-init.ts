/**
 * The files visor puts on a Debian root filesystem: its init (PID 1 after the initramfs
 * switches root, docs/guest-init.md "Debian images"), the second-stage configure script the
 * pull runs once, a DHCP hook, and the configuration a fresh system needs (hostname, fstab,
 * apt's sources). visor's plumbing runs on a static busybox in /usr/lib/visor, so init works
 * before any package is configured and whatever the user removes.
 */
import { BOOT_WAIT_ARG } from '../guest/boot-protocol.js';
import {
  AGENT_SCRIPT, ARGV_AWK, BOOT_WAIT_SH, CMD_ARG, CONSOLE_ARG, EXIT_MARKER, INIT_START_MARKER, IP_ARG, JSON_ARGV_AWK, SHUTDOWN_SCRIPT, STDIO_ARG,
  STDIO_PORTS_SH, STOPPING_FLAG, udhcpcScript,
} from './init-script.js';
import type { ExtraFile } from './rootfs.js';

export const VISOR_DIR = 'usr/lib/visor';
export const ROOT_INIT = `/${VISOR_DIR}/init`;
export const CONFIGURE_SCRIPT = `/${VISOR_DIR}/configure`;
/**
 * visor-agent (src/guest/agent): the SDK's sandbox agent on virtio-vsock, started by init when
 * the machine has a vsock device, and the boot snapshot's `--reseed`.
 */
export const AGENT_PROGRAM = `/${VISOR_DIR}/visor-agent`;
/** Busybox applets visor's init and agent use, linked in /usr/lib/visor/bin. */
const APPLETS = ['sh', 'mount', 'umount', 'mkdir', 'cat', 'sleep', 'setsid', 'cttyhack', 'sync', 'kill', 'poweroff', 'reboot', 'halt',
  'hostname', 'base64', 'awk', 'ip', 'udhcpc', 'ln', 'rm', 'chmod', 'printf', 'echo', 'grep', 'mkfifo', 'stty', 'date'];
/** Printed by the configure script before each step, for the host's progress bar. */
export const CONFIGURE_STEP = 'VISOR_CONFIGURE';

export interface RootFiles {
  /** The Debian mirror apt should use (the one the image was pulled from). */
  mirror: string;
  suite: string;
  component: string;
  /** The static busybox binary. */
  busybox: Uint8Array;
  /** Packages in install order (dependencies first), for the configure script. */
  order: string[];
  /** Required and essential packages, configured first (debootstrap's order). */
  required: string[];
  /** The static visor-agent binary (src/guest/agent-files.ts). */
  agent: Uint8Array;
}

/**
 * Hands the command (the positional parameters) to Debian's /bin/sh, which finds it on PATH.
 * This script runs under busybox ash, which runs its own applet for a command name it knows
 * (sh, ls, tar, grep...) before any file on PATH: \`visor run --image debian -- sh -c 'tar
 * ...'\` ran busybox's sh and tar, not Debian's (\`visor cp\` failed on Debian machines:
 * busybox tar has no --same-owner). \`exec\` keeps the command's status (127: not found).
 */
export const DEBIAN_COMMAND = `[ -x /bin/sh ] && set -- /bin/sh -c 'exec "$@"' visor-cmd "$@"`;

/** PID 1 on the Debian root: the contract of docs/guest-init.md, on a real userland. */
export function rootInitScript(): string {
  const v = `/${VISOR_DIR}`;
  return `#!${v}/busybox sh
# visor init for Debian images (docs/guest-init.md). visor's plumbing uses ${v}/bin (busybox);
# what the user runs sees Debian's PATH.
export PATH=${v}/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux LANG=C.UTF-8
USER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${v}/bin
# The initramfs moved /proc, /sys and /dev here; systemd-less boots without it mount them.
mounted() { grep -qs " $1 " /proc/mounts; }
for fs in proc:/proc sysfs:/sys devtmpfs:/dev tmpfs:/run; do
  mounted "\${fs#*:}" || mount -t "\${fs%%:*}" "\${fs%%:*}" "\${fs#*:}" 2>/dev/null
done
mkdir -p /dev/pts /dev/shm /run/lock
mounted /dev/pts || mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm

cmd=
ip=
con=
on_hvc=
stdio=
bootwait=
root_args() {
  for arg in "$@"; do
    case "$arg" in
      ${BOOT_WAIT_ARG}=1) bootwait=1 ;;
      ${CMD_ARG}=*) cmd="\${arg#${CMD_ARG}=}" ;;
      ${STDIO_ARG}=*) stdio="\${arg#${STDIO_ARG}=}" ;;
      ${IP_ARG}=*) ip="\${arg#${IP_ARG}=}" ;;
      ${CONSOLE_ARG}=*) con="\${arg#${CONSOLE_ARG}=}" ;;
    esac
  done
}
root_args $(cat /proc/cmdline)
[ -z "$bootwait" ] && echo ${INIT_START_MARKER}
[ -r /etc/hostname ] && hostname "$(cat /etc/hostname)"

# Modules: the initramfs loaded the drivers of the devices present; later requests (a socket
# family, a filesystem) go to visor's modprobe, copied beside this script.
[ -x ${v}/modprobe ] && echo ${v}/modprobe > /proc/sys/kernel/modprobe

VISOR_LIB=${v} sh ${v}/agent.sh </dev/null >/dev/null 2>&1 &
# visor-agent: the SDK's sandboxes on virtio-vsock, only with a vsock device (ID 19), as in the initramfs.
for d in /sys/bus/virtio/devices/*/device; do
  if [ -x ${AGENT_PROGRAM} ] && [ "$(cat "$d" 2>/dev/null)" = 0x0013 ]; then
    ${AGENT_PROGRAM} </dev/null >/dev/null 2>&1 &
    break
  fi
done

${BOOT_WAIT_SH}
# ${BOOT_WAIT_ARG}=1: the boot snapshot's point (docs/guest-init.md): everything above reads the
# root, still read-only; nothing of the run (its command, console, network) is decided yet.
if [ -n "$bootwait" ]; then
  boot_wait ${AGENT_PROGRAM} && root_args $VISOR_ARGS
  echo ${INIT_START_MARKER}
fi
mount -o remount,rw / 2>/dev/null
[ -e /etc/mtab ] || ln -s ../proc/self/mounts /etc/mtab

case "$con" in
  hvc[0-9]*)
    i=0
    while [ ! -c "/dev/$con" ] && [ "$i" -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
    if [ -c "/dev/$con" ]; then exec </dev/$con >/dev/$con 2>&1; on_hvc=1
    else echo "visor-init: /dev/$con did not appear; staying on the serial console" >&2; fi ;;
esac

ip link set lo up 2>/dev/null
if [ -n "$ip" ]; then
  saved_ifs=$IFS; IFS=,; set -- $ip; IFS=$saved_ifs
  if ip link set eth0 up && ip addr add "$1" dev eth0; then
    [ -n "$2" ] && ip route add default via "$2"
    [ -n "$3" ] && echo "nameserver $3" > /etc/resolv.conf
  fi
elif [ -e /sys/class/net/eth0 ]; then
  # DHCP (visor's user-mode network answers from 10.0.2.2): a few quick tries, then on
  # without an address rather than hang the boot.
  ip link set eth0 up
  udhcpc -i eth0 -q -n -t 4 -T 1 -A 1 -s ${v}/udhcpc.script >/dev/null 2>&1 ||
    echo "visor-init: no DHCP answer on eth0; networking is down" >&2
fi

${STDIO_PORTS_SH}
export PATH=$USER_PATH
if [ -n "$cmd" ]; then
  echo 1 > /proc/sys/kernel/printk
  status=127
  if echo "$cmd" | base64 -d > /run/visor-cmd.json && awk -f ${v}/json-argv.awk /run/visor-cmd.json > /run/visor-argv.sh; then
    . /run/visor-argv.sh
    if [ $# -gt 0 ]; then
      cd /root
      ${DEBIAN_COMMAND}
      if [ "$stdio" = virtio ]; then run_on_ports "$@"; else "$@"; fi
      status=$?
    else
      say_err "visor-init: visor.cmd is an empty command"
    fi
  else
    say_err "visor-init: cannot decode visor.cmd"
  fi
  [ -e ${STOPPING_FLAG} ] && while :; do sleep 3600; done
  sync
  printf '\\n${EXIT_MARKER}=%d\\n' "$status"
else
  echo "visor: Debian; 'poweroff' (or exit) stops the machine"
  trap 'sync; umount -a -r 2>/dev/null; poweroff -f' USR1 USR2
  trap 'sync; umount -a -r 2>/dev/null; reboot -f' TERM
  if [ "$on_hvc" = 1 ]; then
    setsid -c /bin/bash -l <>"/dev/$con" &
  else
    setsid cttyhack /bin/bash -l </dev/console &
  fi
  shell=$!
  while kill -0 "$shell" 2>/dev/null; do wait "$shell"; done
  trap - USR1 USR2 TERM
  [ -e ${STOPPING_FLAG} ] && while :; do sleep 3600; done
  sync
fi
umount -a -r 2>/dev/null
sync
poweroff -f
while :; do sleep 3600; done
`;
}

/** The Debian root init's udhcpc hook (init-script.ts udhcpcScript), on visor's busybox. */
export const UDHCPC_SCRIPT = udhcpcScript(`#!/${VISOR_DIR}/busybox sh
PATH=/${VISOR_DIR}/bin`);

/** \`poweroff\` etc. for the user: systemd's when it runs, else signal visor's init. */
function powerWrapper(action: 'poweroff' | 'reboot' | 'halt'): string {
  return `#!/bin/sh
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then exec systemctl ${action} "$@"; fi
exec /${VISOR_DIR}/busybox ${action} "$@"
`;
}

/**
 * dpkg-maintscript-helper for the configure run: on a fresh install (preinst `install` or
 * postinst `configure` with no old version) each of its conffile and symlink commands is a
 * no-op (every one acts only when upgrading from a version), yet each call costs a shell and
 * a dpkg process, seconds in an emulated guest (debian-archive-keyring's preinst makes 12).
 * Anything else goes to the real helper. Removed when the configure run ends.
 */
export const MAINTSCRIPT_HELPER_SHIM = `#!/bin/sh
fresh() {
  while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
  [ $# -gt 1 ] || return 1
  shift
  case "$1" in install|configure) [ -z "$2" ] ;; *) return 1 ;; esac
}
case "$1" in
  rm_conffile|mv_conffile|symlink_to_dir|dir_to_symlink) fresh "$@" && exit 0 ;;
esac
exec "\${VISOR_REAL_HELPER:-/usr/bin/dpkg-maintscript-helper}" "$@"
`;

/**
 * deb-systemd-helper (perl: seconds to start in an emulated guest) for the configure run: the
 * two calls dh_installsystemd's postinst snippet makes before \`enable\` are answered here when
 * their answer on a fresh system is certain, exactly as the real helper would give it:
 * \`unmask U\` does nothing when /etc/systemd/system/U does not exist and no masked-state
 * directory exists (the helper would find nothing to unmask and no directory to tidy), and
 * \`was-enabled U\` is true when U has no state file (no recorded links: the helper's "was
 * enabled" default). Anything else, any option but a leading --quiet, or a call from outside
 * dpkg goes to the real helper. Paths honour DPKG_ROOT as the helper's do.
 */
export const DEB_SYSTEMD_HELPER_SHIM = `#!/bin/sh
certain() {
  quiet=
  [ "$1" = --quiet ] && { quiet=1; shift; }
  action=$1
  shift
  case "$action" in unmask|was-enabled) [ $# -gt 0 ] || return 1 ;; *) return 1 ;; esac
  for u; do
    case "$u" in ''|-*|*/*) return 1 ;; esac
    if [ "$action" = unmask ]; then
      [ ! -e "$DPKG_ROOT/etc/systemd/system/$u" ] || return 1
    else
      [ ! -e "$DPKG_ROOT/var/lib/systemd/deb-systemd-helper-enabled/$u.dsh-also" ] || return 1
    fi
  done
  if [ "$action" = unmask ]; then
    [ ! -e "$DPKG_ROOT/var/lib/systemd/deb-systemd-helper-masked" ] &&
      [ ! -e "$DPKG_ROOT/var/lib/systemd/deb-systemd-user-helper-masked" ]
  else
    [ -n "$quiet" ] || for u; do echo enabled >&2; done
  fi
}
[ -n "$DPKG_MAINTSCRIPT_PACKAGE" ] && certain "$@" && exit 0
exec "\${VISOR_REAL_DSH:-/usr/bin/deb-systemd-helper}" "$@"
`;

/**
 * Python's byte-compiling is left out of the configure run; python compiles a module the first
 * time it is imported instead, and the run ends by importing the interpreter's start-up modules
 * and a few common ones so that \`python3\` starts fast. Safe because the .pyc files are a
 * cache, never part of a package (Debian Python Policy: they are made after installation and
 * removed by py3clean): CPython checks each one against its source's mtime and size and
 * rewrites what is missing or stale, a later install or upgrade runs the package's real
 * byte-compiling, and py3clean removes a package's pycs on removal whoever wrote them. The
 * cost moves to the first import of a module that is not precompiled (in an ephemeral \`visor
 * run\` on every run, since its overlay is discarded; in a kept machine once).
 *
 * How: \`py3compile\` (what dh_python3's postinst snippets call, through PATH) is a no-op here,
 * and each /usr/lib/python3.X/py_compile.py (which python3.X's and python3.X-minimal's
 * postinsts run by full path over the whole standard library) is diverted with a local
 * dpkg-divert to this stub for the run, then the diversion is removed (the real file renamed
 * back, untouched). Run as a script the stub does nothing; imported, it is the real module.
 */
export const PY_COMPILE_STUB = `# visor: byte-compiling is skipped while the image is configured (see /usr/lib/visor/configure)
if __name__ == '__main__':
    raise SystemExit(0)
with open(__file__ + '.visor-configure', 'rb') as _real:
    exec(compile(_real.read(), __file__ + '.visor-configure', 'exec'))
`;

/**
 * Shell for the configure script (which defines \`fail\`): divert each py_compile.py to the
 * stub, and undo it. Paths under $DPKG_ROOT (empty in the guest; a test's directory), as
 * dpkg-divert takes them.
 */
export const PYTHON_COMPILE_OFF = `for f in "$DPKG_ROOT"/usr/lib/python3.*/py_compile.py; do
  [ -f "$f" ] || continue
  p=\${f#"$DPKG_ROOT"}
  dpkg-divert --quiet --local --rename --divert "$p.visor-configure" --add "$p" || fail "dpkg-divert $p"
  cat > "$f" <<'STUB'
${PY_COMPILE_STUB}STUB
done
`;
export const PYTHON_COMPILE_ON = `for f in "$DPKG_ROOT"/usr/lib/python3.*/py_compile.py.visor-configure; do
  [ -f "$f" ] || continue
  p=\${f#"$DPKG_ROOT"}
  rm -f "\${f%.visor-configure}"
  dpkg-divert --quiet --local --rename --divert "$p" --remove "\${p%.visor-configure}" || fail "dpkg-divert --remove \${p%.visor-configure}"
done
`;

/** Imported once at the end of the configure run, so these are byte-compiled in the base. */
export const PYTHON_WARM_IMPORTS = ['argparse', 'dataclasses', 'datetime', 'json', 'logging', 'pathlib', 're', 'shutil', 'subprocess', 'tempfile', 'typing'];

/**
 * The second stage, run once in a guest during the pull (debootstrap's second stage on a
 * target whose packages are unpacked): preinst scripts, then the required packages, then
 * everything, with services kept from starting. Any failure names the package and ends with
 * a non-zero status, which the host reports.
 *
 * Made for speed in an emulated guest, without changing what ends up configured: the root
 * filesystem without write barriers (each dpkg database update is an fsync, a host fsync
 * through virtio-blk; the host flushes the disk when the guest is done, and a failed build is
 * discarded), dpkg without its own fsyncs, the maintscript-helper no-ops and deb-systemd-helper's
 * certain answers skipped, and python's byte-compiling left to first imports (PY_COMPILE_STUB).
 */
export function configureScript(files: RootFiles): string {
  return `#!/bin/sh
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C.UTF-8 LANG=C.UTF-8
export PATH=/run/visor-configure:/usr/sbin:/usr/bin:/sbin:/bin
fail() { echo "${CONFIGURE_STEP} FAILED $1"; exit 1; }
mount -o remount,barrier=0 / 2>/dev/null
mkdir -p /run/visor-configure
cat > /run/visor-configure/dpkg-maintscript-helper <<'SHIM'
${MAINTSCRIPT_HELPER_SHIM}SHIM
cat > /run/visor-configure/deb-systemd-helper <<'SHIM'
${DEB_SYSTEMD_HELPER_SHIM}SHIM
printf '#!/bin/sh\\nexit 0\\n' > /run/visor-configure/py3compile
chmod 755 /run/visor-configure/*
echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/visor-configure
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
ldconfig || fail ldconfig
${PYTHON_COMPILE_OFF}arch=$(dpkg --print-architecture)
for p in ${files.order.join(' ')}; do
  f=/var/lib/dpkg/info/$p.preinst
  if [ -x "$f" ]; then
    echo "${CONFIGURE_STEP} preinst $p"
    DPKG_MAINTSCRIPT_PACKAGE=$p DPKG_MAINTSCRIPT_ARCH=$arch DPKG_MAINTSCRIPT_NAME=preinst "$f" install </dev/null || fail "preinst:$p"
  fi
done
echo "${CONFIGURE_STEP} required"
dpkg --configure --force-configure-any --force-depends ${files.required.join(' ')} </dev/null || fail "dpkg --configure (required packages)"
echo "${CONFIGURE_STEP} all"
dpkg --configure -a </dev/null || fail "dpkg --configure -a"
${PYTHON_COMPILE_ON}if command -v python3 >/dev/null; then
  echo "${CONFIGURE_STEP} python-warm"
  python3 -c 'import ${PYTHON_WARM_IMPORTS.join(', ')}' </dev/null || fail "python3 (byte-compiling its start-up modules)"
fi
echo "${CONFIGURE_STEP} audit"
dpkg --audit >/run/audit 2>&1; if [ -s /run/audit ]; then cat /run/audit; fail "dpkg --audit"; fi
rm -f /usr/sbin/policy-rc.d /etc/dpkg/dpkg.cfg.d/visor-configure
rm -rf /run/visor-configure
passwd -d root >/dev/null 2>&1 || fail "passwd -d root"
ldconfig
rm -f /var/cache/debconf/*-old /var/lib/dpkg/*-old
echo "${CONFIGURE_STEP} done"
sync
`;
}

/** Everything visor adds to the tree besides the packages. */
export function rootFiles(f: RootFiles): ExtraFile[] {
  const v = VISOR_DIR;
  return [
    { path: `${v}/busybox`, data: f.busybox, mode: 0o755 },
    { path: `${v}/bin`, kind: 'dir' },
    ...APPLETS.map((a): ExtraFile => ({ path: `${v}/bin/${a}`, kind: 'symlink', target: '../busybox' })),
    ...(['poweroff', 'reboot', 'halt'] as const).map((a): ExtraFile => ({ path: `usr/local/sbin/${a}`, data: powerWrapper(a), mode: 0o755 })),
    { path: `${v}/init`, data: rootInitScript(), mode: 0o755 },
    { path: AGENT_PROGRAM.slice(1), data: f.agent, mode: 0o755 },
    { path: `${v}/configure`, data: configureScript(f), mode: 0o755 },
    { path: `${v}/udhcpc.script`, data: UDHCPC_SCRIPT, mode: 0o755 },
    { path: `${v}/agent.sh`, data: AGENT_SCRIPT, mode: 0o755 },
    { path: `${v}/shutdown.sh`, data: SHUTDOWN_SCRIPT, mode: 0o644 },
    { path: `${v}/${ARGV_AWK.split('/').pop()}`, data: JSON_ARGV_AWK, mode: 0o644 },
    { path: 'etc/hostname', data: 'visor\n' },
    { path: 'etc/hosts', data: '127.0.0.1\tlocalhost\n127.0.1.1\tvisor\n::1\tlocalhost ip6-localhost ip6-loopback\n' },
    // QEMU's user-mode DNS address (DESIGN.md); DHCP rewrites it with what the network says.
    { path: 'etc/resolv.conf', data: 'nameserver 10.0.2.3\n' },
    { path: 'etc/fstab', data: '# <file system> <mount point> <type> <options> <dump> <pass>\n/dev/vda / ext4 rw,errors=remount-ro 0 1\n' },
    { path: 'etc/apt/sources.list.d/debian.sources', data: `Types: deb\nURIs: ${f.mirror}\nSuites: ${f.suite}\nComponents: ${f.component}\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n` },
    // apt in a small guest: no recommends (as the image itself was built), no translations.
    { path: 'etc/apt/apt.conf.d/90visor', data: 'APT::Install-Recommends "false";\nAcquire::Languages "none";\n' },
    // Until mawk's postinst sets up the alternative (debootstrap does the same).
    { path: 'usr/bin/awk', kind: 'symlink', target: 'mawk' },
    // systemd: a root shell on the serial console without a password prompt.
    { path: 'etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf', data: '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 - $TERM\n' },
    { path: 'etc/machine-id', data: '' },
  ];
}
