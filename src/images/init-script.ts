/**
 * visor's /init for the initramfs: a busybox shell script. The host contract is in
 * docs/guest-init.md; the constants below are the spelling both sides rely on.
 */

import { AGENT_BIN } from '../guest/agent-files.js';
import { AGENT_PORT_NAME, AGENT_PROTOCOL, AGENT_REQUEST, BOOT_ARGS_TAG, BOOT_WAIT_ARG, BOOT_WAIT_MARKER, CMD_ARG, CONSOLE_ARG, DATA_PORT_NAME, EXIT_MARKER, INIT_START_MARKER, IP_ARG } from '../guest/boot-protocol.js';
import { MODPROBE_PATH } from './modprobe.js';

// The protocol's spelling lives in guest/boot-protocol.ts; re-exported for the image's users.
export { AGENT_PORT_NAME, AGENT_PROTOCOL, CMD_ARG, CONSOLE_ARG, DATA_PORT_NAME, EXIT_MARKER, INIT_START_MARKER, IP_ARG };

/** `visor.dhcp=1`: a DHCP server is on eth0's network (visor's user network): ask it. */
export const DHCP_ARG = 'visor.dhcp';
/** Where the udhcpc hook keeps the lease it configured (udhcpcScript). */
export const DHCP_LEASE_FILE = '/run/visor-dhcp.lease';

/**
 * busybox udhcpc's hook (udhcpc(8) "-s"), after `header` (its #! line and PATH): configures
 * eth0 from the lease (ip, mask as a prefix, router, dns). init brings eth0 up before udhcpc.
 * Each `ip` is a process (busybox's fork and exec on visor's CPU), so it runs as few as it
 * can: it remembers the lease it configured, a deconfig before any (udhcpc's start) and a
 * renewal of the same lease change nothing, and only an address it set is flushed: 2 `ip` on a
 * boot instead of 5. (A renewal once flushed and re-added the address, which cut the
 * connections made on it meanwhile.) Measured in the Debian root: udhcpc from no lease to
 * bound ~260 ms of guest time, 290-350 ms with the old hook; most of it is the exchange itself.
 */
export function udhcpcScript(header: string, leaseFile = DHCP_LEASE_FILE): string {
  return `${header}
# visor: configure eth0 from udhcpc's environment (ip, mask as a prefix, router, dns).
lease=${leaseFile}
have=
[ -s "$lease" ] && read -r have < "$lease"
case "$1" in
  deconfig)
    if [ -n "$have" ]; then ip -4 addr flush dev "$interface"; : > "$lease"; fi ;;
  bound|renew)
    want="$ip/\${mask:-24} $router"
    if [ "$want" != "$have" ]; then
      [ -n "$have" ] && ip -4 addr flush dev "$interface"
      ip addr add "$ip/\${mask:-24}" dev "$interface"
      for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
      echo "$want" > "$lease"
    fi
    if [ -n "$dns" ]; then
      : > /etc/resolv.conf
      for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    fi
    ;;
esac
exit 0
`;
}

/** The initramfs init's hook (written to /run/visor-udhcpc.sh; busybox applets on PATH). */
export const UDHCPC_SCRIPT = udhcpcScript('#!/bin/sh');
/**
 * `visor.stdio=virtio`: the command's stdin, stdout and stderr are the virtio-console ports
 * named below (byte-exact, stdout and stderr apart, end of input reaches the command).
 */
export const STDIO_ARG = 'visor.stdio';
export const STDIN_PORT_NAME = 'org.visor.stdin';
export const STDOUT_PORT_NAME = 'org.visor.stdout';
export const STDERR_PORT_NAME = 'org.visor.stderr';
/** `visor.root=/dev/vda`: mount that ext4 disk and switch to it (Debian images, docs/guest-init.md). */
export const ROOT_ARG = 'visor.root';
/** `visor.init=PATH`: the root filesystem's PID 1 (default visor's, /usr/lib/visor/init; `--init systemd`). */
export const ROOTINIT_ARG = 'visor.init';
export const DEFAULT_ROOT_INIT = '/usr/lib/visor/init';

