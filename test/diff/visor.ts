/**
 * The visor side of the differential test: the same image on visor's hart over the bare
 * machine (RAM, UART stub, syscon).
 */
import { jitTier } from '../../src/jit/jit.js';
import type { TierFactory } from '../../src/cpu/tier.js';
import { Hart } from '../../src/cpu/hart.js';
import type { PhysicalMemory } from '../../src/cpu/memory.js';
import { BareMachine } from '../support/bare-machine.js';
import { IMAGE_SIZE, RAM_BASE } from './layout.js';

/** The part of src/cpu/hart.ts the test drives. */
export interface HartLike {
  reset(pc: number): void;
  run(budget: number): number;
  requestStop(): void;
  readonly pc: number;
  readonly priv: number;
}
export type HartConstructor = new (memory: PhysicalMemory, options: { hartId: number; timeSource: () => number; accel?: 'interp' | 'jit'; tier?: TierFactory; jitThreshold?: number }) => HartLike;

/** VISOR_ACCEL=jit VISOR_JIT_THRESHOLD=0 run the programs under the JIT (compiled at first execution). */
function accelFromEnv(): { accel?: 'interp' | 'jit'; jitThreshold?: number } {
  const accel = process.env['VISOR_ACCEL'];
  const threshold = process.env['VISOR_JIT_THRESHOLD'];
  return {
    ...(accel === 'jit' || accel === 'interp' ? { accel } : {}),
    ...(threshold !== undefined && threshold !== '' ? { jitThreshold: Number(threshold) } : {}),
  };
}

/** The hart under test (kept behind a function so a runner can swap implementations). */
export async function loadHart(): Promise<HartConstructor | undefined> {
  return Hart;
}

export interface VisorResult {
  output: string;
  instructions: number;
  error?: string;
}

/** Runs an image from 0x8000_0000 in M-mode until it powers off (or the budget runs out). */
export function runOnVisor(Hart: HartConstructor, image: Uint8Array, maxInstructions = 20_000_000): VisorResult {
  // Generated programs touch nothing above the image; QEMU has more RAM, which they never see.
  const machine = new BareMachine(IMAGE_SIZE + (128 << 10));
  machine.load(image, RAM_BASE);
  const hart = new Hart(machine, { ...accelFromEnv(), tier: jitTier, hartId: 0, timeSource: () => 0 });
  machine.onStop = () => hart.requestStop();
  hart.reset(RAM_BASE);
  let executed = 0;
  try {
    while (machine.stopped === undefined && executed < maxInstructions) {
      const n = hart.run(Math.min(1_000_000, maxInstructions - executed));
      executed += n;
      if (n === 0 && machine.stopped === undefined) {
        return { output: machine.uartText(), instructions: executed, error: `hart made no progress at pc 0x${hart.pc.toString(16)} (wfi?)` };
      }
    }
  } catch (e) {
    return { output: machine.uartText(), instructions: executed, error: `visor threw at pc 0x${hart.pc.toString(16)}: ${(e as Error).stack ?? e}` };
  }
  if (machine.stopped !== 'poweroff') {
    return { output: machine.uartText(), instructions: executed, error: `no poweroff after ${executed} instructions (pc 0x${hart.pc.toString(16)}, priv ${hart.priv})` };
  }
  return { output: machine.uartText(), instructions: executed };
}
