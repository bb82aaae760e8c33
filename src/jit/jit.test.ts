import { describe, expect, it } from 'vitest';
import * as I from '../../test/support/riscv-asm.js';
import { Asm } from '../../test/support/riscv-asm.js';
import { Hart, type HartOptions } from '../cpu/hart.js';
import { jitTier } from './jit.js';
import { allocateGuestRam } from '../cpu/guest-ram.js';
import type { PhysicalMemory } from '../cpu/memory.js';
import { compilePage } from './compiler.js';

const RAM_BASE = 0x8000_0000;
const UART = 0x1000_0000;
const FINISHER = 0x0010_0000;
const { a0, a1, a2, t0, t1, t2, t3 } = I;

function machine(code: Uint8Array, options: HartOptions, plainRam = false) {
  const ram = plainRam ? new Uint8Array(1 << 20) : allocateGuestRam(1 << 20);
  ram.set(code);
  let finished = false;
  let uartReads = 0;
  const memory: PhysicalMemory = {
    ramBase: RAM_BASE,
    ram,
    mmioRead: (addr) => { if (addr === UART + 5) { uartReads++; return 0x60; } return undefined; },
    mmioWrite: (addr) => { if (addr === FINISHER) { finished = true; hart.requestStop(); return true; } return false; },
  };
  const hart: Hart = new Hart(memory, { hartId: 0, tier: jitTier, ...options });
  hart.reset(RAM_BASE);
  const run = (budget = 50_000_000) => {
    let n = 0;
    while (!finished && n < budget) { const k = hart.run(Math.min(1_000_000, budget - n)); n += k; if (k === 0) break; }
    return n;
  };
  return { hart, ram, run, get finished() { return finished; }, get uartReads() { return uartReads; } };
}

function finish(a: Asm): Uint8Array {
  a.li(t2, FINISHER).emit(I.sw(t2, t2, 0));
  a.label('__spin').j('__spin');
  return a.bytes();
}

const JIT: HartOptions = { accel: 'jit', jitThreshold: 0 };

/** Runs `code` to its end on the interpreter and on the JIT: both finish with the same registers. */
function bothTiers(code: Uint8Array, jitThreshold: number) {
  const interp = machine(code, { accel: 'interp' });
  const jit = machine(code, { accel: 'jit', jitThreshold });
  const n = interp.run();
  expect(jit.run()).toBe(n);
  expect(interp.finished && jit.finished).toBe(true);
  // x1..x31 (regs 64/65 are the x0 discard slot: scratch, which the tiers may leave differently).
  expect([...jit.hart.regs.subarray(0, 64)]).toEqual([...interp.hart.regs.subarray(0, 64)]);
  return { interp, jit, n };
}

