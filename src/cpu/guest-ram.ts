/**
 * Guest RAM and hart state in one WebAssembly.Memory, so that code the JIT compiles
 * (src/jit/) reads and writes the same registers, TLB and RAM the interpreter does.
 *
 * Layout of the memory: [RAM | hart state slots | JIT page maps]. RAM starts at byte 0
 * (GUEST_RAM_OFFSET), so `ram.buffer` offsets are RAM offsets as with a plain array; each hart
 * takes one HART_SLOT_BYTES slot after RAM, and one page map (a uint16 per RAM page: the
 * function-table slot of the page's compiled code, 0 for none) after all slots. A RAM array not made here (a plain Uint8Array) still works
 * with the interpreter: the hart then keeps its state in a small memory of its own and the
 * JIT stays off (it needs RAM and state in one memory).
 */

/**
 * Entries per TLB set (data read, data write and fetch TLBs alike; direct-mapped by the low
 * bits of the virtual page number). The JIT's inline probes mask with TLB_SIZE - 1 too.
 * 4096 (was 1024 until session 11): a guest streaming through its page cache (dd from a disk,
 * sha256sum of a file) missed in 1024 entries about twice as often, and each miss in compiled
 * code is an exit to the interpreter (docs/benchmarks.md "TLB size"). The cost is flushing it:
 * a context switch drops only the non-global entries filled since the last one (mmu.ts).
 */
export const TLB_BITS = 12;
export const TLB_SIZE = 1 << TLB_BITS;
/** TLB sets: one per translation context (U, S, S with SUM, M), so switching costs nothing. */
export const TLB_SETS = 4;
/**
 * A TLB entry's RAM offset when the page is not RAM to access directly (MMIO, or a page whose
 * stores must take the slow path). Offsets are page-aligned and held as int32 bits (read back
 * `>>> 0`: RAM may be 2 GiB or more), so a value with its low bits set is never one: probes
 * test bit 0 (compiled code) or compare with -1.
 */
export const TLB_NO_RAM = -1;
const TLB_ARRAY_BYTES = 4 * TLB_SIZE * TLB_SETS;

export const HART_SLOT_BYTES = 10 * 65536; // SLOT_END (4 KiB + nine 64 KiB TLB arrays) rounded up to whole wasm pages
export const MAX_HART_SLOTS = 16;
export const GUEST_RAM_OFFSET = 0;
const WASM_PAGE = 65536;

/** Byte offsets inside a hart slot. */
export const SLOT_REGS = 0; // x registers: 66 int32 (pairs; 64/65 are the x0 discard slot)
export const SLOT_EXIT = 512; // JIT exit record: pc lo, pc hi, reason
/** The running page function's page address (i64; compiler.ts): after the exit and entry records. */
export const SLOT_PAGE_PC = SLOT_EXIT + 48;
export const SLOT_FREGS = 1024; // f registers: 64 int32 (raw bits, pairs)
export const SLOT_R_TAG_LO = 4096; // data TLB: TLB_SETS × TLB_SIZE int32 per array
export const SLOT_R_TAG_HI = SLOT_R_TAG_LO + TLB_ARRAY_BYTES;
export const SLOT_R_OFF = SLOT_R_TAG_HI + TLB_ARRAY_BYTES;
export const SLOT_W_TAG_LO = SLOT_R_OFF + TLB_ARRAY_BYTES;
export const SLOT_W_TAG_HI = SLOT_W_TAG_LO + TLB_ARRAY_BYTES;
export const SLOT_W_OFF = SLOT_W_TAG_HI + TLB_ARRAY_BYTES;
export const SLOT_X_TAG_LO = SLOT_W_OFF + TLB_ARRAY_BYTES; // fetch TLB, same shape
export const SLOT_X_TAG_HI = SLOT_X_TAG_LO + TLB_ARRAY_BYTES;
export const SLOT_X_OFF = SLOT_X_TAG_HI + TLB_ARRAY_BYTES;
export const SLOT_END = SLOT_X_OFF + TLB_ARRAY_BYTES;
if (SLOT_END > HART_SLOT_BYTES) throw new Error('guest-ram: the hart state slot is too small for its layout');
/** Bytes of page map per RAM page. */
export const PAGE_MAP_ENTRY_BYTES = 2;
/** Compiled pages a hart's JIT keeps at most (function-table slots 1..JIT_MAX_MODULES). */
export const JIT_MAX_MODULES = 4096;
/**
 * Bytes of entry map per function-table slot: one byte per halfword offset of the page, the
 * compiled module's dense index of the block entered there (0: none). The dispatcher and a
 * page's in-page indirect jumps read it, so a module's br_table is over its entries alone.
 */
export const ENTRY_MAP_BYTES = 2048;
const ENTRY_MAPS_BYTES = (JIT_MAX_MODULES + 1) * ENTRY_MAP_BYTES;

