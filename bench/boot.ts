/**
 * Boot benchmark (issue 3): seconds from start to the guest's /init (the VISOR_INIT_START
 * marker) and to poweroff, for visor (built-in SBI, and OpenSBI with --opensbi) and, when
 * installed, QEMU TCG on the same kernel and initramfs in the same run, with the ratio.
 *
 *   npm run bench:boot -- [--opensbi] [--interp] [--no-qemu] [--memory MiB]
 *   (--interp: the interpreter alone, no JIT)
 *
 * It runs the built package (dist/): tsc inlines the hart's opcode enum there, which tsx's
 * per-file esbuild transform cannot do (the interpreter would run ~20× slower).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { runVm as RunVm } from '../src/host/run-vm.js';
import { encodeCommand, ensureImage, INIT_START_MARKER } from '../src/images/index.js';

const { runVm } = (await import('../dist/host/run-vm.js' as string)) as unknown as { runVm: typeof RunVm };

interface BootTimes {
  init: number;
  poweroff: number;
  instructions?: number;
}

const args = process.argv.slice(2);
const useOpensbi = args.includes('--opensbi');
const accel = args.includes('--interp') ? 'interp' as const : undefined;
const memIdx = args.indexOf('--memory');
const memoryMiB = memIdx >= 0 ? Number(args[memIdx + 1]) : 512;

async function bootVisor(kernel: string, initrd: string, append: string, bios: string): Promise<BootTimes> {
  const t0 = performance.now();
  let init = NaN;
  const res = await runVm({
    ...(accel ? { accel } : {}),
    kernel,
    initrd,
    append,
    bios,
    memoryMiB,
    commandMode: true,
    console: { write: () => {}, start: () => {}, dispose: () => {} },
    onInitStart: () => (init = (performance.now() - t0) / 1000),
  });
  if (res.kind !== 'poweroff') throw new Error(`visor boot ended with ${res.kind}`);
  return { init, poweroff: (performance.now() - t0) / 1000, instructions: res.stats.instructions };
}

function bootQemu(kernel: string, initrd: string, append: string, bios: string): Promise<BootTimes> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let init = NaN;
    let buf = '';
    const q = spawn('qemu-system-riscv64', [
      '-M', 'virt', '-m', String(memoryMiB), '-smp', '1', '-nographic', '-no-reboot',
      '-bios', bios, '-kernel', kernel, '-initrd', initrd, '-append', append,
    ], { stdio: ['ignore', 'pipe', 'inherit'] });
    q.stdout.on('data', (d: Buffer) => {
      if (Number.isNaN(init)) {
        buf = (buf + d.toString('latin1')).slice(-256);
        if (buf.includes(INIT_START_MARKER)) init = (performance.now() - t0) / 1000;
      }
    });
    q.on('error', reject);
    q.on('exit', () => resolve({ init, poweroff: (performance.now() - t0) / 1000 }));
  });
}

const img = await ensureImage('debian');
const append = `${img.append} ${encodeCommand(['true'])}`;
const fw = img.firmwareDynamic ?? img.firmware;
console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}, Node ${process.version}`);
console.log(`guest: Debian ${img.manifest.kernelRelease}, ${memoryMiB} MiB, command 'true' then poweroff`);

const visorBios = useOpensbi ? fw! : 'builtin';
const v = await bootVisor(img.kernel, img.initrd, append, visorBios);
const mips = v.instructions ? v.instructions / 1e6 / v.poweroff : 0;
console.log(`visor (${accel === 'interp' ? 'interpreter' : 'JIT'}, ${useOpensbi ? 'OpenSBI fw_dynamic' : 'built-in SBI'}): /init ${v.init.toFixed(2)} s, poweroff ${v.poweroff.toFixed(2)} s, ${(v.instructions! / 1e9).toFixed(2)} G instructions, ${mips.toFixed(1)} MIPS`);

const haveQemu = !args.includes('--no-qemu') && spawnSync('qemu-system-riscv64', ['--version']).status === 0;
if (haveQemu && fw) {
  const q = await bootQemu(img.kernel, img.initrd, append, fw);
  console.log(`qemu TCG (OpenSBI fw_dynamic): /init ${q.init.toFixed(2)} s, poweroff ${q.poweroff.toFixed(2)} s`);
  console.log(`ratio visor/qemu: /init ${(v.init / q.init).toFixed(1)}x, poweroff ${(v.poweroff / q.poweroff).toFixed(1)}x`);
} else {
  console.log('qemu: not measured (qemu-system-riscv64 not installed or --no-qemu)');
}
