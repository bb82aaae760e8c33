import { describe, expect, it } from 'vitest';
import type { PhysicalMemory } from '../cpu/memory.js';
import type { BoardHart } from '../machine/hart.js';
import { VirtMachine } from '../machine/virt.js';
import { HostClock } from './clock-host.js';
import { RunLoop } from './run-loop.js';

/**
 * A hart that behaves like an idle kernel: it "executes" a few instructions, then sits in
 * wfi until its timer (stimecmp) or an external interrupt, and powers off via syscon when
 * `done()` says so.
 */
class IdleHart implements BoardHart {
  regs = new Int32Array(64);
  pc = 0;
  priv = 3;
  mipHw = 0;
  stimecmp = Infinity;
  waitingForInterrupt = false;
  sbiCall: BoardHart['sbiCall'] = null;
  wakeups = 0;
  done: () => boolean = () => false;
  constructor(readonly mem: PhysicalMemory, readonly time: () => number) {}
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
  return { vm, hart, clock, loop: new RunLoop(vm, { clock }) };
}

describe('RunLoop', () => {
  it('sleeps through an idle guest until its timer, using almost no CPU', async () => {
    const { hart, clock, loop } = setup();
    const start = clock.nowTicks();
    hart.stimecmp = start + 300 * 10_000; // 300 ms
    hart.done = () => clock.nowTicks() >= hart.stimecmp;
    const cpu0 = process.cpuUsage();
    const out = await loop.run();
    const cpu = process.cpuUsage(cpu0);
    expect(out).toEqual({ kind: 'poweroff' });
    const elapsedMs = (clock.nowTicks() - start) / 10_000;
    expect(elapsedMs).toBeGreaterThanOrEqual(299);
    expect(elapsedMs).toBeLessThan(1000);
    expect((cpu.user + cpu.system) / 1000).toBeLessThan(60); // ms of CPU for 300 ms of idling
    expect(loop.stats.idleMs).toBeGreaterThan(250);
  });

  it('wakes at once when console input raises an interrupt', async () => {
    const { vm, hart, clock, loop } = setup();
    // Route the UART's RX interrupt to the S context.
    vm.bus.mmioWrite(0x0c00_0000 + 40, 4, 1);
    vm.bus.mmioWrite(0x0c00_2080, 4, 1 << 10);
    vm.bus.mmioWrite(0x1000_0001, 1, 1);
    hart.done = () => vm.uart.pendingInput > 0;
    const t0 = clock.nowTicks();
    setTimeout(() => vm.consoleInput(new Uint8Array([0x41])), 50);
    expect(await loop.run()).toEqual({ kind: 'poweroff' });
    expect((clock.nowTicks() - t0) / 10_000).toBeLessThan(500);
  });

  it('stops on request', async () => {
    const { loop } = setup();
    setTimeout(() => loop.stop('user quit'), 20);
    expect(await loop.run()).toEqual({ kind: 'stopped', reason: 'user quit' });
  });
});
