/**
 * Traditional memory balloon (virtio 1.2 §5.5): the host sets a target (num_pages), the
 * guest gives pages back through inflateq and takes them again through deflateq; statsq
 * carries memory statistics on request; reporting_vq hands over free pages (§5.5.6.7).
 *
 * RAM is one typed array, so visor cannot unmap a page; what inflating does is zero it (as
 * QEMU's MADV_DONTNEED would) and count it, which a memory-accounting host can use.
 */
import { VIRTIO_ID_BALLOON, bit, readConfigBytes, type DeviceContext, type VirtioDevice } from '../device.js';
import { readU64 } from '../guest-memory.js';
import { markWritten } from '../../cpu/ram-pager.js';
import type { DescriptorChain } from '../queue/chain.js';
import { isCount, isObject, isU16, isU32, restoreCounters, stateError } from '../state.js';

// §5.5.3 Feature bits
export const VIRTIO_BALLOON_F_MUST_TELL_HOST = 0;
export const VIRTIO_BALLOON_F_STATS_VQ = 1;
export const VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2;
export const VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3;
export const VIRTIO_BALLOON_F_PAGE_POISON = 4;
export const VIRTIO_BALLOON_F_PAGE_REPORTING = 5;
/** §5.5.6: page frame numbers are in 4096-byte units whatever the guest page size. */
export const VIRTIO_BALLOON_PFN_SHIFT = 12;

// §5.5.6.3 Memory Statistics Tags
export const VIRTIO_BALLOON_S_SWAP_IN = 0;
export const VIRTIO_BALLOON_S_SWAP_OUT = 1;
export const VIRTIO_BALLOON_S_MAJFLT = 2;
export const VIRTIO_BALLOON_S_MINFLT = 3;
export const VIRTIO_BALLOON_S_MEMFREE = 4;
export const VIRTIO_BALLOON_S_MEMTOT = 5;
export const VIRTIO_BALLOON_S_AVAIL = 6;
export const VIRTIO_BALLOON_S_CACHES = 7;
export const VIRTIO_BALLOON_S_HTLB_PGALLOC = 8;
export const VIRTIO_BALLOON_S_HTLB_PGFAIL = 9;

const PAGE = 1 << VIRTIO_BALLOON_PFN_SHIFT;
const STAT_ENTRY = 10; // le16 tag, le64 val (packed)
/** Reads per buffer are capped: 16 Ki PFNs, 64 statistics (Linux sends 256 and 10-16). */
const MAX_PFN_BYTES = 64 * 1024;
const MAX_STATS_BYTES = 64 * STAT_ENTRY;

/** Tag → value from the last statistics buffer. */
export type BalloonStats = Map<number, number>;

export interface BalloonCounters {
  inflated: number;
  deflated: number;
  badPfns: number;
  reportedBytes: number;
  statsUpdates: number;
}

export interface BalloonState {
  version: 1;
  /** Config space: the host's target and the guest's `actual`, in 4 KiB pages. */
  numPages: number;
  actual: number;
  /** Guest page frames in the balloon. */
  inflated: number[];
  /**
   * Head of the statistics buffer the device holds (§5.5.6.3: the driver leaves one with the
   * device until it is asked for fresh figures), or null. A restored device holds it again;
   * without it the statistics queue would stall for good.
   */
  statsHead: number | null;
  /** The last statistics received, as [tag, value] pairs. */
  lastStats: [number, number][] | null;
  counters: BalloonCounters;
}

