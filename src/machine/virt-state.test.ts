/**
 * The board's saveState()/restoreState() (issue 7) with the real hart and a tiny guest: a
 * machine restored from a state taken at an arbitrary instruction prints exactly what the
 * uninterrupted machine printed from there on (deterministic clock, so times match too).
 */
import { describe, expect, it } from 'vitest';
import { isVisorError } from '../base/errors.js';
import { Hart } from '../cpu/hart.js';
import { counterGuest } from '../../test/sdk/guest.js';
import { InstructionClock } from './instruction-clock.js';
import { VirtMachine, type VirtState } from './virt.js';

const BATCH = 10_000;

function machine(kernel: Uint8Array) {
  const clock = new InstructionClock();
  const vm = new VirtMachine({
    memoryMiB: 32,
    kernel,
    clock,
    createHart: (mem, o) => new Hart(mem, o),
  });
  clock.attach(() => vm.hart.instructionsRetired);
  let out = '';
  vm.onConsoleOutput = (b) => (out += new TextDecoder().decode(b));
  let executed = 0;
  /** Runs on a fixed grid of batches (so a restored run takes interrupts where the original did). */
  const run = (limit: number) => {
    while (!vm.exit && executed < limit) {
      const budget = Math.min(BATCH - (executed % BATCH), limit - executed);
      executed += vm.step(budget);
      if (vm.idle) {
        const d = vm.nextDeadline();
        if (!Number.isFinite(d)) break;
        clock.advanceTo(d);
      }
    }
  };
  return {
    vm, clock, run,
    get out() { return out; },
    get executed() { return executed; },
    set executed(n: number) { executed = n; },
  };
}

const guest = counterGuest({ ticks: 20, work: 400, sleepTicks: 5000, printTime: true });

describe('VirtMachine saveState/restoreState', () => {
  it('a restored machine continues exactly where the saved one was', () => {
    const ref = machine(guest);
    ref.vm.boot();
    ref.run(Infinity);
    expect(ref.vm.exit).toEqual({ kind: 'poweroff' });
    expect(ref.out).toMatch(/^counter guest\n(?:[0-9a-f]{16} [0-9a-f]{16} [0-9a-f]{16}\n){20}done\n$/);
    const total = ref.executed;

    // Pseudo-random points, including ones inside a batch and in the middle of a line.
    let seed = 12345;
    for (let round = 0; round < 4; round++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const at = 1 + (seed % (total - 1));
      const a = machine(guest);
      a.vm.boot();
      a.run(at);
      const printed = a.out;
      const state = JSON.parse(JSON.stringify(a.vm.saveState())) as VirtState;
      const ram = a.vm.bus.ram.slice();

      const b = machine(new Uint8Array(0)); // the kernel is in RAM; boot() is not called
      b.vm.bus.ram.set(ram);
      b.vm.restoreState(state);
      b.executed = a.executed;
      b.run(Infinity);
      expect(printed + b.out, `snapshot at ${at}`).toBe(ref.out);
      expect(b.vm.exit).toEqual({ kind: 'poweroff' });
    }
  });

  it('rejects states that do not fit the machine or are damaged, before booting it', () => {
    const a = machine(guest);
    a.vm.boot();
    a.run(50_000);
    const good = a.vm.saveState();
    const code = (mutate: (s: any) => void) => {
      const s = JSON.parse(JSON.stringify(good));
      mutate(s);
      const b = machine(guest);
      try {
        b.vm.restoreState(s);
      } catch (err) {
        if (isVisorError(err)) return err.code;
        throw err;
      }
      return 'restored';
    };
    expect(code(() => {})).toBe('restored');
    expect(code((s) => (s.version = 9))).toBe('Unsupported');
    expect(code((s) => (s.memoryMiB = 64))).toBe('InvalidConfig');
    expect(code((s) => s.virtio.push({ slot: 0, name: 'virtio-blk', transport: {} }))).toBe('InvalidConfig');
    expect(code((s) => (s.hart.x[0] = [1, 0]))).toBe('CorruptImage');
    expect(code((s) => (s.rom = 'x'))).toBe('CorruptImage');
    expect(code((s) => (s.clock.ticks = 'soon'))).toBe('CorruptImage');
    expect(code((s) => (s.uart.ier = 999))).toBe('InvalidArgument');
    expect(code((s) => (s.plic = null))).not.toBe('restored');
    const booted = machine(guest);
    booted.vm.boot();
    expect(() => booted.vm.restoreState(good)).toThrow(/already booted/);
  });
});
