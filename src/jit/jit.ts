/**
 * The code cache: which physical pages have compiled modules, when to compile, when to drop.
 *
 * The hart calls enter() at block boundaries (taken branches, page crossings, slow paths,
 * traps). enter() runs the dispatcher (dispatch.ts), which goes from compiled page to compiled
 * page inside WebAssembly and returns when the next pc has no compiled code or needs the
 * interpreter. A page's entry offsets are counted where the dispatcher found no code; when
 * the page has been entered `threshold` times in all it is compiled, and when a compiled page
 * meets a new entry a quarter as often (twice that after each recompile) it is compiled again
 * (the new module covers every entry seen so far); the module goes in the function table at the slot the page map names. Writes to a page holding compiled code (CPU stores go through the hart's slow
 * path, device DMA through Hart.invalidateCode) reach invalidatePage() via the hart's dropCode.
 * The number of live modules is bounded; the oldest are dropped first.
 */
import { ENTRY_MAP_BYTES, JIT_MAX_MODULES, SLOT_EXIT, TLB_NO_RAM, TLB_SIZE } from '../cpu/guest-ram.js';
import { compilePage, EXIT_MISS, EXIT_NOCODE, EXIT_STEP, type PageFn } from './compiler.js';
import { buildDispatcher, EXIT_CALLS, type DispatchFn } from './dispatch.js';
import { SLOT_FCSR_MIRROR } from './fp-emit.js';

import type { CompiledTier, JitHost, JitOptions, JitStats, PageCode, TierCode, TierFactory } from '../cpu/tier.js';
// What the hart and the JIT share (options, host, stats) is declared in cpu/tier.ts.
export type { JitHost, JitOptions, JitStats } from '../cpu/tier.js';

const TWO32 = 4294967296;
/** What a page the interpreter has not run at all looks like to compilePage (CompileRequest.executed). */
const NOTHING_RUN = new Int32Array(4096);
const TLB_MASK = TLB_SIZE - 1;
/** Recompiles of one page (new entries found) before its new entries stay interpreted. */
const MAX_COMPILES_PER_PAGE = 16;
/** Invalidations of one page before it stays interpreted (code and hot data share it). */
const MAX_INVALIDATIONS_PER_PAGE = 64;

class PageRecord {
  /** Function-table slot of the page's code, 0 for none (its entry map says where it can be entered). */
  slot = 0;
  /** Entry offset → times the hart arrived there without compiled code. */
  readonly hits = new Map<number, number>();
  /** Arrivals without code while the page has no module (all offsets). */
  arrivals = 0;
  /** The module's CompiledPage.midBlock, while it has one. */
  midBlock: Uint8Array | undefined;
  /** The module and its entry offsets, while it has one (exportCode hands them on). */
  module: WebAssembly.Module | undefined;
  dispatch: readonly number[] = [];
  compiles = 0;
  invalidations = 0;
}

/** The JIT as a hart's compiled tier (HartOptions.tier). */
export const jitTier: TierFactory = (host, options) => new Jit(host, options);

export class Jit implements CompiledTier {
  readonly stats: JitStats = {
    modulesCompiled: 0, blocksCompiled: 0, instructionsCompiled: 0, compileMs: 0, emitMs: 0, wasmBytes: 0, cacheHits: 0,
    dispatches: 0, instructions: 0, stepExits: 0, noCodeExits: 0, missExits: 0, invalidations: 0, evictions: 0, liveModules: 0,
    failures: 0,
  };
  /** Where compiled code stopped (valid after enter() returned). */
  exitPc = 0;
  exitReason = 0;
  /**
   * With NOCODE: instructions the interpreter should run before entering again (the rest of
   * the compiled block the exit pc is inside), or 0: up to the next block boundary it meets.
   */
  exitSteps = 0;

