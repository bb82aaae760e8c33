/**
 * Compiles one 4 KiB guest page to a WebAssembly module (tier 1 over the interpreter).
 *
 * Shape of the generated `run(entry, room, dBase, pcLo, pcHi, fpOk) -> executed` (called by
 * the dispatcher, dispatch.ts, through the JIT's function table):
 *
 *   block $exitAbs                     ;; exits with the next pc in $npc
 *     block $exitOff                   ;; exits with the next pc as a page offset in $eoff
 *       block $stepExit                ;; STEP exits: $eoff packs the offset and the count to undo
 *         loop $dispatch               ;; br_table on $entry (1, 2, ...) to the block it names
 *           block $miss block $b(K-1) ... block $b0  br_table ... end
 *           code of block 0 ... code of block K-1  (forward jumps are direct `br`s)
 *         end $miss: entry not compiled here → exit MISS
 *       end → unpack $eoff, reason STEP
 *     end → $npc = pcBase + $eoff
 *   end → store the exit record, return the count  (x registers are written through)
 *
 * Blocks start at the entries the hart saw, at in-page branch targets and after every
 * instruction not compiled here; with CompileRequest.executed, only at instructions the
 * interpreter has run (a target that never ran is left to the interpreter, as code outside
 * the page is). An instruction that cannot complete in compiled code (such
 * an instruction, or a load or store on a TLB miss, MMIO or crossing a page) exits with reason
 * STEP and the pc and count exact at it, *before* it changed anything: the interpreter then
 * executes it (taking any trap precisely) and re-enters compiled code after it when a block
 * starts there (the hart counts such entries, so a recompile adds the ones that recur).
 * Only entries and targets of backward jumps are in the dispatch table, numbered densely in
 * offset order (CompiledPage.dispatch; the JIT writes the numbers into the page's entry map,
 * which the dispatcher and in-page indirect jumps read): V8's baseline compiler turns a
 * br_table into a binary search over all its targets, so a table indexed by halfword offset
 * (up to 2048 targets, 11 compares and ~30 KiB of machine code) cost more than the blocks it
 * reached. Forward jumps are direct `br`s.
 * Blocks that can begin a run (dispatch entries) check the remaining budget against the
 * longest forward path to the next such block, so `run` never executes more than `room`.
 *
 * The code depends on the page's contents only, not on its virtual address (passed in as
 * pcLo/pcHi), so one module serves every mapping of the physical page.
 */
import { csrWrites, jitCsrAccess, JIT_CSR_CLEAR_SIE, JIT_CSR_NONE, JIT_CSR_READ } from '../cpu/csr.js';
import { decode, decoded } from '../cpu/decoder.js';
import { D_COMPRESSED, Op, X_DISCARD } from '../cpu/opcodes.js';
import {
  GUEST_RAM_OFFSET, SLOT_EXIT, SLOT_FREGS, SLOT_PAGE_PC, SLOT_R_OFF, SLOT_R_TAG_HI, SLOT_R_TAG_LO, SLOT_REGS, SLOT_W_OFF,
  SLOT_W_TAG_HI, SLOT_W_TAG_LO, TLB_SIZE,
} from '../cpu/guest-ram.js';
import { FpInline } from './fp-emit.js';
import { EXIT_CHAIN, EXIT_STEP, FP_DIRTY, FP_ENABLED } from '../cpu/tier.js';
import { FuncBody, I32, I64, ModuleBuilder, W } from './wasm/emitter.js';

/** Exit reasons stored in the exit record. */
export { EXIT_CHAIN, EXIT_STEP } from '../cpu/tier.js';
export const EXIT_MISS = 2; // no compiled block starts at the exit pc
export const EXIT_BUDGET = 3; // the next block does not fit in the budget
export const EXIT_NOCODE = 4; // (dispatcher) no compiled code for the exit pc's page

/**
 * A page's code, entered at the block numbered `entry` (CompiledPage.dispatch[entry - 1]) of the page mapped at (pcLo, pcHi) with
 * `room` instructions allowed, data TLB set `dBase`, and `fpOk` the FP_* bits of mstatus.FS (an
 * F/D instruction that would change FS exits to the interpreter). Returns the instructions executed;
 * the exit record (SLOT_EXIT: pc as an i64, reason as an i32) says where and why it stopped.
 */
export type PageFn = (entryOff: number, room: number, dBase: number, pcLo: number, pcHi: number, fpOk: number) => number;
export { FP_DIRTY, FP_ENABLED } from '../cpu/tier.js';
/** The wasm parameter types of a PageFn. */
export const PAGE_FN_PARAMS = [I32, I32, I32, I32, I32, I32] as const;

export type { FpFn, SysFn } from '../cpu/tier.js';

/** Integer-destination F/D ops (rd is an x register: compiled code reloads it after). */
function fpIntDest(op: number): boolean {
  switch (op) {
    case Op.FCVT_W_S: case Op.FCVT_WU_S: case Op.FCVT_L_S: case Op.FCVT_LU_S: case Op.FMV_X_W:
    case Op.FCLASS_S: case Op.FEQ_S: case Op.FLT_S: case Op.FLE_S:
    case Op.FCVT_W_D: case Op.FCVT_WU_D: case Op.FCVT_L_D: case Op.FCVT_LU_D: case Op.FMV_X_D:
    case Op.FCLASS_D: case Op.FEQ_D: case Op.FLT_D: case Op.FLE_D:
      return true;
  }
  return false;
}

export interface CompileRequest {
  /** Guest RAM as halfwords (the view the decoder reads). */
  ram16: Uint16Array;
  /** RAM byte offset of the page. */
  pageRamOff: number;
  /** Page offsets execution entered at (even, < 4096), most used first (they may not all fit). */
  entries: Iterable<number>;
  /** Byte offset of the hart's state slot in the memory. */
  slotBase: number;
  /** Byte offset of RAM in the memory (GUEST_RAM_OFFSET). */
  ramOffset?: number;
  /**
   * Byte offset of the page's entry map (guest-ram.ts ENTRY_MAP_BYTES, filled from
   * CompiledPage.dispatch), which in-page indirect jumps read; without it they leave the page.
   */
  entryMapAddr?: number;
  /**
   * Non-zero at the page offset of each instruction the interpreter has run (its decode cache,
   * JitHost.decoded). With it, only blocks starting at such an instruction (or at an entry) are
   * compiled: a branch or fall-through to code that never ran leaves the page, as a jump out of
   * it does. Without it, every block reachable from the entries is.
   */
  executed?: Int32Array;
}

