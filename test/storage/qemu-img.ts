import { execFileSync, spawnSync } from 'node:child_process';

/**
 * qemu-img (Debian qemu-utils) as the reference. Missing tool: tests fail loudly in CI and
 * skip with a printed reason elsewhere (docs: README "Some tests compare visor against Debian tools").
 */
export const HAVE_QEMU_IMG = spawnSync('qemu-img', ['--version']).status === 0;
if (!HAVE_QEMU_IMG) {
  if (process.env.CI) throw new Error('qemu-img is missing: CI must install qemu-utils');
  console.warn('skipping qemu-img interop tests: qemu-img not found (apt-get install qemu-utils)');
}

export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function qemuIo(file: string, ...cmds: string[]): void {
  const args = cmds.flatMap((c) => ['-c', c]);
  execFileSync('qemu-io', [...args, file], { stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface QemuCheck {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  raw: string;
}

/** `qemu-img check --output=json`; exit codes 2 and 3 (corruptions, leaks) still carry JSON. */
export function qemuCheck(file: string): QemuCheck {
  const r = spawnSync('qemu-img', ['check', '--output=json', file], { encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 2 && r.status !== 3) throw new Error(`qemu-img check failed (${r.status}): ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { corruptions?: number; leaks?: number; 'check-errors': number };
  return { corruptions: j.corruptions ?? 0, leaks: j.leaks ?? 0, checkErrors: j['check-errors'], raw: r.stdout + r.stderr };
}
