import type { Command } from 'commander';

// Filled in by the issue that owns `visor disk`.
export function registerDiskCommands(_program: Command): void {}
