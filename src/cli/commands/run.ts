import type { Command } from 'commander';

// Filled in by the issue that owns `visor run`.
export function registerRunCommand(_program: Command): void {}
