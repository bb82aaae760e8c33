import { VisorError } from '../base/errors.js';
import type { IrqSink, MmioDevice } from '../base/mmio.js';
import type { PhysicalMemory } from '../cpu/memory.js';
import type { HartState } from '../cpu/state.js';
import { loadKernel, parseKernel, type LoadedKernel } from './boot/kernel.js';
import { placeBootData } from './boot/layout.js';
import { buildResetRom, Rom } from './boot/rom.js';
import { Bus } from './bus.js';
import { markWritten, writtenPages } from '../cpu/ram-pager.js';
import { Clint, type ClintState } from './clint/clint.js';
import type { MachineClock } from './clock.js';
import { buildVirtDtb } from './fdt/virt-dt.js';
import { setReg, REG_A0, REG_A1, REG_A2, type BoardHart } from './hart.js';
import { VIRT_IRQ, VIRT_MEMMAP } from './memmap.js';
import { Plic, type PlicState } from './plic/plic.js';
import { GoldfishRtc, type GoldfishRtcState } from './rtc/goldfish-rtc.js';
import { BuiltinSbi, type SbiResetEvent } from './sbi/sbi.js';
import { Syscon, type SysconEvent } from './syscon/syscon.js';
import { Uart16550, type UartState } from './uart/uart.js';

const MiB = 1 << 20;
import { DEFAULT_MEMORY_MIB, MAX_MEMORY_MIB, MIN_MEMORY_MIB } from './ram-size.js';
export { DEFAULT_MEMORY_MIB, MAX_MEMORY_MIB, MIN_MEMORY_MIB };
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
const CSR_SCOUNTEREN = 0x106;
const CSR_MCOUNTEREN = 0x306;
const CSR_MENVCFG = 0x30a;
const CSR_PMPCFG0 = 0x3a0;
const CSR_PMPADDR0 = 0x3b0;
const MENVCFG_STCE = 1n << 63n;
const PRIV_S = 1;

/** Bytes of /chosen/rng-seed the hosts pass (VirtConfig.rngSeed), as QEMU's virt board does. */
export const RNG_SEED_BYTES = 32;

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
  /**
   * Random bytes for the device tree's /chosen/rng-seed (32 are plenty). Linux mixes them
   * into its entropy pool and credits them, so its random number generator is ready from the
   * start, as on QEMU's virt board, which passes 32 there. Without a seed the generator stays
   * unready until well after /init, and every early user of it does extra work.
   */
  rngSeed?: Uint8Array;
  /** 'builtin' (default): visor's SBI, kernel started in S-mode. Otherwise M-mode firmware (OpenSBI fw_jump / fw_dynamic). */
  bios?: 'builtin' | Uint8Array;
  clock: MachineClock;
  createHart: HartFactory;
  isaExtensions?: readonly string[];
  /** RAM allocated and filled ahead (a restore loads it while the rest starts); memoryMiB long. */
  ram?: Uint8Array;
  mmuType?: string;
}

/** Why the machine stopped. */
export type MachineExit =
  | { kind: 'poweroff' }
  | { kind: 'reboot' }
  | { kind: 'fail'; code: number };

/** A slot device that can save its state (the virtio-mmio transport does). */
interface SavableSlotDevice extends MmioDevice {
  saveState(): unknown;
  restore(state: unknown): void;
  /** The device model behind a virtio transport; saved too when it has state of its own. */
  readonly device?: { saveState?(): unknown; restore?(state: unknown): void };
}

export const VIRT_STATE_VERSION = 1;

/**
 * The whole board's state except RAM (which snapshots store apart, sparse and compressed).
 * Named fields, versioned; every component validates its own part on restore.
 */
export interface VirtState {
  version: 1;
  memoryMiB: number;
  firmware: 'builtin' | 'external';
  /** The clock's readings when saved: restore rebases mtime and the RTC so guest time goes on from here. */
  clock: { ticks: number; wallNs: string };
  hart: HartState;
  clint: ClintState;
  plic: PlicState;
  uart: UartState;
  rtc: GoldfishRtcState;
  virtio: { slot: number; name: string; transport: unknown; device?: unknown }[];
  /** The reset ROM (a few instructions and the boot addresses). */
  rom: number[];
  sbiInput: number[];
  exit: MachineExit | null;
}

/** Everything a virtio device needs from the board to be attached to a slot. */
export interface VirtioSlotContext {
  ram: Uint8Array;
  ramBase: number;
  /** Devices report the RAM they wrote (see GuestRam in src/virtio/guest-memory.ts). */
  onDeviceWrite: (ramOffset: number, length: number) => void;
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
  private romBytes: Uint8Array | undefined;

