import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { IdleSleeper } from '../vm/idle-sleep.js';
import type { MachineClock } from '../machine/clock.js';
import type { MachineExit, VirtMachine } from '../machine/virt.js';

export type RunOutcome = MachineExit | { kind: 'stopped'; reason: string };

export interface RunStats {
  instructions: number;
  wallMs: number;
  /** Time spent asleep because the guest was idle (wfi). */
  idleMs: number;
}

export interface RunLoopOptions {
  clock: MachineClock;
  /** Instructions per hart.run() call: timers are checked between calls. */
  batch?: number;
  /** Wall time to run before yielding to the event loop (console input, disk I/O). */
  sliceMs?: number;
}


/**
 * Drives a VirtMachine from Node's event loop: runs instruction batches for a slice of wall
 * time, then yields so I/O callbacks run. When the hart waits in wfi with nothing pending,
 * sleeps until the next timer deadline or until a device raises an interrupt (wake()), so an
 * idle guest costs about no host CPU.
 */
export class RunLoop {
  private stopReason: string | undefined;
  private readonly sleeper: IdleSleeper;
  readonly stats: RunStats = { instructions: 0, wallMs: 0, idleMs: 0 };
  private readonly batch: number;
  private readonly sliceMs: number;

  constructor(
    private readonly vm: VirtMachine,
    opts: RunLoopOptions,
  ) {
    this.batch = opts.batch ?? 50_000;
    this.sliceMs = opts.sliceMs ?? 20;
    this.sleeper = new IdleSleeper(() => opts.clock);
    // Any interrupt line change (console input, a virtio completion) ends an idle sleep.
    vm.plic.onActivity = () => this.wake();
  }

  /** Ends an idle sleep early (new input, an I/O completion). */
  wake(): void {
    this.sleeper.wake();
  }

  /** Stops the loop at the next batch boundary (Ctrl-A x, a panic, an API call). */
  stop(reason: string): void {
    this.stopReason ??= reason;
    this.vm.hart.requestStop();
    this.wake();
  }

  async run(): Promise<RunOutcome> {
    const vm = this.vm;
    const start = performance.now();
    try {
      for (;;) {
        const sliceEnd = performance.now() + this.sliceMs;
        do {
          this.stats.instructions += vm.step(this.batch);
        } while (!vm.exit && this.stopReason === undefined && !vm.idle && performance.now() < sliceEnd);
        if (vm.exit) return vm.exit;
        if (this.stopReason !== undefined) return { kind: 'stopped', reason: this.stopReason };
        if (vm.idle) {
          await this.sleeper.sleepUntil(vm.nextDeadline());
          this.stats.idleMs = this.sleeper.idleMs;
        }
        else await yieldToEventLoop();
      }
    } finally {
      this.stats.wallMs = performance.now() - start;
    }
  }

}
