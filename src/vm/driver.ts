/**
 * Drives an assembled machine from the host's event loop: instruction batches on a fixed
 * grid, idle sleep, the deterministic clock, guest reboots. It reports what happens as
 * events (output, exit, reboot, pause points, errors) and never calls into its owner.
 *
 * Instructions run in batches on a fixed grid (batch k ends after k·BATCH instructions,
 * counted across snapshots), and every control request (park, snapshot, stop) waits for the
 * current batch to end rather than cutting it short. Interrupts are taken at batch starts, so
 * a machine paused, snapshotted or restored takes them at the same instructions as one never
 * interrupted. With an InstructionClock (deterministic machines) disk completions are also
 * delivered at the batch boundary after the request (the loop waits for them) and idle time
 * is skipped, not slept.
 */
import { VisorError } from '../base/errors.js';
import { InstructionClock } from '../machine/instruction-clock.js';
import type { MachineExit } from '../machine/virt.js';
import type { AssembledVm } from './assembler.js';
import { CpuLimiter, type CpuClock } from './cpu-limit.js';
import { yieldToEventLoop } from './event-loop.js';
import { IdleSleeper } from './idle-sleep.js';

/** Instructions per batch: interrupts and timers are taken between batches. */
export const BATCH = 20_000;
/** Wall time to run before yielding to the event loop (console input, disk I/O). */
export const SLICE_MS = 20;

/**
 * Where the driver pauses by itself: at the end of the first batch in which the guest printed
 * `output` on its console (counted from when it was set), or by which `instructions` (since
 * boot) have run. Batches sit on the fixed grid, so for a deterministic guest the point is the
 * same however fast the host runs it.
 */
export interface PausePoint {
  output?: string;
  instructions?: number;
}

export interface DriverEvents {
  /** Console bytes (UART and SBI console). */
  output: (bytes: Uint8Array) => void;
  /** After every slice (stats are current). */
  slice: () => void;
  /** The guest powered off, failed, or rebooted with no rebuild given (or too often); the loop has ended. */
  exit: (exit: DriverExit) => void;
  /** The guest asked for a reboot; the board is being rebuilt. */
  reboot: () => void;
  /** A new board replaced the old one (after a reboot). */
  rebuilt: (m: AssembledVm) => void;
  /** The pause point was reached; the loop has ended at that batch boundary. */
  paused: () => void;
  /** Something failed (a reboot whose kernel is gone, a host I/O error); the loop has ended. */
  error: (err: VisorError) => void;
}

type Listeners = { [K in keyof DriverEvents]: DriverEvents[K][] };

export type DriverExit = MachineExit | { kind: 'reboot-loop' };
type LoopEnd = { kind: 'exit'; exit: DriverExit } | { kind: 'paused' } | { kind: 'error'; err: VisorError } | { kind: 'parked' };

export interface DriverOptions {
  /** Builds the board again for a guest reboot (the same files, the devices reset); absent: a reboot ends the run like a poweroff. */
  rebuild?: () => Promise<AssembledVm>;
  /** Reboots to follow before 'reboot-loop' (default: no limit). */
  maxReboots?: number;
  /** Instructions already run (a restored machine's count, so the batch grid goes on). */
  executed?: number;
  /** Named in errors. */
  name?: string;
  /**
   * Asked when the guest requests a reboot: true ends the run there instead (the exit is
   * emitted as the reboot it was), as for a guest booted with panic=-1 that reboots at once
   * after a kernel panic: the panic is what ended it.
   */
  rebootEnds?: () => boolean;
  /**
   * The CPU time of the thread running this driver (ms), which a CPU limit counts against
   * (cpu-limit.ts); absent, the limit counts busy slices' wall time, which on a busy host
   * also charges the machine for the time it waited for a core.
   */
  cpuClock?: CpuClock;
  /**
   * Where the guest spends its instructions: every `every` instructions (or sooner, where the
   * hart went idle) the instructions of that step are charged to the pc it ended at, in
   * `counts` (the caller's map, read when it likes; bench/guest-profile.ts symbolizes it). The
   * batches are cut into steps of `every`, so a sampled run is slower and its interrupts land
   * at other points than an unsampled one's: for profiles, not for timings.
   */
  pcSamples?: PcSamples;
}

export interface PcSamples {
  every: number;
  /** pc (as the hart holds it: sign-extended, so kernel addresses are negative) → instructions. */
  counts: Map<number, number>;
}

