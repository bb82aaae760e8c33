/**
 * A small WebAssembly binary emitter: LEB128, the opcodes the JIT uses, and the module
 * sections (type, import, function, export, code); memory, table and function imports. WebAssembly Core Specification 2.0
 * §5 "Binary Format" (https://webassembly.github.io/spec/core/binary/).
 *
 * Nothing here allocates per emitted byte beyond a growing Uint8Array: the JIT builds one
 * module per hot guest page, so emitting must be cheap next to V8's own compile.
 */

/** Value types (§5.3.1). */
export const I32 = 0x7f;
export const I64 = 0x7e;
export const F32 = 0x7d;
export const F64 = 0x7c;
/** Reference type of a table of functions (§5.3.3). */
export const FUNCREF = 0x70;
/** Empty block type (§5.4.1). */
export const BLOCK_VOID = 0x40;

/** Instruction opcodes (§5.4), named as the spec's text format spells them. */
export const enum W {
  unreachable = 0x00, nop = 0x01, block = 0x02, loop = 0x03, if_ = 0x04, else_ = 0x05, end = 0x0b,
  br = 0x0c, br_if = 0x0d, br_table = 0x0e, return_ = 0x0f, call = 0x10, call_indirect = 0x11,
  drop = 0x1a, select = 0x1b,
  local_get = 0x20, local_set = 0x21, local_tee = 0x22,
  i32_load = 0x28, i64_load = 0x29, f32_load = 0x2a, f64_load = 0x2b, i32_load8_u = 0x2d, i32_load16_u = 0x2f,
  i64_load8_s = 0x30, i64_load8_u = 0x31, i64_load16_s = 0x32, i64_load16_u = 0x33,
  i64_load32_s = 0x34, i64_load32_u = 0x35,
  i32_store = 0x36, i64_store = 0x37, f32_store = 0x38, f64_store = 0x39, i64_store8 = 0x3c, i64_store16 = 0x3d, i64_store32 = 0x3e,
  i32_const = 0x41, i64_const = 0x42, f32_const = 0x43, f64_const = 0x44,
  i32_eqz = 0x45, i32_eq = 0x46, i32_ne = 0x47, i32_lt_s = 0x48, i32_lt_u = 0x49, i32_gt_s = 0x4a,
  i32_gt_u = 0x4b, i32_le_s = 0x4c, i32_le_u = 0x4d, i32_ge_s = 0x4e, i32_ge_u = 0x4f,
  i64_eqz = 0x50, i64_eq = 0x51, i64_ne = 0x52, i64_lt_s = 0x53, i64_lt_u = 0x54, i64_gt_s = 0x55,
  i64_gt_u = 0x56, i64_le_s = 0x57, i64_le_u = 0x58, i64_ge_s = 0x59, i64_ge_u = 0x5a,
  f32_eq = 0x5b, f32_ne = 0x5c, f32_lt = 0x5d, f32_gt = 0x5e, f32_le = 0x5f, f32_ge = 0x60,
  f64_eq = 0x61, f64_ne = 0x62, f64_lt = 0x63, f64_gt = 0x64, f64_le = 0x65, f64_ge = 0x66,
  i32_add = 0x6a, i32_sub = 0x6b, i32_mul = 0x6c, i32_div_s = 0x6d, i32_div_u = 0x6e,
  i32_rem_s = 0x6f, i32_rem_u = 0x70, i32_and = 0x71, i32_or = 0x72, i32_xor = 0x73,
  i32_shl = 0x74, i32_shr_s = 0x75, i32_shr_u = 0x76,
  i64_add = 0x7c, i64_sub = 0x7d, i64_mul = 0x7e, i64_div_s = 0x7f, i64_div_u = 0x80,
  i64_rem_s = 0x81, i64_rem_u = 0x82, i64_and = 0x83, i64_or = 0x84, i64_xor = 0x85,
  i64_shl = 0x86, i64_shr_s = 0x87, i64_shr_u = 0x88,
  f32_abs = 0x8b, f32_neg = 0x8c, f32_ceil = 0x8d, f32_floor = 0x8e, f32_trunc = 0x8f, f32_nearest = 0x90,
  f32_sqrt = 0x91, f32_add = 0x92, f32_sub = 0x93, f32_mul = 0x94, f32_div = 0x95, f32_min = 0x96, f32_max = 0x97,
  f64_abs = 0x99, f64_neg = 0x9a, f64_ceil = 0x9b, f64_floor = 0x9c, f64_trunc = 0x9d, f64_nearest = 0x9e,
  f64_sqrt = 0x9f, f64_add = 0xa0, f64_sub = 0xa1, f64_mul = 0xa2, f64_div = 0xa3, f64_min = 0xa4, f64_max = 0xa5,
  i32_wrap_i64 = 0xa7, i32_trunc_f64_s = 0xaa, i32_trunc_f64_u = 0xab, i64_extend_i32_s = 0xac, i64_extend_i32_u = 0xad,
  i64_trunc_f64_s = 0xb0, i64_trunc_f64_u = 0xb1,
  f32_convert_i32_s = 0xb2, f32_convert_i32_u = 0xb3, f32_convert_i64_s = 0xb4, f32_convert_i64_u = 0xb5, f32_demote_f64 = 0xb6,
  f64_convert_i32_s = 0xb7, f64_convert_i32_u = 0xb8, f64_convert_i64_s = 0xb9, f64_convert_i64_u = 0xba, f64_promote_f32 = 0xbb,
  i32_reinterpret_f32 = 0xbc, i64_reinterpret_f64 = 0xbd, f32_reinterpret_i32 = 0xbe, f64_reinterpret_i64 = 0xbf,
}