export const AGENT_SH = 'lib/visor/agent.sh';
export const SHUTDOWN_SH = 'lib/visor/shutdown.sh';
/** poweroff, halt and reboot for the shell: linked over busybox's applets by init. */
export const POWER_SH = 'lib/visor/power.sh';
/** Created by a graceful shutdown before it signals everything: init then leaves the poweroff to it. */
export const STOPPING_FLAG = '/run/visor-stopping';

/**
 * The module load order (one module name a line), in /lib/modules/<release>/ beside the
 * decompressed modules, `<name>.ko`.
 */
export const MODULE_ORDER_FILE = 'visor.order';
export const ARGV_AWK = 'lib/visor/json-argv.awk';

/** `visor.cmd=` value for an argv: base64 of its JSON (base64 keeps the kernel's parser out of quoting). */
export function encodeCommand(argv: string[]): string {
  return `${CMD_ARG}=${Buffer.from(JSON.stringify(argv), 'utf8').toString('base64')}`;
}

/**
 * Turns a JSON array of strings (what `visor.cmd` decodes to) into one shell line,
 * `set -- 'a' 'b'`, each element single-quoted. Written for busybox awk (POSIX awk, no
 * gawk extensions); JSON.stringify only emits \uXXXX for control characters, everything
 * else arrives as raw UTF-8 bytes and passes through untouched.
 */
export const JSON_ARGV_AWK = String.raw`# visor: JSON array of strings -> "set -- 'a' 'b' ..." (docs/guest-init.md)
function fail(msg) { print "visor-init: bad visor.cmd: " msg > "/dev/stderr"; bad = 1; exit 1 }
function ws() { while (i <= n && index(" \t\r\n", substr(s, i, 1)) > 0) i++ }
function hex4(h,   k, d, r) {
  r = 0
  for (k = 1; k <= 4; k++) {
    d = index("0123456789abcdef", tolower(substr(h, k, 1)))
    if (d == 0) fail("bad \\u escape")
    r = r * 16 + d - 1
  }
  return r
}
function utf8(cp) {
  if (cp == 0) fail("NUL in argument")
  if (cp < 128) return sprintf("%c", cp)
  if (cp < 2048) return sprintf("%c%c", 192 + int(cp / 64), 128 + cp % 64)
  return sprintf("%c%c%c", 224 + int(cp / 4096), 128 + int(cp / 64) % 64, 128 + cp % 64)
}
{ s = (NR > 1 ? s "\n" : "") $0 }
END {
  if (bad) exit 1
  n = length(s); i = 1; out = "set --"
  ws(); if (substr(s, i, 1) != "[") fail("not a JSON array"); i++
  ws()
  if (substr(s, i, 1) == "]") i++
  else for (;;) {
    ws(); if (substr(s, i, 1) != "\"") fail("arguments must be strings"); i++
    v = ""
    for (;;) {
      if (i > n) fail("unterminated string")
      c = substr(s, i, 1); i++
      if (c == "\"") break
      if (c == "\\") {
        e = substr(s, i, 1); i++
        if (e == "n") c = "\n"
        else if (e == "t") c = "\t"
        else if (e == "r") c = "\r"
        else if (e == "b") c = "\b"
        else if (e == "f") c = "\f"
        else if (e == "u") { c = utf8(hex4(substr(s, i, 4))); i += 4 }
        else if (e == "\"" || e == "\\" || e == "/") c = e
        else fail("bad escape")
      }
      if (c == "'") c = "'\\''"
      v = v c
    }
    out = out " '" v "'"
    ws(); c = substr(s, i, 1); i++
    if (c == "]") break
    if (c != ",") fail("expected , or ]")
  }
  ws(); if (i <= n) fail("trailing characters")
  print out
}
`;

/**
 * The graceful shutdown (sourced by the agent on POWEROFF): every process gets SIGTERM and a
 * second to exit, then SIGKILL; file systems are synced and unmounted (or remounted read-only
 * where busy), and the machine powers off. kill -1 spares PID 1 (init) and the caller.
 */
