/**
 * Boot benchmark (issue 3): seconds from start to the guest's /init (the VISOR_INIT_START
 * marker) and to poweroff, for visor (built-in SBI, and OpenSBI with --opensbi) and, when
 * installed, QEMU TCG on the same kernel and initramfs in the same run, with the ratio.
 *
 *   npm run bench:boot -- [--opensbi] [--jit | --interp] [--threshold N] [--stats] [--init-only] [--twice]
 *                          [--cmd 'shell command'] [--no-qemu] [--memory MiB] [--deterministic]
 *   (--jit / --interp pick the CPU tier, else VISOR_ACCEL, else the hart's default;
 *    --stats prints the hart's and the JIT's counters at /init and at the end;
 *    --init-only stops visor at /init; --deterministic runs visor's guest on the instruction
 *    clock, so that two runs, or two trees, execute exactly the same guest instructions)
 *
 * It runs the built package (dist/): tsc inlines the hart's opcode enum there, which tsx's
 * per-file esbuild transform cannot do (the interpreter would run ~20× slower).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { encodeCommand, ensureImage, INIT_START_MARKER } from '../src/images/index.js';
import { inflateInitrd } from '../src/host/initrd.js';
import type { Machine as MachineClass } from '../src/sdk/index.js';
import { runMachine } from '../test/support/run-machine.js';
import { processCpuSeconds } from './guest-qemu.js';

// The SDK's Machine from the build: the path `visor run` takes (a worker thread running src/vm/).
const builtMachine = async () => ((await import('../dist/sdk/index.js' as string)) as { Machine: typeof MachineClass }).Machine;

export interface BootTimes {
  init: number;
  poweroff: number;
  /** CPU seconds of the emulator process at /init (all threads). */
  initCpu?: number;
  instructions?: number;
}

export interface BootOptions {
  accel?: 'interp' | 'jit';
  /** Print the hart's and the JIT's counters at /init and at the end. */
  stats?: boolean;
  /** Stop visor at /init. */
  initOnly?: boolean;
  memoryMiB?: number;
  /** The guest's clock counts instructions (MachineConfig.deterministic): the same guest work every run. */
  deterministic?: boolean;
}

/**
 * CPU seconds of this process's threads (Linux /proc): the main thread, and V8's worker
 * threads, where WebAssembly and JavaScript optimizing compiles run. A boot can spend more
 * CPU there than in the guest.
 */
function threadCpu(): { main: number; workers: number } | undefined {
  if (!existsSync('/proc/self/task')) return undefined;
  let main = 0, workers = 0;
  const hz = 100; // USER_HZ: the unit of utime/stime in /proc/<pid>/task/<tid>/stat
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const st = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const s = (Number(f[11]) + Number(f[12])) / hz; // fields 14 and 15: utime, stime
      if (tid === String(process.pid)) main += s; else workers += s;
    } catch { /* the thread ended */ }
  }
  return { main, workers };
}

export async function bootVisor(kernel: string, initrd: string, append: string, bios: string, o: BootOptions = {}): Promise<BootTimes> {
  const { accel, stats: showStats = false, initOnly = false, memoryMiB = 512, deterministic = false } = o;
  const Machine = await builtMachine();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let init = NaN;
  let initCpu = NaN;
  const abort = new AbortController();
  const report = (when: string, vm: { stats(): { instructions: number; traps: unknown; interrupts: unknown; tlbMisses: number; jit: unknown } }) => {
    if (!showStats) return;
    const cpu = process.cpuUsage(c0);
    const th = threadCpu();
    const split = th ? ` (main thread ${th.main.toFixed(2)} s, other threads: the machine's worker and V8's ${th.workers.toFixed(2)} s)` : '';
    const st = vm.stats();
    console.log(`-- at ${when}: ${((performance.now() - t0) / 1000).toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU${split}, ${st.instructions} instructions`);
    console.log('hart:', JSON.stringify({ traps: st.traps, interrupts: st.interrupts, tlbMisses: st.tlbMisses }));
    if (accel !== 'interp') {
      console.log('jit:', JSON.stringify(st.jit, (_k, v: unknown) => typeof v === 'number' && !Number.isInteger(v) ? Math.round(v) : v));
      const j = st.jit as { modulesCompiled: number; wasmBytes?: number; instructionsCompiled?: number };
      if (j.wasmBytes !== undefined && j.modulesCompiled > 0) {
        console.log(`wasm: ${(j.wasmBytes / 1e6).toFixed(2)} MB emitted, ${Math.round(j.wasmBytes / j.modulesCompiled)} bytes per module, ${(j.wasmBytes / (j.instructionsCompiled || 1)).toFixed(1)} per guest instruction compiled`);
      }
    }
  };
  const res = await runMachine(Machine, {
    ...(accel ? { accel } : {}),
    kernel,
    initrd,
    append,
    bios,
    memoryMiB,
    ...(deterministic ? { deterministic } : {}),
  }, {
    signal: abort.signal,
    commandMode: true,
    onInitStart: (vm) => {
      init = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      initCpu = (c.user + c.system) / 1e6;
      report('/init', vm);
      if (initOnly) abort.abort();
    },
  });
  if (initOnly && res.kind === 'stopped') return { init, initCpu, poweroff: NaN, instructions: res.stats.instructions };
  if (showStats) {
    report('the end', { stats: () => res.stats });
  }
  if (res.kind !== 'poweroff') throw new Error(`visor boot ended with ${res.kind}`);
  return { init, initCpu, poweroff: (performance.now() - t0) / 1000, instructions: res.stats.instructions };
}