export class VmDriver {
  private m: AssembledVm;
  private readonly listeners: Listeners = { output: [], slice: [], exit: [], reboot: [], rebuilt: [], paused: [], error: [] };
  private readonly sleeper = new IdleSleeper(() => this.m.clock);
  private wantRunning = false;
  private loopDone: Promise<void> | undefined;
  private closed = false;
  private reboots = 0;
  private point: { at: PausePoint; tail: string; hit: boolean } | undefined;
  /** Instructions since boot (the batch grid's origin). */
  executed: number;
  runningMs = 0;
  /** Guest instructions per host microsecond over the last half second or so. */
  mips = 0;
  /** The CPU limit (percent of one host core; 100: none), setCpuLimit. */
  private readonly limiter: CpuLimiter;

  constructor(m: AssembledVm, private readonly o: DriverOptions = {}) {
    this.m = m;
    this.executed = o.executed ?? 0;
    this.limiter = new CpuLimiter(o.cpuClock);
    this.hook(m);
  }

  on<K extends keyof DriverEvents>(event: K, fn: DriverEvents[K]): this {
    this.listeners[event].push(fn);
    return this;
  }

  private emit<K extends keyof DriverEvents>(event: K, ...args: Parameters<DriverEvents[K]>): void {
    for (const f of this.listeners[event]) (f as (...a: Parameters<DriverEvents[K]>) => void)(...args);
  }

  /** The board being run (replaced on a reboot). */
  get machine(): AssembledVm {
    return this.m;
  }

  get idleMs(): number {
    return this.sleeper.idleMs;
  }

  get running(): boolean {
    return this.loopDone !== undefined;
  }

  private hook(m: AssembledVm): void {
    m.vm.onConsoleOutput = (b) => this.output(b);
    m.vm.plic.onActivity = () => this.wake();
  }

  private output(b: Uint8Array): void {
    const p = this.point;
    const marker = p?.at.output;
    if (p && marker !== undefined && !p.hit) {
      let text = p.tail;
      for (const c of b) text += String.fromCharCode(c);
      if (text.includes(marker)) p.hit = true;
      else p.tail = text.slice(-(marker.length - 1) || text.length);
    }
    this.emit('output', b);
  }

  /**
   * Limits the machine to `percent` (1-100) of one host core: the loop rests between slices
   * so that its thread's CPU time stays at that share of wall time (cpu-limit.ts).
   */
  setCpuLimit(percent: number): void {
    if (!(percent >= 1 && percent <= 100)) throw new VisorError('InvalidArgument', `CPU limit ${percent}%: give 1-100 (percent of one host core)`);
    this.limiter.set(percent);
  }

  /** Marks the pause point reached (its owner matched it itself, e.g. output printed before it was set). */
  hitPoint(): void {
    if (this.point) this.point.hit = true;
  }

  /** Sets (or clears) where the loop pauses by itself; 'paused' is emitted there. */
  pauseAt(at: PausePoint | undefined): void {
    this.point = at ? { at, tail: '', hit: false } : undefined;
  }

  /** Whether the pause point is reached (an instruction count may be passed already). */
  get pointReached(): boolean {
    const p = this.point;
    return p !== undefined && (p.hit || (p.at.instructions !== undefined && this.executed >= p.at.instructions));
  }

  /**
   * Starts the loop (a no-op while it runs); resolves when it ends. How it ended ('exit',
   * 'paused', 'error') is emitted once it has, so a listener may run() again at once.
   */
  run(): Promise<void> {
    this.wantRunning = true;
    if (!this.loopDone) {
      this.loopDone = this.loop().then((end) => {
        this.loopDone = undefined;
        if (end.kind === 'exit') this.emit('exit', end.exit);
        else if (end.kind === 'paused') this.emit('paused');
        else if (end.kind === 'error') this.emit('error', end.err);
      });
    }
    return this.loopDone;
  }

  /**
   * Ends the loop at the end of the current batch (not sooner: the grid stays where it was);
   * resolves once it has.
   */
  async park(): Promise<void> {
    this.wantRunning = false;
    this.wake();
    await this.loopDone;
  }

  /** Parks for good: later run() calls do nothing. */
  async close(): Promise<void> {
    this.closed = true;
    await this.park();
  }

  /** Ends an idle sleep early (new input, an I/O completion, a host request). */
  wake(): void {
    this.sleeper.wake();
  }

  /** Disk requests in flight. */
  blkBusy(): boolean {
    for (const b of this.m.blks) {
      const q = b.transport.queues[0];
      if (q && q.lastAvailIdx !== q.usedIdx) return true;
    }
    return false;
  }