export interface CompiledPage {
  bytes: Uint8Array<ArrayBuffer>;
  blocks: number;
  instructions: number;
  /** Page offsets the module can be entered at: the block at dispatch[i] is entry number i + 1. */
  dispatch: number[];
  /**
   * At the halfword offset of each instruction inside a block (not beginning one): how many
   * instructions from there to the block's end (at most 255); 0 elsewhere. Execution arrives
   * there without a jump (a run() batch ended, a trap returns to the instruction it
   * interrupted): the JIT does not count such arrivals as entries, and the interpreter runs
   * just that many instructions before compiled code takes over again.
   */
  midBlock: Uint8Array;
}

interface Inst {
  off: number;
  w: number;
  imm: number;
  len: number;
  op: number;
}

const enum Kind { Plain, Mem, Branch, Jal, Jalr, Step, FpMem, Fp, Amo, Sys }

/** kindOf for every op, computed once (cheaper than the switch when const enums are not inlined). */
const KINDS = new Uint8Array(256).map((_, op) => kindOfSlow(op));

function kindOf(op: number): Kind {
  return KINDS[op]! as Kind;
}

function kindOfSlow(op: number): Kind {
  switch (op) {
    case Op.NOP: case Op.LI: case Op.MV: case Op.LUI: case Op.AUIPC:
    case Op.ADDI: case Op.SLTI: case Op.SLTIU: case Op.XORI: case Op.ORI: case Op.ANDI:
    case Op.SLLI: case Op.SRLI: case Op.SRAI:
    case Op.ADD: case Op.SUB: case Op.SLL: case Op.SLT: case Op.SLTU: case Op.XOR: case Op.SRL:
    case Op.SRA: case Op.OR: case Op.AND:
    case Op.ADDIW: case Op.SLLIW: case Op.SRLIW: case Op.SRAIW: case Op.ADDW: case Op.SUBW:
    case Op.SLLW: case Op.SRLW: case Op.SRAW:
    case Op.MUL: case Op.MULH: case Op.MULHSU: case Op.MULHU: case Op.DIV: case Op.DIVU:
    case Op.REM: case Op.REMU: case Op.MULW: case Op.DIVW: case Op.DIVUW: case Op.REMW: case Op.REMUW:
    case Op.FENCE: case Op.FENCE_I: // the decode cache and code cache are coherent on writes
      return Kind.Plain;
    case Op.LB: case Op.LH: case Op.LW: case Op.LD: case Op.LBU: case Op.LHU: case Op.LWU:
    case Op.SB: case Op.SH: case Op.SW: case Op.SD:
      return Kind.Mem;
    case Op.BEQ: case Op.BNE: case Op.BLT: case Op.BGE: case Op.BLTU: case Op.BGEU:
      return Kind.Branch;
    case Op.JAL: return Kind.Jal;
    case Op.JALR: return Kind.Jalr;
    case Op.FLW: case Op.FLD: case Op.FSW: case Op.FSD:
      return Kind.FpMem;
    // AMOs (not LR/SC, whose reservation lives in the hart): inline on a write-TLB hit.
    case Op.AMOSWAP_W: case Op.AMOADD_W: case Op.AMOXOR_W: case Op.AMOAND_W: case Op.AMOOR_W:
    case Op.AMOMIN_W: case Op.AMOMAX_W: case Op.AMOMINU_W: case Op.AMOMAXU_W:
    case Op.AMOSWAP_D: case Op.AMOADD_D: case Op.AMOXOR_D: case Op.AMOAND_D: case Op.AMOOR_D:
    case Op.AMOMIN_D: case Op.AMOMAX_D: case Op.AMOMINU_D: case Op.AMOMAXU_D:
      return Kind.Amo;
  }
  if (op >= Op.FMADD_S && op <= Op.FCVT_D_S) return Kind.Fp;
  switch (op) {
    // Called out to the hart (Hart.jitSys) without leaving compiled code when it can.
    case Op.LR_W: case Op.LR_D: case Op.SC_W: case Op.SC_D: case Op.SFENCE_VMA:
    case Op.CSRRW: case Op.CSRRS: case Op.CSRRC: case Op.CSRRWI: case Op.CSRRSI: case Op.CSRRCI:
      return Kind.Sys;
  }
  return Kind.Step;
}

/** Decodes the instruction at a page offset; a 32-bit one straddling the page end is a Step. */
function decodeAt(ram16: Uint16Array, pageRamOff: number, off: number): Inst {
  const low = ram16[(pageRamOff + off) >>> 1]!;
  if ((low & 3) === 3 && off === 4094) return { off, w: 0, imm: 0, len: 4, op: Op.ILLEGAL };
  const inst = (low & 3) === 3 ? low | (ram16[(pageRamOff + off + 2) >>> 1]! << 16) : low;
  decode(inst);
  const w = decoded.w;
  return { off, w, imm: decoded.imm, len: (w & D_COMPRESSED) !== 0 ? 2 : 4, op: w & 0xff };
}

const MAX_BLOCKS = 1500;
/** Entries a module has at most (numbered 1..255 in a byte of the entry map). */
const MAX_ENTRIES = 255;

