import { describe, expect, it } from 'vitest';
import type { PhysicalMemory } from '../cpu/memory.js';
import type { BoardHart } from '../machine/hart.js';
import { TestHartBase } from '../machine/testing.js';
import { VirtMachine } from '../machine/virt.js';
import { HostClock } from '../host/clock-host.js';
import type { AssembledVm } from './assembler.js';
import { BATCH, VmDriver, type DriverExit } from './driver.js';

/**
 * A hart that behaves like an idle kernel: it "executes" a few instructions, then sits in
 * wfi until its timer (stimecmp) or an external interrupt, and powers off via syscon when
 * `done()` says so.
 */
class IdleHart extends TestHartBase implements BoardHart {
  regs = new Int32Array(64);
  pc = 0;
  priv = 3;
  mipHw = 0;
  stimecmp = Infinity;
  waitingForInterrupt = false;
  sbiCall: BoardHart['sbiCall'] = null;
  wakeups = 0;
  done: () => boolean = () => false;
  constructor(readonly mem: PhysicalMemory, readonly time: () => number) {
    super();
  }
  reset(pc: number) {
    this.pc = pc;
  }
  run(budget: number) {
    const pending = this.mipHw !== 0 || this.time() >= this.stimecmp;
    if (this.waitingForInterrupt && !pending) return 0;
    if (this.waitingForInterrupt) this.wakeups++;
    this.waitingForInterrupt = false;
    if (this.done()) {
      this.mem.mmioWrite(0x10_0000, 4, 0x5555);
      return 1;
    }
    this.waitingForInterrupt = true;
    return Math.min(budget, 100);
  }
  requestStop() {}
  stimecmpTicks() {
    return this.stimecmp;
  }
  readCsr() {
    return 0n;
  }
  writeCsr() {}
  invalidateCode() {}
  instructionsRetired = 0;
  setPending(mask: number, level: boolean) {
    this.mipHw = level ? this.mipHw | mask : this.mipHw & ~mask;
  }
}

function kernel(): Uint8Array {
  const b = new Uint8Array(0x1000);
  b.set(new TextEncoder().encode('RISCV\0\0\0RSC\x05'), 0x30);
  return b;
}

function setup() {
  const clock = new HostClock();
  let hart!: IdleHart;
  const vm = new VirtMachine({ memoryMiB: 16, kernel: kernel(), clock, createHart: (m, o) => (hart = new IdleHart(m, o.timeSource)) });
  vm.boot();
  const m: AssembledVm = { vm, clock, transports: [], blks: [], nics: [], balloon: undefined };
  return { vm, hart, clock, driver: new VmDriver(m) };
}

/** Runs the driver until it ends; resolves with how (undefined: parked). */
async function runToEnd(d: VmDriver): Promise<DriverExit | undefined> {
  let exit: DriverExit | undefined;
  d.on('exit', (e) => (exit = e));
  await d.run();
  return exit;
}

describe('VmDriver', () => {
  it('sleeps through an idle guest until its timer, using almost no CPU', async () => {
    const { hart, clock, driver } = setup();
    const start = clock.nowTicks();
    hart.stimecmp = start + 300 * 10_000; // 300 ms
    hart.done = () => clock.nowTicks() >= hart.stimecmp;
    const cpu0 = process.cpuUsage();
    const out = await runToEnd(driver);
    const cpu = process.cpuUsage(cpu0);
    expect(out).toEqual({ kind: 'poweroff' });
    const elapsedMs = (clock.nowTicks() - start) / 10_000;
    expect(elapsedMs).toBeGreaterThanOrEqual(299);
    expect(elapsedMs).toBeLessThan(1000);
    expect((cpu.user + cpu.system) / 1000).toBeLessThan(60); // ms of CPU for 300 ms of idling
    expect(driver.idleMs).toBeGreaterThan(250);
  });

  it('wakes at once when console input raises an interrupt', async () => {
    const { vm, hart, clock, driver } = setup();
    // Route the UART's RX interrupt to the S context.
    vm.bus.mmioWrite(0x0c00_0000 + 40, 4, 1);
    vm.bus.mmioWrite(0x0c00_2080, 4, 1 << 10);
    vm.bus.mmioWrite(0x1000_0001, 1, 1);
    hart.done = () => vm.uart.pendingInput > 0;
    const t0 = clock.nowTicks();
    setTimeout(() => vm.consoleInput(new Uint8Array([0x41])), 50);
    expect(await runToEnd(driver)).toEqual({ kind: 'poweroff' });
    expect((clock.nowTicks() - t0) / 10_000).toBeLessThan(500);
  });

  it('parks on request, at a batch boundary of the fixed grid', async () => {
    const { driver } = setup();
    setTimeout(() => void driver.park(), 20);
    expect(await runToEnd(driver)).toBe(undefined);
    expect(driver.running).toBe(false);
  });

  it('pauses by itself where asked: an instruction count on the grid', async () => {
    const { hart, driver } = setup();
    // Busy, never idle: each run() call executes its whole budget.
    hart.run = (budget: number) => budget;
    driver.pauseAt({ instructions: 2 * BATCH + 1 });
    let paused = 0;
    driver.on('paused', () => paused++);
    expect(await runToEnd(driver)).toBe(undefined);
    expect(paused).toBe(1);
    // The batch that passed the count ran to its end: the grid is where it was.
    expect(driver.executed).toBe(3 * BATCH);
  });

  it('follows reboots with the rebuilt board, and gives up after maxReboots', async () => {
    let boards = 0;
    const build = (): AssembledVm => {
      const s = setup();
      boards++;
      // Reboots at once (syscon 0x7777).
      s.hart.run = () => {
        s.vm.bus.mmioWrite(0x10_0000, 4, 0x7777);
        return 1;
      };
      return s.driver.machine;
    };
    const d = new VmDriver(build(), { rebuild: async () => build(), maxReboots: 2 });
    let reboots = 0;
    d.on('reboot', () => reboots++);
    expect(await runToEnd(d)).toEqual({ kind: 'reboot-loop' });
    expect(reboots).toBe(2);
    expect(boards).toBe(3);
  });
  it('charges each step of N instructions to the pc it ended at, when asked, without changing what runs', async () => {
    const { vm, hart, clock } = setup();
    // A busy guest: every instruction advances the pc by 4; it powers off after 100 000.
    let left = 100_000;
    hart.run = (budget: number) => {
      if (left === 0) {
        hart.mem.mmioWrite(0x10_0000, 4, 0x5555);
        return 1;
      }
      const n = Math.min(budget, left);
      left -= n;
      hart.pc += 4 * n;
      return n;
    };
    const counts = new Map<number, number>();
    const pc0 = hart.pc;
    const driver = new VmDriver({ vm, clock, transports: [], blks: [], nics: [], balloon: undefined }, { pcSamples: { every: 1000, counts } });
    expect(await runToEnd(driver)).toEqual({ kind: 'poweroff' });
    expect(left).toBe(0);
    // A step of 1000 instructions charged to each pc reached: pc0 + 4000, + 8000, ...; every
    // instruction is charged once (the poweroff step's one to the last pc).
    expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(driver.executed);
    for (let k = 1; k < 100; k++) expect(counts.get(pc0 + 4000 * k), `step ${k}`).toBe(1000);
    expect(counts.get(pc0 + 400_000)).toBe(1001);
  });
});
