import type { Command } from 'commander';

// Filled in by the issue that owns `visor image`.
export function registerImageCommands(_program: Command): void {}