/** Builds the module for one page; returns undefined when nothing compilable starts at the entries. */
export function compilePage(req: CompileRequest): CompiledPage | undefined {
  const { ram16, pageRamOff } = req;
  // Per halfword offset (typed arrays and a plain array: Maps and Sets keyed by offset were a
  // third of the time spent building a module).
  const insts: (Inst | undefined)[] = new Array(2048);
  const get = (off: number): Inst => {
    let i = insts[off >> 1];
    if (i === undefined) { i = decodeAt(ram16, pageRamOff, off); insts[off >> 1] = i; }
    return i;
  };

  // Pass 1: find every block start reachable from the entries without leaving the page.
  const isStart = new Uint8Array(2048);
  let startCount = 0;
  const work: number[] = [];
  const executed = req.executed;
  const addStart = (off: number, entry = false) => {
    if (off >= 0 && off < 4096 && (off & 1) === 0 && isStart[off >> 1] === 0 && startCount < MAX_BLOCKS
      && (entry || executed === undefined || executed[off] !== 0)) {
      isStart[off >> 1] = 1;
      startCount++;
      work.push(off);
    }
  };
  const entryList = [...req.entries];
  for (const e of entryList) addStart(e, true);
  while (work.length > 0) {
    let off = work.pop()!;
    const first = off;
    while (off < 4096 && (off === first || isStart[off >> 1] === 0)) {
      const i = get(off);
      const k = kindOf(i.op);
      if (continuesBlock(i)) { off += i.len; continue; }
      if (k === Kind.Step || k === Kind.Sys) addStart(off + i.len);
      else if (k === Kind.Branch) { addStart(off + i.imm); addStart(off + i.len); }
      else if (k === Kind.Jal) {
        addStart(off + i.imm);
        if (linkReg(i)) addStart(off + i.len); // the callee returns here
      } else if (k === Kind.Jalr && linkReg(i)) addStart(off + i.len);
      break;
    }
  }
  if (startCount === 0) return undefined;
  // Block j starts at order[j]; blockAt[off / 2] is j there, -1 elsewhere.
  const order: number[] = [];
  const blockAt = new Int32Array(2048).fill(-1);
  for (let h = 0; h < 2048; h++) if (isStart[h] !== 0) { blockAt[h] = order.length; order.push(h * 2); }
  /** The index of the block starting at a page offset (any value), or -1. */
  const blockOf = (off: number): number => (off >= 0 && off < 4096 && (off & 1) === 0 ? blockAt[off >> 1]! : -1);

  // Pass 2: the instructions of each block (up to the next start or a block-ending instruction).
  const midBlock = new Uint8Array(2048);
  const blocks: Inst[][] = [];
  let instructions = 0;
  for (const s of order) {
    const list: Inst[] = [];
    let off = s;
    while (off < 4096 && (off === s || isStart[off >> 1] === 0)) {
      const i = get(off);
      list.push(i);
      off += i.len;
      if (!continuesBlock(i)) break;
    }
    instructions += list.length;
    blocks.push(list);
    for (let k = 1; k < list.length; k++) midBlock[list[k]!.off >> 1] = Math.min(255, list.length - k);
  }

  const ramOffset = req.ramOffset ?? GUEST_RAM_OFFSET;
  const m = new ModuleBuilder().importMemory({ module: 'e', name: 'm', minPages: 1 });
  const fpImport = m.importFunction('e', 'fp', [I32, I32], [I32]);
  const sysImport = m.importFunction('e', 'sys', [I32, I32], [I32]);
  const helpers = buildHelpers(m);
  const f = new FuncBody(PAGE_FN_PARAMS, [I32], 64 * instructions + 4096); // ~55 bytes per instruction
  const fpInline = new FpInline(f, m, req.slotBase);
  const P_ENTRY = 0, P_ROOM = 1, P_DBASE = 2, P_PCLO = 3, P_PCHI = 4, P_FPOK = 5;
  // x registers get i64 locals from a pool, assigned per block at first use: a function has
  // as many as its busiest block needs, not one per register it touches (V8 zeroes every
  // local on each call, and a page function is called on every entry to the page).
  const regLocal = new Int32Array(33).fill(-1);
  const pool: number[] = [];
  let poolUsed = 0;
  const localOf = (r: number): number => {
    let l = regLocal[r]!;
    if (l < 0) {
      if (poolUsed === pool.length) pool.push(f.local(I64));
      l = pool[poolUsed++]!;
      regLocal[r] = l;
    }
    return l;
  };
  const L_NPC = f.local(I64), L_VA = f.local(I64), L_T64 = f.local(I64);
  const L_N = f.local(I32), L_OFF = f.local(I32), L_EOFF = f.local(I32), L_REASON = f.local(I32);
  const L_LO = f.local(I32), L_TI = f.local(I32), L_T = f.local(I32);
  // The hart's state slot is addressed as i32.const 0 with slot base + field in the memory
  // instruction's offset. (From a local holding the base, the wasm was ~8% smaller, but Liftoff
  // reloaded that local from its stack slot before every register access: a dependent load;
  // the constant 0 is an xor.)
  const SB = req.slotBase, L_DB4 = f.local(I32);
  const regs = SLOT_REGS;
  const fregs = SLOT_FREGS;
  const exit = SLOT_EXIT;
  const tlbR = [SLOT_R_TAG_LO, SLOT_R_TAG_HI, SLOT_R_OFF];
  const tlbW = [SLOT_W_TAG_LO, SLOT_W_TAG_HI, SLOT_W_OFF];
  /** L_TI = slot base + 4 · (dBase + TLB index of L_LO): the byte address of the entry, less the array's offset. */
  const tlbIndex = () => {
    f.get(L_LO).i32(12 - 2).op(W.i32_shr_u).i32((TLB_SIZE - 1) << 2).op(W.i32_and).get(L_DB4).op(W.i32_add).set(L_TI);
  };

  /**
   * Probes TLB `t` (tlbR or tlbW, set dBase) for the `size`-byte access at L_VA/L_LO and leaves
   * with STEP before instruction `idx` unless the entry at va's index holds the page of the
   * access's *last* byte (so an access crossing into the next page misses; misaligned is fine
   * within the page: wasm accesses need no alignment, and the interpreter allows it too; a
   * Debian boot made ~300 k of them) and a RAM offset (not TLB_NO_RAM: MMIO, or a page whose stores
   * must take the slow path), which it leaves in L_T; `aligned`: the access must also be
   * naturally aligned (AMOs: the interpreter raises the misaligned fault). The tests are xors
   * and ors under one branch: Liftoff compiles `ne` to cmp, setcc and a zero-extension, and
   * every branch it does not take is a jump.
   */
  const probe = (t: readonly number[], size: number, aligned: boolean, off: number, idx: number, len: number) => {
    tlbIndex();
    f.get(L_TI).mem(W.i32_load, 2, t[0]!).get(L_LO);
    if (size > 1) f.i32(size - 1).op(W.i32_add);
    f.i32(12).op(W.i32_shr_u).op(W.i32_xor);
    f.get(L_TI).mem(W.i32_load, 2, t[1]!).get(L_VA).i64(32, 0).op(W.i64_shr_u).op(W.i32_wrap_i64).op(W.i32_xor).op(W.i32_or);
    // The RAM offset: page-aligned (RAM may reach past 2 GiB: wasm addresses are unsigned) or
    // TLB_NO_RAM (-1), told apart by bit 0.
    f.get(L_TI).mem(W.i32_load, 2, t[2]!).tee(L_T).i32(1).op(W.i32_and).op(W.i32_or);
    if (aligned && size > 1) f.get(L_LO).i32(size - 1).op(W.i32_and).op(W.i32_or);
    exitStepIf(off, idx, len);
  };

  /**
   * Pushes the i32 RAM address, less the RAM base, of the `size`-byte access at rs1 + imm
   * through TLB `t`; leaves with STEP before instruction `idx` when compiled code cannot make it
   * (probe). Returns what to add to the access's constant offset. Through a base register
   * already probed in this block (KnownPage) the address is that probe's plus the difference of
   * the immediates when that stays in the page (else STEP); the first access through a
   * register makes the full probe, whose result later accesses then reuse.
   */
  const ramAddress = (t: readonly number[], rs1: number, imm: number, size: number, off: number, idx: number, len: number): number => {
    const k = rs1 === 0 || !loaded[rs1] ? undefined : known.find((e) => e.tlb === t && e.reg === rs1);
    if (k !== undefined) {
      const delta = imm - k.imm; // both 12-bit immediates: |delta| < 4096
      // Out of the page (or before it: the sum wrapped): STEP, as on a TLB miss. A branch to a
      // full probe there instead (an if/else around every known access, whose merge Liftoff
      // meets with spills) ran bench/cpu.ts's copy loop at 835 MIPS per CPU-s, this at 1940.
      f.get(k.pageOff);
      if (delta !== 0) f.i32(delta).op(W.i32_add);
      f.i32(4096 - size).op(W.i32_gt_u);
      exitStepIf(off, idx, len);
      f.get(k.addr);
      if (delta < 0) { f.i32(delta).op(W.i32_add); return 0; }
      return delta;
    }
    getReg(rs1); f.i64(imm, imm >> 31).op(W.i64_add).tee(L_VA).op(W.i32_wrap_i64).set(L_LO);
    probe(t, size, false, off, idx, len);
    if (rs1 === 0 || known.length >= MAX_KNOWN) {
      f.get(L_T).get(L_LO).i32(0xfff).op(W.i32_and).op(W.i32_add);
      return 0;
    }
    // A pair of locals no other known page of this block holds.
    let pair = 0;
    while (known.some((e) => e.pageOff === knownLocals[2 * pair])) pair++;
    while (knownLocals.length < 2 * (pair + 1)) knownLocals.push(f.local(I32));
    const pageOff = knownLocals[2 * pair]!, addr = knownLocals[2 * pair + 1]!;
    f.get(L_LO).i32(0xfff).op(W.i32_and).tee(pageOff).get(L_T).op(W.i32_add).tee(addr);
    known.push({ tlb: t, reg: rs1, imm, pageOff, addr });
    return 0;
  };

  /**
   * Pushes the address of the page (pc of offset 0) as an i64. It is stored in the hart's slot
   * on entry and loaded where needed rather than kept in a local: TurboFan hoists every
   * `local + constant` out of the dispatch loop, so a page with thirty pc-relative constants
   * (auipc results, return addresses, exit pcs) computed and spilled all thirty on every entry.
   */
  const pcBase = () => f.i32(0).mem(W.i64_load, 3, SB + SLOT_PAGE_PC);

  // Prologue.
  f.get(P_DBASE).i32(2).op(W.i32_shl).i32(SB).op(W.i32_add).set(L_DB4);
  f.i32(0).get(P_PCHI).op(W.i64_extend_i32_u).i64(32, 0).op(W.i64_shl)
    .get(P_PCLO).op(W.i64_extend_i32_u).op(W.i64_or).mem(W.i64_store, 3, SB + SLOT_PAGE_PC);
  f.get(P_ENTRY).set(L_OFF);

  const K = blocks.length;
  f.block().block().block().loop().block(); // $exitAbs $exitOff $stepExit $dispatch $miss
  for (let j = K - 1; j >= 0; j--) f.block();
  // Dispatch table: the entries the module can be entered at, numbered densely.
  const dispatch = new Set<number>();
  // Entry numbers are bytes in the entry map, so a module has at most MAX_ENTRIES; past that,
  // in order of need: targets of backward jumps (loops must stay in compiled code), then the
  // entries the hart saw, most used first (CompileRequest.entries), then return sites and the
  // instructions after those the interpreter runs. Left out, an offset is still a block, but
  // arrivals and backward jumps there leave the page and the interpreter runs it.
  const loopHeads: number[] = [];
  const resumeSites: number[] = [];
  blocks.forEach((list, j) => {
    const last = list[list.length - 1]!;
    // The interpreter re-enters right after an instruction it executed for compiled code, and
    // a call's return address is entered by the callee's return (through the dispatcher).
    if ((kindOf(last.op) === Kind.Step || kindOf(last.op) === Kind.Sys || linkReg(last)) && blockOf(last.off + last.len) >= 0) resumeSites.push(last.off + last.len);
    if (last.op === Op.JAL || kindOf(last.op) === Kind.Branch) {
      const t = last.off + last.imm;
      const tj = blockOf(t);
      if (tj >= 0 && tj <= j) loopHeads.push(t);
    }
  });
  for (const group of [loopHeads, entryList, resumeSites]) {
    for (const d of group) if (dispatch.size < MAX_ENTRIES && blockOf(d) >= 0) dispatch.add(d);
  }
  // Budget: checked only where a run of blocks can begin (the dispatch entries), for the
  // longest forward path from there to the next such block; forward jumps and fall-through
  // only go to higher offsets, so these paths are finite and every loop passes a check.
  // (Exiting early with BUDGET is always correct: the interpreter runs the rest exactly.)
  const maxPath = new Int32Array(K);
  for (let j = K - 1; j >= 0; j--) {
    const list = blocks[j]!;
    const last = list[list.length - 1]!;
    const k = kindOf(last.op);
    let longest = 0;
    const via = (t: number) => {
      const s = blockOf(t);
      if (s > j && !dispatch.has(t)) longest = Math.max(longest, maxPath[s]!);
    };
    if (k === Kind.Branch || last.op === Op.JAL) via(last.off + last.imm);
    if (k !== Kind.Step && last.op !== Op.JAL && last.op !== Op.JALR) via(last.off + last.len);
    maxPath[j] = list.length + longest;
  }
  const dispatchList = [...dispatch].sort((a, b) => a - b);
  const entryNumber = new Map<number, number>();
  dispatchList.forEach((d, i) => entryNumber.set(d, i + 1));
  const table = new Uint32Array(dispatchList.length + 1).fill(K); // entry 0: none ($miss)
  dispatchList.forEach((d, i) => { table[i + 1] = blockOf(d); });
  f.get(L_OFF).brTable(table, K);

  let cur = 0; // index of the block whose code is being emitted
  let extra = 0; // nesting of if/block (and a self-loop's loop) inside the current block's code
  let top = 0; // extra at the top level of the current block's code: 1 inside a self-loop
  let selfLoop = false;
  /** Block j ends with a branch or jump back to its own start. */
  const isSelfLoop = (j: number): boolean => {
    const list = blocks[j]!;
    const last = list[list.length - 1]!;
    return (last.op === Op.JAL || kindOf(last.op) === Kind.Branch) && last.off + last.imm === list[0]!.off;
  };
  const dDispatch = () => extra + (K - cur);
  const dStepExit = () => extra + (K - cur) + 1;
  const dExitOff = () => extra + (K - cur) + 2;
  const dExitAbs = () => extra + (K - cur) + 3;
  // x registers: written through to memory at once, cached in a local from their first use in
  // a block to its end. So no register value is live across a block boundary: V8's optimizing
  // compiler would otherwise merge every register at every block head (a phi per register per
  // block), and compiling one page took it up to a second (docs/benchmarks.md "JIT"). Memory
  // is then exact at every exit, and the epilogue has nothing to write back.
  // Code inside a block is straight-line apart from exits, so a register loaded once stays
  // loaded for the rest of the block.
  const loaded = new Uint8Array(33);
  const getReg = (r: number) => {
    if (r === 0) f.i64(0, 0);
    else if (loaded[r]) f.get(regLocal[r]!);
    else { f.i32(0).mem(W.i64_load, 3, SB + regs + 8 * r).tee(localOf(r)); loaded[r] = 1; }
  };
  const setReg = (r: number) => {
    if (r === 0 || r === X_DISCARD) { f.op(W.drop); return; }
    const l = localOf(r);
    f.set(l).i32(0).get(l).mem(W.i64_store, 3, SB + regs + 8 * r);
    loaded[r] = 1;
    forgetProbes(r);
  };
  /**
   * Probes already made in the current block, by TLB and base register: a later access
   * through the same unchanged register, with another immediate, is in the same page when its
   * page offset stays inside it (one add and one compare), so it needs neither the TLB index
   * nor the entry's three loads. Stack frames (sp), structures (one pointer, many fields) and
   * unrolled copies (memcpy's eight loads and eight stores per iteration) are most accesses.
   * Valid to the block's end: inside a block only the hart's Sys calls (LR/SC, CSR accesses,
   * sfence.vma) can fill or flush the TLB, and everything is forgotten after one; the base
   * register's value is the one probed until something writes it (setReg forgets it, and so
   * does an F/D call that writes an x register).
   */
  interface KnownPage { tlb: readonly number[]; reg: number; imm: number; pageOff: number; addr: number }
  const known: KnownPage[] = [];
  /** i32 locals for KnownPage (pageOff, addr pairs), reused by every block. */
  const knownLocals: number[] = [];
  const MAX_KNOWN = 4;
  function forgetProbes(r?: number): void {
    if (known.length === 0) return;
    if (r === undefined) { known.length = 0; return; }
    for (let j = known.length - 1; j >= 0; j--) if (known[j]!.reg === r) known.splice(j, 1);
  }
  /**
   * STEP exit before instruction `idx` of a block of `len` (count and pc exact at it): one
   * constant packs the page offset and the instructions of the block not run, which the
   * shared $stepExit tail unpacks (a few bytes per exit site instead of ~15).
   */
  const exitStep = (off: number, idx: number, len: number) => {
    f.i32(off | ((len - idx) << 12)).set(L_EOFF).br(dStepExit());
  };
  /** The same when the i32 on the stack is non-zero (a `br_if`, no `if` block to merge after). */
  const exitStepIf = (off: number, idx: number, len: number) => {
    f.i32(off | ((len - idx) << 12)).set(L_EOFF).brIf(dStepExit());
  };
  /** Control transfer to a page offset (any value); the current block's count is complete. */
  const goTo = (target: number) => {
    const j = blockOf(target);
    if (j >= 0) {
      if (j === cur && selfLoop) { f.br(extra - 1); return; } // the loop around this block
      if (j === cur + 1 && extra === 0) return; // the next block's code follows
      if (j > cur) { f.br(extra + (j - cur - 1)); return; }
      const n = entryNumber.get(target);
      if (n !== undefined) { f.i32(n).set(L_OFF).br(dDispatch()); return; }
    }
    // Outside the page, or a target the module cannot enter (mid-instruction, or an entry left
    // out): leave, and the dispatcher or the interpreter goes on from there.
    pcBase().i64(target | 0, Math.floor(target / 4294967296) | 0).op(W.i64_add).set(L_NPC)
      .i32(EXIT_CHAIN).set(L_REASON).br(dExitAbs());
  };

  for (cur = 0; cur < K; cur++) {
    f.end(); // closes $b(cur): its code follows
    // A block that branches back to its own start (a tight loop: memset, memcpy, a checksum)
    // runs inside a wasm loop, so an iteration is a `br` to it rather than a trip through the
    // dispatch br_table; its budget check and count stay at the top of every iteration.
    selfLoop = isSelfLoop(cur);
    if (selfLoop) f.loop();
    top = selfLoop ? 1 : 0;
    extra = top;
    loaded.fill(0);
    regLocal.fill(-1);
    poolUsed = 0;
    known.length = 0;
    const list = blocks[cur]!;
    const len = list.length;
    if (dispatch.has(list[0]!.off)) {
      // Budget: everything up to the next check must fit.
      f.get(P_ROOM).get(L_N).op(W.i32_sub).i32(maxPath[cur]!).op(W.i32_lt_s).if_();
      extra = top + 1;
      f.i32(list[0]!.off).set(L_EOFF).i32(EXIT_BUDGET).set(L_REASON).br(dExitOff());
      f.end();
      extra = top;
    }
    f.get(L_N).i32(len).op(W.i32_add).set(L_N);
    let ended = false;
    for (let idx = 0; idx < len; idx++) {
      const i = list[idx]!;
      const rd = (i.w >> 8) & 63, rs1 = (i.w >> 14) & 31, rs2 = (i.w >> 19) & 31;
      const imm = i.imm;
      const k = kindOf(i.op);
      if (k === Kind.Step) { exitStep(i.off, idx, len); ended = true; break; }
      if (k === Kind.Plain) { emitAlu(f, i.op, rd, rs1, rs2, imm, i.off, getReg, setReg, pcBase, helpers); continue; }
      if (k === Kind.Fp) {
        // FS must be Dirty so that the instruction changes nothing outside the FPU.
        f.get(P_FPOK).i32(FP_DIRTY).op(W.i32_and).op(W.i32_eqz); exitStepIf(i.off, idx, len);
        // Inline where the result is provably the FPU's (fp-emit.ts), else a call into it.
        // Integer sources are in memory already (write-through); an integer result is there after.
        const callFpu = () => { f.i32(i.w).i32(imm).call(fpImport); exitStepIf(i.off, idx, len); };
        const inline = fpInline.emit(i.op, i.w, imm, {
          getReg, setReg, fallback: () => { extra = top + 1; callFpu(); extra = top; },
        });
        if (!inline) callFpu();
        if (fpIntDest(i.op) && rd !== X_DISCARD && rd !== 0) { loaded[rd] = 0; forgetProbes(rd); }
        continue;
      }
      if (k === Kind.Sys) {
        // 0: done; 1: nothing done, the interpreter runs it; 2: done, leave the page (the
        // next pc's translation may have changed): CHAIN with this instruction counted.
        f.i32(i.w).i32(imm).call(sysImport).tee(L_T).if_(); extra = top + 1;
        f.get(L_T).i32(1).op(W.i32_eq).if_(); extra = top + 2; exitStep(i.off, idx, len); f.end(); extra = top + 1;
        if (len - idx - 1 !== 0) f.get(L_N).i32(len - idx - 1).op(W.i32_sub).set(L_N);
        pcBase().i64(i.off + i.len, 0).op(W.i64_add).set(L_NPC).i32(EXIT_CHAIN).set(L_REASON).br(dExitAbs());
        f.end(); extra = top;
        if (rd !== X_DISCARD && rd !== 0) loaded[rd] = 0; // the hart wrote it in memory
        forgetProbes(); // an LR/SC or CSR access: the hart ran it
        continue;
      }
      if (k === Kind.Amo) {
        const isD = i.op >= Op.AMOSWAP_D;
        const size = isD ? 8 : 4;
        const base = isD ? Op.AMOSWAP_D : Op.AMOSWAP_W;
        // Address rs1, naturally aligned (else the interpreter raises the misaligned fault),
        // in a page the write TLB maps to RAM that holds no code.
        getReg(rs1); f.tee(L_VA).op(W.i32_wrap_i64).set(L_LO);
        probe(tlbW, size, true, i.off, idx, len);
        f.get(L_T).get(L_LO).i32(0xfff).op(W.i32_and).op(W.i32_add).set(L_TI); // RAM offset
        f.get(L_TI).mem(isD ? W.i64_load : W.i64_load32_s, Math.log2(size), ramOffset).set(L_T64); // old
        // b: rs2, sign-extended from 32 bits for .W (order-preserving for the unsigned forms too).
        const b = () => { getReg(rs2); if (!isD) f.op(W.i32_wrap_i64).op(W.i64_extend_i32_s); };
        f.get(L_TI);
        switch (i.op - base) {
          case 0: b(); break; // swap
          case 1: f.get(L_T64); b(); f.op(W.i64_add); break;
          case 2: f.get(L_T64); b(); f.op(W.i64_xor); break;
          case 3: f.get(L_T64); b(); f.op(W.i64_and); break;
          case 4: f.get(L_T64); b(); f.op(W.i64_or); break;
          default: { // min, max, minu, maxu: select(old, b, old <op> b)
            const cmp = [W.i64_lt_s, W.i64_gt_s, W.i64_lt_u, W.i64_gt_u][i.op - base - 5]!;
            f.get(L_T64); b(); f.get(L_T64); b(); f.op(cmp).op(W.select);
          }
        }
        f.mem(isD ? W.i64_store : W.i64_store32, Math.log2(size), ramOffset);
        if (rd !== X_DISCARD) { f.get(L_T64); setReg(rd); }
        continue;
      }
      if (k === Kind.Mem || k === Kind.FpMem) {
        const fpMem = k === Kind.FpMem;
        const store = i.op === Op.SB || i.op === Op.SH || i.op === Op.SW || i.op === Op.SD || i.op === Op.FSW || i.op === Op.FSD;
        // An F/D load writes an f register (FS must be Dirty); a store only needs FS on.
        if (fpMem) { f.get(P_FPOK).i32(store ? FP_ENABLED : FP_DIRTY).op(W.i32_and).op(W.i32_eqz); exitStepIf(i.off, idx, len); }
        const size = memSize(i.op);
        const t = store ? tlbW : tlbR;
        // RAM address (less the RAM base, which is in the access's offset with `delta`).
        const delta = ramAddress(t, rs1, imm, size, i.off, idx, len);
        const memOff = ramOffset + delta;
        if (fpMem) {
          // f registers as raw bits; a single is NaN-boxed (Unpriv §12.2).
          const fr = (store ? rs2 : rd) & 31;
          if (store) {
            f.i32(0).mem(W.i64_load, 3, SB + fregs + 8 * fr);
            f.mem(size === 4 ? W.i64_store32 : W.i64_store, Math.log2(size), memOff);
          } else {
            f.mem(size === 4 ? W.i64_load32_u : W.i64_load, Math.log2(size), memOff);
            if (size === 4) f.i64(0, -1).op(W.i64_or);
            f.set(L_T64).i32(0).get(L_T64).mem(W.i64_store, 3, SB + fregs + 8 * fr);
          }
        } else if (store) {
          getReg(rs2);
          const o = size === 1 ? W.i64_store8 : size === 2 ? W.i64_store16 : size === 4 ? W.i64_store32 : W.i64_store;
          f.mem(o, Math.log2(size), memOff);
        } else {
          const o = i.op === Op.LB ? W.i64_load8_s : i.op === Op.LBU ? W.i64_load8_u : i.op === Op.LH ? W.i64_load16_s
            : i.op === Op.LHU ? W.i64_load16_u : i.op === Op.LW ? W.i64_load32_s : i.op === Op.LWU ? W.i64_load32_u : W.i64_load;
          f.mem(o, Math.log2(size), memOff);
          setReg(rd);
        }
        continue;
      }
      if (k === Kind.Branch) {
        getReg(rs1); getReg(rs2);
        f.op(i.op === Op.BEQ ? W.i64_eq : i.op === Op.BNE ? W.i64_ne : i.op === Op.BLT ? W.i64_lt_s
          : i.op === Op.BGE ? W.i64_ge_s : i.op === Op.BLTU ? W.i64_lt_u : W.i64_ge_u);
        f.if_(); extra = top + 1; goTo(i.off + imm); f.end(); extra = top;
        continue; // falls through to the next start
      }
      if (k === Kind.Jal) {
        if (rd !== X_DISCARD) { pcBase().i64(i.off + i.len, 0).op(W.i64_add); setReg(rd); }
        goTo(i.off + imm);
        ended = true;
        break;
      }
      // JALR: the target is computed before rd is written (rd may equal rs1).
      getReg(rs1); f.i64(imm, imm >> 31).op(W.i64_add).i64(-2, -1).op(W.i64_and).set(L_T64);
      // A target outside ±2^53 is not representable as the hart's pc: let the interpreter fault it.
      f.get(L_T64).i64(0, 0x200000).op(W.i64_add).i64(54, 0).op(W.i64_shr_u).op(W.i32_wrap_i64).if_();
      extra = top + 1; exitStep(i.off, idx, len); f.end(); extra = top;
      if (rd !== X_DISCARD) { pcBase().i64(i.off + i.len, 0).op(W.i64_add); setReg(rd); }
      if (req.entryMapAddr !== undefined) {
        // In the page: go on at the block the entry map names, if there is one.
        f.get(L_T64); pcBase().op(W.i64_sub).tee(L_VA).i64(4096, 0).op(W.i64_lt_u).if_();
        extra = top + 1;
        f.get(L_VA).op(W.i32_wrap_i64).i32(1).op(W.i32_shr_u).mem(W.i32_load8_u, 0, req.entryMapAddr).tee(L_OFF).brIf(dDispatch());
        f.end(); extra = top;
      }
      f.get(L_T64).set(L_NPC).i32(EXIT_CHAIN).set(L_REASON).br(dExitAbs());
      ended = true;
      break;
    }
    if (!ended) {
      const last = list[len - 1]!;
      goTo(last.off + last.len);
    }
    if (selfLoop) f.end();
  }
  // $miss: no entry by that number (the dispatcher and in-page jumps only use numbers the
  // entry map holds, so this is a bug: trap rather than run on from a wrong place).
  f.end();
  f.op(W.unreachable);
  f.end(); // loop
  f.end(); // $stepExit: L_EOFF = page offset | instructions not run << 12
  f.get(L_N).get(L_EOFF).i32(12).op(W.i32_shr_u).op(W.i32_sub).set(L_N);
  f.get(L_EOFF).i32(0xfff).op(W.i32_and).set(L_EOFF).i32(EXIT_STEP).set(L_REASON);
  f.end(); // $exitOff
  pcBase().get(L_EOFF).op(W.i64_extend_i32_u).op(W.i64_add).set(L_NPC);
  f.end(); // $exitAbs
  f.i32(0).get(L_NPC).mem(W.i64_store, 3, SB + exit);
  f.i32(0).get(L_REASON).mem(W.i32_store, 2, SB + exit + 8);
  f.get(L_N);
  m.exportFunction('run', m.addFunction(f));
  return { bytes: m.encode(), blocks: K, instructions, dispatch: dispatchList, midBlock };
}

