import { describe, expect, it } from 'vitest';
import type { PhysicalMemory } from '../cpu/memory.js';
import { ManualClock } from './clock.js';
import { findNode, readFdt } from './fdt/fdt.js';
import { regU, type BoardHart } from './hart.js';
import { MIP_MTIP } from './irq.js';
import { TestHartBase } from './testing.js';
import { MAX_MEMORY_MIB, VirtMachine, type VirtConfig } from './virt.js';

/** A stand-in hart: runs a script of bus accesses instead of instructions. */
class ScriptHart extends TestHartBase implements BoardHart {
  regs = new Int32Array(64);
  pc = 0;
  priv = 3;
  mip = 0;
  csrs = new Map<number, bigint>();
  waitingForInterrupt = false;
  sbiCall: BoardHart['sbiCall'] = null;
  script: ((mem: PhysicalMemory) => void)[] = [];
  constructor(readonly mem: PhysicalMemory, readonly time: () => number) {
    super();
  }
  reset(pc: number) {
    this.pc = pc;
    this.priv = 3;
    this.regs.fill(0);
  }
  run(budget: number) {
    const s = this.script.shift();
    s?.(this.mem);
    return s ? Math.min(budget, 1) : 0;
  }
  requestStop() {}
  stimecmpTicks() {
    return Number(this.csrs.get(0x14d) ?? 2n ** 64n - 1n);
  }
  readCsr(n: number) {
    return this.csrs.get(n) ?? 0n;
  }
  writeCsr(n: number, v: bigint) {
    this.csrs.set(n, v);
  }
  invalidateCode() {}
  instructionsRetired = 0;
  setPending(mask: number, level: boolean) {
    this.mip = level ? this.mip | mask : this.mip & ~mask;
  }
}

function image(size = 0x1000): Uint8Array {
  const b = new Uint8Array(size);
  b.set(new TextEncoder().encode('RISCV\0\0\0RSC\x05'), 0x30);
  new DataView(b.buffer).setBigUint64(0x10, BigInt(size), true);
  return b;
}

function make(extra: Partial<VirtConfig> = {}) {
  const clock = new ManualClock();
  let hart!: ScriptHart;
  const vm = new VirtMachine({
    memoryMiB: 64,
    kernel: image(),
    initrd: new Uint8Array(5000).fill(7),
    append: 'console=ttyS0',
    clock,
    createHart: (m, o) => (hart = new ScriptHart(m, o.timeSource)),
    ...extra,
  });
  return { vm, hart: () => hart, clock };
}

describe('VirtMachine', () => {
  it(`rejects memory sizes outside 16 MiB - ${MAX_MEMORY_MIB} MiB`, () => {
    expect(() => make({ memoryMiB: 8 })).toThrow(/from 16 to 3926, got 8/);
    expect(() => make({ memoryMiB: MAX_MEMORY_MIB + 1 })).toThrow(new RegExp(`from 16 to ${MAX_MEMORY_MIB}, got ${MAX_MEMORY_MIB + 1}`));
  });

  it('boots the built-in SBI path: S-mode at the kernel, a0 = hartid, a1 = DTB', () => {
    const { vm, hart } = make();
    vm.attachVirtio(2, (ctx) => ({ name: `v${ctx.irqSource}`, read: () => 0x74726976, write: () => {} }));
    vm.boot();
    const h = hart();
    expect(h.pc).toBe(0x8020_0000);
    expect(h.priv).toBe(1);
    expect(regU(h, 10)).toBe(0);
    const dtbAddr = regU(h, 11);
    expect(dtbAddr).toBe(0x8000_0000 + (64 << 20) - (2 << 20));
    expect(h.csrs.get(0x303)).toBe(0x222n);
    expect(h.csrs.get(0x30a)).toBe(1n << 63n);
    expect(h.csrs.get(0x106)).toBe(7n); // scounteren: U may read cycle/time/instret
    expect(h.sbiCall).not.toBeNull();
    const off = dtbAddr - 0x8000_0000;
    const root = readFdt(vm.bus.ram.subarray(off, off + vm.dtb!.length));
    const chosen = findNode(root, '/chosen')!;
    expect(new TextDecoder().decode(chosen.props.get('bootargs')!)).toBe('console=ttyS0\0');
    const start = Number(new DataView(chosen.props.get('linux,initrd-start')!.buffer).getBigUint64(0));
    expect(vm.bus.ram[start - 0x8000_0000]).toBe(7);
    expect(findNode(root, '/soc/virtio_mmio@10003000')).toBeDefined();
    expect(vm.bus.mmioRead(0x1000_3000, 4)).toBe(0x74726976);
    expect(() => vm.attachVirtio(3, () => ({ name: 'x', read: () => 0, write: () => {} }))).toThrow(/before the machine boots/);
  });

  it('boots firmware in M-mode from the reset ROM', () => {
    const fw = new Uint8Array(0x100).fill(0x13);
    const { vm, hart } = make({ bios: fw });
    vm.boot();
    expect(hart().pc).toBe(0x1000);
    expect(hart().priv).toBe(3);
    expect(vm.bus.ram[0]).toBe(0x13);
    expect(vm.bus.mmioRead(0x1018, 4)).toBe(0x8000_0000);
    expect(() => make({ bios: new Uint8Array(3 << 20) }).vm.boot()).toThrow(/overlaps the kernel/);
  });

  it('routes UART output, syscon poweroff and CLINT timers', () => {
    const { vm, hart, clock } = make();
    vm.boot();
    const out: number[] = [];
    vm.onConsoleOutput = (b) => out.push(...b);
    hart().script.push((m) => {
      for (const c of 'ok\n') m.mmioWrite(0x1000_0000, 1, c.charCodeAt(0));
      m.mmioWrite(0x0200_4004, 4, 0);
      m.mmioWrite(0x0200_4000, 4, 100);
    });
    vm.step(1000);
    expect(new TextDecoder().decode(new Uint8Array(out))).toBe('ok\n');
    expect(vm.nextDeadline()).toBe(100);
    clock.advance(100);
    vm.step(1000);
    expect(hart().mip & MIP_MTIP).toBe(MIP_MTIP);
    hart().script.push((m) => m.mmioWrite(0x0010_0000, 4, 0x5555));
    vm.step(1000);
    expect(vm.exit).toEqual({ kind: 'poweroff' });
  });

  it('delivers UART input as a PLIC interrupt', () => {
    const { vm, hart } = make();
    vm.boot();
    const m = vm.bus;
    m.mmioWrite(0x0c00_0000 + 4 * 10, 4, 1); // priority
    m.mmioWrite(0x0c00_2080, 4, 1 << 10); // S context enable
    m.mmioWrite(0x1000_0001, 1, 1); // IER.RDI
    vm.consoleInput(new TextEncoder().encode('a'));
    expect(hart().mip & (1 << 9)).toBe(1 << 9);
    expect(m.mmioRead(0x0c20_1004, 4)).toBe(10);
    expect(m.mmioRead(0x1000_0000, 1)).toBe(0x61);
  });
});
