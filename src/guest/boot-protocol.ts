/**
 * The guest↔host protocol of visor's images, spelled once (docs/guest-init.md describes it):
 * the console markers visor's /init prints, the kernel command-line arguments it reads, the
 * virtio-console ports and the requests the guest agent answers. The init script
 * (images/init-script.ts) and the host side (the runner, the console filter, the CLI) import
 * these. Imports nothing, so every layer may use it.
 */

/** Printed alone on a line when /init starts (the kernel's boot is over). */
export const INIT_START_MARKER = 'VISOR_INIT_START';
/** `VISOR_EXIT=<status>` alone on a line: the guest command's exit status (command mode). */
export const EXIT_MARKER = 'VISOR_EXIT';
export const EXIT_PREFIX = `${EXIT_MARKER}=`;
/** The kernel's panic line; the host stops the machine shortly after it (the backtrace first). */
export const KERNEL_PANIC = 'Kernel panic - not syncing';

/**
 * Boot snapshots (docs/guest-init.md "Boot snapshots"): with `visor.bootwait=1` on its command
 * line, /init stops once the drivers are loaded, before anything of the run is decided or
 * written, prints BOOT_WAIT_MARKER alone on a line and reads one line from the console:
 * `VISOR_ARGS <unix seconds> <hex entropy> [visor.* arguments of this run]`. The host saves
 * the machine there once and restores it for later runs, each sending its own line.
 */
export const BOOT_WAIT_ARG = 'visor.bootwait';
export const BOOT_WAIT_MARKER = 'VISOR_BOOT_WAIT';
export const BOOT_ARGS_TAG = 'VISOR_ARGS';

/** Kernel arguments /init reads. */
export const CMD_ARG = 'visor.cmd';
export const IP_ARG = 'visor.ip';
/** `visor.console=hvc0`: init runs the shell or command on /dev/hvc0 (virtio-console port 0). */
export const CONSOLE_ARG = 'visor.console';

/** The virtio-console port (virtio 1.2 §5.3.6 multiport) the guest agent serves. */
export const AGENT_PORT_NAME = 'org.visor.agent';
/** A second named port left to the user: a plain host↔guest byte channel. */
export const DATA_PORT_NAME = 'org.visor.data';
/** The virtio-console's ports, in this order (part of a machine's identity: snapshots keep it). */
export const CONSOLE_PORTS = { hvc0: 0, agent: 1, data: 2 } as const;
/** The agent's protocol version, in its greeting `READY <version>`. */
export const AGENT_PROTOCOL = 1;

/** Requests the agent answers, one line each. */
export const AGENT_REQUEST = {
  /** `OK POWEROFF`, then the graceful shutdown (sync, unmount, power off). */
  poweroff: 'POWEROFF',
} as const;

/** A request as the agent reads it: one line. */
export function agentRequest(req: (typeof AGENT_REQUEST)[keyof typeof AGENT_REQUEST]): Uint8Array {
  return new TextEncoder().encode(`${req}\n`);
}