/**
 * A Sys instruction after which a block starts (and the dispatcher may enter): sfence.vma,
 * which leaves the page when done, and CSR accesses the hart will hand back to the
 * interpreter (csr.ts jitCsrAccess: counters, writes it does not allow, SIE being set), which
 * return there.
 */
function sysEndsBlock(i: Inst): boolean {
  if (i.op === Op.SFENCE_VMA) return true;
  if (i.op === Op.LR_W || i.op === Op.LR_D || i.op === Op.SC_W || i.op === Op.SC_D) return false;
  const access = jitCsrAccess(i.imm);
  if (access === JIT_CSR_NONE) return true;
  if (!csrWrites(i.w)) return false;
  if (access === JIT_CSR_READ) return true;
  // sstatus/mstatus: CSRRC clears bits (interrupts off); CSRRS/CSRRW may set SIE.
  return access === JIT_CSR_CLEAR_SIE && i.op !== Op.CSRRC && i.op !== Op.CSRRCI;
}

/** The instruction can complete in compiled code and the block goes on after it. */
function continuesBlock(i: Inst): boolean {
  const k = kindOf(i.op);
  return k === Kind.Plain || k === Kind.Mem || k === Kind.Fp || k === Kind.FpMem || k === Kind.Amo || (k === Kind.Sys && !sysEndsBlock(i));
}