export class VirtioBalloon implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_BALLOON;
  readonly name = 'balloon';
  readonly features =
    bit(VIRTIO_BALLOON_F_STATS_VQ) | bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) | bit(VIRTIO_BALLOON_F_PAGE_REPORTING);
  /** inflateq, deflateq, statsq, reporting_vq (indices compact per negotiated features). */
  readonly queueSizes: readonly number[] = [128, 128, 2, 32];
  /**
   * Free-page reports are chains of up to 32 free blocks of 2-4 MiB or more each (Linux
   * PAGE_REPORTING_CAPACITY): far beyond the default chain cap. Nothing here copies a whole
   * chain (reports are only counted; PFN and stats reads are capped below), so any size the
   * queue's RAM bounds checks allow is safe.
   */
  readonly maxChainBytes = Number.MAX_SAFE_INTEGER;
  readonly counters: BalloonCounters = { inflated: 0, deflated: 0, badPfns: 0, reportedBytes: 0, statsUpdates: 0 };
  /** Guest page frames (4 KiB, guest-physical >> 12) currently in the balloon. */
  readonly inflated = new Set<number>();
  lastStats: BalloonStats | null = null;
  private readonly config = new Uint8Array(16);
  private ctx: DeviceContext | null = null;
  private statsQ = -1;
  private reportQ = -1;
  private statsChain: DescriptorChain | null = null;
  /** A restored stats head to hold again at activation. */
  private restoredStatsHead: number | null = null;
  private statsWaiters: ((s: BalloonStats) => void)[] = [];
  /** Called when `actual` changes (the guest reached or moved toward the target). */
  onActual: (pages: number) => void = () => {};

  /** Target balloon size in 4 KiB pages (what the host asked for). */
  get target(): number {
    return new DataView(this.config.buffer).getUint32(0, true);
  }
  /** Pages the guest says it has given (config `actual`). */
  get actual(): number {
    return new DataView(this.config.buffer).getUint32(4, true);
  }

  /** Host request: inflate (or deflate) the balloon to `pages` 4 KiB pages. */
  setTarget(pages: number): void {
    new DataView(this.config.buffer).setUint32(0, Math.max(0, Math.min(pages, 0xffff_ffff)) >>> 0, true);
    this.ctx?.configChanged();
  }

  /** Asks the guest for fresh statistics (§5.5.6.3): returns the buffer it left with us. */
  requestStats(): Promise<BalloonStats> {
    const ctx = this.ctx;
    if (!ctx || this.statsQ < 0 || !this.statsChain) return Promise.resolve(this.lastStats ?? new Map());
    const p = new Promise<BalloonStats>((r) => this.statsWaiters.push(r));
    const c = this.statsChain;
    this.statsChain = null;
    ctx.queues[this.statsQ]!.pushUsed(c.head, 0);
    ctx.usedBuffers(this.statsQ);
    return p;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size);
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    // §5.5.4: only `actual` (bytes 4..7) is driver-writable here.
    if (offset < 4 || offset + size > 8) return;
    for (let i = 0; i < size; i++) this.config[offset + i] = (value >>> (8 * i)) & 0xff;
    this.onActual(this.actual);
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    // Linux skips absent queues without consuming an index (vm_find_vqs), so the optional
    // queues are numbered compactly in the order of §5.5.2.
    let next = 2;
    this.statsQ = ctx.features & bit(VIRTIO_BALLOON_F_STATS_VQ) ? next++ : -1;
    this.reportQ = ctx.features & bit(VIRTIO_BALLOON_F_PAGE_REPORTING) ? next++ : -1;
    const head = this.restoredStatsHead;
    this.restoredStatsHead = null;
    if (head !== null && this.statsQ >= 0) this.statsChain = ctx.queues[this.statsQ]!.chainAt(head);
    for (let i = 0; i < next; i++) this.notify(i);
  }

  reset(): void {
    this.ctx = null;
    this.statsChain = null;
    this.restoredStatsHead = null;
    // §5.5.6.1: after reset the guest owns all its memory again.
    this.inflated.clear();
    new DataView(this.config.buffer).setUint32(4, 0, true);
    for (const w of this.statsWaiters.splice(0)) w(this.lastStats ?? new Map());
  }

  notify(queue: number): void {
    const ctx = this.ctx;
    if (!ctx) return;
    if (queue === 0 || queue === 1) this.pfns(ctx, queue);
    else if (queue === this.statsQ) this.stats(ctx);
    else if (queue === this.reportQ) this.report(ctx);
  }

  saveState(): BalloonState {
    return {
      version: 1,
      numPages: this.target,
      actual: this.actual,
      inflated: [...this.inflated],
      statsHead: this.statsChain?.head ?? null,
      lastStats: this.lastStats ? [...this.lastStats] : null,
      counters: { ...this.counters },
    };
  }

  /**
   * Restores saved (untrusted) balloon state before the transport restore re-activates the
   * device; validates every field first.
   */
  restore(state: unknown): void {
    const bad = (why: string) => stateError(this.name, `malformed (${why})`);
    if (!isObject(state) || state.version !== 1) throw bad('version');
    const s = state as unknown as BalloonState;
    if (!isU32(s.numPages) || !isU32(s.actual)) throw bad('config');
    if (!Array.isArray(s.inflated) || !s.inflated.every(isU32)) throw bad('inflated pages');
    if (s.statsHead !== null && s.statsHead !== undefined && !(isU16(s.statsHead) && s.statsHead < this.queueSizes[2]!)) throw bad('stats buffer');
    if (s.lastStats !== null && s.lastStats !== undefined) {
      if (!Array.isArray(s.lastStats) || s.lastStats.length > MAX_STATS_BYTES / STAT_ENTRY) throw bad('statistics');
      if (!s.lastStats.every((e) => Array.isArray(e) && e.length === 2 && isU16(e[0]) && isCount(e[1]))) throw bad('statistics');
    }
    restoreCounters(this.counters, s.counters, this.name);
    const v = new DataView(this.config.buffer);
    v.setUint32(0, s.numPages, true);
    v.setUint32(4, s.actual, true);
    this.inflated.clear();
    for (const p of s.inflated) this.inflated.add(p);
    this.restoredStatsHead = s.statsHead ?? null;
    this.lastStats = s.lastStats ? new Map(s.lastStats) : null;
  }

  private pfns(ctx: DeviceContext, qi: number): void {
    const q = ctx.queues[qi]!;
    const mem = ctx.mem;
    let any = false;
    for (let c = q.pop(); c; c = q.pop()) {
      any = true;
      // Linux sends at most VIRTIO_BALLOON_ARRAY_PFNS_MAX (256) PFNs per buffer.
      const buf = new Uint8Array(Math.min(c.readableLen, MAX_PFN_BYTES));
      c.read(0, buf);
      const v = new DataView(buf.buffer);
      for (let i = 0; i + 4 <= buf.length; i += 4) {
        const pfn = v.getUint32(i, true);
        const off = mem.offset(pfn * PAGE, PAGE);
        if (off < 0) {
          this.counters.badPfns++;
          continue;
        }
        if (qi === 0) {
          this.inflated.add(pfn);
          mem.ram.fill(0, off, off + PAGE);
          markWritten(mem.written, off, PAGE);
          this.counters.inflated++;
        } else if (this.inflated.delete(pfn)) this.counters.deflated++;
      }
      q.pushUsed(c.head, 0);
    }
    if (any) ctx.usedBuffers(qi);
  }

  private stats(ctx: DeviceContext): void {
    const q = ctx.queues[this.statsQ]!;
    for (let c = q.pop(); c; c = q.pop()) {
      // Keep only the newest buffer; an older one we still hold goes back unused.
      if (this.statsChain) {
        q.pushUsed(this.statsChain.head, 0);
        ctx.usedBuffers(this.statsQ);
      }
      this.statsChain = c;
      const buf = new Uint8Array(Math.min(c.readableLen, MAX_STATS_BYTES));
      c.read(0, buf);
      const v = new DataView(buf.buffer);
      const stats: BalloonStats = new Map();
      for (let i = 0; i + STAT_ENTRY <= buf.length; i += STAT_ENTRY) stats.set(v.getUint16(i, true), readU64(v, i + 2));
      this.lastStats = stats;
      this.counters.statsUpdates++;
      for (const w of this.statsWaiters.splice(0)) w(stats);
    }
  }

  private report(ctx: DeviceContext): void {
    const q = ctx.queues[this.reportQ]!;
    let any = false;
    for (let c = q.pop(); c; c = q.pop()) {
      // The chain's buffers are the free pages themselves; nothing to read or write.
      this.counters.reportedBytes += c.writableLen + c.readableLen;
      q.pushUsed(c.head, 0);
      any = true;
    }
    if (any) ctx.usedBuffers(this.reportQ);
  }
}

export function createVirtioBalloon(): VirtioBalloon {
  return new VirtioBalloon();
}
