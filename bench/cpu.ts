/**
 * Guest MIPS on six loops (integer, memory, branchy, calls, float, float-inexact), on visor's hart and, in
 * the same run, on QEMU TCG (the same program, bare metal on its virt board) where
 * qemu-system-riscv64 is installed.
 * Run: npm run bench:cpu   (builds first: the compiled dist inlines the opcode enum).
 * Prints one line per loop; with --json a JSON array.
 * `--accel interp|jit` picks the tier (default: the hart's), `--jit-threshold N` the JIT's threshold;
 * the JIT's counters (modules, compile time, cache hits) are printed per loop. `--iter N`
 * sets the iterations (default 20 M for the interpreter, 100 M for the JIT: runs long enough to
 * time); `--no-qemu` skips QEMU; `--loops float,calls` runs only those loops.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as I from '../test/support/riscv-asm.js';
import { Asm } from '../test/support/riscv-asm.js';
import type { Hart as HartType } from '../src/cpu/hart.js';

const { Hart } = (await import('../dist/cpu/hart.js' as string)) as unknown as { Hart: typeof HartType };
const { jitTier } = (await import('../dist/jit/jit.js' as string)) as typeof import('../src/jit/jit.js');
const { allocateGuestRam } = (await import('../dist/cpu/guest-ram.js' as string)) as unknown as typeof import('../src/cpu/guest-ram.js');
const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const accelArg = argValue('--accel');
const accel = accelArg === 'interp' || accelArg === 'jit' ? accelArg : undefined; // default: the hart's
// V8 as a machine running the JIT has it (src/host/v8-tuning.ts: Liftoff only, no OSR);
// VISOR_WASM_TIERUP=1 keeps V8's defaults.
if (accel === 'jit') ((await import('../dist/host/v8-tuning.js' as string)) as { tuneV8ForJit: () => void }).tuneV8ForJit();
const jitThreshold = argValue('--jit-threshold') !== undefined ? Number(argValue('--jit-threshold')) : undefined;
const RAM_BASE = 0x8000_0000;
/** QEMU virt's test device (sifive_test): writing 0x5555 powers off. */
const FINISHER = 0x10_0000;
const { t0, t1, t2, t3, a0, a1, a2, a3 } = I;

interface Loop { name: string; build(a: Asm): void }

