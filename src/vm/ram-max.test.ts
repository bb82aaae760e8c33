/**
 * The largest guest RAM a machine accepts (MAX_MEMORY_MIB, 3926 MiB: as much as one 32-bit
 * WebAssembly memory holds beside the JIT's state) builds and runs on both tiers. A bare-metal
 * program works on RAM past 2 GiB, where a RAM offset no longer fits an int32: it stores to and
 * loads from the first bytes past 2 GiB and the top of RAM (every width, through the
 * interpreter's and the JIT's fast paths), does an AMO and an LR/SC pair at the top, and calls
 * a function it copied near the top (so the fetch TLB, the JIT's dispatcher and compiler see a
 * code page there), in a loop so the JIT compiles it; then it reports through the SBI whether
 * everything read back what it wrote. `visor run --memory 2048` used to die building the hart's
 * RAM views ("Invalid typed array length: -1073741824"); past 2 GiB the TLB's RAM offsets read
 * as negative int32 and the interpreter, the JIT and its dispatcher took them for MMIO.
 */
import { describe, expect, it } from 'vitest';
import {
  Asm, X, addi, amoadd_d, ecall, fence_i, jal, jalr, lbu, ld, lhu, lr_d, lw, sb, sc_d, sd, sh, sw,
} from '../../test/support/riscv-asm.js';
import { ManualClock } from '../machine/clock.js';
import { MAX_MEMORY_MIB } from '../machine/ram-size.js';
import { VIRT_MEMMAP } from '../machine/memmap.js';
import { assembleVm } from './assembler.js';
import { VmDriver, type DriverExit } from './driver.js';
import type { Accel, VmSpec } from './spec.js';
import type { JitStats } from '../cpu/tier.js';

const SBI_EXT_SRST = 0x53525354;
const LOOPS = 50;

/** Stores `v` at `base` with every width and reads each back; branches to 'bad' on a mismatch. */
function everyWidth(a: Asm, base: number, v: number): void {
  a.emit(sd(v, base, 0), ld(X.t0, base, 0));
  a.bne(X.t0, v, 'bad');
  a.emit(sw(v, base, 4), lw(X.t1, base, 4));
  a.li(X.t2, 0x5566_7788).bne(X.t1, X.t2, 'bad');
  a.emit(sh(v, base, 6), lhu(X.t1, base, 6));
  a.li(X.t2, 0x7788).bne(X.t1, X.t2, 'bad');
  a.emit(sb(v, base, 7), lbu(X.t1, base, 7));
  a.li(X.t2, 0x88).bne(X.t1, X.t2, 'bad');
}

/** The test program (see the file comment); SRST reason 0 when everything matched, 1 when not. */
function highRamProgram(ramBytes: number): Uint8Array {
  const a = new Asm(0x8020_0000);
  a.emit(jal(X.zero, 0x40));
  a.space(0x30 - a.size);
  a.ascii('RISCV\0\0\0');
  a.ascii('RSC\x05');
  a.word(0);
  const ramBase = BigInt(VIRT_MEMMAP.dram.base);
  const top = ramBase + BigInt(ramBytes) - 8n;
  const fn = ramBase + BigInt(ramBytes) - 0x2000n; // a page of its own: stores to s0 leave it alone
  a.li(X.s0, top);
  a.li(X.s3, ramBase + 2n ** 31n); // RAM offset 2^31: the first past a positive int32
  a.li(X.s1, 0x1122_3344_5566_7788n);
  a.li(X.s2, LOOPS);
  // Copy `addi a2, a2, 1; ret` to fn, make it visible to fetch, count its calls in a2.
  a.li(X.s4, fn).li(X.t0, addi(X.a2, X.a2, 1)).emit(sw(X.t0, X.s4, 0));
  a.li(X.t0, jalr(X.zero, X.ra, 0)).emit(sw(X.t0, X.s4, 4), fence_i());
  a.li(X.a2, 0);
  a.label('loop');
  everyWidth(a, X.s3, X.s1);
  everyWidth(a, X.s0, X.s1);
  // AMO: old value back, sum in memory.
  a.li(X.t1, 5).emit(sd(X.s1, X.s0, 0), amoadd_d(X.t0, X.t1, X.s0), ld(X.t2, X.s0, 0));
  a.bne(X.t0, X.s1, 'bad');
  a.emit(addi(X.t0, X.t0, 5)).bne(X.t2, X.t0, 'bad');
  // LR/SC: the reservation holds (0), memory gets the new value.
  a.emit(lr_d(X.t0, X.s0), sc_d(X.t1, X.s1, X.s0), ld(X.t2, X.s0, 0));
  a.bnez(X.t1, 'bad').bne(X.t2, X.s1, 'bad');
  a.emit(jalr(X.ra, X.s4, 0));
  a.emit(addi(X.s2, X.s2, -1));
  a.bnez(X.s2, 'loop');
  a.li(X.t0, LOOPS).bne(X.a2, X.t0, 'bad');
  a.li(X.a1, 0).j('done');
  a.label('bad').li(X.a1, 1);
  a.label('done').li(X.a7, SBI_EXT_SRST).li(X.a6, 0).li(X.a0, 0).emit(ecall());
  a.label('hang').j('hang');
  return a.bytes();
}

async function run(accel: Accel): Promise<{ exit: DriverExit | undefined; instructions: number; jit: JitStats | undefined }> {
  const spec: VmSpec = {
    name: 'max-ram', kernel: 'top-of-ram.img', append: '', bios: 'builtin', memoryMiB: MAX_MEMORY_MIB,
    disks: [], nets: [], rng: false, deterministic: false, accel,
  };
  const m = assembleVm({
    spec, backends: { disks: [], nics: [] }, clock: new ManualClock(), tier: { accel, jitThreshold: 0 },
    boot: { kernel: highRamProgram(MAX_MEMORY_MIB * 2 ** 20) },
  });
  expect(m.vm.bus.ram.length).toBe(MAX_MEMORY_MIB * 2 ** 20);
  const d = new VmDriver(m);
  let exit: DriverExit | undefined;
  d.on('exit', (e) => (exit = e));
  await d.run();
  return { exit, instructions: m.vm.hart.stats.instructions, jit: m.vm.hart.jitStats };
}

describe(`guest RAM at the maximum (${MAX_MEMORY_MIB} MiB)`, () => {
  it('the interpreter reads back what it wrote past 2 GiB and runs code there', async () => {
    expect((await run('interp')).exit).toEqual({ kind: 'poweroff' });
  });

  it('so does the JIT, from compiled code', async () => {
    const r = await run('jit');
    expect(r.exit).toEqual({ kind: 'poweroff' });
    // Compiled code did the work: had it taken RAM past 2 GiB for MMIO, every access there
    // would have left it (a step exit each, 16 an iteration), and the dispatcher would not
    // have entered the function's page (2 entries an iteration: the call and the return).
    const jit = r.jit!;
    expect(jit.modulesCompiled).toBeGreaterThan(0);
    expect(jit.stepExits).toBeLessThan(LOOPS);
    expect(jit.cacheHits).toBeGreaterThanOrEqual(2 * LOOPS);
    expect(jit.instructions).toBeGreaterThan(0.9 * r.instructions);
  });
});