  private readonly threshold: number;
  /** Compile only the blocks the interpreter has run (JitOptions.compileRunOnly). */
  private readonly runOnly: boolean;
  private readonly maxModules: number;
  private readonly pages: (PageRecord | undefined)[];
  private readonly live: number[] = [];
  private readonly exit: Int32Array;
  private readonly ram16: Uint16Array;
  private readonly pageMap: Uint16Array;
  /** Per table slot, per halfword offset: the module's number of the block there (0: none). */
  private readonly entryMaps: Uint8Array;
  private readonly table: WebAssembly.Table;
  private readonly freeSlots: number[] = [];
  private nextSlot = 1;
  private readonly dispatch: DispatchFn;
  private readonly imports: WebAssembly.Imports;
  private readonly fcsrMirror: Int32Array;
  /** Compiled pages offered by importCode, by page, until first entered (or found stale). */
  private readonly offered = new Map<number, PageCode>();
  /** Pages taken from importCode (a counter for benchmarks; not among the published stats). */
  imported = 0;

  constructor(private readonly host: JitHost, options: JitOptions = {}) {
    // Measured on a Debian boot (docs/benchmarks.md "JIT"): at 32, compiling run-once init
    // code cost more than it saved; at 1000 /init came 2.3x sooner than at 256.
    this.threshold = options.threshold ?? 1000;
    // Blocks the interpreter had not run were 38 % of the guest instructions a boot to /init
    // compiled (305 k, 188 k without them): emitting and compiling them, and V8 tiering them up,
    // cost more than the exits their absence causes (docs/benchmarks.md "Compiling only the
    // blocks that ran"). Below a threshold of 2 nothing has run before a page compiles.
    this.runOnly = options.compileRunOnly ?? this.threshold >= 2;
    this.maxModules = Math.min(JIT_MAX_MODULES, Math.max(1, options.maxModules ?? JIT_MAX_MODULES));
    this.pages = new Array(host.ramPages);
    this.exit = new Int32Array(host.memory.buffer, host.slotBase + SLOT_EXIT, 4 + 6);
    this.ram16 = new Uint16Array(host.memory.buffer, host.ramOffset, host.ramPages * 2048);
    this.pageMap = new Uint16Array(host.memory.buffer, host.pageMapBase, host.ramPages);
    this.pageMap.fill(0);
    this.entryMaps = new Uint8Array(host.memory.buffer, host.entryMapBase, (JIT_MAX_MODULES + 1) * ENTRY_MAP_BYTES);
    this.table = new WebAssembly.Table({ element: 'anyfunc', initial: this.maxModules + 1 });
    this.dispatch = buildDispatcher({
      memory: host.memory, table: this.table, slotBase: host.slotBase, pageMapBase: host.pageMapBase, entryMapBase: host.entryMapBase,
    });
    // fcsr changes while compiled code runs only inside these calls (F/D ops the FPU runs, CSR
    // writes): each refreshes the mirror inline F/D code reads; enter() refreshes it too.
    const mirror = new Int32Array(host.memory.buffer, host.slotBase + SLOT_FCSR_MIRROR, 1);
    this.fcsrMirror = mirror;
    const { fp, sys } = host;
    this.imports = { e: {
      m: host.memory,
      fp: (w: number, imm: number) => { const r = fp(w, imm); mirror[0] = host.fcsr(); return r; },
      sys: (w: number, imm: number) => { const r = sys(w, imm); mirror[0] = host.fcsr(); return r; },
    } };
  }

  /**
   * Runs compiled code from `pc` for at most `room` instructions; returns the instructions
   * executed (0 when there was none to run). exitPc/exitReason tell where and why it stopped:
   * CHAIN (budget spent at a page boundary), STEP (interpret exactly the instruction at
   * exitPc), BUDGET, or NOCODE/MISS (interpret from exitPc up to the next block boundary).
   */
  enter(pc: number, room: number, dBase: number, xBase: number, fpOk: number): number {
    const x = this.exit;
    const stats = this.stats;
    let lo = pc | 0;
    let hi = Math.floor(pc / TWO32) | 0;
    let total = 0;
    // Entering right after the interpreter ran the one instruction a STEP exit left it: the
    // pc may be inside a block, and a resume point that recurs should become an entry.
    let afterStep = this.exitReason === EXIT_STEP;
    this.exitSteps = 0;
    this.fcsrMirror[0] = this.host.fcsr();
    for (;;) {
      x[4] = lo; x[5] = hi; x[6] = room - total; x[7] = dBase; x[8] = xBase; x[9] = fpOk;
      const k = this.dispatch();
      stats.dispatches++;
      if (k !== 0) afterStep = false;
      total += k;
      const reason = x[2]!;
      stats.cacheHits += x[EXIT_CALLS]!;
      lo = x[0]!; hi = x[1]!;
      if (reason !== EXIT_NOCODE && reason !== EXIT_MISS) {
        if (reason === EXIT_STEP) stats.stepExits++;
        this.exitReason = reason;
        break;
      }
      // No code at the exit pc: count the arrival; if that made the page hot, run its new code.
      // Arrived from another compiled page (the dispatcher called one first) or where the hart was.
      const chained = x[EXIT_CALLS]! > 0;
      if (total >= room || !this.arrive(lo, hi, xBase, afterStep, chained)) {
        stats.noCodeExits++;
        if (reason === EXIT_MISS) stats.missExits++;
        this.exitReason = EXIT_NOCODE;
        break;
      }
    }
    stats.instructions += total;
    this.exitPc = hi * TWO32 + (lo >>> 0);
    return total;
  }

