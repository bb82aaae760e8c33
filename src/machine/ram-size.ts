/**
 * Guest RAM sizes the virt board accepts, in MiB. Their own module (no imports) so the SDK's
 * config validation reads them without loading the board.
 */
export const MIN_MEMORY_MIB = 16;
export const MAX_MEMORY_MIB = 2048;
export const DEFAULT_MEMORY_MIB = 512;
