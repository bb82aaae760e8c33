import { VisorError } from '../base/errors.js';
import type { IrqSink, MmioDevice } from '../base/mmio.js';
import type { PhysicalMemory } from '../cpu/memory.js';
import { loadKernel, parseKernel, type LoadedKernel } from './boot/kernel.js';
import { placeBootData } from './boot/layout.js';
import { buildResetRom, Rom } from './boot/rom.js';
import { Bus } from './bus.js';
import { Clint } from './clint/clint.js';
import type { MachineClock } from './clock.js';
import { buildVirtDtb } from './fdt/virt-dt.js';
import { setReg, REG_A0, REG_A1, REG_A2, type BoardHart } from './hart.js';
import { VIRT_IRQ, VIRT_MEMMAP } from './memmap.js';
import { Plic } from './plic/plic.js';
import { GoldfishRtc } from './rtc/goldfish-rtc.js';
import { BuiltinSbi, type SbiResetEvent } from './sbi/sbi.js';
import { Syscon, type SysconEvent } from './syscon/syscon.js';
import { Uart16550 } from './uart/uart.js';

const MiB = 1 << 20;
export const MIN_MEMORY_MIB = 16;
export const MAX_MEMORY_MIB = 2048;
export const DEFAULT_MEMORY_MIB = 512;
/** Where the kernel goes (2 MiB aligned; OpenSBI's fw_jump jumps here). */
export const KERNEL_LOAD_ADDR = VIRT_MEMMAP.dram.base + 0x20_0000;

/**
 * What the hart implements, advertised in riscv,isa / riscv,isa-extensions. Sstc lets the
 * kernel program stimecmp itself instead of calling the SBI on every tick.
 */
export const DEFAULT_ISA_EXTENSIONS = ['i', 'm', 'a', 'f', 'd', 'c', 'zicntr', 'zicsr', 'zifencei', 'sstc'];

// Privileged spec CSR numbers used to hand the kernel over in S-mode (§2.2 table).
const CSR_MEDELEG = 0x302;
const CSR_MIDELEG = 0x303;
const CSR_MCOUNTEREN = 0x306;
const CSR_MENVCFG = 0x30a;
const CSR_PMPCFG0 = 0x3a0;
const CSR_PMPADDR0 = 0x3b0;
const MENVCFG_STCE = 1n << 63n;
const PRIV_S = 1;

export type HartFactory = (memory: PhysicalMemory, opts: { hartId: number; timeSource: () => number }) => BoardHart;

export interface VirtConfig {
  /** RAM in MiB, 16 to 2048 (default 512). */
  memoryMiB?: number;
  kernel: Uint8Array;
  /** Shown in error messages (the file name). */
  kernelName?: string;
  initrd?: Uint8Array;
  /** Kernel command line. */
  append?: string;
  /** 'builtin' (default): visor's SBI, kernel started in S-mode. Otherwise M-mode firmware (OpenSBI fw_jump / fw_dynamic). */
  bios?: 'builtin' | Uint8Array;
  clock: MachineClock;
  createHart: HartFactory;
  isaExtensions?: readonly string[];
  mmuType?: string;
}

/** Why the machine stopped. */
export type MachineExit =
  | { kind: 'poweroff' }
  | { kind: 'reboot' }
  | { kind: 'fail'; code: number };

/** Everything a virtio device needs from the board to be attached to a slot. */
export interface VirtioSlotContext {
  ram: Uint8Array;
  ramBase: number;
  irq: IrqSink;
  irqSource: number;
}

/**
 * QEMU-compatible riscv64 `virt` board: RAM, boot ROM, CLINT, PLIC, UART, RTC, syscon and
 * eight virtio-mmio slots on one bus, one hart. The host drives it with step() batches and
 * sleeps until nextDeadline() when the hart waits for an interrupt.
 */
export class VirtMachine {
  readonly bus: Bus;
  readonly hart: BoardHart;
  readonly uart: Uart16550;
  readonly clint: Clint;
  readonly plic: Plic;
  readonly rtc: GoldfishRtc;
  readonly syscon: Syscon;
  readonly memoryMiB: number;
  readonly sbi: BuiltinSbi | undefined;
  private readonly virtioSlots = new Map<number, MmioDevice>();
  private booted = false;
  /** Set once the guest powers off, reboots or fails; the host then stops stepping. */
  exit: MachineExit | undefined;
  /** Console output (UART and SBI console), byte by byte batches. */
  onConsoleOutput: (bytes: Uint8Array) => void = () => {};
  /** Input that arrived through the SBI console, waiting for the guest to read it. */
  private sbiInput: number[] = [];
  kernelInfo: LoadedKernel | undefined;
  dtb: Uint8Array | undefined;