  /** Counts an arrival at a pc without code; true if the page was just compiled with an entry there. */
  private arrive(lo: number, hi: number, xBase: number, afterStep: boolean, chained: boolean): boolean {
    const vpn = lo >>> 12;
    const i = xBase + (vpn & TLB_MASK);
    const host = this.host;
    if (host.xTagLo[i] !== vpn || host.xTagHi[i] !== hi) return false;
    const ramOff = host.xOff[i]!;
    if (ramOff === TLB_NO_RAM) return false;
    const pg = ramOff >>> 12;
    const off = lo & 0xfff;
    let page = this.pages[pg];
    if (page === undefined) {
      page = new PageRecord();
      this.pages[pg] = page;
    }
    // Arriving inside a compiled block (but not right after a STEP exit) is resuming where a
    // run() batch ended or a trap interrupted: counted, such offsets became entries of the
    // next module, in the end every instruction of a hot loop, splitting it into blocks of one
    // instruction with a budget check each. The interpreter runs the rest of the block instead.
    const rest = page.midBlock !== undefined && !afterStep ? page.midBlock[off >> 1]! : 0;
    if (rest !== 0) {
      this.exitSteps = rest;
      return false;
    }
    // Only a jump from compiled code is a new way into the page; where the hart was (after a
    // STEP exit, a trap, a batch's end) is a resume point (see count()).
    return this.count(page, pg, off, !chained) && this.entryMaps[page.slot * ENTRY_MAP_BYTES + (off >> 1)] !== 0;
  }

  /** Counts an arrival at `off`; compiles the page when it got hot. True if it compiled. */
  private count(page: PageRecord, pg: number, off: number, resume = false): boolean {
    if (page.slot === 0 && this.offered.size > 0 && this.offered.has(pg) && this.install(page, pg)) return true;
    if (page.compiles >= MAX_COMPILES_PER_PAGE || page.invalidations >= MAX_INVALIDATIONS_PER_PAGE) return false;
    const c = (page.hits.get(off) ?? 0) + 1;
    page.hits.set(off, c);
    // A page without code compiles once it has been entered `threshold` times in all (a warm
    // page whose entries are spread over many offsets got there as surely as one with a single
    // hot loop). A compiled page recompiles for a new entry reached from compiled code once
    // that entry alone reaches a quarter of that, doubled with every recompile: an arrival
    // without an entry is an exit to the interpreter, and a page first compiled during a boot
    // meets its other entries when the workload starts (a 64 MiB download through the user
    // network met 17 000 new entry offsets, 330 000 exits at the full threshold). A tenth cut
    // the download most, but the guest's awk float loop took up to twice as long (its hot
    // pages recompiled more often, each time back on V8's baseline code); a quarter did not
    // slow it, sha256sum or a disk read (docs/benchmarks.md "User-mode networking", session 13).
    // A resume point keeps the full threshold: counting those at a tenth as well, sha256sum
    // in the guest took 1.3x as long (two alternated runs each way).
    if (page.slot === 0 ? ++page.arrivals < this.threshold : c < this.reentry(page, resume)) return false;
    return this.compile(page, pg);
  }

  /** Arrivals at one new offset of a compiled page that recompile it (see count()). */
  private reentry(page: PageRecord, resume: boolean): number {
    const base = resume ? this.threshold : Math.max(1, Math.ceil(this.threshold / 4));
    return base * 2 ** Math.min(Math.max(0, page.compiles - 1), 12);
  }

