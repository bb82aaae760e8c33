/**
 * A Machine (the SDK) on the user's terminal: guest output to stdout (init markers stripped,
 * panics spotted), keyboard to the guest, Ctrl-A s saves a snapshot, Ctrl-A x stops the
 * machine, signals stop it cleanly. Shared by `visor restore` and, on the SDK, `visor run`.
 */
import { constants } from 'node:os';
import { VisorError } from '../../base/errors.js';
import { StdioConsole } from '../../host/console-stdio.js';
import type { ConsoleLineStamper } from '../../host/console-trace.js';
import { ConsoleOutputFilter } from '../../host/run-output-filter.js';
import type { GuestEvent, Machine } from '../../sdk/index.js';

export type TerminalResult =
  | { kind: 'poweroff'; guestStatus: number | undefined }
  | { kind: 'fail'; code: number }
  | { kind: 'panic'; line: string }
  | { kind: 'quit' }
  | { kind: 'signal'; signal: NodeJS.Signals }
  | { kind: 'reboot-loop' }
  | { kind: 'crashed'; reason: string };

export interface TerminalOptions {
  /** Where Ctrl-A s writes the snapshot. */
  snapshotPath: string;
  /** A guest command was given: swallow the newline before VISOR_EXIT. */
  commandMode?: boolean;
  onInitStart?(): void;
  /** /init waits for the run's arguments (VISOR_BOOT_WAIT): a boot snapshot's point. */
  onBootWait?(): void;
  /**
   * Keep input until visor's init has started (VISOR_INIT_START). For piped input to an image
   * guest: bytes sent during the kernel's boot would reach the UART before Linux opens the port,
   * and its start-up clears the receive FIFO (a person types after the prompt; a pipe does not).
   */
  holdInputUntilInit?: boolean;
  /** Guest reboots to follow before giving up (default: no limit). */
  maxReboots?: number;
  /**
   * 'virtio': the machine runs its command on the stdio ports (config stdio: 'virtio'):
   * stdin goes to the command and its end is the command's end-of-file, stdout and stderr
   * come out byte for byte, and the serial console is shown only when the run fails.
   * 'console' (default): the console is the terminal.
   */
  stdio?: 'console' | 'virtio';
  /** --verbose: every byte of the console (markers included) also goes here, as stamped lines. */
  trace?: ConsoleLineStamper;
}

/** Ctrl-D: the terminal's end-of-file character. */
const EOT = 0x04;

/** What the serial console said last, shown when a run on the stdio ports fails. */
const SERIAL_TAIL = 4096;


/** Runs `vm` (created or paused) on the terminal until it stops; returns how it ended. */
export async function runOnTerminal(vm: Machine, o: TerminalOptions): Promise<TerminalResult> {
  const term = new StdioConsole();
  const ports = o.stdio === 'virtio';
  let serialTail = '';
  /** visor's own messages: \r\n only while the terminal is raw (the guest's), plain lines otherwise. */
  const say = (text: string) => process.stderr.write(term.raw ? `\r\n${text.replace(/\n/g, '\r\n')}\r\n` : `${text}\n`);
  let guestStatus: number | undefined;
  let ended: TerminalResult | undefined;
  // Input held until init starts, on the console or the stdin port alike; `null` marks the end
  // of input. A boot snapshot is saved before that marker: nothing of this run's input may be
  // in the machine it saves (it would reach every later run).
  let held: (Buffer | null)[] | undefined = o.holdInputUntilInit ? [] : undefined;
  const filter = new ConsoleOutputFilter({
    initStart: () => {
      if (held) {
        const early = held;
        held = undefined;
        for (const b of early) {
          if (b === null) endInput();
          else deliver(b);
        }
      }
      o.onInitStart?.();
    },
    bootWait: () => o.onBootWait?.(),
    exitStatus: (s) => (guestStatus = s),
  }, o.commandMode ?? false);
  vm.console.on('data', (d: Buffer) => {
    o.trace?.feed(d);
    const shown = filter.feed(d);
    if (!ports) return term.write(shown);
    serialTail = (serialTail + Buffer.from(shown).toString('latin1')).slice(-SERIAL_TAIL);
  });
  if (ports) {
    vm.stdout.on('data', (d: Buffer) => process.stdout.write(d));
    vm.stderr.on('data', (d: Buffer) => process.stderr.write(d));
  }
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
  const deliver = (b: Uint8Array) => (ports ? vm.stdin.write(b) : vm.console.write(b));
  const toGuest = (b: Uint8Array) => (held ? held.push(Buffer.from(b)) : deliver(b));
  /** On the ports, the end of stdin; on the console, a Ctrl-D (what a person would type). */
  const endInput = () => (ports ? vm.stdin.end() : deliver(Uint8Array.of(EOT)));
  term.start({
    input: toGuest,
    // On the console, the end of piped input is a Ctrl-D after it (what a person would type):
    // the guest's shell, at an empty line, exits and the machine powers off.
    end: () => {
      if (held) held.push(null);
      else endInput();
    },
    quit: () => stop({ kind: 'quit' }),
    snapshot: () => {
      if (saving) return;
      saving = true;
      say(`visor: saving a snapshot to ${o.snapshotPath}...`);
      vm.snapshot(o.snapshotPath).then(
        (s) => say(`visor: snapshot saved (${(s.bytes / 2 ** 20).toFixed(1)} MiB in ${s.ms.toFixed(0)} ms); 'visor restore ${o.snapshotPath}' resumes it`),
        (err: Error) => say(`visor: snapshot failed: ${err.message}`),
      ).finally(() => (saving = false));
    },
  }, { raw: !ports });
  // The first SIGTERM/SIGINT/SIGHUP asks the guest to shut down (its agent syncs and unmounts);
  // a second one stops the machine at once.
  let signalled = 0;
  let stopping: Promise<void> | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    ended ??= { kind: 'signal', signal: sig };
    if (vm.state === 'stopped') return;
    if (signalled++ === 0) {
      say(`visor: ${sig}: asking the guest to power off (send it again to stop at once)`);
      stopping = vm.stop().then(
        (r) => {
          // After a second signal the machine was stopped at once, and said so.
          if (!r.graceful && signalled === 1) say(`visor: stopped without the guest (${r.forced === 'no-agent' ? 'no guest agent listened' : r.forced === 'timeout' ? 'the guest did not power off in time' : r.forced})`);
        },
        () => {},
      );
    } else if (signalled === 2) {
      say(`visor: ${sig} again: stopping the machine at once`);
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
    o.trace?.flush();
    const rest = filter.flush();
    if (ports) serialTail += Buffer.from(rest).toString('latin1');
    else term.write(rest);
    term.dispose();
  }
  const result: TerminalResult = ended?.kind === 'poweroff' ? { kind: 'poweroff', guestStatus } : ended ?? { kind: 'crashed', reason: lastError?.message ?? 'the machine stopped unexpectedly' };
  // On the stdio ports the console stays hidden, unless it may say why the run failed.
  if (ports && !(result.kind === 'poweroff' && guestStatus !== undefined) && result.kind !== 'signal' && result.kind !== 'quit' && serialTail.trim() !== '') {
    process.stderr.write(`visor: the guest's console said:\n${serialTail.replace(/\r\n/g, '\n').trimEnd()}\n`);
  }
  return result;
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
      // As a shell reports a command a signal ended: 128 + the signal's number (SIGINT 130).
      return 128 + (constants.signals[r.signal] ?? 15);
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
