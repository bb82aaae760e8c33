import { VisorError } from '../../base/errors.js';
import type { AccessSize, IrqSink, MmioDevice } from '../../base/mmio.js';
import { MIP_MEIP, MIP_SEIP, type InterruptTarget } from '../irq.js';

/**
 * RISC-V PLIC (riscv-plic-spec 1.0.0, `sifive,plic-1.0.0` / `riscv,plic0`), laid out as on
 * QEMU's virt board: two contexts per hart, context 2h for M-mode (MEIP) and 2h+1 for S-mode
 * (SEIP).
 *   0x000000 + 4*src          priority (0 = never)
 *   0x001000                  pending bits (read-only)
 *   0x002000 + 0x80*ctx       enable bits
 *   0x200000 + 0x1000*ctx     priority threshold; +4 claim/complete
 * Sources are level-triggered through a gateway (spec §5): a source that is claimed does not
 * become pending again until its completion, and a still-high level re-pends it then.
 */
export const PLIC_PRIORITY_BASE = 0x000000;
export const PLIC_PENDING_BASE = 0x001000;
export const PLIC_ENABLE_BASE = 0x002000;
export const PLIC_ENABLE_STRIDE = 0x80;
export const PLIC_CONTEXT_BASE = 0x200000;
export const PLIC_CONTEXT_STRIDE = 0x1000;
export const PLIC_SIZE = 0x600000;
/** QEMU virt: VIRT_IRQCHIP_NUM_SOURCES = 96, source 0 reserved, so riscv,ndev = 95. */
export const PLIC_NUM_SOURCES = 96;
export const PLIC_MAX_PRIORITY = 7;

export interface PlicState {
  version: 1;
  priority: number[];
  pending: number[];
  claimed: number[];
  enable: number[][];
  threshold: number[];
}

export class Plic implements MmioDevice, IrqSink {
  readonly name = 'plic';
  readonly ndev = PLIC_NUM_SOURCES - 1;
  private readonly words = PLIC_NUM_SOURCES >> 5;
  private priority = new Uint32Array(PLIC_NUM_SOURCES);
  private level = new Uint32Array(PLIC_NUM_SOURCES >> 5);
  private pending = new Uint32Array(PLIC_NUM_SOURCES >> 5);
  private claimed = new Uint32Array(PLIC_NUM_SOURCES >> 5);
  private enable: Uint32Array[];
  private threshold: Uint32Array;
  private output: boolean[];
  readonly contexts: number;
  /** Called whenever an interrupt line changes, so an idle run loop can wake up. */
  onActivity: () => void = () => {};

  constructor(private readonly harts: readonly InterruptTarget[]) {
    this.contexts = harts.length * 2;
    this.enable = Array.from({ length: this.contexts }, () => new Uint32Array(this.words));
    this.threshold = new Uint32Array(this.contexts);
    this.output = new Array(this.contexts).fill(false);
  }

  /** IrqSink: a device drives its line. Source 0 and out-of-range sources are ignored. */
  setIrq(source: number, level: boolean): void {
    if (source <= 0 || source >= PLIC_NUM_SOURCES) return;
    const w = source >> 5;
    const bit = 1 << (source & 31);
    if (level) {
      this.level[w]! |= bit;
      if (!(this.claimed[w]! & bit)) this.pending[w]! |= bit;
    } else {
      this.level[w]! &= ~bit;
      // A level source that drops before being claimed is no longer pending (QEMU does the same).
      this.pending[w]! &= ~bit;
    }
    this.update();
    this.onActivity();
  }