  private compile(page: PageRecord, pg: number): boolean {
    const t0 = performance.now();
    page.compiles++;
    this.host.protectCodePage(pg);
    // The module is built for its table slot: its in-page indirect jumps read the slot's entry map.
    const fresh = page.slot === 0;
    let slot = page.slot;
    if (fresh) {
      if (this.live.length >= this.maxModules) this.evictOldest();
      slot = this.freeSlots.pop() ?? this.nextSlot++;
    }
    let run: PageFn;
    let dispatch: number[];
    try {
      const out = compilePage({
        ram16: this.ram16, pageRamOff: pg * 4096, entries: this.entriesOf(page), slotBase: this.host.slotBase, ramOffset: this.host.ramOffset,
        entryMapAddr: this.host.entryMapBase + slot * ENTRY_MAP_BYTES,
        ...(this.runOnly && this.host.decoded ? { executed: this.host.decoded(pg) ?? NOTHING_RUN } : {}),
      });
      this.stats.emitMs += performance.now() - t0;
      if (out === undefined) {
        if (fresh) this.freeSlots.push(slot);
        return false;
      }
      this.stats.wasmBytes += out.bytes.length;
      const module = new WebAssembly.Module(out.bytes);
      const instance = new WebAssembly.Instance(module, this.imports);
      run = instance.exports['run'] as PageFn;
      dispatch = out.dispatch;
      page.module = module;
      page.dispatch = dispatch;
      page.midBlock = out.midBlock;
      this.stats.blocksCompiled += out.blocks;
      this.stats.instructionsCompiled += out.instructions;
    } catch (e) {
      // A bug in the compiler must not take the guest down: the page stays interpreted.
      if (fresh) this.freeSlots.push(slot);
      this.stats.failures++;
      page.compiles = MAX_COMPILES_PER_PAGE;
      if (this.stats.failures === 1) console.warn(`jit: compiling page ${pg} failed: ${(e as Error).message}`);
      return false;
    } finally {
      this.stats.compileMs += performance.now() - t0;
    }
    this.stats.modulesCompiled++;
    const map = this.entryMap(slot);
    map.fill(0);
    dispatch.forEach((off, i) => { map[off >> 1] = i + 1; });
    if (fresh) {
      page.slot = slot;
      this.live.push(pg);
      this.stats.liveModules++;
    }
    this.table.set(slot, run as unknown as WebAssembly.ExportValue as never);
    this.pageMap[pg] = slot;
    return true;
  }

  /**
   * The offsets a page's module is entered at, most used first: those arrived at more than
   * once (one arrival is most often where a run() batch happened to end; every entry splits a
   * block), or all of them when that leaves none or the threshold is below 2.
   */
  private entriesOf(page: PageRecord): number[] {
    const all = [...page.hits].sort((a, b) => b[1] - a[1]);
    const used = this.threshold >= 2 ? all.filter(([, c]) => c >= 2) : all;
    return (used.length > 0 ? used : all).map(([off]) => off);
  }

  /** A table slot's entry map (one byte per halfword offset of the page). */
  private entryMap(slot: number): Uint8Array {
    return this.entryMaps.subarray(slot * ENTRY_MAP_BYTES, (slot + 1) * ENTRY_MAP_BYTES);
  }

  /** Drops a page's module: its table slot is freed and the page map no longer names it. */
  private drop(pg: number, page: PageRecord): void {
    this.pageMap[pg] = 0;
    page.module = undefined;
    this.table.set(page.slot, null as never);
    this.entryMap(page.slot).fill(0);
    this.freeSlots.push(page.slot);
    page.slot = 0;
    page.midBlock = undefined;
    page.arrivals = 0;
    this.stats.liveModules--;
  }

  /** This hart's memory layout, as far as compiled modules depend on it (TierCode.layout). */
  private get layout(): string {
    const h = this.host;
    return `${h.slotBase}:${h.ramOffset}:${h.entryMapBase}:${h.ramPages}`;
  }

