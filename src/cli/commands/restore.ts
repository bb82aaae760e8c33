import type { Command } from 'commander';
import { Machine } from '../../sdk/index.js';
import { ACCEL_HELP, parseAccel, printStats, statsFormat } from './stats-report.js';
import { runOnTerminal, terminalExitCode } from './terminal.js';

/** `visor restore FILE`: resumes a snapshot on the serial console (issue 7). */
export function registerRestoreCommand(program: Command): void {
  program
    .command('restore')
    .description('Resume a machine from a snapshot on the serial console (Ctrl-A s snapshots again, Ctrl-A x quits)')
    .argument('<file>', 'snapshot file (from Ctrl-A s in visor run, or Machine.snapshot())')
    .option('--snapshot-file <file>', 'where Ctrl-A s saves (default: the restored file)')
    .option('--accel <interp|jit>', ACCEL_HELP)
    .option('--stats [text|json]', 'on exit, print to stderr what the machine did (instructions since boot; JIT counters since the restore)')
    .action(async (file: string, flags: { snapshotFile?: string; accel?: string; stats?: string | boolean }) => {
      const accel = parseAccel(flags.accel);
      const stats = statsFormat(flags.stats);
      const vm = await Machine.restore(file, { start: false, ...(accel ? { accel } : {}) });
      const commandMode = /(?:^| )visor\.cmd=/.test(vm.config.append);
      const res = await runOnTerminal(vm, { snapshotPath: flags.snapshotFile ?? file, commandMode });
      if (stats) printStats(vm.stats(), stats);
      process.exit(terminalExitCode(res, commandMode));
    });
}