export const SHUTDOWN_SCRIPT = `# visor: graceful shutdown (docs/guest-init.md "Agent")
: > ${STOPPING_FLAG}
kill -TERM -1 2>/dev/null
sleep 1
kill -KILL -1 2>/dev/null
sync
umount -a -r 2>/dev/null
sync
poweroff -f
`;

/**
 * `poweroff`, `halt` and `reboot` typed in the guest. BusyBox's own (without -f) signal PID 1
 * as they would BusyBox init; visor's init is a shell that runs the login shell in the
 * foreground (so the shell's children keep default signals and Ctrl-C works), and a shell
 * runs its traps only between commands. So these do the shutdown themselves: poweroff and
 * halt as the agent's graceful one (shutdown.sh), reboot after a sync. With -f they are
 * BusyBox's. Init links this script over the applets' names on PATH, and the login shell
 * gets functions (PROFILE_SCRIPT) since ash runs its applets before anything on PATH.
 */
export const POWER_SCRIPT = `#!/bin/sh
# visor: poweroff, halt, reboot (docs/guest-init.md)
act=\${VISOR_POWER_ACT:-\${0##*/}}
case " $* " in *" -f "*) exec /bin/busybox "$act" "$@" ;; esac
# Leave the terminal's session first: the shutdown ends the login shell, the session leader,
# and the kernel then hangs up its terminal, sending SIGHUP to the foreground job (this
# script) before it reached the poweroff.
# (Exported on its own line: ash does not pass a prefix assignment of exec on to the program.)
if [ -z "$VISOR_POWER_DETACHED" ]; then
  export VISOR_POWER_DETACHED=1
  exec setsid "$0" "$@"
fi
exec </dev/null >/dev/null 2>&1
if [ "$act" = reboot ]; then
  sync
  exec /bin/busybox reboot -f
fi
. /${SHUTDOWN_SH}
`;

/**
 * /etc/profile of the initramfs (the login shell reads it). Debian's busybox ash runs its own
 * applets before any file on PATH, so the poweroff, halt and reboot typed at the shell were
 * busybox's, which ask PID 1 by signal; visor's init is a script waiting for that shell, and
 * PID 1 ignores signals it has no handler for: nothing happened. These functions run visor's.
 */
export const PROFILE_SCRIPT = `# visor: the login shell's profile (docs/guest-init.md)
poweroff() { VISOR_POWER_ACT=poweroff /${POWER_SH} "$@"; }
halt() { VISOR_POWER_ACT=halt /${POWER_SH} "$@"; }
reboot() { VISOR_POWER_ACT=reboot /${POWER_SH} "$@"; }
`;

/**
 * visor's guest agent: a busybox shell loop on the virtio-console port named
 * ${AGENT_PORT_NAME}. Opening the port makes the driver send VIRTIO_CONSOLE_PORT_OPEN, which
 * is how the host knows someone listens. Requests and replies are lines:
 *
 *   host → guest      guest → host
 *   (port opened)     READY <protocol version>
 *   PING              PONG
 *   POWEROFF          OK POWEROFF, then the graceful shutdown (shutdown.sh)
 *   anything else     ERR unknown request
 *
 * `agent.sh` finds the port by name in sysfs (no udev in the initramfs), waiting for the port
 * handshake to finish; `agent.sh serve` speaks the protocol on stdin/stdout (tests run it so).
 */