  exportCode(): TierCode {
    const ram = new Uint8Array(this.host.memory.buffer, this.host.ramOffset, this.host.ramPages * 4096);
    const pages: PageCode[] = [];
    for (const pg of this.live) {
      const page = this.pages[pg];
      if (page === undefined || page.slot === 0 || page.module === undefined || page.midBlock === undefined) continue;
      // A live module's page holds the bytes it was compiled from: a write to it drops the
      // module (protectCodePage, invalidatePage), so the page's bytes now are those bytes.
      pages.push({ pg, slot: page.slot, content: ram.slice(pg * 4096, (pg + 1) * 4096), module: page.module, dispatch: [...page.dispatch], midBlock: page.midBlock.slice() });
    }
    return { layout: this.layout, pages };
  }

  /**
   * Takes compiled pages from another hart with this layout. Nothing is installed yet: a page's
   * module goes in when the hart first arrives at the page without code, if the page still
   * holds the bytes it was compiled from. Their table slots are kept for them (a module reads
   * its own slot's entry map), so this hart's own compiles take others.
   */
  importCode(code: TierCode): number {
    if (code.layout !== this.layout || this.live.length > 0 || this.nextSlot !== 1) return 0;
    let top = 0;
    for (const p of code.pages) {
      if (!Number.isInteger(p.pg) || p.pg < 0 || p.pg >= this.host.ramPages || !Number.isInteger(p.slot) || p.slot < 1 || p.slot > this.maxModules) continue;
      if (p.content.length !== 4096 || p.midBlock.length !== 2048 || p.dispatch.length > 255 || this.offered.has(p.pg)) continue;
      this.offered.set(p.pg, p);
      top = Math.max(top, p.slot);
    }
    // Slots up to the highest offered are the offered pages' (or free, once one is found stale).
    const taken = new Set([...this.offered.values()].map((p) => p.slot));
    if (taken.size !== this.offered.size) {
      // Two pages for one slot: not from one hart; take none.
      this.offered.clear();
      return 0;
    }
    for (let s = top; s >= 1; s--) if (!taken.has(s)) this.freeSlots.push(s);
    this.nextSlot = top + 1;
    return this.offered.size;
  }

  /** Installs the offered module of `pg` if the page still holds its bytes; its slot is freed otherwise. */
  private install(page: PageRecord, pg: number): boolean {
    const p = this.offered.get(pg)!;
    this.offered.delete(pg);
    const ram = new Uint8Array(this.host.memory.buffer, this.host.ramOffset + pg * 4096, 4096);
    let same = true;
    for (let i = 0; i < 4096; i++) if (ram[i] !== p.content[i]) { same = false; break; }
    if (!same) {
      this.freeSlots.push(p.slot);
      return false;
    }
    let run: PageFn;
    try {
      run = new WebAssembly.Instance(p.module, this.imports).exports['run'] as PageFn;
    } catch {
      this.freeSlots.push(p.slot);
      return false;
    }
    if (this.live.length >= this.maxModules) this.evictOldest();
    this.host.protectCodePage(pg);
    const map = this.entryMap(p.slot);
    map.fill(0);
    p.dispatch.forEach((off, i) => { map[off >> 1] = i + 1; });
    // Its entries count as seen: a later recompile for a new entry keeps them.
    for (const off of p.dispatch) page.hits.set(off, Math.max(2, page.hits.get(off) ?? 0));
    page.slot = p.slot;
    page.module = p.module;
    page.dispatch = p.dispatch;
    page.midBlock = p.midBlock;
    this.live.push(pg);
    this.stats.liveModules++;
    this.imported++;
    this.table.set(p.slot, run as unknown as WebAssembly.ExportValue as never);
    this.pageMap[pg] = p.slot;
    return true;
  }

  private evictOldest(): void {
    while (this.live.length >= this.maxModules) {
      const pg = this.live.shift()!;
      const page = this.pages[pg];
      if (page !== undefined && page.slot !== 0) {
        this.drop(pg, page);
        page.hits.clear();
        page.compiles = 0;
        this.stats.evictions++;
      }
    }
  }

  /** The page was written (or DMA'd): its compiled code is stale. */
  invalidatePage(pg: number): void {
    const page = this.pages[pg];
    if (page === undefined) return;
    if (page.slot !== 0) {
      this.drop(pg, page);
      this.stats.invalidations++;
      const at = this.live.indexOf(pg);
      if (at >= 0) this.live.splice(at, 1);
      page.invalidations++;
    }
    // New code may start elsewhere: count entries afresh.
    page.hits.clear();
    page.arrivals = 0;
    page.compiles = 0;
  }
}
