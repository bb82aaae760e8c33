/**
 * Random program generator for the differential test against QEMU.
 *
 * A program is a flat binary (see layout.ts): an M-mode prologue that sets every piece of
 * state the program depends on, a random body run in M, S or U mode, trap handlers that log
 * (cause, tval, epc, status) and skip the faulting instruction, and an epilogue that prints
 * the final state as hex lines on the UART and powers off through the syscon.
 *
 * Everything the body does must be deterministic on any correct RV64GC implementation with
 * QEMU 7.2's implementation choices; choices the spec leaves open and visor may legitimately
 * make differently are kept out or isolated behind options (see DiffOptions).
 */
import * as A from '../support/riscv-asm.js';
import { Rng } from './rng.js';
import * as L from './layout.js';
import type { KnownIssue } from './known-issues.js';

const { CSR } = A;

export type Mode = 'M' | 'S' | 'U';

export interface DiffOptions {
  /** Body length in instruction groups (default 40-160, random). */
  bodyLength?: number;
  /** Force a privilege mode for the body. */
  mode?: Mode;
  /**
   * Misaligned scalar loads/stores to RAM (default on). QEMU 7.2 performs them in hardware
   * (the spec allows that or a trap, unprivileged §2.6) and so does visor.
   */
  misaligned?: boolean;
  /**
   * The F/D stress profile (`--fp`): FS mostly Dirty, a body of F/D arithmetic, conversions,
   * moves and compares on values chosen near the edges (exact integers and dyadics, products
   * landing at the smallest normal or past the largest finite, subnormals, NaN-boxing, signalling
   * NaNs), every rounding mode with frm rewritten in the body, fflags read and cleared often,
   * and intermediate results and flags stored to scratch (its checksums are compared).
   */
  fp?: boolean;
  /** Known visor/QEMU differences to work around (known-issues.ts). */
  workarounds?: readonly KnownIssue[];
  /**
   * Body groups to emit (default all). The random stream is consumed identically whether a
   * group is kept or not, so dropping groups leaves the rest of the program unchanged: this is
   * how a mismatch is minimised.
   */
  keep?: ReadonlySet<number>;
}

export interface DiffProgram {
  seed: number;
  index: number;
  mode: Mode;
  /** M-mode body with mstatus.MPRV set: its loads and stores are translated. */
  mprv: boolean;
  image: Uint8Array;
  bodyStart: number;
  bodyEnd: number;
  /** Labels worth printing in a listing (address → name). */
  marks: Map<number, string>;
  /** One line per setting of the prologue (mode, delegation, PTEs) for mismatch reports. */
  summary: string[];
  /** Number of top-level body groups (see DiffOptions.keep). */
  groups: number;
}

// Registers the body never writes: gp is the scratch base, tp/t5/t6 belong to the trap handlers.
const RESERVED = new Set([0, A.gp, A.tp, A.t5, A.t6]);
const BODY_RD = Array.from({ length: 32 }, (_, i) => i).filter((r) => !RESERVED.has(r));
const CREGS = [8, 9, 10, 11, 12, 13, 14, 15];

// mstatus fields, privileged spec §3.1.6.
const MSTATUS_SIE = 1n << 1n;
const MSTATUS_MIE = 1n << 3n;
const MSTATUS_SPIE = 1n << 5n;
const MSTATUS_MPIE = 1n << 7n;
const MSTATUS_SPP = 1n << 8n;
const MSTATUS_MPP_SHIFT = 11n;
const MSTATUS_FS_SHIFT = 13n;
const MSTATUS_SUM = 1n << 18n;
const MSTATUS_MXR = 1n << 19n;
const MSTATUS_TVM = 1n << 20n;
const MSTATUS_TW = 1n << 21n;
const MSTATUS_TSR = 1n << 22n;
/** UXL = SXL = 2 (64-bit): written explicitly so no implementation sees an XLEN change request. */
const MSTATUS_XL64 = (2n << 32n) | (2n << 34n);

// mip/mie bits, privileged spec §3.1.9.
const MIP_SSIP = 1 << 1;
const MIP_STIP = 1 << 5;
const MIP_SEIP = 1 << 9;

// Sv39 PTE bits, privileged spec §4.3.1 / §4.4.1.
const PTE_V = 1;
const PTE_R = 2;
const PTE_W = 4;
const PTE_X = 8;
const PTE_U = 16;
const PTE_G = 32;
const PTE_A = 64;
const PTE_D = 128;

/** Lines printed before the trap log, in order. */
export const DUMP_CSRS = ['fcsr', 'mstatus', 'misa', 'medeleg', 'mideleg', 'mscratch', 'mepc', 'mcause', 'mtval',
  'sscratch', 'sepc', 'scause', 'stval', 'satp', 'mhartid', 'mie', 'sip'] as const;
const N_BLOCKS = (L.CHECK_END - L.CHECK_BASE) / L.CHECK_BLOCK;
const ALIAS_PAGES = L.SCRATCH_SIZE / 4096;

export function dumpNames(): string[] {
  const names: string[] = [];
  for (let i = 1; i < 32; i++) names.push(`x${i} (${A.X_NAMES[i]})`);
  for (let i = 0; i < 32; i++) names.push(`f${i} (${A.F_NAMES[i]})`);
  for (const c of DUMP_CSRS) names.push(c);
  for (let b = 0; b < N_BLOCKS; b++) names.push(`checksum of memory 0x${(L.CHECK_BASE + b * L.CHECK_BLOCK).toString(16)}+${L.CHECK_BLOCK}`);
  for (let i = 0; i < ALIAS_PAGES; i++) names.push(`PTE of alias page 0x${(L.ALIAS + i * 4096).toString(16)}`);
  names.push('trap count');
  return names;
}

/** Name of output line `i` (the trap log follows the fixed part). */
export function lineName(i: number): string {
  const fixed = dumpNames();
  if (i < fixed.length) return fixed[i]!;
  const k = i - fixed.length;
  return `trap[${Math.floor(k / L.TLOG_FIELDS.length)}].${L.TLOG_FIELDS[k % L.TLOG_FIELDS.length]}`;
}

// ---------------------------------------------------------------------------------------------
// Random values

const INT_SPECIALS = [0n, 1n, -1n, 2n, 0x7fffffffffffffffn, -0x8000000000000000n, 0x7fffffffn, -0x80000000n,
  0x80000000n, 0xffffffffn, 0x100000000n, 0xffffn, 0x8000n, 0x7ffn, -0x800n, 31n, 32n, 63n, 64n];

function randInt(r: Rng): bigint {
  switch (r.int(6)) {
    case 0: return r.pick(INT_SPECIALS);
    case 1: return BigInt(r.range(-64, 64));
    case 2: return BigInt.asIntN(32, BigInt(r.u32()));
    case 3: return BigInt.asIntN(64, r.u64() >> BigInt(r.int(64)));
    default: return BigInt.asIntN(64, r.u64());
  }
}

const F64 = new Float64Array(1);
const U64 = new BigUint64Array(F64.buffer);
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

function doubleBits(r: Rng): bigint {
  switch (r.int(12)) {
    case 0: return r.pick([0n, 1n << 63n]); // ±0
    case 1: return r.pick([0x7ff0000000000000n, 0xfff0000000000000n]); // ±inf
    case 2: return r.pick([0x7ff8000000000000n, 0xfff8000000000000n, 0x7ff8000000000001n, 0x7ff4000000000000n,
      0x7ff0000000000001n, 0xfff0000000000123n]); // quiet and signalling NaNs
    case 3: return (r.bool() ? 1n << 63n : 0n) | (r.u64() & 0xfffffffffffffn); // subnormal
    case 4: return r.pick([0x0010000000000000n, 0x7fefffffffffffffn, 0x3ff0000000000000n, 0xbff0000000000000n,
      0x3fe0000000000000n, 0x4330000000000000n, 0x43e0000000000000n, 0xc3e0000000000000n, 0x41dfffffffc00000n]);
    case 5: {
      F64[0] = (r.range(-70000, 70000)) / r.pick([1, 2, 4, 3, 10]);
      return U64[0]!;
    }
    case 6: {
      F64[0] = r.range(-(2 ** 31), 2 ** 31) + r.pick([0, 0.5, 0.25, 0.75, -0.5]);
      return U64[0]!;
    }
    default: {
      // Random sign and mantissa, exponent near 1.0 most of the time so operations stay finite.
      const exp = BigInt(r.bool(0.8) ? r.range(1023 - 40, 1023 + 40) : r.range(0, 2047));
      return (r.bool() ? 1n << 63n : 0n) | (exp << 52n) | (r.u64() & 0xfffffffffffffn);
    }
  }
}