export const AGENT_SCRIPT = String.raw`# visor guest agent (docs/guest-init.md "Agent")
lib=${'$'}{VISOR_LIB:-/lib/visor}
sysfs=${'$'}{VISOR_SYSFS:-/sys}

# Sets $port to the agent's device node; fails when no port has the name (yet). Builtins
# only: this may run many times while the guest boots.
agent_port() {
  for p in "$sysfs"/class/virtio-ports/*; do
    n=
    [ -r "$p/name" ] && read -r n < "$p/name"
    [ "$n" = ${AGENT_PORT_NAME} ] && { port="/dev/${'$'}{p##*/}"; return 0; }
  done
  return 1
}

serve() {
  echo "READY ${AGENT_PROTOCOL}"
  while read -r req; do
    case "$req" in
      PING) echo PONG ;;
      ${AGENT_REQUEST.poweroff}) echo "OK ${AGENT_REQUEST.poweroff}"; . "$lib/shutdown.sh"; exit 0 ;;
      *) echo "ERR unknown request" ;;
    esac
  done
}

case "$1" in
  serve) serve ;;
  port) agent_port && echo "$port" ;;
  *)
    # No virtio-console bound to its driver (probing is synchronous in loading virtio_mmio):
    # nobody to serve. Otherwise the ports follow through the control queue: wait a while.
    set -- "$sysfs"/bus/virtio/drivers/virtio_console/virtio*
    [ -e "$1" ] || exit 0
    i=0
    until agent_port && [ -c "$port" ]; do
      i=$((i + 1))
      [ "$i" -lt 300 ] || exit 0
      sleep 0.1 2>/dev/null || sleep 1
    done
    exec /bin/sh "$0" serve <>"$port" >&0 2>/dev/null
    ;;
esac
`;

/**
 * The command's session leader on a terminal (serial or hvc0): runs the command, then waits
 * until the terminal has sent everything before exiting. When a session leader exits the
 * kernel hangs up its controlling terminal, and a hangup discards output still queued for
 * the UART: a command's last lines were lost whenever the guest was busy (e.g. right after
 * loading ext4). \`stty "$(stty -g)"\` sets the settings the terminal already has, with
 * TCSADRAIN (busybox's stty), which waits for the output to drain. Ctrl-C and Ctrl-\\ reach
 * the command (the foreground process group) while this shell waits for it: the traps run
 * a handler, so the command itself keeps default signal actions.
 */
export const SESSION_WRAPPER = 'trap : INT QUIT; "$@"; st=$?; stty "$(stty -g 2>/dev/null)" 2>/dev/null; exit $st';

/**
 * The command's stdio on virtio-console ports (${STDIO_ARG}=virtio), for visor's init in the
 * initramfs and on a Debian root: \`vport\`, \`say_err\`, \`run_on_ports\`, then the wait for
 * the three ports when \$cmd is set and \$stdio is virtio (falling back to the console). Needs
 * sh, cat, mkfifo, kill and sleep.
 */
export const STDIO_PORTS_SH = `# Sets $port to the device node of the virtio-console port named $1 (no udev: sysfs).
vport() {
  for p in /sys/class/virtio-ports/*; do
    n=
    [ -r "$p/name" ] && read -r n < "$p/name"
    [ "$n" = "$1" ] && [ -c "/dev/\${p##*/}" ] && { port="/dev/\${p##*/}"; return 0; }
  done
  return 1
}

# An error of init's about the command goes where the command's stderr would.
say_err() {
  if [ -n "$err_port" ]; then echo "$1" > "$err_port"; else echo "$1" >&2; fi
}

# ${STDIO_ARG}=virtio: the command's stdio are the ports ${STDIN_PORT_NAME}, ${STDOUT_PORT_NAME}
# and ${STDERR_PORT_NAME}. A port opens once at a time, so cat relays each through a FIFO
# (the command may reopen /dev/stdin, /dev/stdout, /dev/stderr). The host ending the stdin
# port is end-of-file for the command; init waits for the output relays before reporting.
# The command's ends of the FIFOs are opened in a subshell, not here: opening a FIFO blocks
# until its relay opens the other end, and busybox ash lets a signal interrupt that open
# (EINTR, not restarted), so the SIGCHLD of this shell's own children (the stdin relay ending
# at once on an empty stdin, the agent) failed the redirection: the command never ran and
# init waited for the relays forever. The subshell has no children while it opens them.
# Should an open fail all the same, a relay still waiting in its own open gets a writer that
# closes at once (<> on a FIFO does not block), so init is never left waiting for it.
run_on_ports() {
  mkfifo /run/visor-in /run/visor-out /run/visor-err || return 127
  cat "$in_port" > /run/visor-in &
  in_relay=$!
  cat /run/visor-out > "$out_port" &
  out_relay=$!
  cat /run/visor-err > "$err_port" &
  err_relay=$!
  (exec < /run/visor-in > /run/visor-out 2> /run/visor-err && "$@")
  st=$?
  : <> /run/visor-out
  : <> /run/visor-err
  wait "$out_relay" "$err_relay"
  kill "$in_relay" 2>/dev/null
  return $st
}

err_port=
if [ -n "$cmd" ] && [ "$stdio" = virtio ]; then
  i=0
  until vport ${STDIN_PORT_NAME} && in_port=$port && vport ${STDOUT_PORT_NAME} && out_port=$port && vport ${STDERR_PORT_NAME} && err_port=$port; do
    err_port=
    i=$((i + 1))
    if [ "$i" -ge 300 ]; then
      echo "visor-init: the stdio ports did not appear; the command runs on the console" >&2
      stdio=
      break
    fi
    sleep 0.1 2>/dev/null || sleep 1
  done
fi
`;

