import { VisorError } from '../../base/errors.js';

const MiB = 1 << 20;
const alignDown = (v: number, a: number) => Math.floor(v / a) * a;

export interface BootLayout {
  dtbAddr: number;
  initrd?: { start: number; end: number };
}

/**
 * Places the DTB and the initrd at the top of RAM, above the kernel. The DTB goes 2 MiB
 * aligned just below the end (as QEMU's riscv_compute_fdt_addr does: Linux maps it early with
 * PMD-sized pages), the initrd page-aligned below it.
 */
export function placeBootData(opts: {
  ramBase: number;
  ramSize: number;
  kernelEnd: number;
  dtbSize: number;
  initrdSize?: number;
}): BootLayout {
  const ramEnd = opts.ramBase + opts.ramSize;
  const dtbAddr = alignDown(ramEnd - opts.dtbSize, 2 * MiB);
  let initrd: BootLayout['initrd'];
  let low = dtbAddr;
  if (opts.initrdSize !== undefined) {
    const start = alignDown(dtbAddr - opts.initrdSize, 4096);
    initrd = { start, end: start + opts.initrdSize };
    low = start;
  }
  if (low < opts.kernelEnd) {
    const need = Math.ceil((opts.kernelEnd - opts.ramBase + (ramEnd - low)) / MiB);
    throw new VisorError('InvalidConfig', `kernel, initrd and device tree do not fit in ${opts.ramSize / MiB} MiB of RAM (need about ${need} MiB; use --memory)`);
  }
  return initrd ? { dtbAddr, initrd } : { dtbAddr };
}
