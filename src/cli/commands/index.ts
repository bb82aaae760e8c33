import type { Command } from 'commander';
import { registerDaemonCommands } from './daemon.js';
import { registerDiskCommands } from './disk.js';
import { registerCpCommand } from './cp.js';
import { registerImageCommands, registerMachineCommands } from './image.js';
import { registerRemoteCommands } from './remote.js';
import { registerRestoreCommand } from './restore.js';
import { registerRunCommand } from './run.js';

/** Every subcommand module registers itself here; each lives in its own file. */
export function registerCommands(program: Command): void {
  registerRunCommand(program);
  registerRestoreCommand(program);
  registerImageCommands(program);
  registerMachineCommands(program);
  registerCpCommand(program);
  registerDiskCommands(program);
  registerDaemonCommands(program);
  registerRemoteCommands(program);
}