/**
 * \`boot_wait RESEED\`: the boot snapshot's point (${BOOT_WAIT_ARG}=1, docs/guest-init.md "Boot
 * snapshots"), shared by the initramfs's init (no root disk) and the Debian root's (before
 * it remounts its root read-write): drivers loaded, nothing of the run decided, nothing
 * written. Prints ${BOOT_WAIT_MARKER}, reads the host's \`${BOOT_ARGS_TAG} <unix seconds> <hex
 * entropy> [arguments]\` line (the console echoing nothing), sets the clock (it stood still in
 * the snapshot), has RESEED (\`visor-agent --reseed\`) credit the entropy and reseed the CRNG
 * (every restore starts from one random state), and leaves the run's arguments in
 * VISOR_ARGS (exported: a later init reads them too). Fails without such a line.
 */
export const BOOT_WAIT_SH = `boot_wait() {
  reseed=$1
  stty -echo 2>/dev/null
  echo ${BOOT_WAIT_MARKER}
  line=
  while IFS= read -r line; do
    case "$line" in "${BOOT_ARGS_TAG} "*) break ;; esac
  done
  stty echo 2>/dev/null
  set -- $line
  if [ "$1" != ${BOOT_ARGS_TAG} ] || [ $# -lt 3 ]; then
    echo "visor-init: no ${BOOT_ARGS_TAG} line from the host; booting with the command line alone" >&2
    return 1
  fi
  date -s "@$2" >/dev/null 2>&1
  echo "$3" | "$reseed" --reseed 2>/dev/null || echo "$3" > /dev/urandom
  shift 3
  VISOR_ARGS="$*"
  export VISOR_ARGS
}
`;

export interface InitOptions {
  kernelRelease: string;
}

