/**
 * Guest RAM sizes the virt board accepts, in MiB. Their own module (no imports) so the SDK's
 * config validation reads them without loading the board.
 */
export const MIN_MEMORY_MIB = 16;
/**
 * The most guest RAM one 32-bit WebAssembly.Memory holds beside the hart state slots, page
 * maps and entry maps the JIT keeps after it (src/cpu/guest-ram.ts guestMemoryPages: 3926 MiB
 * take 65 520 of the 65 536 pages; src/cpu/guest-ram.test.ts checks that one MiB more does not
 * fit). RAM and compiled code then share one memory on both tiers.
 */
export const MAX_MEMORY_MIB = 3926;
export const DEFAULT_MEMORY_MIB = 512;
