/**
 * The seam between the hart (interpreter, tier 0) and a compiled tier (src/jit/, tier 1):
 * what the hart gives a tier (TierHost), what it calls on one (CompiledTier), and what both
 * sides read and write alike (exit reasons, the FS bits compiled code is entered with, the
 * stats). cpu/ never imports jit/: the hart takes its tier as a factory (HartOptions.tier),
 * which src/vm/assembler.ts passes. The state slot layout both index is guest-ram.ts.
 */

/** Exit reasons stored in the exit record (guest-ram.ts SLOT_EXIT). */
export const EXIT_CHAIN = 0; // control left the page (or the block) at a clean boundary
export const EXIT_STEP = 1; // the instruction at the exit pc needs the interpreter

/** fpOk bits: FS is Dirty (F/D computation and loads change nothing but f state and fflags). */
export const FP_DIRTY = 1;
/** fpOk bits: FS is not Off (F/D stores, which leave FS as it is, are allowed; Priv §3.1.6.6). */
export const FP_ENABLED = 2;

/** F/D computational instructions run by the hart (Hart.jitFp): 0 done, 1 interpret it instead. */
export type FpFn = (w: number, imm: number) => number;
/** LR/SC, CSR accesses and sfence.vma run by the hart (Hart.jitSys): 0 done, 1 interpret it, 2 done, leave the page. */
export type SysFn = (w: number, imm: number) => number;

export interface JitOptions {
  /**
   * Entries into a page (any offset) without code before it is compiled (default 1000); 0
   * compiles at first execution. A compiled page is compiled again when one new offset has
   * been entered a quarter as often from compiled code, doubled after each recompile
   * (src/jit/jit.ts count()).
   */
  threshold?: number;
  /** Live modules at most (default and most: guest-ram.ts JIT_MAX_MODULES, 4096 pages = 16 MiB of guest code). */
  maxModules?: number;
  /**
   * Compile only the blocks of a page the interpreter has run (JitHost.decoded): a branch to
   * code that never ran leaves the page, and the page is compiled again once that code is
   * entered often (count()). Default: on when threshold ≥ 2 (the interpreter has run the page
   * before it compiles); off compiles every block reachable from the page's entries.
   */
  compileRunOnly?: boolean;
}

/** What a compiled tier needs of the hart (src/cpu/hart.ts builds it). */
export interface JitHost {
  readonly memory: WebAssembly.Memory;
  readonly slotBase: number;
  readonly ramOffset: number;
  readonly ramPages: number;
  /** Byte offset of the hart's page map in the memory (guest-ram.ts). */
  readonly pageMapBase: number;
  /** Byte offset of the hart's entry maps (guest-ram.ts ENTRY_MAP_BYTES per table slot). */
  readonly entryMapBase: number;
  /** Fetch TLB (same layout as the hart's data TLB; in the shared memory). */
  readonly xTagLo: Int32Array;
  readonly xTagHi: Int32Array;
  readonly xOff: Int32Array;
  /** Makes stores to a RAM page take the slow path that invalidates its code. */
  protectCodePage(pg: number): void;
  /**
   * The interpreter's decodings of RAM page `pg` (non-zero at the page offset of each
   * instruction it has run since the page was last written), or undefined when it has run none.
   */
  decoded?(pg: number): Int32Array | undefined;
  /** Runs an F/D computational instruction (Hart.jitFp). */
  readonly fp: FpFn;
  /** Runs LR/SC, a CSR access or sfence.vma if it can (Hart.jitSys). */
  readonly sys: SysFn;
  /** The current fcsr (frm << 5 | fflags), which inline F/D code reads from a mirror (fp-emit.ts). */
  fcsr(): number;
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
  /** WebAssembly bytes of the modules built. */
  wasmBytes: number;
  /** Entries into compiled pages (by the dispatcher). */
  cacheHits: number;
  /** Calls from the hart into the dispatcher (JS-to-wasm transitions). */
  dispatches: number;
  /** Instructions executed in compiled code. */
  instructions: number;
  /** Exits to interpret one instruction (not compiled, or a TLB miss, MMIO, crossing a page). */
  stepExits: number;
  /** Exits because the next pc had no compiled code (page not compiled, or no block there). */
  noCodeExits: number;
  /** Of noCodeExits: the page had code, but no block starts at that offset. */
  missExits: number;
  /** Modules dropped because their page was written. */
  invalidations: number;
  /** Modules dropped to stay within maxModules. */
  evictions: number;
  liveModules: number;
  /** Compiles that failed (the page stays interpreted); should stay 0. */
  failures: number;
}

/** What the hart calls on its compiled tier (src/jit/jit.ts Jit implements it). */
export interface CompiledTier {
  readonly stats: JitStats;
  /**
   * Runs compiled code from `pc` for at most `room` instructions (data TLB set `dBase`, fetch
   * set `xBase`, FP_* bits `fpOk`); returns the instructions executed. exitPc, exitReason and
   * exitSteps then say where it stopped and why.
   */
  enter(pc: number, room: number, dBase: number, xBase: number, fpOk: number): number;
  readonly exitPc: number;
  readonly exitReason: number;
  /** Instructions left in the compiled block the exit is inside of (0: at a block boundary). */
  readonly exitSteps: number;
  /** A RAM page was written: drop its code. */
  invalidatePage(pg: number): void;
  /** The compiled pages, for another hart over the same RAM layout (TierCode). */
  exportCode?(): TierCode;
  /** Offers another hart's compiled pages; each is used only while its page still holds the bytes it was compiled from. Returns the pages taken. */
  importCode?(code: TierCode): number;
}

/**
 * Compiled pages kept warm across restores and forks: a machine restored from a snapshot runs
 * the same code at the same physical pages as the machine it came from, so that machine's
 * modules (a WebAssembly.Module is shared between threads without recompiling) can serve it.
 * A module is a function of its page's bytes, its page number, its table slot and the hart's
 * memory layout, all recorded here and checked before use.
 */
export interface TierCode {
  /** The hart's memory layout the modules were built for (slot base, RAM offset, entry maps, RAM pages). */
  readonly layout: string;
  readonly pages: readonly PageCode[];
}

export interface PageCode {
  readonly pg: number;
  /** Function-table slot the module was built for (its in-page indirect jumps read that slot's entry map). */
  readonly slot: number;
  /** The page's 4096 bytes the module was compiled from. */
  readonly content: Uint8Array;
  readonly module: WebAssembly.Module;
  /** Entry offsets in the module's order (entry map value i + 1). */
  readonly dispatch: readonly number[];
  readonly midBlock: Uint8Array;
}

/** Makes a hart's compiled tier (src/jit/jit.ts jitTier). */
export type TierFactory = (host: JitHost, options: JitOptions) => CompiledTier;
