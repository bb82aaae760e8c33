/**
 * visor's /init for the initramfs: a busybox shell script. The host contract is in
 * docs/guest-init.md; the constants below are the spelling both sides rely on.
 */

import { AGENT_PORT_NAME, AGENT_PROTOCOL, AGENT_REQUEST, CMD_ARG, CONSOLE_ARG, DATA_PORT_NAME, EXIT_MARKER, INIT_START_MARKER, IP_ARG } from '../guest/protocol.js';
import { MODPROBE_PATH } from './modprobe.js';

// The protocol's spelling lives in guest/protocol.ts; re-exported for the image's users.
export { AGENT_PORT_NAME, AGENT_PROTOCOL, CMD_ARG, CONSOLE_ARG, DATA_PORT_NAME, EXIT_MARKER, INIT_START_MARKER, IP_ARG };
export const AGENT_SH = 'lib/visor/agent.sh';
export const SHUTDOWN_SH = 'lib/visor/shutdown.sh';
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

export interface InitOptions {
  kernelRelease: string;
}

/** The /init script. Runs as PID 1 under busybox sh; must never exit (the kernel would panic). */
export function initScript(opts: InitOptions): string {
  return `#!/bin/busybox sh
# visor init, generated by visor's image builder for kernel ${opts.kernelRelease}.
# Contract with the host: docs/guest-init.md.
echo ${INIT_START_MARKER}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /root /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
hostname visor

cmd=
ip=
con=
on_hvc=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ${CMD_ARG}=*) cmd="\${arg#${CMD_ARG}=}" ;;
    ${IP_ARG}=*) ip="\${arg#${IP_ARG}=}" ;;
    ${CONSOLE_ARG}=*) con="\${arg#${CONSOLE_ARG}=}" ;;
  esac
done

# Modules load on demand (src/images/modprobe.ts): the kernel runs visor's modprobe for what
# it asks for (a filesystem on mount, a socket family), and each virtio device present gets
# its driver here, by its modalias, as udev's coldplug would. No disk, no ext4.
echo /${MODPROBE_PATH} > /proc/sys/kernel/modprobe
/${MODPROBE_PATH} -q virtio_mmio
for a in /sys/bus/virtio/devices/*/modalias; do
  # A device whose driver is built into the kernel (virtio_console in Debian's) is bound already.
  [ -r "$a" ] && [ ! -e "\${a%/modalias}/driver" ] && /${MODPROBE_PATH} "$(cat "$a")"
done

# The agent waits for its virtio-console port in the background and serves visor's requests.
/bin/sh /${AGENT_SH} </dev/null >/dev/null 2>&1 &

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
fi

if [ -n "$cmd" ]; then
  # Kernel messages would interleave with the command's output: keep only emergencies.
  echo 1 > /proc/sys/kernel/printk
  status=127
  if echo "$cmd" | base64 -d > /run/visor-cmd.json && awk -f /${ARGV_AWK} /run/visor-cmd.json > /run/visor-argv.sh; then
    . /run/visor-argv.sh
    if [ $# -gt 0 ]; then
      cd /root
      "$@"
      status=$?
    else
      echo "visor-init: visor.cmd is an empty command" >&2
    fi
  else
    echo "visor-init: cannot decode visor.cmd" >&2
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
  # busybox's poweroff, halt and reboot (without -f) signal PID 1 as they would busybox init
  # (USR2, USR1, TERM). A shell as PID 1 ignores signals it does not trap, and runs a trap while
  # it sits in \`wait\`, not while a foreground command runs: so the shell runs in the
  # background, its stdin given explicitly (a background job's would be /dev/null).
  trap 'sync; poweroff -f' USR1 USR2
  trap 'sync; reboot -f' TERM
  if [ "$on_hvc" = 1 ]; then
    setsid -c sh -l <>"/dev/$con" &
  else
    setsid cttyhack sh -l </dev/console &
  fi
  shell=$!
  # wait returns early (status > 128) when a trapped signal comes in: keep waiting for the shell.
  while kill -0 "$shell" 2>/dev/null; do wait "$shell"; done
  trap - USR1 USR2 TERM
  [ -e ${STOPPING_FLAG} ] && while :; do sleep 3600; done
  sync
fi
poweroff -f
# poweroff -f does not return; should it fail, stay alive rather than panic the kernel.
while :; do sleep 3600; done
`;
}
