import type { Command } from 'commander';
import { Machine } from '../../sdk/index.js';
import { runOnTerminal, terminalExitCode } from './terminal.js';

/** `visor restore FILE`: resumes a snapshot on the serial console (issue 7). */
export function registerRestoreCommand(program: Command): void {
  program
    .command('restore')
    .description('Resume a machine from a snapshot on the serial console (Ctrl-A s snapshots again, Ctrl-A x quits)')
    .argument('<file>', 'snapshot file (from Ctrl-A s in visor run, or Machine.snapshot())')
    .option('--snapshot-file <file>', 'where Ctrl-A s saves (default: the restored file)')
    .action(async (file: string, flags: { snapshotFile?: string }) => {
      const vm = await Machine.restore(file, { start: false });
      const commandMode = /(?:^| )visor\.cmd=/.test(vm.config.append);
      const res = await runOnTerminal(vm, { snapshotPath: flags.snapshotFile ?? file, commandMode });
      process.exit(terminalExitCode(res, commandMode));
    });
}
