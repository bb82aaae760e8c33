/**
 * Runs a command in the Debian guest image under QEMU TCG (the reference to compare visor
 * against), with the virtio devices given as QEMU arguments. Shared by bench/blk.ts and
 * bench/net.ts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { encodeCommand, type GuestImage } from '../src/images/index.js';

export function haveQemu(): boolean {
  return spawnSync('qemu-system-riscv64', ['--version']).status === 0;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux), or NaN. */
export function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in USER_HZ (100 on Linux)
  } catch {
    return NaN;
  }
}

export interface QemuGuestOptions {
  /** Console output as it arrives, with the QEMU process id (to sample its CPU time). */
  onOutput?: (text: string, pid: number | undefined) => void;
}

export function qemuGuest(img: GuestImage, argv: string[], extra: string[], timeoutMs: number, appendExtra = '', o: QemuGuestOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-system-riscv64', [
      '-M', 'virt', '-m', '512', '-smp', '1', '-nographic', '-no-reboot',
      '-bios', img.firmwareDynamic ?? img.firmware ?? 'default', '-kernel', img.kernel, '-initrd', img.initrd,
      '-append', `${img.append} ${encodeCommand(argv)} ${appendExtra}`.trim(),
      ...extra,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const take = (d: Buffer) => {
      const t = d.toString();
      out += t;
      o.onOutput?.(t, child.pid);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
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

/**
 * Watches console output for marker lines and records, for each, the host's wall clock and
 * the CPU seconds `cpu()` reports at that moment: benchmarks time guest phases from the host,
 * so a guest clock paced by visor's progress (PacedClock) cannot flatter the figures.
 */
export class MarkerClock {
  private buf = '';
  readonly at = new Map<string, { wallMs: number; cpuS: number }>();
  constructor(
    private readonly markers: readonly string[],
    private readonly cpu: () => number,
  ) {}

  feed(text: string): void {
    this.buf += text;
    for (const m of this.markers) {
      if (!this.at.has(m) && new RegExp(`^${m}\\r?$`, 'm').test(this.buf)) this.at.set(m, { wallMs: performance.now(), cpuS: this.cpu() });
    }
    if (this.buf.length > 4096) this.buf = this.buf.slice(-256);
  }

  /** Wall seconds and CPU seconds between two markers. */
  span(a: string, b: string): { wallS: number; cpuS: number } {
    const x = this.at.get(a);
    const y = this.at.get(b);
    if (!x || !y) throw new Error(`markers ${a}/${b} not seen`);
    return { wallS: (y.wallMs - x.wallMs) / 1000, cpuS: y.cpuS - x.cpuS };
  }
}

/** This process's CPU seconds (the visor VM runs on its main thread in the benchmarks). */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