/** The /init script. Runs as PID 1 under busybox sh; must never exit (the kernel would panic). */
export function initScript(opts: InitOptions): string {
  return `#!/bin/busybox sh
# visor init, generated by visor's image builder for kernel ${opts.kernelRelease}.
# Contract with the host: docs/guest-init.md.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /root /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
for a in poweroff halt reboot; do
  for d in /bin /sbin /usr/bin /usr/sbin; do
    [ -e "$d/$a" ] && ln -sf /${POWER_SH} "$d/$a"
  done
done
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
hostname visor

cmd=
ip=
dhcp=
con=
on_hvc=
stdio=
root=
rinit=${DEFAULT_ROOT_INIT}
bootwait=
visor_args() {
  for arg in "$@"; do
    case "$arg" in
      ${ROOT_ARG}=*) root="\${arg#${ROOT_ARG}=}" ;;
      ${ROOTINIT_ARG}=*) rinit="\${arg#${ROOTINIT_ARG}=}" ;;
      ${CMD_ARG}=*) cmd="\${arg#${CMD_ARG}=}" ;;
      ${STDIO_ARG}=*) stdio="\${arg#${STDIO_ARG}=}" ;;
      ${IP_ARG}=*) ip="\${arg#${IP_ARG}=}" ;;
      ${DHCP_ARG}=1) dhcp=1 ;;
      ${CONSOLE_ARG}=*) con="\${arg#${CONSOLE_ARG}=}" ;;
      ${BOOT_WAIT_ARG}=1) bootwait=1 ;;
    esac
  done
}
visor_args $(cat /proc/cmdline)
# A boot snapshot's machine prints it once resumed with its run's arguments (below, or the
# root's init): piped input held until the marker must come after the VISOR_ARGS line.
[ -z "$bootwait" ] && echo ${INIT_START_MARKER}
${BOOT_WAIT_SH}
# Modules load on demand (src/images/modprobe.ts): the kernel runs visor's modprobe for what
# it asks for (a filesystem on mount, a socket family), and each virtio device present gets
# its driver here, by its modalias, as udev's coldplug would. No disk, no ext4.
echo /${MODPROBE_PATH} > /proc/sys/kernel/modprobe
/${MODPROBE_PATH} -q virtio_mmio
for a in /sys/bus/virtio/devices/*/modalias; do
  # A device whose driver is built into the kernel (virtio_console in Debian's) is bound already.
  [ -r "$a" ] && [ ! -e "\${a%/modalias}/driver" ] && /${MODPROBE_PATH} "$(cat "$a")"
done

if [ -n "$root" ]; then
  i=0
  while [ ! -b "$root" ] && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
  /${MODPROBE_PATH} -q ext4
fi

# ${BOOT_WAIT_ARG}=1 without a root disk: the boot snapshot's point is here (with one, the
# root's init waits instead, its root still read-only).
if [ -n "$bootwait" ] && [ -z "$root" ]; then
  boot_wait /${AGENT_BIN} && visor_args $VISOR_ARGS
  echo ${INIT_START_MARKER}
fi

# ${ROOT_ARG}=DEV: a Debian root filesystem. Mount it, move the kernel filesystems over and
# hand PID 1 to its init; the rest of this script is for the initramfs-only (tiny) image.
if [ -n "$root" ]; then
  mkdir -p /newroot
  # Read-only under a boot snapshot: the root's init saves the machine before anything is
  # written, then remounts it read-write (as it does anyway).
  rw=rw
  [ -n "$bootwait" ] && rw=ro
  if mount -t ext4 -o $rw "$root" /newroot; then
    if [ -x "/newroot$rinit" ] || [ -L "/newroot$rinit" ]; then
      for m in /dev /proc /sys; do mkdir -p "/newroot$m"; mount --move "$m" "/newroot$m"; done
      exec switch_root /newroot "$rinit"
    fi
    echo "visor-init: $root has no $rinit; staying in the initramfs" >&2
    umount /newroot
  else
    echo "visor-init: cannot mount $root (ext4); staying in the initramfs" >&2
  fi
fi

# The agent waits for its virtio-console port in the background and serves visor's requests.
/bin/sh /${AGENT_SH} </dev/null >/dev/null 2>&1 &
# visor-agent (src/guest/agent): commands, files and ptys for the SDK's Sandbox on virtio-vsock
# port 1024 (docs/sandbox.md). Only with a virtio-vsock device (ID 19; its driver loaded at
# coldplug above): without one, each of the agent's retries made the kernel run modprobe for
# the vsock address family, ~300 shell runs in its first 30 seconds.
for d in /sys/bus/virtio/devices/*/device; do
  if [ -x /${AGENT_BIN} ] && [ "$(cat "$d" 2>/dev/null)" = 0x0013 ]; then
    /${AGENT_BIN} </dev/null >/dev/null 2>&1 &
    break
  fi
done

# ${CONSOLE_ARG}=hvc0: the shell or command gets the virtio console (kernel messages stay on
# the serial console). The device node appears once the port handshake is done.
case "$con" in
  hvc[0-9]*)
    i=0
    while [ ! -c "/dev/$con" ] && [ "$i" -lt 300 ]; do
      i=$((i + 1))
      sleep 0.1 2>/dev/null || sleep 1
    done
    if [ -c "/dev/$con" ]; then
      exec </dev/$con >/dev/$con 2>&1
      on_hvc=1
    else
      echo "visor-init: /dev/$con did not appear; staying on the serial console" >&2
    fi
    ;;
  '') ;;
  *) echo "visor-init: ${CONSOLE_ARG}=$con: only hvcN is supported" >&2 ;;
esac

ip link set lo up 2>/dev/null
# ${IP_ARG}=ADDRESS/PREFIX[,GATEWAY[,DNS]]: static configuration, no DHCP.
if [ -n "$ip" ]; then
  saved_ifs=$IFS; IFS=,; set -- $ip; IFS=$saved_ifs
  if ip link set eth0 up && ip addr add "$1" dev eth0; then
    [ -n "$2" ] && ip route add default via "$2"
    [ -n "$3" ] && echo "nameserver $3" > /etc/resolv.conf
  else
    echo "visor-init: cannot configure eth0 with $ip" >&2
  fi
elif [ -n "$dhcp" ] && [ -e /sys/class/net/eth0 ]; then
  # ${DHCP_ARG}=1 only comes with a DHCP server (visor's user network), so the lease is
  # normally there in one round trip; udhcpc stays behind to renew it. Should no server
  # answer, it goes on trying in the background after 3 s rather than hold up the boot.
  cat > /run/visor-udhcpc.sh <<'VISOR_UDHCPC'
${UDHCPC_SCRIPT}VISOR_UDHCPC
  chmod +x /run/visor-udhcpc.sh
  ip link set eth0 up
  udhcpc -i eth0 -s /run/visor-udhcpc.sh -t 3 -T 1 -b -S >/dev/null 2>&1
fi

${STDIO_PORTS_SH}
if [ -n "$cmd" ]; then
  # Kernel messages would interleave with the command's output: keep only emergencies.
  echo 1 > /proc/sys/kernel/printk
  status=127
  if echo "$cmd" | base64 -d > /run/visor-cmd.json && awk -f /${ARGV_AWK} /run/visor-cmd.json > /run/visor-argv.sh; then
    . /run/visor-argv.sh
    if [ $# -gt 0 ]; then
      cd /root
      if ! command -v "$1" >/dev/null 2>&1; then
        say_err "$1: command not found"
      elif [ "$stdio" = virtio ]; then
        run_on_ports "$@"
        status=$?
      elif [ "$on_hvc" = 1 ]; then
        # Its own session with the terminal as controlling tty: Ctrl-C reaches it.
        setsid -c sh -c '${SESSION_WRAPPER}' visor-cmd "$@"
        status=$?
      else
        setsid cttyhack sh -c '${SESSION_WRAPPER}' visor-cmd "$@"
        status=$?
      fi
    else
      say_err "visor-init: visor.cmd is an empty command"
    fi
  else
    say_err "visor-init: cannot decode visor.cmd"
  fi
  # Stopped by the agent (the command got SIGTERM): the agent powers off, after unmounting.
  [ -e ${STOPPING_FLAG} ] && while :; do sleep 3600; done
  sync
  # The newline before the marker lets the host strip exactly "\\n${EXIT_MARKER}=N\\n"
  # whether or not the command's output ended with a newline.
  printf '\\n${EXIT_MARKER}=%d\\n' "$status"
else
  echo "visor: interactive shell; 'poweroff' (or exit) stops the machine"
  # The shell needs its terminal as controlling tty (job control, Ctrl-C). On the serial
  # console stdin is /dev/console, which cannot be one: cttyhack reopens the kernel's active
  # console (ttyS0). On hvc0 cttyhack would do the same and leave hvc0, where the host's input
  # goes, to nobody but its line discipline's echo: take stdin itself as the controlling tty.
  #
  # In the foreground, not with &: a background job of a script ignores SIGINT and SIGQUIT,
  # and so would every process the shell starts (Ctrl-C would interrupt nothing). poweroff,
  # halt and reboot are visor's own (power.sh), so init needs no traps.
  if [ "$on_hvc" = 1 ]; then
    setsid -c sh -l
  else
    setsid cttyhack sh -l
  fi
  [ -e ${STOPPING_FLAG} ] && while :; do sleep 3600; done
  sync
fi
poweroff -f
# poweroff -f does not return; should it fail, stay alive rather than panic the kernel.
while :; do sleep 3600; done
`;
}
