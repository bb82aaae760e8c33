/**
 * Runs a differential-test image on QEMU: `qemu-system-riscv64 -M virt -bios none -kernel
 * prog.bin`, UART on stdout, until the program writes the syscon poweroff.
 *
 * The CPU model is QEMU's rv64 with the extensions visor does not implement switched off, so
 * their encodings are illegal on both sides and misa matches: no H, no Zb*, no Sstc, no PMU
 * counters, no debug triggers.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const QEMU = 'qemu-system-riscv64';
export const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false,sstc=false,pmu-num=0,debug=false';

/** The QEMU version string, or undefined when QEMU is not installed. */
export function qemuVersion(): string | undefined {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split('\n')[0]!.trim();
}

export interface QemuResult {
  output: string;
  /** Set when QEMU did not power off within the time limit or failed to start. */
  error?: string;
}

export class QemuRunner {
  private readonly dir = mkdtempSync(join(tmpdir(), 'visor-diff-'));
  private seq = 0;

  /** Runs one image; resolves with everything the guest wrote to the UART. */
  run(image: Uint8Array, timeoutMs = 30_000): Promise<QemuResult> {
    const n = this.seq++;
    const file = join(this.dir, `p${n}.bin`);
    // The UART goes to a regular file: through a pipe QEMU's 16550 queues bytes the reader has
    // not taken yet and drops them when the guest powers off.
    const uart = join(this.dir, `p${n}.out`);
    writeFileSync(file, image);
    return new Promise((resolve) => {
      const child = spawn(QEMU, ['-M', 'virt', '-cpu', QEMU_CPU, '-m', '128M', '-bios', 'none', '-kernel', file,
        '-display', 'none', '-serial', `file:${uart}`, '-monitor', 'none', '-nodefaults', '-no-reboot'],
      { stdio: ['ignore', 'ignore', 'pipe'] });
      const err: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.stderr.on('data', (b: Buffer) => err.push(b));
      const finish = (error?: string) => {
        clearTimeout(timer);
        let output = '';
        try {
          output = readFileSync(uart, 'latin1');
        } catch {
          // no output file: QEMU did not start; `error` says why
        }
        rmSync(file, { force: true });
        rmSync(uart, { force: true });
        resolve(error === undefined ? { output } : { output, error });
      };
      child.on('error', (e) => finish(`qemu failed to start: ${e.message}`));
      child.on('close', (code) => {
        if (timedOut) finish(`qemu did not power off within ${timeoutMs} ms`);
        else if (code !== 0) finish(`qemu exited with ${code}: ${Buffer.concat(err).toString().trim()}`);
        else finish();
      });
    });
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