function singleBits(r: Rng): number {
  switch (r.int(12)) {
    case 0: return r.pick([0, 0x80000000]);
    case 1: return r.pick([0x7f800000, 0xff800000]);
    case 2: return r.pick([0x7fc00000, 0xffc00000, 0x7fc00001, 0x7fa00000, 0x7f800001, 0xff800123]);
    case 3: return ((r.bool() ? 0x80000000 : 0) | (r.u32() & 0x7fffff)) >>> 0;
    case 4: return r.pick([0x00800000, 0x7f7fffff, 0x3f800000, 0xbf800000, 0x3f000000, 0x4b000000, 0x4f000000,
      0xcf000000, 0x5f000000, 0xdf000000]);
    case 5: {
      F32[0] = r.range(-70000, 70000) / r.pick([1, 2, 4, 3, 10]);
      return U32[0]!;
    }
    default: {
      const exp = r.bool(0.8) ? r.range(127 - 20, 127 + 20) : r.range(0, 255);
      return ((r.bool() ? 0x80000000 : 0) | (exp << 23) | (r.u32() & 0x7fffff)) >>> 0;
    }
  }
}

/** An f-register value: a double, a NaN-boxed single, or a single that is not properly boxed. */
function fregBits(r: Rng): bigint {
  const k = r.int(10);
  if (k < 4) return doubleBits(r);
  if (k < 9) return 0xffffffff00000000n | BigInt(singleBits(r));
  return r.bool() ? r.u64() : BigInt(singleBits(r)); // not NaN-boxed: reads as the canonical NaN
}

// ---------------------------------------------------------------------------------------------
// Program

interface GenState {
  r: Rng;
  a: A.Asm;
  mode: Mode;
  opts: DiffOptions;
  mstatus: bigint; // the value the prologue writes
  gp: number; // scratch base register value
  aliasPerms: number[]; // PTE flags of each alias page
  labels: number;
  mprv: boolean;
  /** mideleg as the prologue sets it (S bodies cannot change it). */
  mideleg: number;
  /** Scratch page PMP entry 0 restricts for S/U accesses (0 when none). */
  pmpPage: number;
  /** Physical fetch targets that must fault, and (S/U) virtual ones. */
  fetchFaults: number[];
  /** satp values for the Sv39 and Sv48 roots (S programs switch between them). */
  satps: bigint[];
}

const RM_CHOICES: readonly (readonly [number, number])[] = [[40, 7], [11, 0], [11, 1], [11, 2], [11, 3], [11, 4], [1, 5], [1, 6]];

export function generateProgram(seed: number, index: number, opts: DiffOptions = {}): DiffProgram {
  const r = new Rng(seed, index);
  const mode: Mode = opts.mode ?? r.weighted([[5, 'M'], [3, 'S'], [3, 'U']] as const);
  const a = new A.Asm(L.RAM_BASE);
  // Some M programs set MPRV so their loads and stores are translated as U-mode ones. MPP stays
  // U throughout: QEMU 7.2 does not flush its TLB when mret or a trap changes MPP under MPRV,
  // so after such a change it keeps translating with the old privilege.
  const mprv = mode === 'M' && r.bool(0.25);
  const st: GenState = { r, a, mode, opts, mstatus: 0n, gp: L.SCRATCH + 0x800 + 0x1000 * r.int(15), aliasPerms: [], labels: 0, mprv, mideleg: 0, pmpPage: 0, fetchFaults: [],
    satps: [(8n << 60n) | BigInt(L.PT_ROOT >>> 12), (9n << 60n) | BigInt(L.PT_ROOT48 >>> 12)] };
  const paging = mode !== 'M' || mprv;
  const satpMode = r.bool(0.6) ? 8n : 9n; // Sv39 or Sv48, privileged §4.4, §4.5
  const summary: string[] = [paging ? `mode ${mode}${mprv ? ' with MPRV, MPP=U' : ''}, ${satpMode === 8n ? 'Sv39' : 'Sv48'}` : `mode ${mode}, bare`];

  const pt = new BigUint64Array(4 * 512);
  if (paging) buildPageTables(st, pt, summary, mode === 'U' || mprv);
  // Fetch targets that fault on both machines (instruction fetch is never subject to MPRV).
  if (mode === 'M') {
    st.fetchFaults = [0x9000_0000, 0x0700_0000, 0x4000_0000_0000].map((x) => x + 2 * r.int(0x800));
  } else {
    st.fetchFaults = [0x8005_0000, 0x4000_0000_0000, L.SCRATCH + L.BAD_MEGA_DELTA + 2 * r.int(0x800),
      L.SCRATCH + 2 * r.int(0x8000)].map((x) => x + 2 * r.int(0x400));
    st.aliasPerms.forEach((f, i) => {
      const userOk = mode === 'U' ? (f & PTE_U) !== 0 : (f & PTE_U) === 0;
      const executes = (f & PTE_V) && (f & PTE_X) && !((f & PTE_W) && !(f & PTE_R)) && userOk;
      // Not an S-mode fetch from an executable U page either: once a load with SUM = 1 has
      // cached the page, QEMU 7.2 lets S fetch from it (the spec never allows that, §4.3.1).
      const qemuStale = mode === 'S' && (f & PTE_V) && (f & PTE_X);
      if (!executes && !qemuStale) st.fetchFaults.push(L.ALIAS + i * 4096 + 2 * r.int(0x800));
    });
  }

  // mstatus for the body, §3.1.6.
  const fs = BigInt(opts.fp ? r.weighted([[90, 3], [5, 1], [5, 2]] as const) : r.weighted([[50, 3], [20, 1], [20, 2], [10, 0]] as const));
  let ms = MSTATUS_XL64 | (fs << MSTATUS_FS_SHIFT) | (BigInt({ M: 3, S: 1, U: 0 }[mode]) << MSTATUS_MPP_SHIFT);
  for (const [bit, p] of [[MSTATUS_SIE, 0.3], [MSTATUS_SPIE, 0.5], [MSTATUS_MPIE, 0.5], [MSTATUS_SPP, 0.5],
    [MSTATUS_SUM, 0.5], [MSTATUS_MXR, 0.3], [MSTATUS_TVM, 0.3], [MSTATUS_TW, 0.3], [MSTATUS_TSR, 0.3]] as const) {
    if (r.bool(p)) ms |= bit;
  }
  const medeleg = mode === 'M' ? 0 : r.bool(0.3) ? 0 : [2, 3, 4, 5, 6, 7, 8, 12, 13, 15].reduce((m, b) => (r.bool(0.5) ? m | (1 << b) : m), 0);
  // Interrupts come only from software-written pending bits (no timer or external source is
  // wired on the bare machine): enable a random set of the S-level ones and delegate some.
  const S_INTS = [MIP_SSIP, MIP_STIP, MIP_SEIP];
  const mie = r.bool(0.4) ? S_INTS.reduce((m, b) => (r.bool() ? m | b : m), 0) : 0;
  const mideleg = S_INTS.reduce((m, b) => (r.bool() ? m | b : m), 0);
  // The S handler returns with sret, which traps under TSR (§3.1.6.5): TSR only without delegation.
  if (medeleg || mideleg) ms &= ~MSTATUS_TSR;
  st.mideleg = mideleg;
  st.mstatus = ms;
  summary.push(`mstatus before mret 0x${ms.toString(16)}`);
  summary.push(`medeleg 0x${medeleg.toString(16)}`);
  const frm = r.weighted([[90, r.int(5)], [10, r.range(5, 7)]] as const);
  const fflags = opts.fp && r.bool(0.6) ? 0 : r.int(32);

  // ---- prologue (M-mode, page 0)
  const t0 = A.t0;
  a.la(t0, 'm_handler').emit(A.csrw(CSR.mtvec, t0));
  a.la(t0, 's_handler').emit(A.csrw(CSR.stvec, t0));
  // PMP: an entry NAPOT over all of memory, RWX (§3.7); QEMU denies S/U accesses matching no
  // entry. With paging, entry 0 often first takes a random subset of R/W/X (W only with R:
  // RW=01 is reserved) from one scratch page, so S/U (and MPRV) accesses there raise access
  // faults: the lowest-numbered matching entry decides (§3.7.1).
  const allMem = (1n << 54n) - 1n; // NAPOT over the whole 2^56 physical space
  if (paging && r.bool(0.7)) {
    st.pmpPage = L.SCRATCH + 4096 * r.int(L.SCRATCH_SIZE / 4096);
    const perm = r.pick([0, 1, 3, 4, 5]); // -, R, RW, X, RX
    a.li(t0, (st.pmpPage >>> 2) | 0x1ff).emit(A.csrw(CSR.pmpaddr0, t0)); // NAPOT 4 KiB
    a.li(t0, allMem).emit(A.csrw(CSR.pmpaddr1, t0));
    a.li(t0, (0x1f << 8) | 0x18 | perm).emit(A.csrw(CSR.pmpcfg0, t0));
    summary.push(`PMP entry 0: page 0x${st.pmpPage.toString(16)} ${'RWX'.split('').filter((_, b) => perm & (1 << b)).join('') || 'no access'}`);
  } else {
    a.li(t0, allMem).emit(A.csrw(CSR.pmpaddr0, t0));
    a.li(t0, 0x1f).emit(A.csrw(CSR.pmpcfg0, t0));
  }
  a.li(t0, mie).emit(A.csrw(CSR.mie, t0));
  a.li(t0, mideleg).emit(A.csrw(CSR.mideleg, t0), A.csrw(CSR.mip, 0));
  summary.push(`mie 0x${mie.toString(16)} mideleg 0x${mideleg.toString(16)}`);
  a.li(t0, medeleg).emit(A.csrw(CSR.medeleg, t0));
  const root = satpMode === 8n ? L.PT_ROOT : L.PT_ROOT48;
  a.li(t0, paging ? (satpMode << 60n) | BigInt(root >>> 12) : 0n).emit(A.csrw(CSR.satp, t0), A.sfence_vma());
  // FS on while the f registers are loaded, then the body's mstatus.
  a.li(t0, MSTATUS_XL64 | (3n << MSTATUS_FS_SHIFT)).emit(A.csrw(CSR.mstatus, t0));
  a.la(t0, 'pool');
  for (let i = 0; i < 32; i++) a.emit(A.fld(i, t0, i * 8));
  a.li(t0, (frm << 5) | fflags).emit(A.csrw(CSR.fcsr, t0));
  for (const c of [CSR.mscratch, CSR.sscratch, CSR.sepc, CSR.stval, CSR.mtval]) a.li(t0, csrValue(st, c)).emit(A.csrw(c, t0));
  a.li(t0, r.range(0, 15)).emit(A.csrw(CSR.scause, t0));
  a.li(t0, r.range(0, 15)).emit(A.csrw(CSR.mcause, t0));
  a.li(t0, ms).emit(A.csrw(CSR.mstatus, t0));
  a.li(t0, L.BODY).emit(A.csrw(CSR.mepc, t0));
  for (const x of [...BODY_RD.filter((x) => x !== t0), t0]) a.li(x, randInt(r));
  a.li(A.gp, st.gp);
  a.emit(A.addi(A.tp, 0, 0), A.addi(A.t5, 0, 0), A.addi(A.t6, 0, 0));
  a.emit(A.mret());
  pad(a, L.HANDLERS);

  // ---- M-mode trap handler
  a.label('m_handler');
  handler(a, 'm');
  pad(a, L.HANDLERS + 0x400);
  a.label('s_handler');
  handler(a, 's');
  pad(a, L.HANDLERS + 0x800);
  epilogue(a);
  pad(a, L.BODY);

  // ---- body
  a.label('body');
  if (mprv) {
    // mret left MPP = U; MPRV makes M-mode loads and stores use MPP's translation (§3.1.6.3).
    a.li(A.t0, 1n << 17n).emit(A.csrs(CSR.mstatus, A.t0));
  }
  const groups = opts.bodyLength ?? r.range(60, 250);
  for (let i = 0; i < groups; i++) {
    if (!opts.keep || opts.keep.has(i)) {
      genGroup(st, true);
    } else {
      st.a = new A.Asm(a.pc); // generate and discard
      genGroup(st, true);
      st.a = a;
    }
  }
  a.label('body_end');
  a.emit(A.ecall());
  const bodyEnd = a.pc;
  if (bodyEnd > L.BODY_END_LIMIT) throw new Error('diff: body too long');
  pad(a, L.POOL);
  a.label('pool');
  for (let i = 0; i < 32; i++) {
    // Stress profile: singles in f0-f4, doubles in f5-f9 (frOf), anything elsewhere.
    const single = () => 0xffffffff00000000n | BigInt(stressSingleBits(r));
    a.dword(!opts.fp ? fregBits(r) : i < 5 ? single() : i < 10 ? fpStressBits(r) : r.bool() ? single() : fpStressBits(r));
  }
  pad(a, L.TLOG);
  a.label('tlog');
  pad(a, L.SAVE);
  a.label('save');
  pad(a, L.PT_ROOT48);
  a.data(new Uint8Array(pt.buffer));
  pad(a, L.SCRATCH);
  for (let i = 0; i < L.SCRATCH_SIZE / 4; i++) a.word(r.bool(0.1) ? 0 : r.u32());

  const image = a.bytes();
  const marks = new Map<number, string>([[L.BODY, 'body'], [bodyEnd - 4, 'body_end']]);
  return { seed, index, mode, mprv, image, bodyStart: L.BODY, bodyEnd, marks, summary, groups };
}

