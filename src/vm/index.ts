/**
 * src/vm/: the one way to build and run a machine. spec.ts says what a machine is (and the
 * virtio slot order), assembler.ts builds the board from a spec and opened backends,
 * driver.ts runs it (batches, idle sleep, clocks, reboots) and reports events, stats.ts lays
 * out the counters. docs/ARCHITECTURE.md "A machine's life" walks through them.
 */
export { assembleVm, createHart, type AssembledVm, type AssembleOptions, type BootImage, type HartTier, type VmBackends } from './assembler.js';
export { BATCH, SLICE_MS, VmDriver, type DriverEvents, type DriverExit, type DriverOptions, type PausePoint, type PcSamples } from './driver.js';
export { virtioSlotLayout, type Accel, type VmSpec } from './spec.js';
export { publishStats, STAT, JIT_STAT_KEYS } from './stats.js';