/** A growable byte buffer with the binary format's integer encodings. */
export class ByteWriter {
  private buf: Uint8Array<ArrayBuffer>;
  length = 0;

  constructor(capacity = 1024) {
    this.buf = new Uint8Array(capacity);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  byte(b: number): this {
    if (this.length === this.buf.length) this.reserve(1);
    this.buf[this.length++] = b;
    return this;
  }

  bytes(b: ArrayLike<number>): this {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }

  /** Unsigned LEB128 of a non-negative integer below 2^53 (§5.2.2). */
  u32(v: number): this {
    if (v >= 0 && v < 0x80 && (v | 0) === v) return this.byte(v); // most indices and depths
    if (!(v >= 0) || !Number.isInteger(v)) throw new RangeError(`u32 LEB128 of ${v}`);
    do {
      let b = v % 128;
      v = Math.floor(v / 128);
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
    return this;
  }

  /** Signed LEB128 of an int32 (§5.2.2). */
  s32(v: number): this {
    v |= 0;
    if (v >= -64 && v < 64) return this.byte(v & 0x7f); // small constants: one byte
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
        this.byte(b);
        return this;
      }
      this.byte(b | 0x80);
    }
  }

  /** Signed LEB128 of an int64 given as (lo, hi) int32 halves: no BigInt on the hot path. */
  s64(lo: number, hi: number): this {
    lo |= 0; hi |= 0;
    for (;;) {
      const b = lo & 0x7f;
      // Arithmetic shift of the 64-bit pair right by 7.
      lo = (lo >>> 7) | (hi << 25);
      hi >>= 7;
      const rest0 = lo === 0 && hi === 0;
      const restM1 = lo === -1 && hi === -1;
      if ((rest0 && (b & 0x40) === 0) || (restM1 && (b & 0x40) !== 0)) {
        this.byte(b);
        return this;
      }
      this.byte(b | 0x80);
    }
  }

  /** A name: length-prefixed UTF-8 (§5.2.4); ASCII here. */
  name(s: string): this {
    this.u32(s.length);
    for (let i = 0; i < s.length; i++) this.byte(s.charCodeAt(i) & 0x7f);
    return this;
  }