/**
 * QEMU gets the initramfs as visor's guest does: visor inflates a gzip'd initramfs on the host
 * when the guest has room (src/host/initrd.ts), so both guests do the same work. Returns the
 * path of an uncompressed copy and a function removing it.
 */
export function inflatedInitrdForQemu(initrd: string, memoryMiB = 512): { path: string; remove(): void } {
  const path = join(mkdtempSync(join(tmpdir(), 'visor-bench-')), 'initramfs.cpio');
  writeFileSync(path, inflateInitrd(readFileSync(initrd), memoryMiB * 2 ** 20));
  return { path, remove: () => rmSync(dirname(path), { recursive: true, force: true }) };
}

/** Boots QEMU TCG to poweroff; `init` is when the guest printed the /init marker. */
export function bootQemu(kernel: string, initrd: string, append: string, bios: string, o: BootOptions = {}): Promise<BootTimes> {
  const memoryMiB = o.memoryMiB ?? 512;
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let init = NaN;
    let initCpu = NaN;
    let buf = '';
    const q = spawn('qemu-system-riscv64', [
      '-M', 'virt', '-m', String(memoryMiB), '-smp', '1', '-nographic', '-no-reboot',
      '-bios', bios, '-kernel', kernel, '-initrd', initrd, '-append', append,
    ], { stdio: ['ignore', 'pipe', 'inherit'] });
    q.stdout.on('data', (d: Buffer) => {
      if (Number.isNaN(init)) {
        buf = (buf + d.toString('latin1')).slice(-256);
        if (buf.includes(INIT_START_MARKER)) {
          init = (performance.now() - t0) / 1000;
          initCpu = processCpuSeconds(q.pid);
        }
      }
    });
    q.on('error', reject);
    q.on('exit', () => resolve({ init, initCpu, poweroff: (performance.now() - t0) / 1000 }));
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const useOpensbi = args.includes('--opensbi');
  const envAccel = process.env['VISOR_ACCEL'];
  const accel = args.includes('--interp') ? 'interp' as const : args.includes('--jit') ? 'jit' as const
    : envAccel === 'jit' || envAccel === 'interp' ? envAccel : undefined;
  const thrIdx = args.indexOf('--threshold');
  // The machine's worker reads it (src/host/vm-host.ts hostTier).
  if (thrIdx >= 0) process.env['VISOR_JIT_THRESHOLD'] = args[thrIdx + 1];
  const cmdIdx = args.indexOf('--cmd');
  const guestArgv = cmdIdx >= 0 ? ['sh', '-c', args[cmdIdx + 1]!] : ['true'];
  const memIdx = args.indexOf('--memory');
  const memoryMiB = memIdx >= 0 ? Number(args[memIdx + 1]) : 512;
  const o: BootOptions = {
    ...(accel ? { accel } : {}), stats: args.includes('--stats'), initOnly: args.includes('--init-only'), memoryMiB, deterministic: args.includes('--deterministic'),
  };
  const img = await ensureImage('tiny');
  const append = `${img.append} ${encodeCommand(guestArgv)}`;
  const fw = img.firmwareDynamic ?? img.firmware;
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}, Node ${process.version}`);
  console.log(`guest: Debian ${img.manifest.kernelRelease}, ${memoryMiB} MiB, command ${JSON.stringify(guestArgv.at(-1))} then poweroff`);

  const visorBios = useOpensbi ? fw! : 'builtin';
  // --twice: boot once first in the same process, so the timed boot runs with V8's feedback and
  // compiled JavaScript warm (separates V8's warm-up from the guest's own cost).
  if (args.includes('--twice')) await bootVisor(img.kernel, img.initrd, append, visorBios, o);
  const v = await bootVisor(img.kernel, img.initrd, append, visorBios, o);
  const mips = v.instructions ? v.instructions / 1e6 / v.poweroff : 0;
  console.log(`visor (${accel ?? 'default tier'}, ${useOpensbi ? 'OpenSBI fw_dynamic' : 'built-in SBI'}${o.deterministic ? `, deterministic: ${v.instructions} instructions` : ''}): /init ${v.init.toFixed(2)} s (${v.initCpu?.toFixed(2)} CPU-s), poweroff ${v.poweroff.toFixed(2)} s, ${(v.instructions! / 1e9).toFixed(2)} G instructions, ${mips.toFixed(1)} MIPS`);

  const haveQemu = !args.includes('--no-qemu') && spawnSync('qemu-system-riscv64', ['--version']).status === 0;
  if (haveQemu && fw) {
    // visor inflates a gzip'd initramfs on the host when the guest has room (src/host/initrd.ts);
    // QEMU gets the archive in the same form, so both guests do the same work.
    const raw = inflatedInitrdForQemu(img.initrd, memoryMiB);
    const q = await bootQemu(img.kernel, raw.path, append, fw, o);
    raw.remove();
    console.log(`qemu TCG (OpenSBI fw_dynamic): /init ${q.init.toFixed(2)} s (${q.initCpu?.toFixed(2)} CPU-s), poweroff ${q.poweroff.toFixed(2)} s`);
    console.log(`ratio visor/qemu: /init ${(v.init / q.init).toFixed(1)}x wall, ${(v.initCpu! / q.initCpu!).toFixed(1)}x CPU-s; poweroff ${(v.poweroff / q.poweroff).toFixed(1)}x wall`);
  } else {
    console.log('qemu: not measured (qemu-system-riscv64 not installed or --no-qemu)');
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
