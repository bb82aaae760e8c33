/**
 * Runs a command in the Debian guest image under QEMU TCG (the reference to compare visor
 * against), with the virtio devices given as QEMU arguments. Shared by bench/blk.ts and
 * bench/net.ts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { encodeCommand, type GuestImage } from '../src/images/index.js';

export function haveQemu(): boolean {
  return spawnSync('qemu-system-riscv64', ['--version']).status === 0;
}

export function qemuGuest(img: GuestImage, argv: string[], extra: string[], timeoutMs: number, appendExtra = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-system-riscv64', [
      '-M', 'virt', '-m', '512', '-smp', '1', '-nographic', '-no-reboot',
      '-bios', img.firmwareDynamic ?? img.firmware ?? 'default', '-kernel', img.kernel, '-initrd', img.initrd,
      '-append', `${img.append} ${encodeCommand(argv)} ${appendExtra}`.trim(),
      ...extra,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`QEMU timed out:\n${out}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out.replace(/\r/g, ''));
    });
  });
}