  toBytes(): Uint8Array<ArrayBuffer> {
    return this.buf.slice(0, this.length);
  }

  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

/** Scratch for the bytes of float constants (typed arrays are little-endian on every host wasm runs on). */
const CONST_F64 = new Float64Array(1);
const CONST_F32 = new Float32Array(CONST_F64.buffer, 0, 1);
const CONST_BYTES = new Uint8Array(CONST_F64.buffer);

/** Function body builder: locals and an instruction stream. */
export class FuncBody {
  readonly code: ByteWriter;
  /** Local declarations after the parameters, as (type) in index order. */
  private readonly localTypes: number[] = [];

  /** `capacity`: the code bytes expected (the buffer grows past it, copying). */
  constructor(readonly params: readonly number[], readonly results: readonly number[], capacity = 4096) {
    this.code = new ByteWriter(capacity);
  }

  /** Declares a local; returns its index (parameters come first). */
  local(type: number): number {
    this.localTypes.push(type);
    return this.params.length + this.localTypes.length - 1;
  }

  op(o: W): this { this.code.byte(o); return this; }
  i32(v: number): this { this.code.byte(W.i32_const).s32(v); return this; }
  i64(lo: number, hi: number): this { this.code.byte(W.i64_const).s64(lo, hi); return this; }
  /** f32.const (§5.4.7: the value's 4 bytes, little-endian). */
  f32(v: number): this {
    CONST_F32[0] = v;
    this.code.byte(W.f32_const).bytes(CONST_BYTES.subarray(0, 4));
    return this;
  }
  /** f64.const (the value's 8 bytes, little-endian). */
  f64(v: number): this {
    CONST_F64[0] = v;
    this.code.byte(W.f64_const).bytes(CONST_BYTES);
    return this;
  }
  /** i64.const of a sign-extended int32. */
  i64s(v: number): this { return this.i64(v, v >> 31); }
  get(i: number): this { this.code.byte(W.local_get).u32(i); return this; }
  set(i: number): this { this.code.byte(W.local_set).u32(i); return this; }
  tee(i: number): this { this.code.byte(W.local_tee).u32(i); return this; }
  block(): this { this.code.byte(W.block).byte(BLOCK_VOID); return this; }
  loop(): this { this.code.byte(W.loop).byte(BLOCK_VOID); return this; }
  if_(type = BLOCK_VOID): this { this.code.byte(W.if_).byte(type); return this; }
  else_(): this { this.code.byte(W.else_); return this; }
  end(): this { this.code.byte(W.end); return this; }
  br(depth: number): this { this.code.byte(W.br).u32(depth); return this; }
  brIf(depth: number): this { this.code.byte(W.br_if).u32(depth); return this; }
  brTable(depths: ArrayLike<number>, dflt: number): this {
    this.code.byte(W.br_table).u32(depths.length);
    for (let i = 0; i < depths.length; i++) this.code.u32(depths[i]!);
    this.code.u32(dflt);
    return this;
  }
  call(fn: number): this { this.code.byte(W.call).u32(fn); return this; }
  /** call_indirect (§5.4.2): the callee's type index (ModuleBuilder.type), table 0. */
  callIndirect(type: number): this { this.code.byte(W.call_indirect).u32(type).u32(0); return this; }
  /** A load or store with its memarg (§5.4.6): alignment exponent and constant offset. */
  mem(o: W, alignLog2: number, offset: number): this {
    this.code.byte(o).u32(alignLog2).u32(offset);
    return this;
  }

