/**
 * What V8 charges for entering a WebAssembly function the way the JIT's dispatcher enters a
 * compiled page (src/jit/dispatch.ts: call_indirect through a table, six i32 parameters), by
 * the number and type of the function's locals, on each of V8's two tiers.
 *
 * Why: every transfer between compiled pages is such a call (10.4 M of them in the parity
 * bench's 0.8 s shell loop), and a page function declares ~30 locals (median 31 over 400 kernel
 * pages, about 16 i64 and 15 i32). Liftoff, the tier new pages run on, zero-fills its locals' stack
 * slots on every call (`rep stosl` past three slots), TurboFan does not (docs/benchmarks.md,
 * "Where a page transition's time goes", session 15).
 *
 * Run: npx tsx bench/wasm-call.ts [--calls N] [--json]
 * Prints ns per call for each shape: Liftoff callee (what a cold or warm page runs) and
 * TurboFan callee (what the hottest pages run: WASM_TIERING_BUDGET in src/host/v8-tuning.ts).
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { FuncBody, I32, I64, ModuleBuilder, W } from '../src/jit/wasm/emitter.js';
import { benchArg } from './args.js';

const CALLS = Number(benchArg('calls', '20000000'));
const PAGE_PARAMS = [I32, I32, I32, I32, I32, I32];

/** A callee with `i64s` i64 and `i32s` i32 locals (two of them read, so none is dead), returning its first parameter. */
function callee(i64s: number, i32s: number): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  const g = new FuncBody(PAGE_PARAMS, [I32]);
  const l64 = Array.from({ length: i64s }, () => g.local(I64));
  const l32 = Array.from({ length: i32s }, () => g.local(I32));
  g.get(0);
  if (l64[0] !== undefined) g.get(l64[0]).op(W.i32_wrap_i64).op(W.i32_add);
  if (l32[0] !== undefined) g.get(l32[0]).op(W.i32_add);
  m.exportFunction('page', m.addFunction(g));
  return m.encode();
}

/** The caller: a loop of `n` call_indirect through table slot 0, as the dispatcher makes them. */
function caller(): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder().importTable({ module: 'e', name: 't', minSize: 1 });
  const type = m.type(PAGE_PARAMS, [I32]);
  const d = new FuncBody([I32], [I32]);
  const i = d.local(I32), acc = d.local(I32);
  d.loop().get(acc);
  for (let k = 1; k < 6; k++) d.get(i);
  d.i32(0).callIndirect(type).set(acc).get(i).i32(1).op(W.i32_add).tee(i).get(0).op(W.i32_lt_u).brIf(0).end().get(acc);
  m.exportFunction('run', m.addFunction(d));
  return m.encode();
}

interface Row { i64s: number; i32s: number; tier: 'liftoff' | 'turbofan'; nsPerCall: number }
const shapes: [number, number][] = [[0, 4], [4, 0], [8, 12], [12, 12], [16, 0], [16, 15], [32, 16]];
const TIERS = { liftoff: '--liftoff-only', turbofan: '--no-liftoff' } as const;

/** One tier's rows, measured in this process (started with that tier's V8 flag). */
function measure(tier: 'liftoff' | 'turbofan'): Row[] {
  const callerModule = new WebAssembly.Module(caller());
  return shapes.map(([i64s, i32s]) => {
    const table = new WebAssembly.Table({ element: 'anyfunc', initial: 1 });
    table.set(0, new WebAssembly.Instance(new WebAssembly.Module(callee(i64s, i32s)), {}).exports['page'] as never);
    const run = new WebAssembly.Instance(callerModule, { e: { t: table } }).exports['run'] as (n: number) => number;
    run(100_000);
    const t0 = performance.now();
    run(CALLS);
    return { i64s, i32s, tier, nsPerCall: +((performance.now() - t0) * 1e6 / CALLS).toFixed(2) };
  });
}

// V8's tier flags are process-wide and fixed once wasm has been compiled: each tier runs in a
// child process of its own (this script again, with --tier).
const only = benchArg('tier', '');
if (only === 'liftoff' || only === 'turbofan') {
  console.log(JSON.stringify(measure(only)));
  process.exit(0);
}
const rows: Row[] = [];
for (const tier of ['liftoff', 'turbofan'] as const) {
  const r = spawnSync(process.execPath, [...process.execArgv, TIERS[tier], process.argv[1]!, '--tier', tier, '--calls', String(CALLS)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench/wasm-call: the ${tier} run failed: ${r.stderr}`);
  rows.push(...(JSON.parse(r.stdout.trim().split('\n').pop()!) as Row[]));
}

if (process.argv.includes('--json')) {
  console.log(JSON.stringify({ cpu: cpus()[0]?.model, node: process.version, load: loadavg(), calls: CALLS, rows }));
} else {
  console.log(`bench/wasm-call: ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, ${CALLS} calls each`);
  console.log('| locals (i64 + i32) | bytes zeroed | Liftoff ns/call | TurboFan ns/call |');
  console.log('|---|---|---|---|');
  for (const [i64s, i32s] of shapes) {
    const of = (tier: string) => rows.find((r) => r.i64s === i64s && r.i32s === i32s && r.tier === tier)!.nsPerCall;
    console.log(`| ${i64s} + ${i32s} | ${8 * i64s + 4 * i32s} | ${of('liftoff')} | ${of('turbofan')} |`);
  }
}