  constructor(private readonly cfg: VirtConfig) {
    const mib = cfg.memoryMiB ?? DEFAULT_MEMORY_MIB;
    if (!Number.isInteger(mib) || mib < MIN_MEMORY_MIB || mib > MAX_MEMORY_MIB) {
      throw new VisorError('InvalidConfig', `memory must be a whole number of MiB from ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB}, got ${mib}`);
    }
    this.memoryMiB = mib;
    const bus = (this.bus = new Bus(VIRT_MEMMAP.dram.base, mib * MiB, cfg.ram));
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
        ramWritten: (off, len) => this.hart.invalidateCode(this.bus.ramBase + off, len),
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
    const dev = make({
      ram: this.bus.ram,
      ramBase: this.bus.ramBase,
      onDeviceWrite: (off, len) => this.hart.invalidateCode(this.bus.ramBase + off, len),
      irq: this.plic,
      irqSource: VIRT_IRQ.virtio0 + slot,
    });
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
      ...(cfg.rngSeed ? { rngSeed: cfg.rngSeed } : {}),
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
    // What the boot put in RAM may hold data (cpu/ram-pager.ts writtenPages).
    const written = writtenPages(ram);
    for (const seg of kernel.segments) markWritten(written, seg.addr - ramBase, seg.memSize);
    if (cfg.initrd && layout.initrd) markWritten(written, layout.initrd.start - ramBase, cfg.initrd.length);
    markWritten(written, layout.dtbAddr - ramBase, dtb.length);
    this.kernelInfo = kernel;
    this.dtb = dtb;

    const rom = buildResetRom({
      firmwareEntry: bios === 'builtin' ? kernel.entry : ramBase,
      dtbAddr: layout.dtbAddr,
      kernelEntry: kernel.entry,
    });
    this.bus.map(VIRT_MEMMAP.mrom.base, VIRT_MEMMAP.mrom.size, new Rom('mrom', rom));
    this.romBytes = rom;

    const hart = this.hart;
    if (bios !== 'builtin') {
      ram.set(bios, 0);
      markWritten(written, 0, bios.length);
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
    // U-mode may read cycle, time and instret (CY, TM, IR), as OpenSBI leaves scounteren
    // before entering S-mode. Linux only sets it itself in its SBI PMU driver, which finds no
    // PMU extension here; without TM the vDSO's clock_gettime(CLOCK_MONOTONIC) (rdtime)
    // would kill every process that asks for it (busybox ping did) with SIGILL.
    hart.writeCsr(CSR_SCOUNTEREN, 7n);
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
    hart.sbiCall = this.sbi!.handle;
    hart.priv = PRIV_S;
  }

  /**
   * The board's state at a batch boundary (between step() calls), for snapshots. Virtio
   * devices must have no I/O in flight (the host drains them first). Needs the interpreter
   * hart (src/cpu/hart.ts): its state comes from src/cpu/state.ts.
   */
  saveState(): VirtState {
    if (!this.booted || !this.romBytes) throw new VisorError('NotAllowed', 'the machine has not booted: nothing to save');
    this.flushOutput();
    const virtio: VirtState['virtio'] = [];
    for (const [slot, dev] of [...this.virtioSlots].sort((a, b) => a[0] - b[0])) {
      const d = dev as SavableSlotDevice;
      if (typeof d.saveState !== 'function') throw new VisorError('Unsupported', `virtio slot ${slot} (${dev.name}) cannot save its state`);
      const e: VirtState['virtio'][number] = { slot, name: dev.name, transport: d.saveState() };
      const model = d.device?.saveState?.();
      if (model !== undefined) e.device = model;
      virtio.push(e);
    }
    return {
      version: VIRT_STATE_VERSION,
      memoryMiB: this.memoryMiB,
      firmware: (this.cfg.bios ?? 'builtin') === 'builtin' ? 'builtin' : 'external',
      clock: { ticks: this.cfg.clock.nowTicks(), wallNs: this.cfg.clock.wallNs().toString() },
      hart: this.hart.saveState(),
      clint: this.clint.saveState(),
      plic: this.plic.saveState(),
      uart: this.uart.saveState(),
      rtc: this.rtc.saveState(),
      virtio,
      rom: [...this.romBytes],
      sbiInput: [...this.sbiInput],
      exit: this.exit ?? null,
    };
  }

  /**
   * Instead of boot(): puts a machine built with the same memory size, firmware kind and
   * virtio devices in the saved state. The state is untrusted: the board's own fields are
   * checked here, each component checks its part. RAM is restored apart (before or after).
   */
  restoreState(s: VirtState): void {
    if (this.booted) throw new VisorError('NotAllowed', 'the machine has already booted');
    const bad = (what: string): never => {
      throw new VisorError('CorruptImage', `invalid machine state: ${what}`);
    };
    if (typeof s !== 'object' || s === null) bad('not an object');
    if (s.version !== VIRT_STATE_VERSION) {
      throw new VisorError('Unsupported', `machine state version ${String(s.version)}: this visor reads ${VIRT_STATE_VERSION}`);
    }
    if (s.memoryMiB !== this.memoryMiB) {
      throw new VisorError('InvalidConfig', `the snapshot's machine has ${String(s.memoryMiB)} MiB of RAM, this one ${this.memoryMiB} MiB`);
    }
    const firmware = (this.cfg.bios ?? 'builtin') === 'builtin' ? 'builtin' : 'external';
    if (s.firmware !== firmware) bad(`firmware '${String(s.firmware)}', the machine has '${firmware}'`);
    const byte = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 255;
    if (!Array.isArray(s.rom) || s.rom.length === 0 || s.rom.length > VIRT_MEMMAP.mrom.size || !s.rom.every(byte)) bad('rom');
    if (!Array.isArray(s.sbiInput) || s.sbiInput.length > 4096 || !s.sbiInput.every(byte)) bad('sbiInput');
    if (typeof s.clock !== 'object' || s.clock === null || !Number.isSafeInteger(s.clock.ticks) || typeof s.clock.wallNs !== 'string' || !/^-?\d{1,20}$/.test(s.clock.wallNs)) bad('clock');
    if (s.exit !== null && !(typeof s.exit === 'object' && ['poweroff', 'reboot', 'fail'].includes((s.exit as { kind: string }).kind))) bad('exit');
    const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
    for (const k of ['hart', 'clint', 'plic', 'uart', 'rtc'] as const) if (!isObject(s[k])) bad(k);
    if (!Array.isArray(s.virtio) || !s.virtio.every((e) => isObject(e) && isObject(e.transport))) bad('virtio');
    const slots = [...this.virtioSlots.keys()].sort((a, b) => a - b);
    if (s.virtio.length !== slots.length || s.virtio.some((e, i) => e?.slot !== slots[i] || e.name !== this.virtioSlots.get(slots[i]!)!.name)) {
      const want = slots.map((k) => `${k}:${this.virtioSlots.get(k)!.name}`).join(', ');
      const got = s.virtio.map((e) => `${String(e?.slot)}:${String(e?.name)}`).join(', ');
      throw new VisorError('InvalidConfig', `the snapshot's virtio devices (${got}) differ from this machine's (${want})`);
    }
    // mtime and the RTC go on from the saved readings whatever this clock reads now.
    const clock = this.cfg.clock;
    const clint = { ...s.clint };
    const rtc = { ...s.rtc };
    // The hart first: the clock may count its retired instructions.
    this.hart.restoreState(s.hart);
    if (typeof clint === 'object' && Number.isSafeInteger(clint.mtimeOffset)) {
      clint.mtimeOffset = clint.mtimeOffset + s.clock.ticks - clock.nowTicks();
    }
    if (typeof rtc.offsetNs === 'string' && /^-?\d{1,20}$/.test(rtc.offsetNs)) {
      rtc.offsetNs = (BigInt(rtc.offsetNs) + BigInt(s.clock.wallNs) - clock.wallNs()).toString();
    }
    this.plic.restore(s.plic);
    this.clint.restore(clint);
    this.uart.restore(s.uart);
    this.rtc.restore(rtc);
    for (const e of s.virtio) {
      const d = this.virtioSlots.get(e.slot) as SavableSlotDevice;
      if (e.device !== undefined) {
        if (typeof d.device?.restore !== 'function') bad(`virtio slot ${e.slot} has no device state to restore`);
        d.device!.restore!(e.device);
      }
      d.restore(e.transport);
    }
    const rom = Uint8Array.from(s.rom);
    this.bus.map(VIRT_MEMMAP.mrom.base, VIRT_MEMMAP.mrom.size, new Rom('mrom', rom));
    this.romBytes = rom;
    this.sbiInput = [...s.sbiInput];
    // The built-in SBI answers ecalls from S-mode, as after boot().
    if (this.sbi) this.hart.sbiCall = this.sbi.handle;
    this.exit = s.exit ?? undefined;
    this.booted = true;
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