  /** The body as §5.5.13 encodes it: size, run-length local declarations, code. */
  encode(out: ByteWriter): void {
    const head = new ByteWriter(64);
    const runs: [number, number][] = [];
    for (const t of this.localTypes) {
      const last = runs[runs.length - 1];
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    head.u32(runs.length);
    for (const [n, t] of runs) head.u32(n).byte(t);
    out.u32(head.length + this.code.length + 1);
    out.bytes(head.view());
    out.bytes(this.code.view());
    out.byte(W.end);
  }
}

export interface ImportedMemory {
  module: string;
  name: string;
  minPages: number;
  maxPages?: number;
}

/** An imported table of functions (funcref), table index 0. */
export interface ImportedTable {
  module: string;
  name: string;
  minSize: number;
}

/**
 * Module builder (§5.5): optional memory and table imports, function imports, functions defined
 * here, exported by name. Imported functions take the first function indices (§2.5.1), so
 * import them before adding functions.
 */
export class ModuleBuilder {
  private readonly types: string[] = [];
  private readonly typeSigs: { params: readonly number[]; results: readonly number[] }[] = [];
  private readonly funcImports: { module: string; name: string; type: number }[] = [];
  private readonly funcs: { type: number; body: FuncBody }[] = [];
  private readonly exports: { name: string; func: number }[] = [];
  private memory: ImportedMemory | undefined;
  private table: ImportedTable | undefined;

  importMemory(m: ImportedMemory): this {
    this.memory = m;
    return this;
  }

  importTable(t: ImportedTable): this {
    this.table = t;
    return this;
  }

  /** The type index of a signature (for call_indirect). */
  type(params: readonly number[], results: readonly number[]): number {
    return this.typeIndex(params, results);
  }

  private typeIndex(params: readonly number[], results: readonly number[]): number {
    const key = `${params.join(',')}:${results.join(',')}`;
    let i = this.types.indexOf(key);
    if (i < 0) {
      i = this.types.length;
      this.types.push(key);
      this.typeSigs.push({ params, results });
    }
    return i;
  }

  /** Imports a host function; returns its function index. */
  importFunction(module: string, name: string, params: readonly number[], results: readonly number[]): number {
    if (this.funcs.length > 0) throw new Error('ModuleBuilder: import functions before defining any');
    this.funcImports.push({ module, name, type: this.typeIndex(params, results) });
    return this.funcImports.length - 1;
  }

  /** Adds a function; returns its index (after the imported ones). */
  addFunction(body: FuncBody): number {
    this.funcs.push({ type: this.typeIndex(body.params, body.results), body });
    return this.funcImports.length + this.funcs.length - 1;
  }

  exportFunction(name: string, func: number): this {
    this.exports.push({ name, func });
    return this;
  }

  encode(): Uint8Array<ArrayBuffer> {
    const out = new ByteWriter(8192);
    out.bytes([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]); // magic, version 1
    const section = (id: number, fill: (w: ByteWriter) => void) => {
      const w = new ByteWriter(256);
      fill(w);
      out.byte(id).u32(w.length).bytes(w.view());
    };
    section(1, (w) => { // type section (§5.5.4)
      w.u32(this.typeSigs.length);
      for (const s of this.typeSigs) {
        w.byte(0x60).u32(s.params.length).bytes(s.params).u32(s.results.length).bytes(s.results);
      }
    });
    if (this.memory || this.table || this.funcImports.length > 0) {
      const m = this.memory;
      const t = this.table;
      section(2, (w) => { // import section (§5.5.5)
        w.u32(this.funcImports.length + (m ? 1 : 0) + (t ? 1 : 0));
        for (const f of this.funcImports) w.name(f.module).name(f.name).byte(0x00).u32(f.type);
        if (t) w.name(t.module).name(t.name).byte(0x01).byte(FUNCREF).byte(0x00).u32(t.minSize);
        if (m) {
          w.name(m.module).name(m.name).byte(0x02);
          if (m.maxPages === undefined) w.byte(0x00).u32(m.minPages);
          else w.byte(0x01).u32(m.minPages).u32(m.maxPages);
        }
      });
    }
    section(3, (w) => { // function section (§5.5.6)
      w.u32(this.funcs.length);
      for (const f of this.funcs) w.u32(f.type);
    });
    section(7, (w) => { // export section (§5.5.10)
      w.u32(this.exports.length);
      for (const e of this.exports) w.name(e.name).byte(0x00).u32(e.func);
    });
    section(10, (w) => { // code section (§5.5.13)
      w.u32(this.funcs.length);
      for (const f of this.funcs) f.body.encode(w);
    });
    return out.toBytes();
  }
}