  constructor(private readonly cfg: VirtConfig) {
    const mib = cfg.memoryMiB ?? DEFAULT_MEMORY_MIB;
    if (!Number.isInteger(mib) || mib < MIN_MEMORY_MIB || mib > MAX_MEMORY_MIB) {
      throw new VisorError('InvalidConfig', `memory must be a whole number of MiB from ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB}, got ${mib}`);
    }
    this.memoryMiB = mib;
    const bus = (this.bus = new Bus(VIRT_MEMMAP.dram.base, mib * MiB));
    // The hart's time CSR must read what the CLINT's mtime reads: the clint is created after
    // the hart, so the time source looks it up lazily.
    this.hart = cfg.createHart(bus, { hartId: 0, timeSource: () => this.clint.mtime() });
    this.clint = new Clint(cfg.clock, [this.hart]);
    this.plic = new Plic([this.hart]);
    this.uart = new Uart16550(this.plic, VIRT_IRQ.uart);
    this.uart.onTransmit = (b) => this.output(b);
    this.rtc = new GoldfishRtc(cfg.clock, this.plic, VIRT_IRQ.rtc);
    this.syscon = new Syscon();
    this.syscon.onEvent = (e) => this.onSyscon(e);
    const m = VIRT_MEMMAP;
    bus.map(m.test.base, m.test.size, this.syscon);
    bus.map(m.rtc.base, m.rtc.size, this.rtc);
    bus.map(m.clint.base, m.clint.size, this.clint);
    bus.map(m.plic.base, m.plic.size, this.plic);
    bus.map(m.uart.base, m.uart.size, this.uart);
    if ((cfg.bios ?? 'builtin') === 'builtin') {
      this.sbi = new BuiltinSbi({
        ram: bus.ram,
        ramBase: bus.ramBase,
        consoleWrite: (b) => this.onConsoleOutput(b),
        consoleRead: (max) => new Uint8Array(this.sbiInput.splice(0, max)),
        reset: (e) => this.onSbiReset(e),
      });
    }
  }

  private outBuf = new Uint8Array(4096);
  private outLen = 0;
  private output(b: number): void {
    this.outBuf[this.outLen++] = b;
    if (this.outLen === this.outBuf.length) this.flushOutput();
  }

  /** Hands buffered UART output to onConsoleOutput (step() does it after every batch). */
  flushOutput(): void {
    if (this.outLen === 0) return;
    const chunk = this.outBuf.slice(0, this.outLen);
    this.outLen = 0;
    this.onConsoleOutput(chunk);
  }

  /** Host keyboard/pipe input to the guest console (the UART, and the SBI console). */
  consoleInput(bytes: Uint8Array): void {
    this.uart.receive(bytes);
    if (this.sbi) {
      for (const b of bytes) this.sbiInput.push(b);
      if (this.sbiInput.length > 4096) this.sbiInput.splice(0, this.sbiInput.length - 4096);
    }
  }

  private onSyscon(e: SysconEvent): void {
    this.exit = e.kind === 'fail' ? { kind: 'fail', code: e.code } : { kind: e.kind };
    this.hart.requestStop();
  }

  private onSbiReset(e: SbiResetEvent): void {
    this.exit = e.kind === 'poweroff' && e.reason !== 0 ? { kind: 'fail', code: e.reason } : { kind: e.kind };
  }

  /**
   * Attaches a virtio-mmio device at slot 0-7 (0x1000_1000 + 0x1000·slot, PLIC IRQ 1+slot).
   * The factory receives guest RAM and its interrupt line. Only before boot(): the device tree
   * lists the slots.
   */
  attachVirtio(slot: number, make: (ctx: VirtioSlotContext) => MmioDevice): MmioDevice {
    if (this.booted) throw new VisorError('NotAllowed', 'virtio devices must be attached before the machine boots');
    if (!Number.isInteger(slot) || slot < 0 || slot >= VIRT_MEMMAP.virtio.count) {
      throw new VisorError('InvalidConfig', `virtio slot must be 0-${VIRT_MEMMAP.virtio.count - 1}, got ${slot}`);
    }
    if (this.virtioSlots.has(slot)) throw new VisorError('InvalidConfig', `virtio slot ${slot} is taken`);
    const dev = make({ ram: this.bus.ram, ramBase: this.bus.ramBase, irq: this.plic, irqSource: VIRT_IRQ.virtio0 + slot });
    this.bus.map(VIRT_MEMMAP.virtio.base + slot * VIRT_MEMMAP.virtio.size, VIRT_MEMMAP.virtio.size, dev);
    this.virtioSlots.set(slot, dev);
    return dev;
  }

  /** The next free virtio slot, or -1. */
  freeVirtioSlot(): number {
    for (let s = 0; s < VIRT_MEMMAP.virtio.count; s++) if (!this.virtioSlots.has(s)) return s;
    return -1;
  }