/** A JAL/JALR that writes a link register (a call): its successor is a return address. */
function linkReg(i: Inst): boolean {
  if (i.op !== Op.JAL && i.op !== Op.JALR) return false;
  const rd = (i.w >> 8) & 63;
  return rd !== 0 && rd !== X_DISCARD;
}

function memSize(op: number): number {
  switch (op) {
    case Op.LB: case Op.LBU: case Op.SB: return 1;
    case Op.LH: case Op.LHU: case Op.SH: return 2;
    case Op.LW: case Op.LWU: case Op.SW: case Op.FLW: case Op.FSW: return 4;
  }
  return 8;
}

interface Helpers { mulh: number; mulhsu: number; mulhu: number; div: number; divu: number; rem: number; remu: number; divw: number; divuw: number; remw: number; remuw: number }

let helperBodies: FuncBody[] | undefined;
/** Functions every page module imports (fp, sys): the helpers' indices start after them. */
const IMPORTED_FUNCTIONS = 2;

/** Adds the M-extension helpers to a module (their bodies are built once and shared). */
function buildHelpers(m: ModuleBuilder): Helpers {
  if (helperBodies === undefined) {
    const bodies: FuncBody[] = [];
    // Indices relative to the first helper: mulhu is called by mulh and mulhsu.
    defineHelpers((build) => { const f = new FuncBody([I64, I64], [I64]); build(f); bodies.push(f); return bodies.length - 1; }, IMPORTED_FUNCTIONS);
    helperBodies = bodies;
  }
  const first = m.addFunction(helperBodies[0]!);
  if (first !== IMPORTED_FUNCTIONS) throw new Error('jit: helpers must follow the imported functions');
  for (let i = 1; i < helperBodies.length; i++) m.addFunction(helperBodies[i]!);
  const h: Helpers = { mulhu: 0, mulh: 1, mulhsu: 2, div: 3, divu: 4, rem: 5, remu: 6, divw: 7, divuw: 8, remw: 9, remuw: 10 };
  for (const k of Object.keys(h) as (keyof Helpers)[]) h[k] += first;
  return h;
}

