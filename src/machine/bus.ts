import type { AccessSize, MmioDevice } from '../base/mmio.js';
import { VisorError } from '../base/errors.js';
import type { PhysicalMemory } from '../cpu/memory.js';
import { allocateGuestRam } from '../cpu/guest-ram.js';

/** One device window on the bus. */
export interface BusRegion {
  readonly base: number;
  readonly size: number;
  readonly device: MmioDevice;
}

/**
 * The physical address space the hart sees: one RAM array plus MMIO windows dispatched by
 * address range. The hart handles RAM itself (it holds `ram`); only accesses outside RAM reach
 * mmioRead/mmioWrite. 8-byte accesses arrive already split into two 4-byte ones, low word
 * first (src/base/mmio.ts), so devices never see size 8.
 *
 * Guest accesses never throw: an access to no device returns undefined/false, which the hart
 * turns into an access fault; an access that straddles the end of a window is treated the same.
 */
export class Bus implements PhysicalMemory {
  readonly ramBase: number;
  readonly ram: Uint8Array;
  private regions: BusRegion[] = [];
  /** The last region hit: consecutive accesses usually go to the same device (UART polling). */
  private last: BusRegion | undefined;
  /** Counts of accesses that hit no device, for diagnostics. */
  unmappedReads = 0;
  unmappedWrites = 0;

  /** `ram`: RAM already allocated (allocateGuestRam) and filled, e.g. by a restore that loaded it early. */
  constructor(ramBase: number, ramSize: number, ram?: Uint8Array) {
    if (ramSize % 4096 !== 0 || ramSize <= 0) {
      throw new VisorError('InvalidConfig', `RAM size must be a positive multiple of 4096 bytes, got ${ramSize}`);
    }
    if (ram !== undefined && ram.length !== ramSize) throw new VisorError('Internal', `given RAM is ${ram.length} bytes, the bus wants ${ramSize}`);
    this.ramBase = ramBase;
    // In a WebAssembly.Memory with room for the hart's state, so the JIT can run (src/jit/).
    this.ram = ram ?? allocateGuestRam(ramSize);
  }

  /** Maps a device; windows may not overlap each other or RAM (programmer error). */
  map(base: number, size: number, device: MmioDevice): void {
    const end = base + size;
    const overlaps = (b: number, e: number) => base < e && b < end;
    if (overlaps(this.ramBase, this.ramBase + this.ram.length)) {
      throw new VisorError('Internal', `device ${device.name} at 0x${base.toString(16)} overlaps RAM`);
    }
    for (const r of this.regions) {
      if (overlaps(r.base, r.base + r.size)) {
        throw new VisorError('Internal', `device ${device.name} at 0x${base.toString(16)} overlaps ${r.device.name}`);
      }
    }
    this.regions.push({ base, size, device });
    this.regions.sort((a, b) => a.base - b.base);
  }

  /** The mapped windows, lowest address first. */
  get mappings(): readonly BusRegion[] {
    return this.regions;
  }

  private find(addr: number, size: number): BusRegion | undefined {
    const l = this.last;
    if (l !== undefined && addr >= l.base && addr + size <= l.base + l.size) return l;
    for (const r of this.regions) {
      if (addr >= r.base && addr + size <= r.base + r.size) {
        this.last = r;
        return r;
      }
    }
    return undefined;
  }

  mmioRead(addr: number, size: AccessSize): number | undefined {
    const r = this.find(addr, size);
    if (r === undefined) {
      this.unmappedReads++;
      return undefined;
    }
    return r.device.read(addr - r.base, size);
  }

  mmioWrite(addr: number, size: AccessSize, value: number): boolean {
    const r = this.find(addr, size);
    if (r === undefined) {
      this.unmappedWrites++;
      return false;
    }
    r.device.write(addr - r.base, size, value);
    return true;
  }

  /** Guest-physical to RAM index, or -1 if [addr, addr+len) is not entirely inside RAM. */
  ramOffset(addr: number, len: number): number {
    const off = addr - this.ramBase;
    return off >= 0 && len >= 0 && off + len <= this.ram.length ? off : -1;
  }
}