/** Where everything goes in the memory for `ramBytes` of guest RAM (see the file comment). */
function layout(ramBytes: number): { slotsBase: number; mapsBase: number; mapBytes: number; entryMapsBase: number; pages: number } {
  const slotsBase = Math.ceil(ramBytes / HART_SLOT_BYTES) * HART_SLOT_BYTES;
  const mapsBase = slotsBase + HART_SLOT_BYTES * MAX_HART_SLOTS;
  const mapBytes = Math.ceil((ramBytes / 4096) * PAGE_MAP_ENTRY_BYTES / 8) * 8;
  const entryMapsBase = mapsBase + mapBytes * MAX_HART_SLOTS;
  const pages = Math.ceil((entryMapsBase + ENTRY_MAPS_BYTES * MAX_HART_SLOTS) / WASM_PAGE);
  return { slotsBase, mapsBase, mapBytes, entryMapsBase, pages };
}

/**
 * The WebAssembly pages a memory for `ramBytes` of guest RAM takes: RAM, the hart slots, their
 * page maps and entry maps. Untouched parts of a WebAssembly.Memory take no physical memory: a
 * hart's entry maps are 8 MiB of address space, of which a boot touches ~1 MiB.
 */
export function guestMemoryPages(ramBytes: number): number {
  return layout(ramBytes).pages;
}

/** The most pages one 32-bit WebAssembly memory holds (4 GiB). */
export const MAX_WASM_PAGES = 65536;

export interface GuestMemory {
  readonly memory: WebAssembly.Memory;
  /** Byte offset of ram[0] in the memory, or -1 when RAM lives elsewhere. */
  readonly ramOffset: number;
  /** Byte offset of the first hart slot. */
  readonly slotsBase: number;
  /** Byte offset of the first page map, and the bytes each takes. */
  readonly mapsBase: number;
  readonly mapBytes: number;
  /** Byte offset of the first hart's entry maps ((JIT_MAX_MODULES + 1) · ENTRY_MAP_BYTES per hart). */
  readonly entryMapsBase: number;
  nextSlot: number;
}

const registry = new WeakMap<ArrayBufferLike, GuestMemory>();

/**
 * Allocates guest RAM of `bytes` (a multiple of 4096) inside a WebAssembly.Memory with room
 * for the hart state in front. Use it wherever a machine allocates RAM; the result is an
 * ordinary zero-filled Uint8Array for everyone else.
 */
export function allocateGuestRam(bytes: number): Uint8Array {
  if (bytes <= 0 || bytes % 4096 !== 0) throw new RangeError(`guest RAM must be a positive multiple of 4096 bytes, got ${bytes}`);
  if (spare?.length === bytes) {
    const ram = spare;
    spare = undefined;
    return ram;
  }
  const { slotsBase, mapsBase, mapBytes, entryMapsBase, pages } = layout(bytes);
  // A 32-bit WebAssembly memory holds at most 4 GiB: larger RAM is a plain array (no JIT).
  if (pages > MAX_WASM_PAGES) return new Uint8Array(bytes);
  let memory: WebAssembly.Memory;
  try {
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  } catch {
    return new Uint8Array(bytes); // the host refused the reservation: interpreter only
  }
  registry.set(memory.buffer, { memory, ramOffset: GUEST_RAM_OFFSET, slotsBase, mapsBase, mapBytes, entryMapsBase, nextSlot: 0 });
  return new Uint8Array(memory.buffer, GUEST_RAM_OFFSET, bytes);
}

/**
 * RAM allocated ahead of need and never touched: the next allocateGuestRam of its size takes it.
 * Reserving a large memory makes V8 collect garbage (its external memory grew): an idle
 * prewarmed worker pays that before its machine arrives instead of during its restore.
 */
let spare: Uint8Array | undefined;

export function prepareGuestRam(bytes: number): void {
  if (spare?.length === bytes) return;
  spare = undefined;
  spare = allocateGuestRam(bytes);
}

/** The memory that holds `ram` when allocateGuestRam made it. */
export function guestMemoryOf(ram: Uint8Array): GuestMemory | undefined {
  const g = registry.get(ram.buffer);
  return g !== undefined && ram.byteOffset === g.ramOffset ? g : undefined;
}

export interface HartStateSlot {
  readonly memory: WebAssembly.Memory;
  /** Byte offset of the slot in the memory. */
  readonly base: number;
  /** Byte offset of RAM in the memory, or -1 (RAM elsewhere: no JIT). */
  readonly ramOffset: number;
  /** Byte offset of this hart's page map (PAGE_MAP_ENTRY_BYTES per RAM page), or -1. */
  readonly pageMapBase: number;
  /** Byte offset of this hart's entry maps (ENTRY_MAP_BYTES per function-table slot), or -1. */
  readonly entryMapBase: number;
}

/** Takes a state slot next to `ram`, or a private one when `ram` is a plain array. */
export function allocateHartState(ram: Uint8Array): HartStateSlot {
  const g = guestMemoryOf(ram);
  if (g !== undefined && g.nextSlot < MAX_HART_SLOTS) {
    const k = g.nextSlot++;
    return {
      memory: g.memory, base: g.slotsBase + k * HART_SLOT_BYTES, ramOffset: g.ramOffset, pageMapBase: g.mapsBase + k * g.mapBytes,
      entryMapBase: g.entryMapsBase + k * ENTRY_MAPS_BYTES,
    };
  }
  const pages = HART_SLOT_BYTES / WASM_PAGE;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  return { memory, base: 0, ramOffset: -1, pageMapBase: -1, entryMapBase: -1 };
}