/** Whether a known-issue workaround is on (none are open now; see known-issues.ts). */
export function has(st: { opts: DiffOptions }, issue: KnownIssue): boolean {
  return st.opts.workarounds?.includes(issue) ?? false;
}

function pad(a: A.Asm, to: number): void {
  if (a.pc > to) throw new Error(`diff: section overflows 0x${to.toString(16)} (at 0x${a.pc.toString(16)})`);
  a.space(to - a.pc);
}

/** Fills the table pages PT_ROOT48..PT_L0 (`pt` holds them in order); `user` sets U on RAM pages. */
function buildPageTables(st: GenState, pt: BigUint64Array, summary: string[], user: boolean): void {
  const { r } = st;
  const leaf = (pa: number, flags: number) => (BigInt(pa >>> 12) << 10n) | BigInt(flags);
  const u = user ? PTE_U : 0;
  const page = (pa: number) => ((pa - L.PT_ROOT48) / 4096) * 512;
  pt[page(L.PT_ROOT48) + 0] = leaf(L.PT_ROOT, PTE_V); // Sv48 root[VPN3 = 0] → the Sv39 root
  pt[page(L.PT_ROOT) + 2] = leaf(L.PT_L1, PTE_V); // root[VPN2 = 2] → L1
  pt[page(L.PT_L1) + 0] = leaf(L.PT_L0, PTE_V); // L1[VPN1 = 0] → L0
  const l0 = (va: number, v: bigint) => { pt[page(L.PT_L0) + ((va - L.RAM_BASE) >>> 12)] = v; };
  l0(L.PROLOGUE, leaf(L.PROLOGUE, PTE_V | PTE_R | PTE_X | PTE_A));
  l0(L.HANDLERS, leaf(L.HANDLERS, PTE_V | PTE_R | PTE_X | PTE_A));
  for (let pa = L.BODY; pa < L.POOL + 256; pa += 4096) {
    l0(pa, leaf(pa, PTE_V | PTE_R | PTE_X | PTE_A | u));
  }
  for (const pa of [L.TLOG, L.TLOG + 4096]) l0(pa, leaf(pa, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D));
  if (st.mode === 'S') l0(L.PT_WINDOW, leaf(L.PT_L0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D));
  for (let i = 0; i < L.SCRATCH_SIZE / 4096; i++) {
    const pa = L.SCRATCH + i * 4096;
    l0(pa, leaf(pa, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D | u));
    let f = 0;
    if (r.bool(0.95)) f |= PTE_V;
    if (r.bool(0.75)) f |= PTE_R;
    if (r.bool(0.6)) f |= PTE_W;
    if (r.bool(0.3)) f |= PTE_X;
    if (r.bool(user ? 0.85 : 0.2)) f |= PTE_U;
    if (r.bool(0.8)) f |= PTE_A;
    if (r.bool(0.7)) f |= PTE_D;
    if (r.bool(0.1)) f |= PTE_G;
    st.aliasPerms.push(f);
    l0(L.ALIAS + i * 4096, leaf(pa, f));
  }
  // Superpages, §4.3.1: leaves above level 0; a leaf's PPN must be aligned to its size.
  const superFlags: number[] = [];
  const sup = (): number => {
    let f = PTE_V | PTE_R | PTE_W | PTE_A | PTE_D | u;
    if (r.bool(0.3)) f = (f & ~PTE_W) | (r.bool() ? PTE_X : 0);
    if (r.bool(0.2)) f &= ~(r.bool() ? PTE_A : PTE_D);
    if (r.bool(0.15)) f ^= PTE_U;
    if (r.bool(0.1)) f |= PTE_G;
    superFlags.push(f);
    return f;
  };
  pt[page(L.PT_ROOT) + 3] = leaf(L.RAM_BASE, sup()); // VA 0xc000_0000: 1 GiB page
  pt[page(L.PT_L1) + 1] = leaf(L.RAM_BASE, sup()); // VA 0x8020_0000: 2 MiB page
  pt[page(L.PT_L1) + 2] = leaf(L.SCRATCH, sup()); // VA 0x8040_0000: misaligned 2 MiB page
  const flagText = (f: number) => 'VRWXUGAD'.split('').filter((_, b) => f & (1 << b)).join('') || '-';
  summary.push(`superpage flags (1G, 2M, misaligned 2M) ${superFlags.map(flagText).join(' ')}`);
  summary.push(`alias page flags ${st.aliasPerms.map(flagText).join(' ')}`);
}

/**
 * The trap handler for M (`m`) or S (`s`): log the trap, skip the instruction, return. It uses
 * only tp, t5 and t6, which the body never writes. The program ends when the trap is the body's
 * final ecall (or the S handler's exit ecall) or when TRAP_CAP traps have been taken.
 */