const ITER = argValue('--iter') !== undefined ? Number(argValue('--iter')) : accel === 'jit' ? 100_000_000 : 20_000_000;
const loops: Loop[] = [
  { name: 'integer', build(a) {
    a.li(t0, 0).li(t3, ITER).li(t1, 1).li(t2, 0);
    a.label('l').emit(I.addi(t0, t0, 1), I.xor(t1, t1, t0), I.add(t2, t2, t1), I.slli(a0, t2, 3), I.srli(a1, a0, 5));
    a.bne(t0, t3, 'l');
  } },
  { name: 'memory', build(a) {
    a.li(t0, 0).li(t3, ITER * 8).li(a2, RAM_BASE + 0x10000); // t0 steps by 8: ITER iterations
    a.label('l').emit(I.andi(a0, t0, 0x3f8), I.add(a0, a0, a2), I.ld(a1, a0, 0), I.addi(a1, a1, 1), I.sd(a1, a0, 0), I.addi(t0, t0, 8));
    a.bne(t0, t3, 'l');
  } },
  // An unrolled copy, as memcpy and copy_to_user run it: eight loads through one pointer, eight
  // stores through another, 64 bytes an iteration, over a 2 KiB buffer (ITER / 18 iterations).
  { name: 'copy', build(a) {
    a.li(t0, 0).li(t3, Math.floor(ITER / 18) * 64).li(a2, RAM_BASE + 0x10000).li(a3, RAM_BASE + 0x12000);
    a.label('l').emit(I.andi(a0, t0, 0x7c0), I.add(a1, a0, a2), I.add(a0, a0, a3));
    for (let k = 0; k < 8; k++) a.emit(I.ld(14 + k, a1, 8 * k)); // a4-a7, s2-s5
    for (let k = 0; k < 8; k++) a.emit(I.sd(14 + k, a0, 8 * k));
    a.emit(I.addi(t0, t0, 64)).bne(t0, t3, 'l');
  } },
  { name: 'branchy', build(a) {
    a.li(t0, 0).li(t3, ITER).li(a3, 0);
    a.label('l').emit(I.andi(a0, t0, 3)).beqz(a0, 'z').emit(I.addi(a3, a3, 1)).j('n');
    a.label('z').emit(I.addi(a3, a3, -1)).label('n').emit(I.addi(t0, t0, 1)).bne(t0, t3, 'l');
  } },
  // A call to a function on the next page and its return, every iteration: 2 page crossings
  // per 8 instructions (kernel code calls across pages all the time).
  { name: 'calls', build(a) {
    a.li(t0, 0).li(t3, ITER / 8);
    a.label('l').emit(I.addi(t0, t0, 1)).call('f').emit(I.add(a1, a1, a0)).bne(t0, t3, 'l');
    a.j('end');
    a.align(4096, true);
    a.label('f').emit(I.xor(a0, a0, t0), I.addi(a0, a0, 3), I.slli(a2, a0, 1)).emit(I.jalr(0, I.ra, 0));
  } },
  { name: 'float', build(a) {
    a.li(t0, 1 << 13).emit(I.csrs(I.CSR.mstatus, t0)); // FS = initial
    a.li(t0, 0).li(t3, ITER).li(t1, 3).emit(I.fcvt_d_l(1, t1), I.fcvt_d_l(2, 0));
    a.label('l').emit(I.fadd_d(2, 2, 1), I.fmul_d(3, 2, 1), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
  } },
  // The same with inexact results (step 1.1): the inexact flag is set after the first one.
  { name: 'float-inexact', build(a) {
    a.li(t0, 1 << 13).emit(I.csrs(I.CSR.mstatus, t0));
    a.li(t1, 11).emit(I.fcvt_d_l(1, t1)).li(t1, 10).emit(I.fcvt_d_l(4, t1), I.fdiv_d(1, 1, 4));
    a.li(t0, 0).li(t3, ITER).emit(I.fcvt_d_l(2, 0));
    a.label('l').emit(I.fadd_d(2, 2, 1), I.fmul_d(3, 2, 1), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
  } },
];

/**
 * Seconds QEMU TCG takes to run `program` (bare metal from RAM_BASE, M-mode, ending with a
 * write to the finisher) beyond its own start-up, which a run of `empty` measures; undefined
 * without QEMU.
 */
function qemuSeconds(program: Uint8Array, empty: Uint8Array): number | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'visor-bench-cpu-'));
  try {
    const time = (bin: Uint8Array) => {
      const file = join(dir, 'loop.bin');
      writeFileSync(file, bin);
      const t0 = performance.now();
      const r = spawnSync('qemu-system-riscv64', ['-M', 'virt', '-m', '64', '-smp', '1', '-nographic', '-no-reboot', '-bios', 'none', '-kernel', file], { stdio: 'ignore', timeout: 300_000 });
      if (r.status !== 0) throw new Error(`qemu-system-riscv64 exited with ${r.status ?? r.signal} running the ${bin.length}-byte loop`);
      return (performance.now() - t0) / 1000;
    };
    const base = Math.min(time(empty), time(empty), time(empty));
    return Math.min(time(program), time(program)) - base;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const withQemu = !process.argv.includes('--no-qemu') && spawnSync('qemu-system-riscv64', ['--version']).status === 0;
if (!withQemu) console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');

/** The loop's program, ending with a write of 0x5555 to the finisher (visor and QEMU stop there). */
function program(loop: Loop | undefined): Uint8Array {
  const a = new Asm(RAM_BASE);
  loop?.build(a);
  a.label('end').li(t2, FINISHER).li(t1, 0x5555).emit(I.sw(t1, t2, 0));
  a.label('spin').j('spin');
  return a.bytes();
}

const json = process.argv.includes('--json');
/** `--loops a,b`: only these loops (default all). */
const only = argValue('--loops')?.split(',');
const results: { loop: string; mips: number; mipsPerCpuSecond: number; instructions: number; seconds: number; qemuMips?: number }[] = [];
for (const loop of loops) {
  if (only !== undefined && !only.includes(loop.name)) continue;
  const code = program(loop);
  const ram = allocateGuestRam(1 << 20);
  ram.set(code, 0);
  let finished = false;
  const hart: HartType = new Hart({
    ramBase: RAM_BASE, ram, mmioRead: () => undefined,
    mmioWrite: (addr) => { if (addr !== FINISHER) return false; finished = true; hart.requestStop(); return true; },
  }, { tier: jitTier, ...(accel ? { accel } : {}), ...(jitThreshold !== undefined ? { jitThreshold } : {}) });
  hart.reset(RAM_BASE);
  hart.run(2_000_000); // warm up the JIT of the host
  hart.reset(RAM_BASE);
  finished = false;
  const t = performance.now();
  const cpu0 = process.cpuUsage();
  let n = 0;
  while (!finished) n += hart.run(10_000_000);
  const s = (performance.now() - t) / 1000;
  const c = process.cpuUsage(cpu0);
  // CPU seconds of this process: the figure that stays meaningful on a loaded machine.
  const cpuS = (c.user + c.system) / 1e6;
  const qs = withQemu ? qemuSeconds(code, program(undefined)) : undefined;
  const qemuMips = qs !== undefined && qs > 0 ? n / qs / 1e6 : undefined;
  results.push({ loop: loop.name, mips: n / s / 1e6, mipsPerCpuSecond: n / cpuS / 1e6, instructions: n, seconds: s, ...(qemuMips !== undefined ? { qemuMips } : {}) });
  if (!json) {
    console.log(`${loop.name.padEnd(8)} ${(n / s / 1e6).toFixed(1).padStart(7)} MIPS wall, ${(n / cpuS / 1e6).toFixed(1).padStart(7)} MIPS per CPU second  (${(n / 1e6).toFixed(0)} M instructions in ${s.toFixed(2)} s)`);
    if (qemuMips !== undefined) console.log(`         qemu TCG: ${qemuMips.toFixed(1)} MIPS wall (${qs!.toFixed(2)} s beyond its start-up); visor/qemu ${(qemuMips / (n / s / 1e6)).toFixed(2)}x time`);
    const j = hart.jitStats;
    if (j) console.log(`         jit: ${j.modulesCompiled} modules, ${j.blocksCompiled} blocks, ${j.compileMs.toFixed(1)} ms compiling, ${j.cacheHits} cache hits, ${(j.instructions / 1e6).toFixed(0)} M instructions compiled code ran`);
    else if (accel !== 'interp') console.log(`         jit unavailable: ${hart.jitUnavailable}`);
  }
}
if (json) console.log(JSON.stringify(results));