  /** Loads kernel, initrd, DTB (and firmware) into RAM and resets the hart. */
  boot(): void {
    if (this.booted) throw new VisorError('NotAllowed', 'the machine has already booted');
    const cfg = this.cfg;
    const ram = this.bus.ram;
    const ramBase = this.bus.ramBase;
    const ramSize = ram.length;
    const kernel = parseKernel(cfg.kernel, { loadAddr: KERNEL_LOAD_ADDR, ramBase, ramSize, name: cfg.kernelName ?? 'kernel' });
    const bios = cfg.bios ?? 'builtin';
    if (bios !== 'builtin') {
      if (bios.length === 0) throw new VisorError('BadImage', 'the firmware file is empty');
      if (kernel.start < ramBase + bios.length) {
        throw new VisorError('InvalidConfig', `the firmware (${bios.length} bytes) overlaps the kernel at 0x${kernel.start.toString(16)}`);
      }
    }
    // A first DTB with the real initrd size, to know the DTB's size, then the placed one.
    const dtConfig = (initrd?: { start: number; end: number }) => ({
      harts: 1,
      ramBase,
      ramSize,
      bootargs: cfg.append ?? '',
      isaExtensions: cfg.isaExtensions ?? DEFAULT_ISA_EXTENSIONS,
      mmuType: cfg.mmuType ?? 'riscv,sv39',
      virtioSlots: [...this.virtioSlots.keys()],
      ...(initrd ? { initrd } : {}),
    });
    const probe = buildVirtDtb(dtConfig(cfg.initrd ? { start: 0, end: 0 } : undefined));
    const layout = placeBootData({
      ramBase,
      ramSize,
      kernelEnd: kernel.end,
      dtbSize: probe.length,
      ...(cfg.initrd ? { initrdSize: cfg.initrd.length } : {}),
    });
    const dtb = buildVirtDtb(dtConfig(layout.initrd));
    loadKernel(kernel, ram, ramBase);
    if (cfg.initrd && layout.initrd) ram.set(cfg.initrd, layout.initrd.start - ramBase);
    ram.set(dtb, layout.dtbAddr - ramBase);
    this.kernelInfo = kernel;
    this.dtb = dtb;

    const rom = buildResetRom({
      firmwareEntry: bios === 'builtin' ? kernel.entry : ramBase,
      dtbAddr: layout.dtbAddr,
      kernelEntry: kernel.entry,
    });
    this.bus.map(VIRT_MEMMAP.mrom.base, VIRT_MEMMAP.mrom.size, new Rom('mrom', rom));

    const hart = this.hart;
    if (bios !== 'builtin') {
      ram.set(bios, 0);
      // The reset vector sets a0-a2 and jumps to the firmware in M-mode, as on QEMU.
      hart.reset(VIRT_MEMMAP.mrom.base);
    } else {
      this.startInSupervisor(kernel.entry, layout.dtbAddr);
    }
    this.booted = true;
  }

  /**
   * The built-in SBI path: leave the hart as OpenSBI would before its mret into the kernel
   * (S-mode, a0 = hartid, a1 = DTB, traps and interrupts delegated, counters and Sstc open).
   */
  private startInSupervisor(entry: number, dtbAddr: number): void {
    const hart = this.hart;
    hart.reset(entry);
    // Every exception except environment calls from S/M: there is no M-mode handler behind us.
    // Bits: 0-8 (misaligned/access/illegal/breakpoint/U-ecall), 12, 13, 15 (page faults).
    hart.writeCsr(CSR_MEDELEG, 0xb1ffn);
    hart.writeCsr(CSR_MIDELEG, BigInt((1 << 1) | (1 << 5) | (1 << 9))); // SSIP, STIP, SEIP
    hart.writeCsr(CSR_MCOUNTEREN, 0xffffffffn);
    hart.writeCsr(CSR_MENVCFG, MENVCFG_STCE);
    // One PMP entry (NAPOT, RWX) over the low 2^56 bytes, i.e. all of the physical address
    // space: S-mode is denied when entries exist and none matches. (2^53-1 rather than all ones
    // keeps the value exact for a hart that holds pmpaddr in a double.)
    try {
      hart.writeCsr(CSR_PMPADDR0, (1n << 53n) - 1n);
      hart.writeCsr(CSR_PMPCFG0, 0x1fn);
    } catch {
      /* no PMP */
    }
    setReg(hart, REG_A0, 0);
    setReg(hart, REG_A1, dtbAddr);
    setReg(hart, REG_A2, 0);
    hart.sbiCall = this.sbi!.handle as unknown as BoardHart['sbiCall'];
    hart.priv = PRIV_S;
  }

  /** Runs one batch of at most `budget` instructions after bringing timers up to date. */
  step(budget: number): number {
    this.clint.update();
    this.rtc.update();
    const n = this.exit ? 0 : this.hart.run(budget);
    this.flushOutput();
    return n;
  }

  /** True when the hart sleeps in wfi and nothing is pending. */
  get idle(): boolean {
    return this.hart.waitingForInterrupt;
  }

  /** The clock reading (MachineClock.nowTicks) of the next timer event, or Infinity. */
  nextDeadline(): number {
    const stimecmp = this.hart.stimecmpTicks();
    const sTimer = Number.isFinite(stimecmp) && stimecmp < 2 ** 62 ? stimecmp - (this.clint.mtime() - this.cfg.clock.nowTicks()) : Infinity;
    return Math.min(this.clint.nextDeadline(), this.rtc.nextDeadline(), sTimer);
  }
}