function handler(a: A.Asm, m: 'm' | 's'): void {
  const [epc, cause, tval, status] = m === 'm' ? [CSR.mepc, CSR.mcause, CSR.mtval, CSR.mstatus] : [CSR.sepc, CSR.scause, CSR.stval, CSR.sstatus];
  const exit = m === 'm' ? 'epilogue' : 's_exit';
  const { tp, t5, t6 } = A.X;
  a.emit(A.csrr(t6, epc));
  a.la(tp, 'body_end').beq(t6, tp, exit);
  if (m === 'm') a.la(tp, 's_exit').beq(t6, tp, exit);
  a.la(tp, 'tlog');
  a.emit(A.ld(t5, tp, 0), A.addi(t5, t5, 1), A.sd(t5, tp, 0), A.addi(t5, t5, -(L.TRAP_CAP + 1)));
  a.bgez(t5, exit);
  a.emit(A.ld(t5, tp, 0), A.slli(t5, t5, 6), A.add(tp, tp, t5));
  a.emit(A.csrr(t5, cause), A.sd(t5, tp, 0), A.csrr(t5, tval), A.sd(t5, tp, 8), A.sd(t6, tp, 16));
  a.emit(A.csrr(t5, status), A.sd(t5, tp, 24), A.addi(t5, 0, m === 'm' ? 1 : 2), A.sd(t5, tp, 32));
  // An interrupt: epc is already the next instruction; disable its source in xie so it does
  // not fire again at once (the S handler could not clear STIP/SEIP in sip).
  a.emit(A.csrr(t5, cause)).bgez(t5, `${m}_exc`);
  a.emit(A.andi(t5, t5, 63), A.addi(tp, 0, 1), A.sll(tp, tp, t5), A.csrc(m === 'm' ? CSR.mie : CSR.sie, tp)).j(`${m}_setepc`);
  a.label(`${m}_exc`);
  // A fetch fault comes from a `jalr ra, …` gadget (genFetchFault): resume at ra.
  const normal = `${m}_len`;
  const setEpc = `${m}_setepc`;
  a.emit(A.csrr(t5, cause), A.addi(t5, t5, -1)).beqz(t5, `${m}_fetch`);
  a.emit(A.csrr(t5, cause), A.addi(t5, t5, -12)).bnez(t5, normal);
  a.label(`${m}_fetch`).emit(A.mv(t6, A.ra)).j(setEpc);
  a.label(normal);
  // Instruction length from its low bits (§1.5). The S handler reads it with SUM and MXR set
  // for that one load (a U page, or an execute-only one, is then readable from S) and puts
  // sstatus back after: the faulting pc can be anywhere the body jumped to, also in the
  // executable alias and scratch pages that no supervisor-readable window covers.
  if (m === 'm') a.emit(A.lhu(t5, t6, 0));
  else a.li(tp, MSTATUS_SUM | MSTATUS_MXR).emit(A.csrrs(tp, CSR.sstatus, tp), A.lhu(t5, t6, 0), A.csrw(CSR.sstatus, tp));
  a.emit(A.andi(t5, t5, 3), A.addi(t6, t6, 2), A.addi(t5, t5, -3));
  const skip = `${m}_skip`;
  a.bnez(t5, skip);
  a.emit(A.addi(t6, t6, 2));
  a.label(skip);
  a.label(setEpc);
  a.emit(A.csrw(epc, t6), m === 'm' ? A.mret() : A.sret());
  if (m === 's') {
    a.label('s_exit');
    a.emit(A.ecall());
  }
}

/** Saves and prints the final state (M-mode), then powers off. */
function epilogue(a: A.Asm): void {
  const { t5, t6, a0, a1, a2, a3, a4, a5, a6, ra } = A.X;
  a.label('epilogue');
  a.la(t6, 'save');
  for (let i = 1; i < 32; i++) a.emit(A.sd(i, t6, (i - 1) * 8));
  a.emit(A.csrr(t5, CSR.mstatus), A.sd(t5, t6, (31 + 32 + 1) * 8));
  a.li(t5, 3n << MSTATUS_FS_SHIFT).emit(A.csrs(CSR.mstatus, t5));
  for (let i = 0; i < 32; i++) a.emit(A.fsd(i, t6, (31 + i) * 8));
  DUMP_CSRS.forEach((name, k) => {
    if (name !== 'mstatus') a.emit(A.csrr(t5, CSR[name]), A.sd(t5, t6, (63 + k) * 8));
  });
  // Checksums: FNV-1a-style over dwords, one per CHECK_BLOCK bytes.
  a.li(a0, L.CHECK_BASE).li(a1, N_BLOCKS).li(a2, L.SAVE + (63 + DUMP_CSRS.length) * 8).li(a6, 0x100000001b3n);
  a.label('ck_block');
  a.li(a3, 0xcbf29ce484222325n).li(a4, L.CHECK_BLOCK / 8);
  a.label('ck_dw');
  // Unrolled by 8: the epilogue dominates the instruction count of a program.
  for (let k = 0; k < 8; k++) a.emit(A.ld(a5, a0, k * 8), A.xor(a3, a3, a5), A.mul(a3, a3, a6));
  a.emit(A.addi(a0, a0, 64), A.addi(a4, a4, -8));
  a.bnez(a4, 'ck_dw');
  a.emit(A.sd(a3, a2, 0), A.addi(a2, a2, 8), A.addi(a1, a1, -1));
  a.bnez(a1, 'ck_block');
  a.la(a0, 'save').li(a1, 63 + DUMP_CSRS.length + N_BLOCKS).call('print');
  // The alias window's leaf PTEs, so A/D updates show by page (zero in M programs).
  a.li(a0, L.PT_L0 + ((L.ALIAS - L.RAM_BASE) >>> 12) * 8).li(a1, ALIAS_PAGES).call('print');
  // Trap log: the count, then min(count, cap) entries of TLOG_FIELDS.
  a.la(a0, 'tlog').li(a1, 1).call('print');
  a.la(t6, 'tlog').emit(A.ld(t5, t6, 0));
  a.li(a6, L.TRAP_CAP).blt(t5, a6, 'tl_ok').emit(A.mv(t5, a6));
  a.label('tl_ok');
  a.label('tl_loop');
  a.beqz(t5, 'tl_done');
  a.emit(A.addi(t6, t6, L.TLOG_ENTRY), A.mv(a0, t6)).li(a1, L.TLOG_FIELDS.length).call('print');
  a.emit(A.addi(t5, t5, -1)).j('tl_loop');
  a.label('tl_done');
  a.li(a0, L.SYSCON_BASE).li(a1, L.SYSCON_POWEROFF).emit(A.sw(a1, a0, 0));
  a.label('hang').j('hang');

  // print(a0 = pointer, a1 = dword count): 16 hex digits and '\n' per dword to the UART THR.
  a.label('print');
  a.li(a2, L.UART_BASE);
  a.label('pr_dw');
  a.beqz(a1, 'pr_done');
  a.emit(A.ld(a3, a0, 0));
  a.la(a6, 'hexdigits');
  for (let k = 60; k >= 0; k -= 4) {
    a.emit(A.srli(a5, a3, k), A.andi(a5, a5, 15), A.add(a5, a5, a6), A.lbu(a5, a5, 0), A.sb(a5, a2, 0));
  }
  a.emit(A.addi(a5, 0, 10), A.sb(a5, a2, 0), A.addi(a0, a0, 8), A.addi(a1, a1, -1)).j('pr_dw');
  a.label('pr_done');
  a.emit(A.jalr(0, ra, 0));
  a.label('hexdigits');
  a.ascii('0123456789abcdef');
  a.align(4);
}

// ---------------------------------------------------------------------------------------------
// Body

function rd(st: GenState): number {
  return st.r.bool(0.03) ? 0 : st.r.pick(BODY_RD);
}
function rs(st: GenState): number {
  return st.r.int(32);
}
function fr(st: GenState): number {
  return st.r.int(32);
}
/**
 * An f register for a single (f0-f4) or double (f5-f9) operand of the stress profile, mostly:
 * results feed later operations of the same format (a single read as a double is a NaN, a
 * double read as a single is an unboxed one, which reads as the canonical NaN).
 */
function frOf(st: GenState, double: boolean): number {
  return st.r.bool(0.85) ? (double ? 5 : 0) + st.r.int(5) : st.r.int(32);
}
function rm(st: GenState): number {
  return st.r.weighted(RM_CHOICES);
}
function cr(st: GenState): number {
  return st.r.pick(CREGS);
}

/** An address for an access of `size` bytes, and whether it is in the alias window. */
/**
 * An address for an access of `size` bytes. `atomic` keeps it in identity-mapped scratch
 * outside the PMP-restricted page: there QEMU 7.2 reports AMO/SC faults as load faults.
 */
function memAddr(st: GenState, size: number, misalign: boolean, allowAlias = true): number {
  const { r } = st;
  if (allowAlias && st.mode === 'M' && !st.mprv && r.bool(0.03)) {
    // Nothing is mapped here on either machine: a load/store access fault. Aligned: for a
    // misaligned one QEMU 7.2 reports the aligned-down address, outside the access, as tval.
    return r.pick([0x9000_0000, 0x0700_0000, 0x4000_0000_0000]) + r.int(0x1000 / size) * size;
  }
  const paged = allowAlias && (st.mode !== 'M' || st.mprv);
  // MPRV bodies may switch MPRV off, making these physical addresses: the superpage windows
  // would then reach RAM that QEMU has and the bare machine does not.
  const windows = st.mprv ? [[70, 0], [30, L.ALIAS - L.SCRATCH]] as const
    : [[70, 0], [18, L.ALIAS - L.SCRATCH], [5, L.GIGA_DELTA], [5, L.MEGA_DELTA], [2, L.BAD_MEGA_DELTA]] as const;
  const window = paged ? r.weighted(windows) : 0;
  let off = r.bool(0.5) ? st.gp - L.SCRATCH - 0x800 + r.int(0x1000) : r.int(L.SCRATCH_SIZE);
  off = Math.min(off, L.SCRATCH_SIZE - 16);
  off -= off % size;
  if (!allowAlias && st.pmpPage && L.SCRATCH + off >= st.pmpPage && L.SCRATCH + off < st.pmpPage + 4096) {
    off = (off + 4096) % (L.SCRATCH_SIZE - 16);
    off -= off % size;
  }
  // Not across a page: when the second page faults, QEMU 7.2 reports the access's first byte as
  // tval where the spec has the address of the faulting portion (privileged §3.1.16).
  if (misalign && size > 1 && (off % 4096) + 2 * size <= 4096) off += r.range(1, size - 1);
  return L.SCRATCH + window + off;
}

