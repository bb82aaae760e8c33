/**
 * Boots a machine through the SDK (the path `visor run` takes: a Machine on its own worker,
 * src/vm/ inside) and runs it to the end, collecting the console, the guest command's exit
 * status (VISOR_EXIT) and the counters. Used by the Debian boot tests and by bench/boot.ts and
 * bench/guest-cpu.ts, which pass the build's Machine (dist/sdk/index.js).
 */
import { ConsoleOutputFilter } from '../../src/host/run-output-filter.js';
import type { GuestEvent, Machine, MachineConfig, MachineStats } from '../../src/sdk/index.js';

export interface MachineRun {
  kind: 'poweroff' | 'fail' | 'panic' | 'reboot-loop' | 'stopped';
  /** VISOR_EXIT's status (commandMode), when the guest printed it. */
  guestStatus?: number;
  /** 'fail': the code the guest failed with; 'panic': the panic line. */
  code?: number;
  line?: string;
  /** Console output with visor's markers removed. */
  output: string;
  stats: MachineStats;
}

export interface RunMachineOptions {
  /** A guest command runs: swallow the newline before VISOR_EXIT. */
  commandMode?: boolean;
  onInitStart?(vm: Machine): void;
  onOutput?(text: string): void;
  /** Stops the machine by force (the result is 'stopped'). */
  signal?: AbortSignal;
  /** Reboots to follow before giving up (default 3, as `visor run`). */
  maxReboots?: number;
}

export async function runMachine(M: typeof Machine, config: MachineConfig, o: RunMachineOptions = {}): Promise<MachineRun> {
  const vm = await M.create(config);
  let output = '';
  let guestStatus: number | undefined;
  let end: Omit<MachineRun, 'output' | 'stats' | 'guestStatus'> | undefined;
  const filter = new ConsoleOutputFilter({ initStart: () => o.onInitStart?.(vm), exitStatus: (s) => (guestStatus = s) }, o.commandMode ?? false);
  const take = (b: Uint8Array) => {
    const text = Buffer.from(b).toString('latin1');
    output += text;
    o.onOutput?.(text);
  };
  vm.console.on('data', (d: Buffer) => take(filter.feed(d)));
  const stop = () => {
    end ??= { kind: 'stopped' };
    if (vm.state !== 'stopped') vm.stop({ graceful: false }).catch(() => {});
  };
  let reboots = 0;
  vm.on('guest', (e: GuestEvent) => {
    if (e.kind === 'reboot' && ++reboots > (o.maxReboots ?? 3)) {
      end ??= { kind: 'reboot-loop' };
      stop();
    } else if (e.kind === 'poweroff') end ??= { kind: 'poweroff' };
    else if (e.kind === 'fail') end ??= { kind: 'fail', code: e.code };
    else if (e.kind === 'panic') end ??= { kind: 'panic', line: e.line };
  });
  let error: Error | undefined;
  vm.on('error', (err) => (error = err));
  if (o.signal?.aborted) stop();
  o.signal?.addEventListener('abort', stop);
  try {
    await vm.start();
    await vm.whenStopped();
  } finally {
    o.signal?.removeEventListener('abort', stop);
  }
  take(filter.flush());
  if (error && !end) throw error;
  return { ...(end ?? { kind: 'stopped' }), output, stats: vm.stats(), ...(guestStatus !== undefined ? { guestStatus } : {}) };
}
