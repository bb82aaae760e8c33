/**
 * The largest guest RAM a machine accepts (MAX_MEMORY_MIB) builds and runs on both tiers:
 * a bare-metal program stores to and loads from the top of RAM (every width, through the
 * interpreter's and the JIT's fast paths, in a loop so the JIT compiles it), then reports
 * through the SBI whether it read back what it wrote. `visor run --memory 2048` used to die
 * building the hart's RAM views ("Invalid typed array length: -1073741824").
 */
import { describe, expect, it } from 'vitest';
import { Asm, X, jal, ld, lw, lhu, lbu, sd, sw, sh, sb, ecall, addi } from '../../test/support/riscv-asm.js';
import { ManualClock } from '../machine/clock.js';
import { MAX_MEMORY_MIB } from '../machine/ram-size.js';
import { VIRT_MEMMAP } from '../machine/memmap.js';
import { assembleVm } from './assembler.js';
import { VmDriver, type DriverExit } from './driver.js';
import type { Accel, VmSpec } from './spec.js';

const SBI_EXT_SRST = 0x53525354;

/** Writes and reads back the last 8 bytes of RAM 50 times; SRST reason 0 when all matched, 1 when not. */
function topOfRamProgram(ramBytes: number): Uint8Array {
  const a = new Asm(0x8020_0000);
  a.emit(jal(X.zero, 0x40));
  a.space(0x30 - a.size);
  a.ascii('RISCV\0\0\0');
  a.ascii('RSC\x05');
  a.word(0);
  const top = BigInt(VIRT_MEMMAP.dram.base) + BigInt(ramBytes) - 8n;
  a.li(X.s0, top);
  a.li(X.s1, 0x1122_3344_5566_7788n);
  a.li(X.s2, 50);
  a.label('loop');
  a.emit(sd(X.s1, X.s0, 0), ld(X.t0, X.s0, 0));
  a.bne(X.t0, X.s1, 'bad');
  a.emit(sw(X.s1, X.s0, 4), lw(X.t1, X.s0, 4));
  a.li(X.t2, 0x5566_7788).bne(X.t1, X.t2, 'bad');
  a.emit(sh(X.s1, X.s0, 6), lhu(X.t1, X.s0, 6));
  a.li(X.t2, 0x7788).bne(X.t1, X.t2, 'bad');
  a.emit(sb(X.s1, X.s0, 7), lbu(X.t1, X.s0, 7));
  a.li(X.t2, 0x88).bne(X.t1, X.t2, 'bad');
  a.emit(addi(X.s2, X.s2, -1));
  a.bnez(X.s2, 'loop');
  a.li(X.a1, 0).j('done');
  a.label('bad').li(X.a1, 1);
  a.label('done').li(X.a7, SBI_EXT_SRST).li(X.a6, 0).li(X.a0, 0).emit(ecall());
  a.label('hang').j('hang');
  return a.bytes();
}

async function run(accel: Accel): Promise<{ exit: DriverExit | undefined; jitModules: number }> {
  const spec: VmSpec = {
    name: 'max-ram', kernel: 'top-of-ram.img', append: '', bios: 'builtin', memoryMiB: MAX_MEMORY_MIB,
    disks: [], nets: [], rng: false, deterministic: false, accel,
  };
  const m = assembleVm({
    spec, backends: { disks: [], nics: [] }, clock: new ManualClock(), tier: { accel, jitThreshold: 0 },
    boot: { kernel: topOfRamProgram(MAX_MEMORY_MIB * 2 ** 20) },
  });
  expect(m.vm.bus.ram.length).toBe(MAX_MEMORY_MIB * 2 ** 20);
  const d = new VmDriver(m);
  let exit: DriverExit | undefined;
  d.on('exit', (e) => (exit = e));
  await d.run();
  return { exit, jitModules: m.vm.hart.jitStats?.modulesCompiled ?? 0 };
}

describe(`guest RAM at the maximum (${MAX_MEMORY_MIB} MiB)`, () => {
  it('the interpreter reads back what it wrote at the top of RAM', async () => {
    expect((await run('interp')).exit).toEqual({ kind: 'poweroff' });
  });

  it('so does the JIT, from compiled code', async () => {
    const r = await run('jit');
    expect(r.exit).toEqual({ kind: 'poweroff' });
    expect(r.jitModules).toBeGreaterThan(0);
  });
});
