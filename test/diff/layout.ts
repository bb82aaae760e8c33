/**
 * Physical layout of a differential-test program (a flat binary loaded at 0x8000_0000, entered
 * in M-mode). QEMU's `virt -bios none -kernel prog.bin` loads a raw image at the start of RAM
 * (0x8000_0000, already 2 MiB aligned) and its reset ROM jumps there in M-mode; the bare
 * machine does the same.
 *
 * S/U programs run under Sv39 with one L0 table covering 0x8000_0000-0x801f_ffff: code, log
 * and scratch are identity-mapped; two more virtual windows alias physical pages.
 */
export const RAM_BASE = 0x8000_0000;

export const PROLOGUE = 0x8000_0000; // M-mode only (page 0)
export const HANDLERS = 0x8000_1000; // M handler at +0, S handler at +0x400, epilogue at +0x800
export const BODY = 0x8000_2000;
export const BODY_END_LIMIT = 0x8000_9f00; // body at most 32 KiB - 256 bytes
export const POOL = 0x8000_9f00; // initial f-register values (M-mode only reads them)
export const TLOG = 0x8000_a000; // trap log (2 pages): count, then entries of TLOG_ENTRY bytes
export const SAVE = 0x8000_bb00; // epilogue save area, after the largest trap log
/** Sv48 root: entry 0 points at PT_ROOT, which serves as the Sv39 root and as Sv48's level 2. */
export const PT_ROOT48 = 0x8000_c000;
export const PT_ROOT = 0x8000_d000;
export const PT_L1 = 0x8000_e000;
export const PT_L0 = 0x8000_f000;
export const SCRATCH = 0x8001_0000;
export const SCRATCH_SIZE = 0x1_0000;
/** Virtual window onto the scratch pages with random PTE permissions (S/U programs). */
export const ALIAS = 0x8002_0000;
/**
 * Superpage windows onto RAM (VA = PA + delta) with random permissions: a 1 GiB page (root
 * entry 3), a 2 MiB page (L1 entry 1), and a 2 MiB page whose PPN is not 2 MiB aligned, where
 * every access page-faults (privileged §4.3.2 step 6).
 */
export const GIGA_DELTA = 0x4000_0000;
export const MEGA_DELTA = 0x20_0000;
export const BAD_MEGA_DELTA = 0x40_0000;
/** S programs see the L0 table here (RW, supervisor) to rewrite alias PTEs and sfence.vma. */
export const PT_WINDOW = 0x8006_0000;

/** Everything the guest may write that the dump does not print: checksummed per 4 KiB page. */
export const CHECK_BASE = PT_ROOT48;
export const CHECK_END = SCRATCH + SCRATCH_SIZE;
export const CHECK_BLOCK = 4096;

export const TLOG_ENTRY = 64; // cause, tval, epc, status, handler tag (1 = M, 2 = S)
export const TLOG_FIELDS = ['cause', 'tval', 'epc', 'status', 'by'] as const;
/** Traps after which the handler ends the program (guards against trap loops). */
export const TRAP_CAP = 100;

/** The image spans up to the end of the scratch region. */
export const IMAGE_SIZE = CHECK_END - RAM_BASE;

export const UART_BASE = 0x1000_0000;
export const SYSCON_BASE = 0x0010_0000;
export const SYSCON_POWEROFF = 0x5555;
