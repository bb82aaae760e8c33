import { describe, expect, it } from 'vitest';
import { ByteWriter, FuncBody, I32, I64, ModuleBuilder, W } from './emitter.js';

const bytes = (f: (w: ByteWriter) => void) => { const w = new ByteWriter(1); f(w); return [...w.toBytes()]; };

/** Reference signed LEB128 of a bigint (spec §5.2.2), to cross-check the pair encoder. */
function sleb(v: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
}

describe('wasm emitter: LEB128', () => {
  it('encodes unsigned values as the spec examples do', () => {
    expect(bytes((w) => w.u32(0))).toEqual([0]);
    expect(bytes((w) => w.u32(127))).toEqual([0x7f]);
    expect(bytes((w) => w.u32(128))).toEqual([0x80, 0x01]);
    expect(bytes((w) => w.u32(624485))).toEqual([0xe5, 0x8e, 0x26]);
    expect(bytes((w) => w.u32(0xffffffff))).toEqual([0xff, 0xff, 0xff, 0xff, 0x0f]);
    expect(() => bytes((w) => w.u32(-1))).toThrow(RangeError);
  });

  it('encodes signed 32-bit values', () => {
    expect(bytes((w) => w.s32(0))).toEqual([0]);
    expect(bytes((w) => w.s32(-1))).toEqual([0x7f]);
    expect(bytes((w) => w.s32(63))).toEqual([0x3f]);
    expect(bytes((w) => w.s32(64))).toEqual([0xc0, 0x00]);
    expect(bytes((w) => w.s32(-64))).toEqual([0x40]);
    expect(bytes((w) => w.s32(-65))).toEqual([0xbf, 0x7f]);
    expect(bytes((w) => w.s32(-123456))).toEqual([0xc0, 0xbb, 0x78]);
    expect(bytes((w) => w.s32(-2147483648))).toEqual(sleb(-2147483648n));
  });

  it('encodes signed 64-bit pairs exactly like a bigint reference', () => {
    const cases = [0n, 1n, -1n, 63n, 64n, -64n, -65n, 1n << 31n, -(1n << 31n), (1n << 63n) - 1n, -(1n << 63n),
      0x123456789abcdefn, -0x123456789abcdefn, 0xffffffffn, 1n << 32n];
    let x = 0x9e3779b97f4a7c15n;
    for (let i = 0; i < 200; i++) { x = BigInt.asIntN(64, x * 6364136223846793005n + 1442695040888963407n); cases.push(x >> BigInt(i % 60)); }
    for (const v of cases) {
      const lo = Number(BigInt.asIntN(32, v)), hi = Number(BigInt.asIntN(32, v >> 32n));
      expect(bytes((w) => w.s64(lo, hi)), String(v)).toEqual(sleb(v));
    }
  });
});