/**
 * (i64, i64) -> i64 helpers for the M extension (wasm traps where RISC-V defines a result),
 * in the order buildHelpers indexes them. `base` is the function index of the first helper
 * in every module that uses them (after the one imported function).
 */
function defineHelpers(fn: (build: (f: FuncBody) => void) => number, base: number): void {
  const M32 = (f: FuncBody) => f.i64(-1, 0);
  // High half of the unsigned 64×64 product from four 32×32 partial products.
  const mulhu = fn((f) => {
    const ll = f.local(I64), lh = f.local(I64), hl = f.local(I64);
    f.get(0); M32(f); f.op(W.i64_and).get(1); M32(f); f.op(W.i64_and).op(W.i64_mul).set(ll);
    f.get(0); M32(f); f.op(W.i64_and).get(1).i64(32, 0).op(W.i64_shr_u).op(W.i64_mul).set(lh);
    f.get(0).i64(32, 0).op(W.i64_shr_u).get(1); M32(f); f.op(W.i64_and).op(W.i64_mul).set(hl);
    // hh + (lh >> 32) + (hl >> 32) + (((ll >> 32) + (lh & M) + (hl & M)) >> 32)
    f.get(0).i64(32, 0).op(W.i64_shr_u).get(1).i64(32, 0).op(W.i64_shr_u).op(W.i64_mul);
    f.get(lh).i64(32, 0).op(W.i64_shr_u).op(W.i64_add);
    f.get(hl).i64(32, 0).op(W.i64_shr_u).op(W.i64_add);
    f.get(ll).i64(32, 0).op(W.i64_shr_u).get(lh); M32(f); f.op(W.i64_and).op(W.i64_add).get(hl); M32(f);
    f.op(W.i64_and).op(W.i64_add).i64(32, 0).op(W.i64_shr_u).op(W.i64_add);
  });
  // Signed corrections: subtract b when a < 0, a when b < 0.
  const mulh = fn((f) => {
    f.get(0).get(1).call(base + mulhu);
    f.get(0).i64(63, 0).op(W.i64_shr_s).get(1).op(W.i64_and).op(W.i64_sub);
    f.get(1).i64(63, 0).op(W.i64_shr_s).get(0).op(W.i64_and).op(W.i64_sub);
  });
  const mulhsu = fn((f) => {
    f.get(0).get(1).call(base + mulhu);
    f.get(0).i64(63, 0).op(W.i64_shr_s).get(1).op(W.i64_and).op(W.i64_sub);
  });
  // Unpriv §13.2: x/0 = -1, x%0 = x, MIN/-1 = MIN, MIN%-1 = 0.
  const div = fn((f) => {
    f.get(1).op(W.i64_eqz).if_(I64).i64(-1, -1).else_()
      .get(1).i64(-1, -1).op(W.i64_eq).if_(I64).i64(0, 0).get(0).op(W.i64_sub)
      .else_().get(0).get(1).op(W.i64_div_s).end().end();
  });
  const divu = fn((f) => {
    f.get(1).op(W.i64_eqz).if_(I64).i64(-1, -1).else_().get(0).get(1).op(W.i64_div_u).end();
  });
  const rem = fn((f) => {
    f.get(1).op(W.i64_eqz).if_(I64).get(0).else_()
      .get(1).i64(-1, -1).op(W.i64_eq).if_(I64).i64(0, 0)
      .else_().get(0).get(1).op(W.i64_rem_s).end().end();
  });
  const remu = fn((f) => {
    f.get(1).op(W.i64_eqz).if_(I64).get(0).else_().get(0).get(1).op(W.i64_rem_u).end();
  });
  const w32 = (body: (f: FuncBody, a: number, b: number) => void) => fn((f) => {
    const a = f.local(I32), b = f.local(I32);
    f.get(0).op(W.i32_wrap_i64).set(a).get(1).op(W.i32_wrap_i64).set(b);
    body(f, a, b);
    f.op(W.i64_extend_i32_s);
  });
  const divw = w32((f, a, b) => {
    f.get(b).op(W.i32_eqz).if_(I32).i32(-1).else_()
      .get(b).i32(-1).op(W.i32_eq).if_(I32).i32(0).get(a).op(W.i32_sub)
      .else_().get(a).get(b).op(W.i32_div_s).end().end();
  });
  const divuw = w32((f, a, b) => {
    f.get(b).op(W.i32_eqz).if_(I32).i32(-1).else_().get(a).get(b).op(W.i32_div_u).end();
  });
  const remw = w32((f, a, b) => {
    f.get(b).op(W.i32_eqz).if_(I32).get(a).else_()
      .get(b).i32(-1).op(W.i32_eq).if_(I32).i32(0)
      .else_().get(a).get(b).op(W.i32_rem_s).end().end();
  });
  const remuw = w32((f, a, b) => {
    f.get(b).op(W.i32_eqz).if_(I32).get(a).else_().get(a).get(b).op(W.i32_rem_u).end();
  });
  void [mulh, mulhsu, div, divu, rem, remu, divw, divuw, remw, remuw];
}

