import { TIMEBASE_HZ } from '../clock.js';
import { cells64, node, writeFdt, type FdtNode, type FdtValue } from './fdt.js';
import { PLIC_NUM_SOURCES, PLIC_SIZE } from '../plic/plic.js';
import { CLINT_SIZE } from '../clint/clint.js';
import { VIRT_MEMMAP, VIRT_IRQ } from '../memmap.js';

export interface VirtDtConfig {
  harts: number;
  ramBase: number;
  ramSize: number;
  bootargs: string;
  initrd?: { start: number; end: number };
  /** Bytes for /chosen/rng-seed (Linux credits them to its entropy pool at boot). */
  rngSeed?: Uint8Array;
  /** Extensions the hart implements, lower case: single letters first ("i","m",…), then multi-letter. */
  isaExtensions: readonly string[];
  /** "riscv,sv39", "riscv,sv48", … */
  mmuType: string;
  /** Occupied virtio-mmio slots (0-7). */
  virtioSlots: readonly number[];
}

/** "rv64imafdc_zicsr_zifencei" from an extension list (the legacy riscv,isa string). */
export function isaString(exts: readonly string[]): string {
  const single = exts.filter((e) => e.length === 1).join('');
  const multi = exts.filter((e) => e.length > 1);
  return ['rv64' + single, ...multi].join('_');
}

const hex = (n: number) => n.toString(16);
const reg = (base: number, size: number) => [...cells64(base), ...cells64(size)];

/**
 * The device tree of the virt board, modelled on what QEMU's hw/riscv/virt.c generates so that
 * Linux and OpenSBI find the same nodes they find there (Devicetree Specification v0.4 §3,
 * Documentation/devicetree/bindings/riscv/cpus.yaml, …/interrupt-controller/sifive,plic-1.0.0.yaml).
 */
export function buildVirtDeviceTree(c: VirtDtConfig): FdtNode {
  // Phandles: one interrupt controller per hart, then the PLIC and the test device.
  const intcPhandle = (h: number) => 1 + h;
  const plicPhandle = c.harts + 1;
  const testPhandle = c.harts + 2;
  const m = VIRT_MEMMAP;

  const cpus: FdtNode[] = [];
  for (let h = 0; h < c.harts; h++) {
    cpus.push(
      node(`cpu@${h}`, {
        phandle: 100 + h,
        device_type: 'cpu',
        reg: h,
        status: 'okay',
        compatible: 'riscv',
        'riscv,isa': isaString(c.isaExtensions),
        'riscv,isa-base': 'rv64i',
        'riscv,isa-extensions': c.isaExtensions,
        'mmu-type': c.mmuType,
      }, [
        node('interrupt-controller', {
          '#address-cells': 0,
          '#interrupt-cells': 1,
          'interrupt-controller': null,
          compatible: 'riscv,cpu-intc',
          phandle: intcPhandle(h),
        }),
      ]),
    );
  }
  const cluster = node('cluster0', [], Array.from({ length: c.harts }, (_, h) => node(`core${h}`, { cpu: 100 + h })));

  const chosen: [string, FdtValue][] = [
    ['bootargs', c.bootargs],
    ['stdout-path', `/soc/serial@${hex(m.uart.base)}`],
  ];
  if (c.initrd) {
    chosen.push(['linux,initrd-start', BigInt(c.initrd.start)], ['linux,initrd-end', BigInt(c.initrd.end)]);
  }
  if (c.rngSeed) chosen.push(['rng-seed', c.rngSeed]);

  const plicExt: number[] = [];
  const clintExt: number[] = [];
  for (let h = 0; h < c.harts; h++) {
    plicExt.push(intcPhandle(h), 11, intcPhandle(h), 9); // M external, S external
    clintExt.push(intcPhandle(h), 3, intcPhandle(h), 7); // M software, M timer
  }

  const soc: FdtNode[] = [
    node(`rtc@${hex(m.rtc.base)}`, {
      interrupts: VIRT_IRQ.rtc,
      'interrupt-parent': plicPhandle,
      reg: reg(m.rtc.base, m.rtc.size),
      compatible: 'google,goldfish-rtc',
    }),
    node(`serial@${hex(m.uart.base)}`, {
      interrupts: VIRT_IRQ.uart,
      'interrupt-parent': plicPhandle,
      'clock-frequency': 0x384000,
      reg: reg(m.uart.base, m.uart.size),
      compatible: 'ns16550a',
    }),
    node(`test@${hex(m.test.base)}`, {
      phandle: testPhandle,
      reg: reg(m.test.base, m.test.size),
      compatible: ['sifive,test1', 'sifive,test0', 'syscon'],
    }),
  ];
  for (const slot of [...c.virtioSlots].sort((a, b) => a - b)) {
    const base = m.virtio.base + slot * m.virtio.size;
    soc.push(node(`virtio_mmio@${hex(base)}`, {
      interrupts: VIRT_IRQ.virtio0 + slot,
      'interrupt-parent': plicPhandle,
      reg: reg(base, m.virtio.size),
      compatible: 'virtio,mmio',
    }));
  }
  soc.push(
    node(`plic@${hex(m.plic.base)}`, {
      phandle: plicPhandle,
      'riscv,ndev': PLIC_NUM_SOURCES - 1,
      reg: reg(m.plic.base, PLIC_SIZE),
      'interrupts-extended': plicExt,
      'interrupt-controller': null,
      compatible: ['sifive,plic-1.0.0', 'riscv,plic0'],
      '#address-cells': 0,
      '#interrupt-cells': 1,
    }),
    node(`clint@${hex(m.clint.base)}`, {
      'interrupts-extended': clintExt,
      reg: reg(m.clint.base, CLINT_SIZE),
      compatible: ['sifive,clint0', 'riscv,clint0'],
    }),
  );

  return node('', {
    '#address-cells': 2,
    '#size-cells': 2,
    compatible: 'riscv-virtio',
    model: 'riscv-virtio,qemu',
  }, [
    node('chosen', chosen),
    node(`memory@${hex(c.ramBase)}`, { device_type: 'memory', reg: reg(c.ramBase, c.ramSize) }),
    node('cpus', { '#address-cells': 1, '#size-cells': 0, 'timebase-frequency': TIMEBASE_HZ }, [...cpus, node('cpu-map', [], [cluster])]),
    // Outside /soc: they have no reg, and simple-bus children must (as QEMU places them).
    node('poweroff', { value: 0x5555, offset: 0, regmap: testPhandle, compatible: 'syscon-poweroff' }),
    node('reboot', { value: 0x7777, offset: 0, regmap: testPhandle, compatible: 'syscon-reboot' }),
    node('soc', { '#address-cells': 2, '#size-cells': 2, compatible: 'simple-bus', ranges: null }, soc),
  ]);
}

export function buildVirtDtb(c: VirtDtConfig): Uint8Array {
  return writeFdt(buildVirtDeviceTree(c));
}
