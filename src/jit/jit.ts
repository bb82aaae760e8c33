/**
 * The code cache: which physical pages have compiled modules, when to compile, when to drop.
 *
 * The hart calls enter() at block boundaries (taken branches, page crossings, slow paths,
 * traps). A page's entry offsets are counted; when one reaches the threshold the page is
 * compiled (again, if it already had a module: the new module covers every entry seen so
 * far). Writes to a page holding compiled code (CPU stores go through the hart's slow path,
 * device DMA through Hart.invalidateCode) reach invalidatePage() via the hart's dropCode.
 * The number of live modules is bounded; the oldest are dropped first.
 */
import { SLOT_EXIT } from '../cpu/guest-ram.js';
import { compilePage, EXIT_MISS, EXIT_STEP, type FpFn, type RunFn } from './compiler.js';

export interface JitOptions {
  /** Entries into a page offset before the page is compiled (default 1000); 0 compiles at first execution. */
  threshold?: number;
  /** Live modules at most (default 4096 pages = 16 MiB of guest code). */
  maxModules?: number;
}

/** What the JIT needs of the hart (src/cpu/hart.ts). */
export interface JitHost {
  readonly memory: WebAssembly.Memory;
  readonly slotBase: number;
  readonly ramOffset: number;
  readonly ramPages: number;
  /** Fetch TLB (same layout as the hart's data TLB). */
  readonly xTagLo: Int32Array;
  readonly xTagHi: Int32Array;
  readonly xOff: Int32Array;
  /** Makes stores to a RAM page take the slow path that invalidates its code. */
  protectCodePage(pg: number): void;
  /** Runs an F/D computational instruction (Hart.jitFp). */
  readonly fp: FpFn;
}

export interface JitStats {
  /** Modules compiled (one per page and compile). */
  modulesCompiled: number;
  /** Basic blocks compiled, over all modules. */
  blocksCompiled: number;
  /** Guest instructions compiled. */
  instructionsCompiled: number;
  compileMs: number;
  /** Of compileMs: building the module bytes (the rest is V8 compiling and instantiating). */
  emitMs: number;
  /** Entries into compiled code. */
  cacheHits: number;
  /** Instructions executed in compiled code. */
  instructions: number;
  /** Exits to interpret one instruction (not compiled, or a TLB miss, MMIO, misalignment). */
  stepExits: number;
  /** Modules dropped because their page was written. */
  invalidations: number;
  /** Modules dropped to stay within maxModules. */
  evictions: number;
  liveModules: number;
  /** Compiles that failed (the page stays interpreted); should stay 0. */
  failures: number;
}

const TWO32 = 4294967296;
const TLB_MASK = 255;
/** Recompiles of one page (new entries found) before its new entries stay interpreted. */
const MAX_COMPILES_PER_PAGE = 16;
/** Invalidations of one page before it stays interpreted (code and hot data share it). */
const MAX_INVALIDATIONS_PER_PAGE = 64;

class PageRecord {
  run: RunFn | null = null;
  /** 1 at halfword offsets the module can be entered at (checked before calling it). */
  readonly entry = new Uint8Array(2048);
  /** Entry offset → times the hart arrived there without compiled code. */
  readonly hits = new Map<number, number>();
  compiles = 0;
  invalidations = 0;
}

export class Jit {
  readonly stats: JitStats = {
    modulesCompiled: 0, blocksCompiled: 0, instructionsCompiled: 0, compileMs: 0, emitMs: 0, cacheHits: 0,
    instructions: 0, stepExits: 0, invalidations: 0, evictions: 0, liveModules: 0, failures: 0,
  };
  /** Where compiled code stopped (valid after enter() returned >= 0). */
  exitPc = 0;
  exitReason = 0;

  private readonly threshold: number;
  private readonly maxModules: number;
  private readonly pages: (PageRecord | undefined)[];
  private readonly live: number[] = [];
  private readonly exit: Int32Array;
  private readonly ram16: Uint16Array;
  private readonly imports: WebAssembly.Imports;

  constructor(private readonly host: JitHost, options: JitOptions = {}) {
    // Measured on a Debian boot (docs/benchmarks.md "JIT"): at 32, compiling run-once init
    // code cost more than it saved; at 1000 /init came 2.3x sooner than at 256.
    this.threshold = options.threshold ?? 1000;
    this.maxModules = Math.max(1, options.maxModules ?? 4096);
    this.pages = new Array(host.ramPages);
    this.exit = new Int32Array(host.memory.buffer, host.slotBase + SLOT_EXIT, 4 + 6);
    this.ram16 = new Uint16Array(host.memory.buffer, host.ramOffset, host.ramPages * 2048);
    this.imports = { e: { m: host.memory, fp: host.fp } };
  }