/** Emits a base register setup for `addr` and returns [base, imm]. */
function base(st: GenState, addr: number, avoid: number[] = []): [number, number] {
  const { r, a } = st;
  const d = addr - st.gp;
  if (d >= -2048 && d <= 2047 && r.bool(0.6)) return [A.gp, d];
  let b: number;
  do b = r.pick(BODY_RD); while (avoid.includes(b));
  const imm = r.range(-64, 64);
  a.li(b, addr - imm);
  return [b, imm];
}

function cbase(st: GenState, addr: number, maxOff: number, scale: number): [number, number] {
  const { r, a } = st;
  const b = cr(st);
  const imm = r.int(Math.floor(maxOff / scale) + 1) * scale;
  a.li(b, addr - imm);
  return [b, imm];
}

type Gen = (st: GenState) => void;

const ALU_R = [A.add, A.sub, A.sll, A.slt, A.sltu, A.xor, A.srl, A.sra, A.or, A.and, A.addw, A.subw, A.sllw, A.srlw, A.sraw];
const MUL_R = [A.mul, A.mulh, A.mulhsu, A.mulhu, A.mulw];
const DIV_R = [A.div, A.divu, A.rem, A.remu, A.divw, A.divuw, A.remw, A.remuw];
const ALU_I = [A.addi, A.slti, A.sltiu, A.xori, A.ori, A.andi, A.addiw];

const genAluR: Gen = (st) => st.a.emit(st.r.pick(ALU_R)(rd(st), rs(st), rs(st)));
const genAluI: Gen = (st) => st.a.emit(st.r.pick(ALU_I)(rd(st), rs(st), st.r.range(-2048, 2047)));
const genShiftI: Gen = (st) => {
  const { r } = st;
  const k = r.int(6);
  const f = [A.slli, A.srli, A.srai, A.slliw, A.srliw, A.sraiw][k]!;
  st.a.emit(f(rd(st), rs(st), r.int(k < 3 ? 64 : 32)));
};
const genUpper: Gen = (st) => st.a.emit((st.r.bool() ? A.lui : A.auipc)(rd(st), st.r.int(0x100000)));
const genMul: Gen = (st) => st.a.emit(st.r.pick(MUL_R)(rd(st), rs(st), rs(st)));
const genDiv: Gen = (st) => {
  const { r, a } = st;
  const x = r.pick(BODY_RD);
  const y = r.pick(BODY_RD.filter((v) => v !== x));
  const k = r.int(4);
  if (k === 0) a.li(y, 0); // division by zero, §7.2 table 7.1
  if (k === 1) a.li(x, r.pick([-0x8000000000000000n, -0x80000000n, 0xffffffff80000000n])).li(y, r.pick([-1n, 0xffffffffn]));
  a.emit(r.pick(DIV_R)(rd(st), x, y));
};
const genLi: Gen = (st) => st.a.li(st.r.pick(BODY_RD), randInt(st.r));

const LOADS = [[A.lb, 1], [A.lh, 2], [A.lw, 4], [A.ld, 8], [A.lbu, 1], [A.lhu, 2], [A.lwu, 4]] as const;
const STORES = [[A.sb, 1], [A.sh, 2], [A.sw, 4], [A.sd, 8]] as const;
const genLoad: Gen = (st) => {
  const [f, size] = st.r.pick(LOADS);
  const d = rd(st);
  const [b, imm] = base(st, memAddr(st, size, (st.opts.misaligned ?? true) && st.r.bool(0.15)));
  st.a.emit(f(d, b, imm));
};
const genStore: Gen = (st) => {
  const [f, size] = st.r.pick(STORES);
  const [b, imm] = base(st, memAddr(st, size, (st.opts.misaligned ?? true) && st.r.bool(0.15)));
  st.a.emit(f(rs(st), b, imm));
};
const genFpMem: Gen = (st) => {
  const { r, a } = st;
  const k = r.int(4);
  const size = k % 2 ? 8 : 4;
  const [b, imm] = base(st, memAddr(st, size, (st.opts.misaligned ?? true) && r.bool(0.1)));
  a.emit([A.flw, A.fld, A.fsw, A.fsd][k]!(fr(st), b, imm));
};

const AMOS = ['amoswap', 'amoadd', 'amoxor', 'amoand', 'amoor', 'amomin', 'amomax', 'amominu', 'amomaxu'] as const;
const genAmo: Gen = (st) => {
  const { r, a } = st;
  const w = r.bool() ? 'w' : 'd';
  // Misaligned AMOs are left out: QEMU 7.2 reports them as load-address-misaligned (cause 4)
  // where the spec (§8.4, privileged §3.1.15) has store/AMO-address-misaligned (cause 6).
  // Identity scratch only: on a page without R, QEMU 7.2 raises a load page fault for an AMO
  // (the spec says store/AMO page fault, privileged §4.3.2) and sets A before failing.
  const addr = memAddr(st, w === 'w' ? 4 : 8, false, false);
  const b = r.pick(BODY_RD);
  a.li(b, addr);
  a.emit(A.amo(r.pick(AMOS), w, rd(st), rs(st), b, r.bool(0.3), r.bool(0.3)));
};
const genLrSc: Gen = (st) => {
  const { r, a } = st;
  const w = r.bool() ? 'w' : 'd';
  const size = w === 'w' ? 4 : 8;
  const misalign = r.bool(0.05);
  // Identity scratch only: QEMU 7.2 checks the reservation before translating, so an SC to a
  // page it may not write fails quietly there, where an implementation may also fault.
  const addr = memAddr(st, size, misalign, false);
  const b = r.pick(BODY_RD);
  a.li(b, addr);
  const d1 = r.pick(BODY_RD.filter((v) => v !== b));
  a.emit(A.amo('lr', w, d1, 0, b, r.bool(0.3), r.bool(0.3)));
  for (let i = r.int(3); i > 0; i--) a.emit(r.pick(ALU_R)(r.pick(BODY_RD.filter((v) => v !== b)), rs(st), rs(st)));
  if (misalign) return; // the LR trapped: no SC (reservation state after a trap is not compared)
  let sb = b;
  if (r.bool(0.15)) {
    // SC to another address fails, §8.2.
    sb = r.pick(BODY_RD.filter((v) => v !== b));
    a.li(sb, memAddr(st, size, false, false));
  }
  a.emit(A.amo('sc', w, rd(st), rs(st), sb, r.bool(0.3), r.bool(0.3)));
};

const FP_BIN = [A.fadd_s, A.fsub_s, A.fmul_s, A.fdiv_s, A.fadd_d, A.fsub_d, A.fmul_d, A.fdiv_d];
const FP_FMA = [A.fmadd_s, A.fmsub_s, A.fnmsub_s, A.fnmadd_s, A.fmadd_d, A.fmsub_d, A.fnmsub_d, A.fnmadd_d];
const FP_SGN = [A.fsgnj_s, A.fsgnjn_s, A.fsgnjx_s, A.fsgnj_d, A.fsgnjn_d, A.fsgnjx_d, A.fmin_s, A.fmax_s, A.fmin_d, A.fmax_d];
const FP_CMP = [A.feq_s, A.flt_s, A.fle_s, A.feq_d, A.flt_d, A.fle_d];
const FP_TOINT = [A.fcvt_w_s, A.fcvt_wu_s, A.fcvt_l_s, A.fcvt_lu_s, A.fcvt_w_d, A.fcvt_wu_d, A.fcvt_l_d, A.fcvt_lu_d];
const FP_FROMINT = [A.fcvt_s_w, A.fcvt_s_wu, A.fcvt_s_l, A.fcvt_s_lu, A.fcvt_d_w, A.fcvt_d_wu, A.fcvt_d_l, A.fcvt_d_lu];
const genFp: Gen = (st) => {
  const { r, a } = st;
  switch (r.int(11)) {
    case 0: case 1: a.emit(r.pick(FP_BIN)(fr(st), fr(st), fr(st), rm(st))); break;
    case 2: a.emit(r.pick(FP_FMA)(fr(st), fr(st), fr(st), fr(st), rm(st))); break;
    case 3: a.emit((r.bool() ? A.fsqrt_s : A.fsqrt_d)(fr(st), fr(st), rm(st))); break;
    case 4: a.emit(r.pick(FP_SGN)(fr(st), fr(st), fr(st))); break;
    case 5: a.emit(r.pick(FP_CMP)(rd(st), fr(st), fr(st))); break;
    case 6: a.emit(r.pick(FP_TOINT)(rd(st), fr(st), rm(st))); break;
    case 7: a.emit(r.pick(FP_FROMINT)(fr(st), rs(st), rm(st))); break;
    case 8: a.emit((r.bool() ? A.fcvt_s_d : A.fcvt_d_s)(fr(st), fr(st), rm(st))); break;
    case 9: a.emit(r.pick([A.fmv_x_w, A.fmv_x_d, A.fclass_s, A.fclass_d])(rd(st), fr(st))); break;
    default: {
      // Fresh special values through an integer register.
      const x = r.pick(BODY_RD);
      a.li(x, r.bool() ? doubleBits(r) : BigInt.asIntN(64, 0xffffffff00000000n | BigInt(singleBits(r))));
      a.emit((r.bool() ? A.fmv_d_x : A.fmv_w_x)(fr(st), x));
    }
  }
};