/** Straight-line integer instructions (no exit paths). */
function emitAlu(
  f: FuncBody, op: number, rd: number, rs1: number, rs2: number, imm: number, off: number,
  getReg: (r: number) => void, setReg: (r: number) => void, pcBase: () => void, h: Helpers,
): void {
  const immS = () => f.i64(imm, imm >> 31);
  const bin = (o: W) => { getReg(rs1); getReg(rs2); f.op(o); setReg(rd); };
  const binI = (o: W) => { getReg(rs1); immS(); f.op(o); setReg(rd); };
  const w32 = (o: W, second: () => void) => { getReg(rs1); f.op(W.i32_wrap_i64); second(); f.op(o).op(W.i64_extend_i32_s); setReg(rd); };
  const rs2w = () => { getReg(rs2); f.op(W.i32_wrap_i64); };
  const immW = () => { f.i32(imm); };
  const call = (fn: number) => { getReg(rs1); getReg(rs2); f.call(fn); setReg(rd); };
  switch (op) {
    case Op.NOP: case Op.FENCE: case Op.FENCE_I: return;
    case Op.LI: case Op.LUI: immS(); setReg(rd); return;
    case Op.MV: getReg(rs1); setReg(rd); return;
    case Op.AUIPC: {
      const v = off + imm; // exact: |v| < 2^32
      pcBase(); f.i64(v | 0, Math.floor(v / 4294967296) | 0).op(W.i64_add); setReg(rd); return;
    }
    case Op.ADDI: binI(W.i64_add); return;
    case Op.SLTI: getReg(rs1); immS(); f.op(W.i64_lt_s).op(W.i64_extend_i32_u); setReg(rd); return;
    case Op.SLTIU: getReg(rs1); immS(); f.op(W.i64_lt_u).op(W.i64_extend_i32_u); setReg(rd); return;
    case Op.XORI: binI(W.i64_xor); return;
    case Op.ORI: binI(W.i64_or); return;
    case Op.ANDI: binI(W.i64_and); return;
    case Op.SLLI: binI(W.i64_shl); return;
    case Op.SRLI: binI(W.i64_shr_u); return;
    case Op.SRAI: binI(W.i64_shr_s); return;
    case Op.ADD: bin(W.i64_add); return;
    case Op.SUB: bin(W.i64_sub); return;
    case Op.SLL: bin(W.i64_shl); return; // wasm shifts take the count mod 64, as RV64 does
    case Op.SRL: bin(W.i64_shr_u); return;
    case Op.SRA: bin(W.i64_shr_s); return;
    case Op.SLT: getReg(rs1); getReg(rs2); f.op(W.i64_lt_s).op(W.i64_extend_i32_u); setReg(rd); return;
    case Op.SLTU: getReg(rs1); getReg(rs2); f.op(W.i64_lt_u).op(W.i64_extend_i32_u); setReg(rd); return;
    case Op.XOR: bin(W.i64_xor); return;
    case Op.OR: bin(W.i64_or); return;
    case Op.AND: bin(W.i64_and); return;
    case Op.ADDIW: w32(W.i32_add, immW); return;
    case Op.SLLIW: w32(W.i32_shl, immW); return;
    case Op.SRLIW: w32(W.i32_shr_u, immW); return;
    case Op.SRAIW: w32(W.i32_shr_s, immW); return;
    case Op.ADDW: w32(W.i32_add, rs2w); return;
    case Op.SUBW: w32(W.i32_sub, rs2w); return;
    case Op.SLLW: w32(W.i32_shl, rs2w); return; // i32 shifts take the count mod 32
    case Op.SRLW: w32(W.i32_shr_u, rs2w); return;
    case Op.SRAW: w32(W.i32_shr_s, rs2w); return;
    case Op.MUL: bin(W.i64_mul); return;
    case Op.MULW: w32(W.i32_mul, rs2w); return;
    case Op.MULH: call(h.mulh); return;
    case Op.MULHSU: call(h.mulhsu); return;
    case Op.MULHU: call(h.mulhu); return;
    case Op.DIV: call(h.div); return;
    case Op.DIVU: call(h.divu); return;
    case Op.REM: call(h.rem); return;
    case Op.REMU: call(h.remu); return;
    case Op.DIVW: call(h.divw); return;
    case Op.DIVUW: call(h.divuw); return;
    case Op.REMW: call(h.remw); return;
    case Op.REMUW: call(h.remuw); return;
  }
  throw new Error(`jit: op ${op} is not an ALU op`);
}
