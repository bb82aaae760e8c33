/**
 * A Machine (the SDK) on the user's terminal: guest output to stdout (init markers stripped,
 * panics spotted), keyboard to the guest, Ctrl-A s saves a snapshot, Ctrl-A x stops the
 * machine, signals stop it cleanly. Shared by `visor restore` and, on the SDK, `visor run`.
 */
import { VisorError } from '../../base/errors.js';
import { StdioConsole } from '../../host/console-stdio.js';
import { ConsoleOutputFilter } from '../../host/run-output-filter.js';
import type { GuestEvent, Machine } from '../../sdk/index.js';

export type TerminalResult =
  | { kind: 'poweroff'; guestStatus: number | undefined }
  | { kind: 'fail'; code: number }
  | { kind: 'panic'; line: string }
  | { kind: 'quit' }
  | { kind: 'signal' }
  | { kind: 'reboot-loop' }
  | { kind: 'crashed'; reason: string };

export interface TerminalOptions {
  /** Where Ctrl-A s writes the snapshot. */
  snapshotPath: string;
  /** A guest command was given: swallow the newline before VISOR_EXIT. */
  commandMode?: boolean;
  onInitStart?(): void;
  /**
   * Keep input until visor's init has started (VISOR_INIT_START). For piped input to an image
   * guest: bytes sent during the kernel's boot would reach the UART before Linux opens the port,
   * and its start-up clears the receive FIFO (a person types after the prompt; a pipe does not).
   */
  holdInputUntilInit?: boolean;
  /** Guest reboots to follow before giving up (default: no limit). */
  maxReboots?: number;
}

/** Runs `vm` (created or paused) on the terminal until it stops; returns how it ended. */
export async function runOnTerminal(vm: Machine, o: TerminalOptions): Promise<TerminalResult> {
  const term = new StdioConsole();
  let guestStatus: number | undefined;
  let ended: TerminalResult | undefined;
  let held: Buffer[] | undefined = o.holdInputUntilInit ? [] : undefined;
  const filter = new ConsoleOutputFilter({
    initStart: () => {
      if (held) {
        const early = held;
        held = undefined;
        for (const b of early) vm.console.write(b);
      }
      o.onInitStart?.();
    },
    exitStatus: (s) => (guestStatus = s),
  }, o.commandMode ?? false);
  vm.console.on('data', (d: Buffer) => term.write(filter.feed(d)));
  let reboots = 0;
  vm.on('guest', (e: GuestEvent) => {
    if (e.kind === 'reboot' && ++reboots > (o.maxReboots ?? Infinity)) stop({ kind: 'reboot-loop' });
    else if (e.kind === 'poweroff') ended ??= { kind: 'poweroff', guestStatus };
    else if (e.kind === 'fail') ended ??= { kind: 'fail', code: e.code };
    else if (e.kind === 'panic') ended ??= { kind: 'panic', line: e.line };
  });
  let lastError: VisorError | undefined;
  vm.on('error', (err) => (lastError = err));
  /** Ctrl-A x and the like: stop now, without asking the guest. */
  const stop = (why: TerminalResult) => {
    ended ??= why;
    if (vm.state !== 'stopped') vm.stop({ graceful: false }).catch(() => {});
  };
  let saving = false;
  term.start({
    input: (b) => (held ? held.push(Buffer.from(b)) : vm.console.write(b)),
    quit: () => stop({ kind: 'quit' }),
    snapshot: () => {
      if (saving) return;
      saving = true;
      process.stderr.write(`\r\nvisor: saving a snapshot to ${o.snapshotPath}...\r\n`);
      vm.snapshot(o.snapshotPath).then(
        (s) => process.stderr.write(`visor: snapshot saved (${(s.bytes / 2 ** 20).toFixed(1)} MiB in ${s.ms.toFixed(0)} ms); 'visor restore ${o.snapshotPath}' resumes it\r\n`),
        (err: Error) => process.stderr.write(`visor: snapshot failed: ${err.message}\r\n`),
      ).finally(() => (saving = false));
    },
  });
  // The first SIGTERM/SIGINT/SIGHUP asks the guest to shut down (its agent syncs and unmounts);
  // a second one stops the machine at once.
  let signalled = 0;
  let stopping: Promise<void> | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    ended ??= { kind: 'signal' };
    if (vm.state === 'stopped') return;
    if (signalled++ === 0) {
      process.stderr.write(`\r\nvisor: ${sig}: asking the guest to power off (send it again to stop at once)\r\n`);
      stopping = vm.stop().then(
        (r) => {
          if (!r.graceful) process.stderr.write(`visor: stopped without the guest (${r.forced === 'no-agent' ? 'no guest agent listened' : r.forced === 'timeout' ? 'the guest did not power off in time' : r.forced})\r\n`);
        },
        () => {},
      );
    } else {
      vm.kill().catch(() => {});
    }
  };
  const signals = ['SIGTERM', 'SIGHUP', 'SIGINT'] as const;
  for (const s of signals) process.on(s, onSignal);
  try {
    if (vm.state === 'created') await vm.start();
    else if (vm.state === 'paused') await vm.resume();
    await vm.whenStopped();
    await stopping; // its report comes after the machine stopped
  } finally {
    for (const s of signals) process.off(s, onSignal);
    term.write(filter.flush());
    term.dispose();
  }
  if (ended?.kind === 'poweroff') return { kind: 'poweroff', guestStatus };
  return ended ?? { kind: 'crashed', reason: lastError?.message ?? 'the machine stopped unexpectedly' };
}

/** Exit code of the visor process for how the machine ended. */
export function terminalExitCode(r: TerminalResult, commandMode: boolean): number {
  switch (r.kind) {
    case 'poweroff':
      if (!commandMode) return 0;
      if (r.guestStatus === undefined) throw new VisorError('GuestPanic', 'the guest powered off without reporting the command\'s exit status');
      return r.guestStatus;
    case 'quit':
      return commandMode ? 130 : 0;
    case 'signal':
      return 143;
    case 'fail':
      throw new VisorError('GuestPanic', `the guest reported failure (code ${r.code}) through the test device`);
    case 'panic':
      throw new VisorError('GuestPanic', `guest kernel panic: ${r.line}`);
    case 'reboot-loop':
      throw new VisorError('GuestPanic', 'the guest keeps rebooting');
    case 'crashed':
      throw new VisorError('Internal', r.reason);
  }
}