const genCompressed: Gen = (st) => {
  const { r, a } = st;
  const nz = (lo: number, hi: number) => { let v; do v = r.range(lo, hi); while (v === 0); return v; };
  const rdNz = () => r.pick(BODY_RD);
  switch (r.int(17)) {
    case 0: a.emit(A.c_addi4spn(cr(st), nz(1, 255) * 4)); break;
    case 1: a.emit(A.c_addi(rdNz(), r.range(-32, 31))); break;
    case 2: a.emit(A.c_addiw(rdNz(), r.range(-32, 31))); break;
    case 3: a.emit(A.c_li(rdNz(), r.range(-32, 31))); break;
    case 4: a.emit(A.c_addi16sp(nz(-32, 31) * 16)); break;
    case 5: a.emit(A.c_lui(r.pick(BODY_RD.filter((x) => x !== A.sp)), nz(-32, 31))); break;
    case 6: a.emit(A.c_srli(cr(st), r.int(64))); break;
    case 7: a.emit(A.c_srai(cr(st), r.int(64))); break;
    case 8: a.emit(A.c_andi(cr(st), r.range(-32, 31))); break;
    case 9: a.emit(r.pick([A.c_sub, A.c_xor, A.c_or, A.c_and, A.c_subw, A.c_addw])(cr(st), cr(st))); break;
    case 10: a.emit(A.c_slli(rdNz(), r.int(64))); break;
    case 11: a.emit(A.c_mv(rdNz(), r.range(1, 31))); break;
    case 12: a.emit(A.c_add(rdNz(), r.range(1, 31))); break;
    case 13: case 14: {
      // c.lw/c.ld/c.sw/c.sd/c.fld/c.fsd through a compressed base register.
      const k = r.int(6);
      const size = [4, 8, 4, 8, 8, 8][k]!;
      const addr = memAddr(st, size, (st.opts.misaligned ?? true) && r.bool(0.1));
      const [b, imm] = cbase(st, addr, size === 4 ? 124 : 248, size);
      const f = [A.c_lw, A.c_ld, A.c_sw, A.c_sd, A.c_fld, A.c_fsd][k]!;
      a.emit(f(cr(st), b, imm));
      break;
    }
    default: {
      // sp-relative forms: point sp into scratch first.
      const k = r.int(6);
      const size = [4, 8, 4, 8, 8, 8][k]!;
      const addr = memAddr(st, size, (st.opts.misaligned ?? true) && r.bool(0.1));
      const imm = r.int((size === 4 ? 252 : 504) / size + 1) * size;
      a.li(A.sp, addr - imm);
      const f = [A.c_lwsp, A.c_ldsp, A.c_swsp, A.c_sdsp, A.c_fldsp, A.c_fsdsp][k]!;
      a.emit(k < 2 ? f(rdNz(), imm) : f(k >= 4 ? fr(st) : rs(st), imm));
    }
  }
};

function csrValue(st: GenState, csr: number): bigint {
  const { r } = st;
  switch (csr) {
    case CSR.mstatus: case CSR.sstatus: {
      let v = MSTATUS_XL64;
      const bits = [MSTATUS_SIE, MSTATUS_SPIE, MSTATUS_SPP, MSTATUS_SUM, MSTATUS_MXR, 1n << 13n, 1n << 14n];
      if (csr === CSR.mstatus) bits.push(MSTATUS_MIE, MSTATUS_MPIE, MSTATUS_TVM, MSTATUS_TW, MSTATUS_TSR);
      for (const b of bits) if (r.bool(0.4)) v |= b;
      if (csr === CSR.mstatus && !st.mprv) v |= BigInt(r.pick([0, 1, 3])) << MSTATUS_MPP_SHIFT; // MPRV: MPP stays U
      return v;
    }
    case CSR.satp: {
      // Bare, Sv39, Sv48 or a reserved mode (ignored write, §4.1.11); ASID 0.
      const m = BigInt(r.pick([0, 8, 9, 1, 5, 15]));
      return (m << 60n) | (r.u64() & 0xfffffffffffn);
    }
    case CSR.mcause: case CSR.scause:
      return r.bool(0.7) ? BigInt(r.range(0, 15)) : (1n << 63n) | BigInt(r.pick([1, 3, 5, 7, 9, 11]));
    case CSR.frm: return BigInt(r.int(8));
    // Software-settable pending bits: SSIP and STIP (with Sstc off); QEMU's PLIC owns SEIP.
    // Enables: the S-level interrupts only (no timer or external source on the bare machine).
    case CSR.mip: return BigInt(r.pick([0, MIP_SSIP, MIP_STIP, MIP_SSIP | MIP_STIP]));
    case CSR.sip: return BigInt(r.pick([0, MIP_SSIP]));
    case CSR.mie: case CSR.sie: return BigInt([MIP_SSIP, MIP_STIP, MIP_SEIP].reduce((m, b) => (r.bool() ? m | b : m), 0));
    // QEMU 7.2 also lets medeleg bits 10, 11 and 20-23 be set (M-ecall, H-extension causes);
    // the spec has them read-only zero here. Write only the bits a hart without H delegates.
    case CSR.medeleg: return r.u64() & 0xb3ffn;
    // QEMU 7.2 lets mideleg bits 2, 6, 10 and 13 (VS and LCOF interrupts) be set even with H
    // and Sscofpmf off; the spec has them read-only zero then. Only the S bits are written.
    case CSR.mideleg: return BigInt(r.int(8) & 1 ? 0x2 : 0) | BigInt(r.int(8) & 1 ? 0x20 : 0) | BigInt(r.int(8) & 1 ? 0x200 : 0);
    // QEMU 7.2 keeps bit 0 of mepc/sepc writes (the spec has it read as zero with IALIGN=16,
    // privileged §3.1.14): odd values would only compare QEMU's deviation.
    case CSR.mepc: case CSR.sepc: return randInt(r) & ~1n;
    default: return randInt(r);
  }
}

/** CSRs the body may access in each mode; accesses that must trap are included on purpose. */
function csrChoices(st: GenState): number[] {
  const fp = [CSR.fflags, CSR.frm, CSR.fcsr];
  const sup = [CSR.sscratch, CSR.sepc, CSR.scause, CSR.stval, CSR.sstatus];
  const mach = [CSR.mscratch, CSR.mepc, CSR.mcause, CSR.mtval, CSR.mstatus, CSR.medeleg, CSR.mideleg];
  // satp writes would pull the page tables from under an MPRV body.
  const irq = [CSR.mip, CSR.mie, CSR.sip, CSR.sie];
  if (st.mode === 'M') return st.mprv ? [...fp, ...fp, ...sup, ...mach, ...irq] : [...fp, ...fp, ...sup, ...mach, ...irq, CSR.satp];
  if (st.mode === 'S') return [...fp, ...fp, ...sup, ...sup, CSR.sip, CSR.sie, CSR.sip, CSR.sie, CSR.mscratch, CSR.mstatus, CSR.mip];
  return [...fp, ...fp, ...fp, CSR.sscratch, CSR.mscratch, CSR.sip];
}

const genCsr: Gen = (st) => {
  const { r, a } = st;
  const c = r.pick(csrChoices(st));
  // Never read all of mip: QEMU's CLINT may drive MTIP, the bare machine has no timer.
  const d = c === CSR.mip ? 0 : rd(st);
  const k = r.int(7);
  if (k < 3) {
    const x = r.pick(BODY_RD);
    const v = csrValue(st, c);
    a.li(x, v);
    // CSRRS/CSRRC with rs1 != x0 holding zero must still write the value back, with the write's
    // side effects (unprivileged Zicsr chapter): for fflags/frm/fcsr that makes mstatus.FS Dirty.
    // QEMU 7.2 skips the write when the mask is zero (FS stays Clean), so a zero operand only
    // compares QEMU's deviation: name x0 instead (a plain read on both, as the spec has it).
    a.emit([A.csrrw, A.csrrs, A.csrrc][k]!(d, c, k !== 0 && v === 0n ? 0 : x));
  } else if (k < 6) {
    // Odd mepc/sepc and mideleg bit 2 only show QEMU deviations (see csrValue).
    // In the interrupt CSRs only bit 1 (SSIP/SSIE) of a 5-bit immediate is implemented on both.
    const irqCsr = c === CSR.mip || c === CSR.mie || c === CSR.sip || c === CSR.sie;
    const imm = c === CSR.mepc || c === CSR.sepc ? r.int(32) & ~1 : c === CSR.mideleg || irqCsr ? r.int(32) & 2 : r.int(32);
    a.emit([A.csrrwi, A.csrrsi, A.csrrci][k - 3]!(d, c, imm));
  } else {
    a.emit(A.csrrs(d, c, 0)); // plain read
  }
};
/** Read-only identity CSRs and satp reads (legal where the mode allows; else they trap). */
const genCsrRead: Gen = (st) => {
  const { r, a } = st;
  const c = r.pick([CSR.misa, CSR.mhartid, CSR.mvendorid, CSR.satp]);
  a.emit(A.csrrs(rd(st), c, 0));
};