  /** The best claimable source for a context, or 0. */
  private best(ctx: number): number {
    const en = this.enable[ctx]!;
    const thr = this.threshold[ctx]!;
    let best = 0;
    let bestPrio = thr;
    for (let w = 0; w < this.words; w++) {
      let bits = this.pending[w]! & en[w]! & ~this.claimed[w]!;
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        const src = (w << 5) | b;
        const p = this.priority[src]!;
        // Ties go to the lowest source ID (spec §4): strictly greater wins.
        if (p > bestPrio) {
          best = src;
          bestPrio = p;
        }
      }
    }
    return best;
  }

  private update(): void {
    for (let ctx = 0; ctx < this.contexts; ctx++) {
      const level = this.best(ctx) !== 0;
      if (level !== this.output[ctx]) {
        this.output[ctx] = level;
        this.harts[ctx >> 1]!.setPending(ctx & 1 ? MIP_SEIP : MIP_MEIP, level);
      }
    }
  }

  read(offset: number, size: AccessSize): number {
    if (size !== 4 || offset & 3) return 0;
    if (offset < PLIC_PENDING_BASE) {
      const src = offset >> 2;
      return src < PLIC_NUM_SOURCES ? this.priority[src]! : 0;
    }
    if (offset < PLIC_ENABLE_BASE) {
      const w = (offset - PLIC_PENDING_BASE) >> 2;
      return w < this.words ? this.pending[w]! >>> 0 : 0;
    }
    if (offset < PLIC_CONTEXT_BASE) {
      const ctx = Math.floor((offset - PLIC_ENABLE_BASE) / PLIC_ENABLE_STRIDE);
      const w = ((offset - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >> 2;
      return ctx < this.contexts && w < this.words ? this.enable[ctx]![w]! >>> 0 : 0;
    }
    const ctx = Math.floor((offset - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE);
    const reg = (offset - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE;
    if (ctx >= this.contexts) return 0;
    if (reg === 0) return this.threshold[ctx]!;
    if (reg === 4) return this.claim(ctx);
    return 0;
  }

  /** Claim (spec §7): returns the best source and marks it in service. */
  private claim(ctx: number): number {
    const src = this.best(ctx);
    if (src !== 0) {
      const w = src >> 5;
      const bit = 1 << (src & 31);
      this.pending[w]! &= ~bit;
      this.claimed[w]! |= bit;
      this.update();
    }
    return src;
  }

  private complete(ctx: number, src: number): void {
    if (src <= 0 || src >= PLIC_NUM_SOURCES) return;
    const w = src >> 5;
    const bit = 1 << (src & 31);
    // A completion for a source not enabled in this context is ignored (spec §8).
    if (!(this.enable[ctx]![w]! & bit) || !(this.claimed[w]! & bit)) return;
    this.claimed[w]! &= ~bit;
    if (this.level[w]! & bit) this.pending[w]! |= bit;
    this.update();
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (size !== 4 || offset & 3) return;
    value >>>= 0;
    if (offset < PLIC_PENDING_BASE) {
      const src = offset >> 2;
      if (src > 0 && src < PLIC_NUM_SOURCES) this.priority[src] = Math.min(value, PLIC_MAX_PRIORITY);
      this.update();
      return;
    }
    if (offset < PLIC_ENABLE_BASE) return; // pending is read-only
    if (offset < PLIC_CONTEXT_BASE) {
      const ctx = Math.floor((offset - PLIC_ENABLE_BASE) / PLIC_ENABLE_STRIDE);
      const w = ((offset - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >> 2;
      if (ctx >= this.contexts || w >= this.words) return;
      this.enable[ctx]![w] = w === 0 ? value & ~1 : value; // source 0 does not exist
      this.update();
      return;
    }
    const ctx = Math.floor((offset - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE);
    const reg = (offset - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE;
    if (ctx >= this.contexts) return;
    if (reg === 0) {
      this.threshold[ctx] = Math.min(value, PLIC_MAX_PRIORITY);
      this.update();
    } else if (reg === 4) {
      this.complete(ctx, value);
    }
  }

  saveState(): PlicState {
    return {
      version: 1,
      priority: [...this.priority],
      pending: [...this.pending],
      claimed: [...this.claimed],
      enable: this.enable.map((e) => [...e]),
      threshold: [...this.threshold],
    };
  }

  restore(s: PlicState): void {
    const u32s = (a: unknown, n: number) =>
      Array.isArray(a) && a.length === n && a.every((v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff);
    if (
      s.version !== 1 ||
      !u32s(s.priority, PLIC_NUM_SOURCES) ||
      !u32s(s.pending, this.words) ||
      !u32s(s.claimed, this.words) ||
      !Array.isArray(s.enable) || s.enable.length !== this.contexts || !s.enable.every((e) => u32s(e, this.words)) ||
      !u32s(s.threshold, this.contexts)
    ) {
      throw new VisorError('InvalidArgument', 'invalid PLIC state');
    }
    this.priority = Uint32Array.from(s.priority, (p) => Math.min(p, PLIC_MAX_PRIORITY));
    this.pending = Uint32Array.from(s.pending);
    this.claimed = Uint32Array.from(s.claimed);
    this.enable = s.enable.map((e) => Uint32Array.from(e));
    this.threshold = Uint32Array.from(s.threshold, (t) => Math.min(t, PLIC_MAX_PRIORITY));
    // Device lines are re-driven by the devices' own restore; outputs are recomputed here.
    this.output.fill(false);
    for (let ctx = 0; ctx < this.contexts; ctx++) this.harts[ctx >> 1]!.setPending(ctx & 1 ? MIP_SEIP : MIP_MEIP, false);
    this.update();
  }
}