  /**
   * Runs compiled code for `pc` if the page has some; returns the instructions executed
   * (exitPc/exitReason tell where and why it stopped), or -1 when the hart must interpret.
   */
  enter(pc: number, room: number, dBase: number, xBase: number, fpOk: number): number {
    const lo = pc | 0;
    const hi = Math.floor(pc / TWO32) | 0;
    const vpn = lo >>> 12;
    const i = xBase + (vpn & TLB_MASK);
    const host = this.host;
    if (host.xTagLo[i] !== vpn || host.xTagHi[i] !== hi) return -1;
    const ramOff = host.xOff[i]!;
    if (ramOff < 0) return -1;
    const pg = ramOff >>> 12;
    const off = lo & 0xfff;
    let page = this.pages[pg];
    if (page === undefined) {
      page = new PageRecord();
      this.pages[pg] = page;
    }
    if (page.run !== null && page.entry[off >> 1] === 1) {
      const x = this.exit;
      x[4] = off; x[5] = room; x[6] = dBase; x[7] = lo - off; x[8] = hi; x[9] = fpOk;
      const k = page.run();
      const reason = this.exit[2]!;
      if (k > 0 || reason !== EXIT_MISS) return this.ran(k, reason, page);
    }
    return this.count(page, pg, off) && page.run !== null ? this.enter(pc, room, dBase, xBase, fpOk) : -1;
  }

  private ran(k: number, reason: number, page: PageRecord): number {
    this.stats.cacheHits++;
    this.stats.instructions += k;
    this.exitReason = reason;
    if (reason === EXIT_STEP) this.stats.stepExits++;
    const elo = this.exit[0]!, ehi = this.exit[1]!;
    this.exitPc = ehi * TWO32 + (elo >>> 0);
    // A jump inside the page to an offset with no block: count it as an entry.
    if (reason === EXIT_MISS) this.countOnly(page, elo & 0xfff);
    return k;
  }

  private countOnly(page: PageRecord, off: number): void {
    page.hits.set(off, (page.hits.get(off) ?? 0) + 1);
  }

  /** Counts an arrival at `off`; compiles the page when it got hot. True if it compiled. */
  private count(page: PageRecord, pg: number, off: number): boolean {
    if (page.compiles >= MAX_COMPILES_PER_PAGE || page.invalidations >= MAX_INVALIDATIONS_PER_PAGE) return false;
    const c = (page.hits.get(off) ?? 0) + 1;
    page.hits.set(off, c);
    if (c < this.threshold) return false;
    return this.compile(page, pg);
  }

  private compile(page: PageRecord, pg: number): boolean {
    const t0 = performance.now();
    page.compiles++;
    this.host.protectCodePage(pg);
    let run: RunFn;
    try {
      const out = compilePage({ ram16: this.ram16, pageRamOff: pg * 4096, entries: page.hits.keys(), slotBase: this.host.slotBase, ramOffset: this.host.ramOffset });
      this.stats.emitMs += performance.now() - t0;
      if (out === undefined) return false;
      const instance = new WebAssembly.Instance(new WebAssembly.Module(out.bytes), this.imports);
      run = instance.exports['run'] as RunFn;
      page.entry.fill(0);
      for (const d of out.dispatch) page.entry[d >> 1] = 1;
      this.stats.blocksCompiled += out.blocks;
      this.stats.instructionsCompiled += out.instructions;
    } catch (e) {
      // A bug in the compiler must not take the guest down: the page stays interpreted.
      this.stats.failures++;
      page.compiles = MAX_COMPILES_PER_PAGE;
      if (this.stats.failures === 1) console.warn(`jit: compiling page ${pg} failed: ${(e as Error).message}`);
      return false;
    } finally {
      this.stats.compileMs += performance.now() - t0;
    }
    this.stats.modulesCompiled++;
    if (page.run === null) {
      this.live.push(pg);
      this.stats.liveModules++;
      if (this.live.length > this.maxModules) this.evictOldest();
    }
    page.run = run;
    return true;
  }

  private evictOldest(): void {
    while (this.live.length > this.maxModules) {
      const pg = this.live.shift()!;
      const page = this.pages[pg];
      if (page?.run) {
        page.run = null;
        page.entry.fill(0);
        page.hits.clear();
        page.compiles = 0;
        this.stats.liveModules--;
        this.stats.evictions++;
      }
    }
  }

  /** The page was written (or DMA'd): its compiled code is stale. */
  invalidatePage(pg: number): void {
    const page = this.pages[pg];
    if (page === undefined) return;
    if (page.run !== null) {
      page.run = null;
      page.entry.fill(0);
      this.stats.invalidations++;
      this.stats.liveModules--;
      const at = this.live.indexOf(pg);
      if (at >= 0) this.live.splice(at, 1);
      page.invalidations++;
    }
    // New code may start elsewhere: count entries afresh.
    page.hits.clear();
    page.compiles = 0;
  }
}