describe('wasm emitter: modules', () => {
  it('builds a valid module that computes with native i64', async () => {
    const m = new ModuleBuilder();
    const f = new FuncBody([I64, I64], [I64]);
    f.get(0).get(1).op(W.i64_mul).i64(0x9abcdef0 | 0, 0x12345678).op(W.i64_xor);
    m.exportFunction('f', m.addFunction(f));
    const bin = m.encode();
    expect(WebAssembly.validate(bin)).toBe(true);
    const { instance } = await WebAssembly.instantiate(bin);
    const fn = instance.exports.f as (a: bigint, b: bigint) => bigint;
    expect(fn(3n, 5n)).toBe(15n ^ 0x123456789abcdef0n);
    expect(fn(-1n, 1n << 62n)).toBe(BigInt.asIntN(64, (-(1n << 62n)) ^ 0x123456789abcdef0n));
  });

  it('imports a memory, loops, dispatches with br_table and calls a helper', async () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
    const m = new ModuleBuilder().importMemory({ module: 'e', name: 'm', minPages: 1, maxPages: 1 });
    // helper(x) = x * 3
    const helper = new FuncBody([I32], [I32]);
    helper.get(0).i32(3).op(W.i32_mul);
    const helperIdx = m.addFunction(helper);
    // sum(n): s = 0; for (i = 0; i < n; i++) s += table[i % 3] where table = [helper(i), 100, -1]
    const f = new FuncBody([I32], [I32]);
    const i = f.local(I32), s = f.local(I32);
    f.block().loop();
    f.get(i).get(0).op(W.i32_ge_s).brIf(1);
    f.block().block().block().block();
    f.get(i).i32(3).op(W.i32_rem_u).brTable([0, 1, 2], 3);
    f.end(); f.get(s).get(i).call(helperIdx).op(W.i32_add).set(s).br(2); // case 0
    f.end(); f.get(s).i32(100).op(W.i32_add).set(s).br(1); // case 1
    f.end(); f.get(s).i32(-1).op(W.i32_add).set(s); // case 2
    f.end();
    f.get(i).i32(1).op(W.i32_add).set(i).br(0);
    f.end().end();
    // Store the result at memory[8] and return it reloaded.
    f.i32(8).get(s).mem(W.i32_store, 2, 0);
    f.i32(0).mem(W.i32_load, 2, 8);
    m.exportFunction('sum', m.addFunction(f));
    const bin = m.encode();
    expect(WebAssembly.validate(bin)).toBe(true);
    const { instance } = await WebAssembly.instantiate(bin, { e: { m: memory } });
    const sum = instance.exports.sum as (n: number) => number;
    let want = 0;
    for (let k = 0; k < 10; k++) want += k % 3 === 0 ? k * 3 : k % 3 === 1 ? 100 : -1;
    expect(sum(10)).toBe(want);
    expect(new Int32Array(memory.buffer)[2]).toBe(want);
  });

  it('calls an imported host function (indices after the imports)', () => {
    const m = new ModuleBuilder();
    const host = m.importFunction('e', 'twice', [I32], [I32]);
    const f = new FuncBody([I32], [I32]);
    f.get(0).call(host).i32(1).op(W.i32_add);
    const idx = m.addFunction(f);
    expect(idx).toBe(1);
    m.exportFunction('f', idx);
    const bin = m.encode();
    expect(WebAssembly.validate(bin)).toBe(true);
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bin), { e: { twice: (x: number) => 2 * x } });
    expect((inst.exports.f as (x: number) => number)(20)).toBe(41);
  });

  it('imports a table and calls through it (call_indirect checks the signature)', () => {
    const table = new WebAssembly.Table({ element: 'anyfunc', initial: 4 });
    // Callee module: one (i32, i32) -> i32 function, placed in slot 2 by the host.
    const callee = new ModuleBuilder();
    const sub = new FuncBody([I32, I32], [I32]);
    sub.get(0).get(1).op(W.i32_sub);
    callee.exportFunction('sub', callee.addFunction(sub));
    const ci = new WebAssembly.Instance(new WebAssembly.Module(callee.encode()));
    table.set(2, ci.exports.sub as WebAssembly.ExportValue as never);
    // Caller module: call_indirect through the imported table.
    const m = new ModuleBuilder().importTable({ module: 'e', name: 't', minSize: 4 });
    const ty = m.type([I32, I32], [I32]);
    const f = new FuncBody([I32], [I32]);
    f.i32(50).i32(8).get(0).callIndirect(ty);
    m.exportFunction('f', m.addFunction(f));
    const bin = m.encode();
    expect(WebAssembly.validate(bin)).toBe(true);
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bin), { e: { t: table } });
    const call = inst.exports.f as (slot: number) => number;
    expect(call(2)).toBe(42);
    expect(() => call(1)).toThrow(WebAssembly.RuntimeError); // null slot traps
    expect(() => call(9)).toThrow(WebAssembly.RuntimeError); // out of bounds traps
  });

  it('merges runs of locals of one type and rejects nothing valid', () => {
    const m = new ModuleBuilder();
    const f = new FuncBody([], [I32]);
    const a = f.local(I32); f.local(I32); const b = f.local(I64); f.local(I32);
    f.i32(7).set(a).i64s(-2).set(b).get(a).get(b).op(W.i32_wrap_i64).op(W.i32_add);
    m.exportFunction('f', m.addFunction(f));
    const bin = m.encode();
    expect(WebAssembly.validate(bin)).toBe(true);
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bin));
    expect((inst.exports.f as () => number)()).toBe(5);
  });

  it('produces modules the validator rejects when the stack is wrong (the test can fail)', () => {
    const m = new ModuleBuilder();
    const f = new FuncBody([], [I32]);
    f.i64s(1); // an i64 where an i32 result is declared
    m.addFunction(f);
    expect(WebAssembly.validate(m.encode())).toBe(false);
  });
});
