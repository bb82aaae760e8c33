/**
 * The dispatcher: one small WebAssembly function that runs compiled pages one after another
 * without coming back to JavaScript.
 *
 * A page's code (compiler.ts) returns when control leaves the page. Returning to the hart's
 * JavaScript loop for every such exit cost more than the guest code itself on a Debian boot
 * (~90% of the 21 M exits to /init were page-to-page jumps: calls, returns, tail jumps;
 * docs/benchmarks.md "JIT"). Here the next page is looked up in wasm instead:
 *
 *   loop
 *     fetch-TLB probe for pc in set xBase  (the hart's own fetch TLB, in the shared memory)
 *     page map[RAM page] → function-table slot (0: nothing compiled)
 *     entry map[slot][pc & 0xfff] → the module's number of the block there (0: none, MISS)
 *     k = call_indirect slot (index, room, dBase, pc & ~0xfff, pc >> 32, fpOk)
 *     continue while the page exited with CHAIN and room remains
 *
 * Everything else (STEP, MISS, BUDGET, a fetch-TLB miss, a page with no code or no block at the
 * offset) returns to the hart with the exit record telling where and why. Interrupts need no
 * check here: within one hart.run() they become pending only through instructions the
 * interpreter executes (CSR writes, MMIO, wfi), each of which is a STEP exit.
 *
 * Entry record (int32 at SLOT_EXIT + ENTRY_RECORD): pc lo, pc hi, room, dBase, xBase, fpOk.
 * Exit record (SLOT_EXIT): pc (i64), reason (i32), pages entered (i32).
 */
import { SLOT_EXIT, SLOT_X_OFF, SLOT_X_TAG_HI, SLOT_X_TAG_LO, TLB_SIZE } from '../cpu/guest-ram.js';
import { ENTRY_MAP_BYTES } from '../cpu/guest-ram.js';
import { EXIT_CHAIN, EXIT_MISS, EXIT_NOCODE, PAGE_FN_PARAMS } from './compiler.js';
import { FuncBody, I32, I64, ModuleBuilder, W } from './wasm/emitter.js';

/** Byte offset of the entry record from SLOT_EXIT (six int32). */
export const ENTRY_RECORD = 16;
/** int32 index in the exit record of the number of pages entered. */
export const EXIT_CALLS = 3;

export type DispatchFn = () => number;

export interface DispatcherRequest {
  memory: WebAssembly.Memory;
  table: WebAssembly.Table;
  slotBase: number;
  pageMapBase: number;
  /** Byte offset of the hart's entry maps (guest-ram.ts ENTRY_MAP_BYTES per table slot). */
  entryMapBase: number;
}

const TLB_MASK = TLB_SIZE - 1;

/** Builds and instantiates the dispatcher for one hart. */
export function buildDispatcher(req: DispatcherRequest): DispatchFn {
  const { slotBase, pageMapBase, entryMapBase } = req;
  const exit = slotBase + SLOT_EXIT;
  const entry = exit + ENTRY_RECORD;
  const m = new ModuleBuilder()
    .importMemory({ module: 'e', name: 'm', minPages: 1 })
    .importTable({ module: 'e', name: 't', minSize: 1 });
  const pageType = m.type(PAGE_FN_PARAMS, [I32]);
  const f = new FuncBody([], [I32]);
  const lo = f.local(I32), hi = f.local(I32), room = f.local(I32), dBase = f.local(I32), xBase = f.local(I32),
    fpOk = f.local(I32), total = f.local(I32), calls = f.local(I32), i = f.local(I32), t = f.local(I32), idx = f.local(I32),
    why = f.local(I32), pc64 = f.local(I64);
  [lo, hi, room, dBase, xBase, fpOk].forEach((l, k) => f.i32(0).mem(W.i32_load, 2, entry + 4 * k).set(l));
  f.i32(EXIT_NOCODE).set(why);
  f.block(); // $out: no code to run at lo/hi, reason $why
  f.block(); // $miss: the page has code, but no block starts at this offset
  f.loop(); // $next
  // Fetch TLB: index (xBase + (vpn & mask)) · 4, tag (vpn, hi); an odd off (TLB_NO_RAM) is not
  // RAM, an even one the page's RAM offset (unsigned: RAM may reach past 2 GiB).
  f.get(lo).i32(12).op(W.i32_shr_u).i32(TLB_MASK).op(W.i32_and).get(xBase).op(W.i32_add).i32(2).op(W.i32_shl).set(i);
  f.get(i).mem(W.i32_load, 2, slotBase + SLOT_X_TAG_LO).get(lo).i32(12).op(W.i32_shr_u).op(W.i32_xor);
  f.get(i).mem(W.i32_load, 2, slotBase + SLOT_X_TAG_HI).get(hi).op(W.i32_xor).op(W.i32_or);
  f.get(i).mem(W.i32_load, 2, slotBase + SLOT_X_OFF).tee(t).i32(1).op(W.i32_and).op(W.i32_or);
  f.brIf(2);
  // Page map: the table slot of the RAM page's code.
  f.get(t).i32(12).op(W.i32_shr_u).i32(1).op(W.i32_shl).mem(W.i32_load16_u, 1, pageMapBase).tee(t).op(W.i32_eqz).brIf(2);
  // Entry map: the module's number of the block starting at this offset.
  f.get(t).i32(Math.log2(ENTRY_MAP_BYTES)).op(W.i32_shl).get(lo).i32(0xfff).op(W.i32_and).i32(1).op(W.i32_shr_u).op(W.i32_add)
    .mem(W.i32_load8_u, 0, entryMapBase).tee(idx).op(W.i32_eqz).brIf(1);
  f.get(idx).get(room).get(dBase).get(lo).i32(~0xfff).op(W.i32_and).get(hi).get(fpOk);
  f.get(t).callIndirect(pageType).tee(t);
  f.get(total).op(W.i32_add).set(total);
  f.get(room).get(t).op(W.i32_sub).set(room);
  f.get(calls).i32(1).op(W.i32_add).set(calls);
  // Chain while the page left at a clean boundary and budget remains.
  f.i32(0).mem(W.i32_load, 2, exit + 8).i32(EXIT_CHAIN).op(W.i32_eq).get(room).i32(0).op(W.i32_gt_s).op(W.i32_and).if_();
  // The pc with one load of the i64 the page stored, not two i32 loads of its halves (a load of
  // the upper half may not be forwarded from that store; bench/cpu.ts's calls loop went from
  // 353 to 356-367 MIPS).
  f.i32(0).mem(W.i64_load, 3, exit).tee(pc64).op(W.i32_wrap_i64).set(lo).get(pc64).i64(32, 0).op(W.i64_shr_u).op(W.i32_wrap_i64).set(hi).br(1);
  f.end();
  f.i32(0).get(calls).mem(W.i32_store, 2, exit + 4 * EXIT_CALLS);
  f.get(total).op(W.return_);
  f.end(); // loop
  f.end(); // $miss
  f.i32(EXIT_MISS).set(why);
  f.end(); // $out
  f.i32(0).get(lo).mem(W.i32_store, 2, exit).i32(0).get(hi).mem(W.i32_store, 2, exit + 4);
  f.i32(0).get(why).mem(W.i32_store, 2, exit + 8);
  f.i32(0).get(calls).mem(W.i32_store, 2, exit + 4 * EXIT_CALLS);
  f.get(total);
  m.exportFunction('run', m.addFunction(f));
  const instance = new WebAssembly.Instance(new WebAssembly.Module(m.encode()), { e: { m: req.memory, t: req.table } });
  return instance.exports['run'] as DispatchFn;
}