const ILLEGAL32 = [0xffffffff, 0x0000000b, 0x0000002b, 0x0000005b, 0x0000007b, 0x00000077, 0x0000006b,
  0x04000053 /* fadd.h: Zfh absent */, 0x06000053 /* fadd.q */, 0x0800003b /* add.uw: Zba absent */,
  0x40007033 /* andn: Zbb absent */, 0x60001013 /* clz */, 0x7c002573 /* csrr 0x7c0: no such CSR */,
  0x00002573 /* csrr 0x000 */, 0xf1401073 /* csrw mhartid: read-only */, 0xf1105073 /* csrwi mvendorid */,
  0x0000100b, (0x00005013 | (0x3f << 26)) >>> 0 /* srli with funct6 0x3f */];
const ILLEGAL16 = [0x0000, 0x0004 /* c.addi4spn 0 */, 0x4002 /* c.lwsp x0 */, 0x6002 /* c.ldsp x0 */, 0x8002 /* c.jr x0 */,
  0x6101 /* c.addi16sp 0 */, 0x6081 /* c.lui ra, 0 */, 0x8000 /* reserved Q0 */, 0x2001 /* c.addiw x0 */];

const genTrap: Gen = (st) => {
  const { r, a, mode } = st;
  const ms = st.mstatus;
  const opts: (() => void)[] = [
    () => a.emit(A.ecall()),
    () => a.emit(A.ebreak()),
    () => a.emit(A.c_ebreak()),
    () => a.emit(r.pick(ILLEGAL32)),
    () => a.half(r.pick(ILLEGAL16)),
    () => {
      // An f-extension op with fmt/rm bits that are reserved.
      a.emit(A.fadd_s(fr(st), fr(st), fr(st), r.pick([5, 6])));
    },
  ];
  if (mode !== 'M') opts.push(() => a.emit(A.mret()));
  // sfence.vma traps in U, and in S when TVM = 1 (§3.1.6.5); elsewhere it only flushes.
  opts.push(() => a.emit(A.sfence_vma(rs(st), rs(st))));
  // wfi must trap (QEMU would otherwise sleep forever with no interrupt enabled): U always,
  // S with TW = 1. sret traps in U and in S with TSR = 1.
  if (mode === 'U') opts.push(() => a.emit(A.sret()), () => a.emit(A.wfi()));
  if (mode === 'S' && ms & MSTATUS_TSR) opts.push(() => a.emit(A.sret()));
  if (mode === 'S' && ms & MSTATUS_TW) opts.push(() => a.emit(A.wfi()));
  r.pick(opts)();
};

/**
 * S mode: rewrites an alias PTE through the page-table window, then sfence.vma (all, or just
 * that page), §4.2.1; or switches satp between the Sv39 and Sv48 roots, which map the same.
 * With TVM = 1 the sfence.vma and satp write trap instead (and the PTE store still lands, so
 * the stale translation may or may not be used: that case is left out).
 */
const genPteRewrite: Gen = (st) => {
  const { r, a } = st;
  if (st.mode !== 'S') return genAluR(st);
  const tvm = (st.mstatus & MSTATUS_TVM) !== 0n;
  const x = r.pick(BODY_RD);
  if (r.bool(0.3)) {
    a.li(x, r.pick(st.satps)).emit(A.csrw(CSR.satp, x), A.sfence_vma(0, 0));
    return;
  }
  if (tvm) return genAluR(st);
  const i = r.int(L.SCRATCH_SIZE / 4096);
  const flags = r.pick([0xcf, 0xc7, 0xc3, 0x4b, 0x47, 0x43, 0x0b, 0x07, 0x03, 0xdf, 0x00, 0xc5]);
  const pte = (BigInt((L.SCRATCH >>> 12) + r.int(L.SCRATCH_SIZE / 4096)) << 10n) | BigInt(flags);
  const y = r.pick(BODY_RD.filter((v) => v !== x));
  a.li(x, L.PT_WINDOW + ((L.ALIAS - L.RAM_BASE) >>> 12) * 8 + i * 8).li(y, pte).emit(A.sd(y, x, 0));
  if (r.bool()) a.emit(A.sfence_vma(0, 0));
  else a.li(x, L.ALIAS + i * 4096 + r.int(4096)).emit(A.sfence_vma(x, 0));
  // Alias page i's permissions are now `flags`: keep the fetch-fault targets honest.
  // Executable for S, or executable U (see the QEMU note where fetchFaults is built).
  if ((flags & PTE_V) && (flags & PTE_X)) st.fetchFaults = st.fetchFaults.filter((t) => t < L.ALIAS + i * 4096 || t >= L.ALIAS + (i + 1) * 4096);
};

/**
 * Raises a software interrupt: enable it, enable interrupts globally, set it pending. In M the
 * interrupt is taken at once unless delegated; in S, sip can set SSIP only when delegated.
 * Both QEMU (which ends a translation block after a CSR write) and visor take it right after
 * the instruction that made it pending, privileged §3.1.9.
 */
const genIrq: Gen = (st) => {
  const { r, a, mode } = st;
  const x = r.pick(BODY_RD);
  if (mode === 'M') {
    const bit = r.pick([MIP_SSIP, MIP_STIP]);
    if (r.bool(0.4)) {
      // wfi with an interrupt pending and enabled in mie returns at once, whether or not it is
      // then taken (§3.3.3). MIE is cleared first: a handler that took the interrupt would
      // disable it in mie (the bit may still be pending from earlier) and wfi would sleep.
      a.emit(A.csrci(CSR.mstatus, 8)).li(x, bit).emit(A.csrs(CSR.mie, x), A.csrs(CSR.mip, x), A.wfi());
      if (r.bool()) a.emit(A.csrsi(CSR.mstatus, 8));
      return;
    }
    a.li(x, bit).emit(A.csrs(CSR.mie, x));
    if (r.bool(0.8)) a.emit(A.csrsi(CSR.mstatus, 8)); // MIE
    a.emit(A.csrs(CSR.mip, x));
  } else if (mode === 'S') {
    // As in M, but sip sets SSIP only when it is delegated, and wfi traps under TW.
    if (st.mideleg & MIP_SSIP && !(st.mstatus & MSTATUS_TW) && r.bool(0.4)) {
      a.emit(A.csrci(CSR.sstatus, 2)).li(x, MIP_SSIP).emit(A.csrs(CSR.sie, x), A.csrs(CSR.sip, x), A.wfi());
      if (r.bool()) a.emit(A.csrsi(CSR.sstatus, 2));
      return;
    }
    a.li(x, MIP_SSIP).emit(A.csrs(CSR.sie, x));
    if (r.bool(0.8)) a.emit(A.csrsi(CSR.sstatus, 2)); // SIE
    a.emit(A.csrs(CSR.sip, x));
  } else {
    a.emit(A.csrrs(0, CSR.sip, 0)); // illegal in U
  }
};

/** Jumps (linking ra) to an address whose fetch must fault; the handler resumes at ra. */
const genFetchFault: Gen = (st) => {
  const { r, a } = st;
  if (!st.fetchFaults.length) return genAluR(st);
  const t = r.pick(BODY_RD.filter((x) => x !== A.ra));
  a.li(t, r.pick(st.fetchFaults));
  a.emit(r.bool(0.7) ? A.jalr(A.ra, t, 0) : A.c_jalr(t));
};

const genFence: Gen = (st) => {
  const { r, a } = st;
  const sets = ['r', 'w', 'rw', 'iorw', 'i', 'o', 'io', 'ow'];
  a.emit(r.pick([A.fence(r.pick(sets), r.pick(sets)), A.fence_tso(), A.fence_i(), A.fence()]));
};

/** Straight-line generators (safe to place inside a skipped range). */
const SIMPLE: readonly (readonly [number, Gen])[] = [
  [12, genAluR], [10, genAluI], [5, genShiftI], [3, genUpper], [5, genMul], [5, genDiv], [3, genLi],
  [8, genLoad], [7, genStore], [4, genFpMem], [5, genAmo], [3, genLrSc], [16, genFp], [12, genCompressed],
  [5, genCsr], [1, genCsrRead], [4, genTrap], [1, genFence], [1, genFetchFault], [1, genPteRewrite], [1, genIrq],
];

function label(st: GenState): string {
  return `L${st.labels++}`;
}