  /** Waits for every disk request in flight to complete (and its interrupt to be raised). */
  async drainIo(): Promise<void> {
    for (let i = 0; i < 1000 && this.blkBusy(); i++) {
      await Promise.all(this.m.blks.map((b) => b.dev.whenIdle()));
      await yieldToEventLoop();
    }
  }

  /** vm.step(room) in steps of samples.every, charging each step's instructions to the pc after it. */
  private stepSampled(vm: AssembledVm['vm'], room: number, samples: PcSamples): number {
    let done = 0;
    while (done < room && !vm.exit) {
      const n = vm.step(Math.min(room - done, samples.every));
      done += n;
      const pc = vm.hart.pc;
      samples.counts.set(pc, (samples.counts.get(pc) ?? 0) + n);
      if (n === 0 || vm.idle) break;
    }
    return done;
  }

  private async loop(): Promise<LoopEnd> {
    // A guest reboot replaces the board and the clock: both are re-read after one.
    let vm = this.m.vm;
    let det = this.m.clock instanceof InstructionClock ? this.m.clock : undefined;
    let t0 = performance.now();
    let mipsStart = t0;
    let mipsInstr = this.executed;
    try {
      while (this.wantRunning && !this.closed) {
        const sliceStart = performance.now();
        const sliceEnd = sliceStart + SLICE_MS;
        do {
          const room = BATCH - (this.executed % BATCH);
          this.executed += this.o.pcSamples ? this.stepSampled(vm, room, this.o.pcSamples) : vm.step(room);
          if (this.point && this.pointReached) break;
          if (det) {
            if (this.blkBusy()) break;
            // Idle time is skipped, not slept: the next timer is due at once.
            if (vm.idle && !vm.exit) {
              const d = vm.nextDeadline();
              if (!Number.isFinite(d)) break;
              det.advanceTo(d);
            }
          }
        } while (!vm.exit && this.wantRunning && !vm.idle && performance.now() < sliceEnd);
        const now = performance.now();
        this.runningMs += now - t0;
        t0 = now;
        if (now - mipsStart > 500) {
          this.mips = (this.executed - mipsInstr) / ((now - mipsStart) * 1000);
          mipsStart = now;
          mipsInstr = this.executed;
        }
        this.emit('slice');
        if (this.point && this.pointReached && !vm.exit) {
          this.wantRunning = false;
          this.point = undefined;
          return { kind: 'paused' };
        }
        if (vm.exit) {
          const end = await this.guestExit(vm.exit);
          if (end) return end;
          vm = this.m.vm;
          det = this.m.clock instanceof InstructionClock ? this.m.clock : undefined;
          continue;
        }
        if (det && this.blkBusy()) {
          await this.drainIo();
        } else if (vm.idle && this.wantRunning) {
          // Host clock: sleep until the next timer or an interrupt. Deterministic: only
          // reached with no timer armed, so wait for input. The slice still counts against a
          // CPU limit; the sleep pays off what it went over.
          this.limiter.restAfter(now - sliceStart);
          await this.sleeper.sleepUntil(vm.nextDeadline());
          t0 = performance.now();
        } else {
          // A CPU limit of p%: rest until the thread's CPU time is back to p% of wall time.
          // A rest is at most a second (pauseFor), and a wake-up (I/O, a host request) ends it
          // early: rest again until the debt is paid, or the machine is parked.
          let rest = this.limiter.restAfter(now - sliceStart);
          if (rest < 1) await yieldToEventLoop();
          while (rest >= 1 && this.wantRunning) {
            await this.sleeper.pauseFor(rest);
            rest = this.limiter.restAfter(0);
          }
          t0 = performance.now();
        }
      }
      return { kind: 'parked' };
    } catch (err) {
      this.wantRunning = false;
      const name = this.o.name ?? 'vm';
      return { kind: 'error', err: err instanceof VisorError ? err : new VisorError('Internal', `machine ${name} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }) };
    }
  }

  /** Poweroff, failure or reboot. Returns how the loop ends, or undefined when it goes on (rebooted). */
  private async guestExit(exit: MachineExit): Promise<LoopEnd | undefined> {
    if (exit.kind !== 'reboot' || !this.o.rebuild || this.o.rebootEnds?.() === true) {
      this.wantRunning = false;
      return { kind: 'exit', exit };
    }
    if (++this.reboots > (this.o.maxReboots ?? Infinity)) {
      this.wantRunning = false;
      return { kind: 'exit', exit: { kind: 'reboot-loop' } };
    }
    this.emit('reboot');
    await this.drainIo();
    const m = await this.o.rebuild();
    this.m = m;
    this.hook(m);
    this.executed = 0;
    this.emit('rebuilt', m);
    return undefined;
  }
}
