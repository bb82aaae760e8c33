import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { VisorError } from '../base/errors.js';
import { registerCommands } from './commands/index.js';

/** Entry point of the `visor` command. Returns only by exiting the process. */
export async function main(argv: string[]): Promise<void> {
  // src/cli and dist/cli are both two levels below the package root.
  const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };
  const program = new Command('visor')
    .description('Run RISC-V 64 Linux virtual machines from Node.js: no root, no KVM.')
    .version(version, '-V, --version', 'print the visor version')
    .showHelpAfterError()
    .exitOverride();
  registerCommands(program);
  // A reader that stops early (`visor disk info x | head -2`) is not an error of ours.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
    });
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : 64);
    }
    if (err instanceof VisorError) {
      process.stderr.write(`visor: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    process.stderr.write(`visor: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(70);
  }
}