const BRANCH_NAMES = ['beq', 'bne', 'blt', 'bge', 'bltu', 'bgeu'] as const;

/** A forward control transfer over a few straight-line groups. */
const genBranch: Gen = (st) => {
  const { r, a } = st;
  const l = label(st);
  const k = r.int(8);
  if (k < 3) {
    const n = r.pick(BRANCH_NAMES);
    (a[n] as (x: number, y: number, l: string) => A.Asm).call(a, rs(st), rs(st), l);
  } else if (k === 3) a.jal(rd(st), l);
  else if (k === 4) a.c_j(l);
  else if (k === 5) (r.bool() ? a.c_beqz : a.c_bnez).call(a, cr(st), l);
  else {
    // Indirect: la + jalr / c.jr / c.jalr, link register random.
    const t = r.pick(BODY_RD);
    a.la(t, l);
    const j = r.int(3);
    if (j === 0) a.emit(A.jalr(rd(st), t, 0));
    else a.emit(j === 1 ? A.c_jr(t) : A.c_jalr(t));
  }
  // c.beqz/c.bnez reach ±256 bytes: keep their skipped range short.
  for (let i = k === 5 ? 1 : r.range(1, 4); i > 0; i--) genGroup(st, false);
  a.label(l);
};

function genGroup(st: GenState, allowBranch: boolean): void {
  if (allowBranch && st.r.bool(0.08)) genBranch(st);
  else st.r.weighted(st.opts.fp ? FP_SIMPLE : SIMPLE)(st);
}

// ---------------------------------------------------------------------------------------------
// The F/D stress profile (DiffOptions.fp)

/** ±2^e · (1 + k · 2^-52) as double bits: e in the normal range. */
function pow2Bits(r: Rng, e: number): bigint {
  return (r.bool() ? 1n << 63n : 0n) | (BigInt(e + 1023) << 52n) | BigInt(r.pick([0, 0, 1, 3, 0xfffff, r.int(1 << 30)]));
}

/** Singles near the edges: exact integers and dyadics, products that land at 2^-126 or overflow, subnormals. */
function stressSingleBits(r: Rng): number {
  switch (r.int(8)) {
    case 0: F32[0] = r.range(-3000, 3000); return U32[0]!;
    case 1: F32[0] = r.range(-4096, 4096) / 2 ** r.int(14); return U32[0]!;
    case 2: { // 2^e with a few mantissa bits, e at the edges of products and quotients
      const e = r.pick([-126, -125, -127 + 64, -63, -64, -62, 63, 64, 126, 127, 0, 1, -1]);
      const exp = Math.min(254, Math.max(1, e + 127));
      return ((r.bool() ? 0x80000000 : 0) | (exp << 23) | r.pick([0, 1, 0x400000, 0x7fffff, r.int(1 << 23)])) >>> 0;
    }
    case 3: return ((r.bool() ? 0x80000000 : 0) | r.pick([1, 2, 0x7fffff, 0x400000, r.int(1 << 23)])) >>> 0; // subnormal
    case 4: case 5: return ((r.bool() ? 0x80000000 : 0) | (r.range(127 - 15, 127 + 15) << 23) | (r.u32() & 0x7fffff)) >>> 0;
    default: return singleBits(r);
  }
}

/** f-register values for the stress profile (see stressSingleBits; doubles alike). */
function fpStressBits(r: Rng): bigint {
  // Mostly finite values: a NaN or infinity spreads through every later result that uses it,
  // and those all take the slow path; specials still come in (fregBits, genFpValue).
  switch (r.int(12)) {
    case 0: F64[0] = r.range(-100000, 100000); return U64[0]!;
    case 1: F64[0] = r.range(-(2 ** 20), 2 ** 20) / 2 ** r.int(30); return U64[0]!;
    case 2: return pow2Bits(r, r.pick([-1022, -1021, -511, -512, -510, -537, 511, 512, 1022, 1023, 990, -967, 52, 53, 63, 64, 31, 32]));
    case 3: return (r.bool() ? 1n << 63n : 0n) | BigInt(r.pick([1, 2, 3, r.int(1 << 30)])) | (r.bool() ? 0xfffffn << 32n : 0n); // subnormal
    case 4: case 5: case 6: return 0xffffffff00000000n | BigInt(stressSingleBits(r));
    case 7: F64[0] = r.range(-(2 ** 31), 2 ** 31) + r.pick([0, 0.5, -0.5, 0.25, 0.75, 1 / 3]); return U64[0]!;
    case 8: case 9: { // random mantissa, exponent near 1.0
      const exp = BigInt(r.range(1023 - 30, 1023 + 30));
      return (r.bool() ? 1n << 63n : 0n) | (exp << 52n) | (r.u64() & 0xfffffffffffffn);
    }
    default: return fregBits(r);
  }
}

/** Rounding modes for the stress profile: DYN often (frm changes in the body), every static mode. */
function fpRm(st: GenState): number {
  return st.r.weighted([[40, 7], [12, 0], [12, 1], [12, 2], [12, 3], [12, 4]] as const);
}

/** An F/D operation with the stress profile's rounding modes. */
const genFpStress: Gen = (st) => {
  const { r, a } = st;
  const dbl = r.bool();
  const k = dbl ? 1 : 0;
  const half = <T>(xs: readonly T[]): T => xs[k * (xs.length >> 1) + r.int(xs.length >> 1)]!;
  const f = () => frOf(st, dbl);
  let fd = f();
  const xd = rd(st);
  let toF = true;
  switch (r.int(12)) {
    case 0: case 1: case 2: a.emit(half(FP_BIN)(fd, f(), f(), fpRm(st))); break;
    case 3: case 4: a.emit(half(FP_FMA)(fd, f(), f(), f(), fpRm(st))); break;
    case 5: a.emit((dbl ? A.fsqrt_d : A.fsqrt_s)(fd, f(), fpRm(st))); break;
    case 6: a.emit(r.pick(dbl ? [A.fsgnj_d, A.fsgnjn_d, A.fsgnjx_d, A.fmin_d, A.fmax_d] : [A.fsgnj_s, A.fsgnjn_s, A.fsgnjx_s, A.fmin_s, A.fmax_s])(fd, f(), f())); break;
    case 7: a.emit(half(FP_CMP)(xd, f(), f())); toF = false; break;
    case 8: a.emit(half(FP_TOINT)(xd, f(), fpRm(st))); toF = false; break;
    case 9: a.emit(half(FP_FROMINT)(fd, rs(st), fpRm(st))); break;
    case 10: fd = frOf(st, !dbl); a.emit((dbl ? A.fcvt_s_d : A.fcvt_d_s)(fd, f(), fpRm(st))); break; // to the other format
    default: a.emit(r.pick(dbl ? [A.fmv_x_d, A.fclass_d] : [A.fmv_x_w, A.fclass_s])(xd, f())); toF = false;
  }
  // Most results go to scratch at once (the dump shows only the last value of a register).
  if (r.bool(0.6)) a.emit(toF ? A.fsd(fd, A.gp, 8 * r.range(-256, 255)) : A.sd(xd, A.gp, 8 * r.range(-256, 255)));
};

/** fcsr, frm or fflags read and/or written (frm 5-7 included: DYN then raises illegal instruction). */
const genFpCsr: Gen = (st) => {
  const { r, a } = st;
  const c = r.pick([CSR.fflags, CSR.fflags, CSR.frm, CSR.frm, CSR.fcsr]);
  const x = r.pick(BODY_RD);
  const v = c === CSR.fflags ? (r.bool(0.6) ? 0 : r.int(32)) : c === CSR.frm ? r.weighted([[85, r.int(5)], [15, r.range(5, 7)]] as const)
    : (r.weighted([[85, r.int(5)], [15, r.range(5, 7)]] as const) << 5) | (r.bool(0.5) ? 0 : r.int(32));
  a.li(x, v);
  a.emit(A.csrrw(rd(st), c, x));
};

/** A result or the flags so far, stored to scratch (gp's page): the checksums compare every one. */
const genFpRecord: Gen = (st) => {
  const { r, a } = st;
  const off = 8 * r.range(-256, 255);
  if (r.bool(0.4)) {
    const x = r.pick(BODY_RD);
    a.emit(A.csrrw(x, CSR.fflags, 0)); // read and clear: the next inexact result raises NX afresh
    a.emit(A.sd(x, A.gp, off));
  } else a.emit((r.bool() ? A.fsd : A.fsw)(fr(st), A.gp, off));
};

/** A fresh edge value into an f register through an integer one. */
const genFpValue: Gen = (st) => {
  const { r, a } = st;
  const x = r.pick(BODY_RD);
  const bits = fpStressBits(r);
  a.li(x, BigInt.asIntN(64, bits));
  const single = (bits >> 32n) === 0xffffffffn && r.bool(0.8);
  a.emit((single ? A.fmv_w_x : A.fmv_d_x)(frOf(st, !single), x));
};

const FP_SIMPLE: readonly (readonly [number, Gen])[] = [
  [40, genFpStress], [8, genFpMem], [6, genFpCsr], [10, genFpRecord], [8, genFpValue], [4, genAluR], [3, genLi],
  [3, genCompressed], [2, genTrap],
];