describe('jit', () => {
  it('runs a hot loop in compiled code with the interpreter\'s results', () => {
    const a = new Asm(RAM_BASE);
    a.li(t0, 0).li(t3, 100_000).li(t1, 1).li(a0, 0).li(a2, RAM_BASE + 0x8000);
    a.label('l').emit(I.addi(t0, t0, 1), I.xor(t1, t1, t0), I.add(a0, a0, t1), I.mul(a1, a0, t0), I.sd(a1, a2, 0), I.ld(a1, a2, 0));
    a.bne(t0, t3, 'l');
    const code = finish(a);
    const { jit, n: n1 } = bothTiers(code, 8);
    const s = jit.hart.jitStats!;
    expect(s.modulesCompiled).toBeGreaterThanOrEqual(1);
    expect(s.instructions).toBeGreaterThan(0.95 * n1);
    expect(s.compileMs).toBeGreaterThan(0);
  });

  /** A loop of `iterations` on one page, and the interpreter's run of it (instructions, registers). */
  function counterLoop(iterations: number) {
    const a = new Asm(RAM_BASE);
    a.li(t0, 0).li(t3, iterations).li(t1, 1).li(a0, 0);
    a.label('l').emit(I.addi(t0, t0, 1), I.xor(t1, t1, t0), I.add(a0, a0, t1)).bne(t0, t3, 'l');
    const code = finish(a);
    const interp = machine(code, { accel: 'interp' });
    return { code, interp, n: interp.run() };
  }

  it('holdJit: interprets only for that many instructions, then compiles and runs compiled code with the same results', () => {
    const { code, interp, n } = counterLoop(200_000);
    const jit = machine(code, { accel: 'jit', jitThreshold: 8 });
    jit.hart.holdJit(300_000);
    let ran = 0;
    while (ran < 300_000) ran += jit.hart.run(Math.min(100_000, 300_000 - ran));
    expect(jit.hart.jitStats!.modulesCompiled).toBe(0);
    expect(jit.hart.jitStats!.instructions).toBe(0);
    ran += jit.run();
    expect(ran).toBe(n);
    expect(jit.hart.jitStats!.modulesCompiled).toBe(1);
    expect(jit.hart.jitStats!.instructions).toBeGreaterThan(0.5 * n);
    expect([...jit.hart.regs.subarray(0, 64)]).toEqual([...interp.hart.regs.subarray(0, 64)]);
  });

  it('returns from a call within the page through the entry map, without entering the page again', () => {
    const a = new Asm(RAM_BASE);
    a.li(t0, 0).li(t3, 10_000).li(a0, 0);
    a.label('l').emit(I.addi(t0, t0, 1)).jal(1, 'f').emit(I.xor(a1, a1, a0)).bne(t0, t3, 'l');
    a.j('done');
    a.label('f').emit(I.addi(a0, a0, 3), I.jalr(0, 1, 0));
    a.label('done');
    const { jit } = bothTiers(finish(a), 8);
    const s = jit.hart.jitStats!;
    // 10 000 returns (`jalr x0, ra`) to the return site: each reads the entry map and goes on
    // in the same call of the page's code; a return through the dispatcher is an entry each.
    expect(s.instructions).toBeGreaterThan(50_000);
    expect(s.cacheHits).toBeLessThan(100);
  });

  it('runs every AMO inline with the interpreter\'s results (signed and unsigned min/max, .W sign extension)', () => {
    const a = new Asm(RAM_BASE);
    const amos = [I.amoswap_w, I.amoadd_w, I.amoxor_w, I.amoand_w, I.amoor_w, I.amomin_w, I.amomax_w, I.amominu_w, I.amomaxu_w,
      I.amoswap_d, I.amoadd_d, I.amoxor_d, I.amoand_d, I.amoor_d, I.amomin_d, I.amomax_d, I.amominu_d, I.amomaxu_d];
    // t1 walks through values of both signs; every AMO hits its own doubleword, and the old
    // values are folded into a0 so a wrong rd shows.
    a.li(t0, 0).li(t3, 300).li(t1, 0x7ffffff0_80000001n).li(a2, RAM_BASE + 0x8000).li(a0, 0);
    a.label('l');
    amos.forEach((amo, k) => a.emit(I.addi(a1, a2, 8 * k), amo(I.s1, t1, a1), I.xor(a0, a0, I.s1), I.slli(a0, a0, 1)));
    a.emit(I.mul(t1, t1, t1), I.addi(t1, t1, 0x355), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
    const code = finish(a);
    const { interp, jit } = bothTiers(code, 1);
    expect(Buffer.compare(jit.ram.subarray(0x8000, 0x8100), interp.ram.subarray(0x8000, 0x8100))).toBe(0);
    expect(jit.hart.jitStats!.instructions).toBeGreaterThan(300 * amos.length * 4 * 0.9);
  });

  it('runs misaligned loads and stores inline within a page and steps only the ones crossing into the next', () => {
    const a = new Asm(RAM_BASE);
    // Each iteration: sd/ld at offsets 1 and 3 (within a page), then sd/ld at 0x8ffd (crossing
    // into the page at 0x9000); the values folded into a0 show a wrong byte anywhere.
    a.li(t0, 0).li(t3, 400).li(t1, 0x0123456789abcdefn).li(a2, RAM_BASE + 0x8000).li(I.a3, RAM_BASE + 0x9000).li(a0, 0);
    a.label('l');
    a.emit(I.sd(t1, a2, 1), I.ld(a1, a2, 1), I.xor(a0, a0, a1), I.sw(t1, a2, 19), I.lw(a1, a2, 17), I.add(a0, a0, a1));
    a.emit(I.sd(t1, I.a3, -3), I.ld(a1, I.a3, -5), I.xor(a0, a0, a1), I.lhu(a1, I.a3, -1), I.add(a0, a0, a1));
    a.emit(I.slli(t2, t1, 7), I.xor(t1, t1, t2), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
    const code = finish(a);
    const { interp, jit } = bothTiers(code, 1);
    expect(Buffer.compare(jit.ram.subarray(0x8000, 0x9010), interp.ram.subarray(0x8000, 0x9010))).toBe(0);
    // Three accesses cross a page per iteration (sd/ld at 0xffd/0xffb, lhu at 0xfff); the other four do not.
    const steps = jit.hart.jitStats!.stepExits;
    expect(steps).toBeGreaterThanOrEqual(3 * 390);
    expect(steps).toBeLessThan(3 * 400 + 50);
  });

  it('puts stores back on the fast path once they have dropped the code of a page that held some', () => {
    const a = new Asm(RAM_BASE);
    // Run a routine in the page at 0x4000 (the hart marks the page as code), then store into it
    // in a loop from another page: the first store drops the code, the rest stay in compiled code.
    a.li(t0, RAM_BASE + 0x4000).emit(I.jalr(1, t0, 0));
    a.li(t0, 0).li(t3, 2000).li(a2, RAM_BASE + 0x4800);
    a.label('l').emit(I.sd(t0, a2, 0), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
    const code = finish(a);
    const m = machine(code, { accel: 'jit', jitThreshold: 1 });
    const ret = I.jalr(0, 1, 0) >>> 0;
    new DataView(m.ram.buffer, m.ram.byteOffset).setUint32(0x4000, ret, true);
    m.run();
    expect(m.finished).toBe(true);
    expect(new DataView(m.ram.buffer, m.ram.byteOffset).getBigUint64(0x4800, true)).toBe(1999n);
    expect(m.hart.stats.codeInvalidations).toBeGreaterThanOrEqual(1);
    expect(m.hart.jitStats!.stepExits).toBeLessThan(20);
  });

  it('compiles a page entered often in all, though at many offsets each entered rarely', () => {
    const a = new Asm(RAM_BASE);
    // 20 tiny routines in the page at 0x4000, each called 5 times: 100 entries to the page,
    // none of its offsets near the threshold of 50.
    a.li(t0, 0).li(t3, 5).li(a0, 0);
    a.label('outer').li(t1, 0).li(a2, RAM_BASE + 0x4000);
    a.label('inner').emit(I.jalr(1, a2, 0), I.addi(a2, a2, 8), I.addi(t1, t1, 1)).li(t2, 20).bne(t1, t2, 'inner');
    a.emit(I.addi(t0, t0, 1)).bne(t0, t3, 'outer');
    const code = finish(a);
    const m = machine(code, { accel: 'jit', jitThreshold: 50 });
    const dv = new DataView(m.ram.buffer, m.ram.byteOffset);
    for (let k = 0; k < 20; k++) {
      dv.setUint32(0x4000 + 8 * k, I.addi(a0, a0, k + 1) >>> 0, true);
      dv.setUint32(0x4004 + 8 * k, I.jalr(0, 1, 0) >>> 0, true);
    }
    m.run();
    expect(m.finished).toBe(true);
    expect(m.hart.getX(10)).toBe(5n * 210n);
    expect(m.hart.jitStats!.liveModules).toBe(2); // the loop's page and the routines' page
  });

  it('recompiles a compiled page for a new entry reached from compiled code at a quarter of the threshold', () => {
    const a = new Asm(RAM_BASE);
    // 300 calls of the routine at 0x4000 compile both pages; then 300 calls of a second routine
    // on that page, at 0x4008, reach it from compiled code at an offset it has no entry for.
    a.li(t0, 0).li(t3, 300).li(a0, 0).li(a2, RAM_BASE + 0x4000);
    a.label('first').emit(I.jalr(1, a2, 0), I.addi(t0, t0, 1)).bne(t0, t3, 'first');
    a.li(t0, 0).li(a2, RAM_BASE + 0x4008);
    a.label('second').emit(I.jalr(1, a2, 0), I.addi(t0, t0, 1)).bne(t0, t3, 'second');
    const code = finish(a);
    // Whole pages compiled: the caller's second loop is compiled with its first, so every
    // arrival at 0x4008 comes from compiled code (with compileRunOnly the second loop would
    // still be interpreted, and its arrivals count as the interpreter's).
    const m = machine(code, { accel: 'jit', jitThreshold: 100, jitCompileRunOnly: false });
    const dv = new DataView(m.ram.buffer, m.ram.byteOffset);
    dv.setUint32(0x4000, I.addi(a0, a0, 1) >>> 0, true);
    dv.setUint32(0x4004, I.jalr(0, 1, 0) >>> 0, true);
    dv.setUint32(0x4008, I.addi(a0, a0, 2) >>> 0, true);
    dv.setUint32(0x400c, I.jalr(0, 1, 0) >>> 0, true);
    m.run();
    expect(m.finished).toBe(true);
    expect(m.hart.getX(10)).toBe(300n * 3n);
    // 25 arrivals at 0x4008 before its page is compiled again (100 before the policy changed).
    expect(m.hart.jitStats!.missExits).toBeGreaterThanOrEqual(24);
    expect(m.hart.jitStats!.missExits).toBeLessThan(50);
  });

  it('leaves out of a page\'s module the blocks the interpreter never ran (compileRunOnly)', () => {
    // A loop whose branch to a ten-instruction block is never taken: compiled with only the
    // blocks that ran, the module holds those ten instructions fewer, and the four after the
    // loop (`j end`, and finish()'s lui, sw and spin: not run yet when the page compiles).
    // The results are the same.
    const program = (): Uint8Array => {
      const a = new Asm(RAM_BASE);
      a.li(t0, 0).li(t3, 5000).li(a0, 0).li(t1, -1);
      a.label('l').emit(I.addi(t0, t0, 1)).beq(t0, t1, 'cold').label('back').emit(I.add(a0, a0, t0)).bne(t0, t3, 'l');
      a.j('end');
      a.label('cold');
      for (let k = 0; k < 9; k++) a.emit(I.addi(a0, a0, k + 1));
      a.j('back');
      a.label('end');
      return finish(a);
    };
    const compiled = (runOnly: boolean) => {
      const interp = machine(program(), { accel: 'interp' });
      const jit = machine(program(), { accel: 'jit', jitThreshold: 100, jitCompileRunOnly: runOnly });
      expect(jit.run()).toBe(interp.run());
      expect([...jit.hart.regs.subarray(0, 64)]).toEqual([...interp.hart.regs.subarray(0, 64)]);
      const s = jit.hart.jitStats!;
      expect(s.modulesCompiled).toBe(1);
      expect(s.instructions).toBeGreaterThan(0.9 * 3 * 5000);
      return s.instructionsCompiled;
    };
    expect(compiled(false) - compiled(true)).toBe(10 + 4);
  });

  it('compiles a block left out of a page\'s module once compiled code reaches it often', () => {
    // The branch is not taken in the first 2000 iterations, when the page compiles, and taken
    // in the last 1000: each of those reaches the left-out block from compiled code, and after
    // a quarter of the threshold of them the page is compiled again with it.
    const a = new Asm(RAM_BASE);
    a.li(t0, 0).li(t3, 3000).li(a0, 0).li(t1, 2000);
    a.label('l').emit(I.addi(t0, t0, 1)).blt(t0, t1, 'skip').emit(I.addi(a0, a0, 7), I.xor(a0, a0, t0));
    a.label('skip').emit(I.add(a0, a0, t0)).bne(t0, t3, 'l');
    const code = finish(a);
    const interp = machine(code, { accel: 'interp' });
    const jit = machine(code, { accel: 'jit', jitThreshold: 100 });
    expect(jit.run()).toBe(interp.run());
    expect([...jit.hart.regs.subarray(0, 64)]).toEqual([...interp.hart.regs.subarray(0, 64)]);
    const s = jit.hart.jitStats!;
    expect(s.modulesCompiled).toBe(2);
    expect(s.missExits).toBeGreaterThanOrEqual(24);
    expect(s.missExits).toBeLessThan(50);
    expect(s.instructions).toBeGreaterThan(0.9 * (4 * 3000 + 2 * 1000));
  });

  it('runs LR/SC, CSR accesses and sfence.vma through the hart without leaving compiled code', () => {
    const a = new Asm(RAM_BASE);
    // An atomic increment with LR/SC, sscratch written and read back, SIE cleared in mstatus,
    // a counter read (which must leave compiled code: instret runs ahead of it) and sfence.vma
    // for a page the loop does not use (a full flush would send every LR/SC to the interpreter).
    a.li(t0, 0).li(t3, 500).li(a2, RAM_BASE + 0x8000).li(a0, 0).li(I.s0, 0x4000_0000);
    a.label('l');
    a.emit(I.lr_d(a1, a2), I.addi(a1, a1, 3), I.sc_d(t1, a1, a2), I.add(a0, a0, t1));
    a.emit(I.csrw(I.CSR.sscratch, t0), I.csrr(t2, I.CSR.sscratch), I.add(a0, a0, t2), I.csrci(I.CSR.mstatus, 2));
    a.emit(I.sfence_vma(I.s0), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
    a.emit(I.csrr(I.s1, I.CSR.instret));
    const code = finish(a);
    const { jit } = bothTiers(code, 1);
    expect(new DataView(jit.ram.buffer, jit.ram.byteOffset).getBigUint64(0x8000, true)).toBe(1500n);
    const s = jit.hart.jitStats!;
    expect(s.instructions).toBeGreaterThan(500 * 10 * 0.9);
    // sfence.vma leaves the page (the next fetch is translated afresh) once per iteration.
    expect(s.stepExits).toBeLessThan(20);
  });

  it('drops compiled code when the guest rewrites an instruction (self-modifying code)', () => {
    const a = new Asm(RAM_BASE);
    a.li(a0, 0).li(I.s1, 0);
    a.label('outer').li(t0, 0).li(t3, 1000);
    a.label('l').label('patch').emit(I.addi(a0, a0, 1), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
    a.bnez(I.s1, 'done').li(I.s1, 1);
    // Rewrite 'patch' to add 100 instead, then run the loop again.
    a.li(t1, I.addi(a0, a0, 100)).la(t2, 'patch').emit(I.sw(t1, t2, 0), I.fence_i()).j('outer');
    a.label('done');
    const m = machine(finish(a), JIT);
    m.run();
    expect(m.finished).toBe(true);
    expect(m.hart.getX(10)).toBe(1000n + 100n * 1000n);
    expect(m.hart.jitStats!.invalidations).toBeGreaterThanOrEqual(1);
    expect(m.hart.jitStats!.instructions).toBeGreaterThan(4000);
  });

  it('drops compiled code when a device DMA writes the page (invalidateCode)', () => {
    const a = new Asm(RAM_BASE);
    a.label('top').li(t3, 0).label('patch').emit(I.addi(a0, a0, 1)).j('top');
    const m = machine(a.bytes(), JIT);
    m.run(3000);
    expect(m.hart.jitStats!.liveModules).toBe(1);
    const before = m.hart.getX(10);
    const off = a.addr('patch') - RAM_BASE;
    new DataView(m.ram.buffer, m.ram.byteOffset).setUint32(off, I.addi(a0, a0, 7) >>> 0, true);
    m.hart.invalidateCode(RAM_BASE + off, 4);
    expect(m.hart.jitStats!.invalidations).toBe(1);
    m.run(3000);
    const after = m.hart.getX(10);
    expect(after - before).toBeGreaterThan(1000n);
    expect((after - before) % 7n).toBe(0n); // only the new instruction ran after the write
  });

  it('reuses a probed page for later accesses through the same register, probing again across a page or after the register changes', () => {
    const a = new Asm(RAM_BASE);
    // a2 is 8 bytes below a page boundary: through it, +0 stays in the page, +8 and +16 are in
    // the next page (the known page must not be used), -2040 is back in the first. a2 is then
    // moved a page on (addi) and reloaded from memory (ld into itself): accesses after each
    // must see the new page; so must a load after a2 moved by -8 within the page. Stores go
    // through the same register and are read back.
    a.li(t0, 0).li(t3, 3000).li(a2, RAM_BASE + 0x8ff8).li(t1, 0x1122334455667788n).li(a0, 0);
    a.li(I.a3, RAM_BASE + 0xa000).li(I.a4, RAM_BASE + 0x8ff8).emit(I.sd(I.a4, I.a3, 0)); // *(0xa000) = 0x8ff8 + base
    a.label('l');
    a.emit(I.sd(t1, a2, 0), I.sd(t1, a2, 8), I.sw(t0, a2, 16), I.sh(t0, a2, -2040));
    a.emit(I.ld(a1, a2, 0), I.add(a0, a0, a1), I.ld(a1, a2, 8), I.xor(a0, a0, a1), I.lw(a1, a2, 16), I.add(a0, a0, a1));
    a.emit(I.lhu(a1, a2, -2040), I.add(a0, a0, a1), I.lbu(a1, a2, 7), I.add(a0, a0, a1));
    a.emit(I.addi(a2, a2, -8), I.ld(a1, a2, 0), I.add(a0, a0, a1), I.addi(a2, a2, 8)); // 0x8ff0: not the probed 0x8ff8
    a.emit(I.addi(a2, a2, 2047), I.ld(a1, a2, 9), I.add(a0, a0, a1), I.sd(a0, a2, 17)); // a2 moved: 0x97f7 + 9 = 0x9800
    a.emit(I.ld(a2, I.a3, 0), I.ld(a1, a2, 0), I.xor(a0, a0, a1)); // a2 reloaded: 0x8ff8 again
    a.emit(I.slli(t2, t1, 5), I.xor(t1, t1, t2), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
    const code = finish(a);
    // A threshold of 100: lower ones make a block start at nearly every place a run() batch or
    // an exit once ended, which would leave few accesses after a first one in their block.
    const { interp, jit } = bothTiers(code, 100);
    expect(jit.hart.getX(10)).toBe(interp.hart.getX(10));
    expect(Buffer.compare(jit.ram.subarray(0x8000, 0xb000), interp.ram.subarray(0x8000, 0xb000))).toBe(0);
  });

  it('does not carry a known page into the next virtual page, which maps elsewhere (Sv39)', () => {
    const a = new Asm(RAM_BASE);
    // Data accesses translate under Sv39 (MPRV, MPP = S) through tables built here: VA
    // 0x4000_0000 maps to RAM + 0x20000 and the next page to RAM + 0x30000, not to the page
    // after RAM + 0x20000 (which holds a decoy). Code stays at M's physical addresses.
    const a3 = I.a3, a4 = I.a4, a5 = 15;
    const pte = (pa: number, leaf: boolean) => BigInt(((pa / 4096) * 1024) + (leaf ? 0xcf : 0x01)); // V R W X A D / V
    const root = RAM_BASE + 0x40000, l1 = RAM_BASE + 0x41000, l0 = RAM_BASE + 0x42000;
    const store = (addr: number, v: bigint) => a.li(a3, addr).li(a4, v).emit(I.sd(a4, a3, 0));
    store(root + 8 * 2, pte(0x8000_0000, true)); // the code's and tables' gigapage, identity
    store(root + 8 * 1, pte(l1, false));
    store(l1, pte(l0, false));
    store(l0, pte(RAM_BASE + 0x20000, true));
    store(l0 + 8, pte(RAM_BASE + 0x30000, true));
    store(RAM_BASE + 0x20ff8, 0x1111n);
    store(RAM_BASE + 0x30000, 0x2222n);
    store(RAM_BASE + 0x21000, 0x9999n); // where a known page carried over would read
    a.li(a3, -1).emit(I.csrw(I.CSR.pmpaddr0, a3)).li(a3, 0x1f).emit(I.csrw(I.CSR.pmpcfg0, a3)); // S may access all (NAPOT)
    a.li(a3, (8n << 60n) | BigInt(root / 4096)).emit(I.csrw(I.CSR.satp, a3));
    a.li(a3, (1 << 17) | (1 << 11)).emit(I.csrs(I.CSR.mstatus, a3)); // MPRV, MPP = S
    a.li(t0, 0).li(t3, 3000).li(a5, 0x4000_0ff8).li(a0, 0);
    a.label('l').emit(I.ld(a1, a5, 0), I.add(a0, a0, a1), I.ld(a1, a5, 8), I.add(a0, a0, a1), I.ld(a1, a5, -8), I.add(a0, a0, a1));
    a.emit(I.addi(t0, t0, 1)).bne(t0, t3, 'l');
    a.li(a3, 1 << 17).emit(I.csrc(I.CSR.mstatus, a3));
    const { jit } = bothTiers(finish(a), 100); // the threshold: see the test above
    expect(jit.hart.getX(10)).toBe(3000n * (0x1111n + 0x2222n));
  });

  it('leaves compiled code for MMIO accesses and counts exactly to the budget', () => {
    const a = new Asm(RAM_BASE);
    a.li(t0, 0).li(t3, 500).li(a2, UART);
    a.label('l').emit(I.lbu(a1, a2, 5), I.add(a0, a0, a1), I.addi(t0, t0, 1)).bne(t0, t3, 'l');
    const code = finish(a);
    const interp = machine(code, { accel: 'interp' });
    const jit = machine(code, JIT);
    // Lock step in odd chunks: the JIT stops exactly where the interpreter does.
    for (let i = 0; i < 400 && !interp.finished; i++) {
      expect(jit.hart.run(7)).toBe(interp.hart.run(7));
      expect(jit.hart.pc).toBe(interp.hart.pc);
      expect([...jit.hart.regs]).toEqual([...interp.hart.regs]);
    }
    expect(jit.uartReads).toBe(interp.uartReads);
    expect(jit.hart.getX(10)).toBe(500n * 0x60n);
  });

  it('runs a block that branches to itself as a wasm loop, stopping exactly at the budget', () => {
    const a = new Asm(RAM_BASE);
    a.li(t0, 0).li(t3, 3000).li(a0, 0);
    a.label('l').emit(I.addi(t0, t0, 1), I.xor(a0, a0, t0), I.slli(a1, a0, 3), I.add(a0, a0, a1)).bne(t0, t3, 'l');
    const code = finish(a);
    const interp = machine(code, { accel: 'interp' });
    const jit = machine(code, JIT);
    // Odd chunks end mid-iteration: the loop must stop exactly where the interpreter does.
    for (let i = 0; i < 2000 && !interp.finished; i++) {
      const k = 5 + (i % 13) * 7;
      expect(jit.hart.run(k)).toBe(interp.hart.run(k));
      expect(jit.hart.pc).toBe(interp.hart.pc);
      expect([...jit.hart.regs]).toEqual([...interp.hart.regs]);
    }
    expect(interp.finished).toBe(true);
    // Each chunk after the first resumes mid-iteration, where the interpreter runs the rest of
    // that iteration's block (Jit.exitSteps): at most 4 of every ~50 instructions.
    expect(jit.hart.jitStats!.instructions).toBeGreaterThan(3000 * 5 * 0.8);
  });

  it('does not make the places where a run() batch happened to end into entries', () => {
    const a = new Asm(RAM_BASE);
    a.li(t0, 0).li(t3, 20_000).li(a0, 0);
    a.label('l').emit(I.addi(t0, t0, 1), I.xor(a0, a0, t0), I.slli(a1, a0, 3), I.add(a0, a0, a1), I.sub(a1, a1, t0)).bne(t0, t3, 'l');
    const code = finish(a);
    const interp = machine(code, { accel: 'interp' });
    const jit = machine(code, { accel: 'jit', jitThreshold: 8 });
    // Chunks of odd sizes end at every instruction of the loop body, each hundreds of times.
    for (let i = 0; i < 5000 && !interp.finished; i++) {
      const k = 7 + (i % 11) * 13;
      expect(jit.hart.run(k)).toBe(interp.hart.run(k));
      expect(jit.hart.pc).toBe(interp.hart.pc);
    }
    expect(interp.finished).toBe(true);
    expect([...jit.hart.regs.subarray(0, 64)]).toEqual([...interp.hart.regs.subarray(0, 64)]);
    // Counted as entries, they made the page recompile until every instruction began a block.
    const s = jit.hart.jitStats!;
    expect(s.modulesCompiled).toBeLessThanOrEqual(2);
    expect(s.blocksCompiled).toBeLessThanOrEqual(6);
    expect(s.instructions).toBeGreaterThan(0.8 * 20_000 * 6);
  });

  it('runs F/D stores inline while FS is Clean, and leaves FS Clean (Priv §3.1.6.6)', () => {
    const a = new Asm(RAM_BASE);
    // FS = Dirty to set f1, then Clean (3 -> 2): stores must not dirty it; the loads at the
    // end (FS Clean: they dirty it) go through the interpreter.
    a.li(t0, 3 << 13).emit(I.csrs(I.CSR.mstatus, t0));
    a.li(t1, 0x1234_5678_9abc_def0n).emit(I.fmv_d_x(1, t1));
    a.li(t0, 1 << 13).emit(I.csrc(I.CSR.mstatus, t0));
    a.li(t0, 0).li(t3, 2000).li(a2, RAM_BASE + 0x8000);
    a.label('l').emit(I.andi(a0, t0, 0x3f8), I.add(a0, a0, a2), I.fsd(1, a0, 0), I.fsw(1, a0, 4), I.addi(t0, t0, 8)).bne(t0, t3, 'l');
    a.emit(I.csrr(a1, I.CSR.mstatus));
    a.emit(I.fld(2, a2, 8));
    const code = finish(a);
    const { interp, jit } = bothTiers(code, 4);
    expect((jit.hart.getX(11) >> 13n) & 3n).toBe(2n); // Clean after the stores
    expect(jit.hart.getF(2)).toBe(interp.hart.getF(2));
    expect(Buffer.compare(jit.ram.subarray(0x8000, 0x8400), interp.ram.subarray(0x8000, 0x8400))).toBe(0);
    expect(jit.hart.jitStats!.stepExits).toBeLessThan(100); // the 500 stores of each kind ran inline
  });

  it('keeps the number of live modules bounded', () => {
    const a = new Asm(RAM_BASE);
    // Code on four pages, each looping a little and jumping to the next.
    a.li(t1, 0);
    for (let p = 0; p < 4; p++) {
      a.align(4096, true).label(`p${p}`).li(t0, 0).li(t3, 50);
      a.label(`l${p}`).emit(I.addi(t0, t0, 1), I.addi(t1, t1, 1)).bne(t0, t3, `l${p}`);
    }
    const code = finish(a);
    const m = machine(code, { accel: 'jit', jitThreshold: 0, jitMaxModules: 2 });
    m.run();
    expect(m.finished).toBe(true);
    expect(m.hart.getX(6)).toBe(200n);
    const s = m.hart.jitStats!;
    expect(s.liveModules).toBeLessThanOrEqual(2);
    expect(s.evictions).toBeGreaterThanOrEqual(2);
  });

  it('runs another hart\'s compiled pages (exportCode → importCode) without compiling, only over the same bytes', () => {
    const loop = (limit: number) => {
      const a = new Asm(RAM_BASE);
      a.li(t0, 0).li(t3, limit).li(t1, 1).li(a0, 0);
      a.label('l').emit(I.addi(t0, t0, 1), I.xor(t1, t1, t0), I.add(a0, a0, t1), I.mul(a1, a0, t0));
      a.bne(t0, t3, 'l');
      return finish(a);
    };
    const { jit: source } = bothTiers(loop(50_000), 8);
    const code = source.hart.jit!.exportCode!();
    expect(code.pages.length).toBeGreaterThanOrEqual(1);
    // A threshold no run reaches: whatever runs compiled came from the import.
    const cold = { accel: 'jit', jitThreshold: 1e9 } as const;
    const same = machine(loop(50_000), cold);
    expect(same.hart.jit!.importCode!(code)).toBe(code.pages.length);
    const interp = machine(loop(50_000), { accel: 'interp' });
    expect(same.run()).toBe(interp.run());
    expect([...same.hart.regs.subarray(0, 64)]).toEqual([...interp.hart.regs.subarray(0, 64)]);
    expect(same.hart.jitStats!.modulesCompiled).toBe(0);
    expect(same.hart.jitStats!.instructions).toBeGreaterThan(0.9 * interp.hart.instructionsRetired);

    // Other bytes at the page (another loop count): the module is not used; results stay right.
    const other = machine(loop(40_000), cold);
    other.hart.jit!.importCode!(code);
    const interp2 = machine(loop(40_000), { accel: 'interp' });
    expect(other.run()).toBe(interp2.run());
    expect([...other.hart.regs.subarray(0, 64)]).toEqual([...interp2.hart.regs.subarray(0, 64)]);
    expect(other.hart.jitStats!.instructions).toBe(0);

    // Another memory layout (RAM size): nothing is taken.
    const ram = allocateGuestRam(2 << 20);
    const bigger = new Hart({ ramBase: RAM_BASE, ram, mmioRead: () => undefined, mmioWrite: () => false }, { hartId: 0, tier: jitTier, ...cold });
    expect(bigger.jit!.importCode!(code)).toBe(0);
  });

  it('falls back to the interpreter when RAM is not in a WebAssembly.Memory', () => {
    const a = new Asm(RAM_BASE);
    a.li(a0, 5).emit(I.addi(a0, a0, 1));
    const m = machine(finish(a), JIT, true);
    m.run();
    expect(m.finished).toBe(true);
    expect(m.hart.getX(10)).toBe(6n);
    expect(m.hart.jit).toBeNull();
    expect(m.hart.jitUnavailable).toMatch(/WebAssembly.Memory/);
  });
});

describe('compilePage', () => {
  it('keeps loop heads and the most used entries when they do not all fit in a module', () => {
    // 1000 instructions; a loop at the end (offset 3992 branches back to 3988); 375 entries.
    const a = new Asm(RAM_BASE);
    for (let i = 0; i < 996; i++) a.emit(I.addi(a0, a0, 1));
    a.emit(I.addi(t0, t0, 1), I.addi(a1, a1, 1), I.bne(t0, t1, -4), I.addi(a0, a0, 2));
    const ram = new Uint8Array(8192);
    ram.set(a.bytes());
    const entries = Array.from({ length: 375 }, (_, i) => 2992 - 8 * i); // most used first
    const out = compilePage({ ram16: new Uint16Array(ram.buffer), pageRamOff: 0, entries, slotBase: 0 })!;
    expect(out.dispatch.length).toBe(255);
    expect(out.dispatch).toContain(3988); // the loop head, though the highest offset
    expect(out.dispatch).toContain(entries[0]);
    expect(out.dispatch).toContain(entries[253]);
    expect(out.dispatch).not.toContain(entries[254]);
  });

  it('makes a call\'s return address an entry, so a return from another page stays in compiled code', () => {
    const a = new Asm(RAM_BASE);
    a.emit(I.addi(a0, a0, 1), I.jal(1, 0x2000), I.addi(a0, a0, 2), I.jalr(1, t0, 0), I.addi(a0, a0, 3), I.jal(0, 0x3000), I.addi(a0, a0, 4));
    const ram = new Uint8Array(8192);
    ram.set(a.bytes());
    const out = compilePage({ ram16: new Uint16Array(ram.buffer), pageRamOff: 0, entries: [0], slotBase: 0 })!;
    // After `jal ra` (offset 4) and `jalr ra` (offset 12): entries at 8 and 16; not after `j` (20).
    // Numbered 1, 2, 3 in offset order (the entry map holds dispatch[i] -> i + 1).
    expect(out.dispatch).toEqual([0, 8, 16]);
  });
});
