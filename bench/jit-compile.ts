/**
 * How fast the JIT builds modules (src/jit/compiler.ts) and how fast V8 compiles them, on real
 * guest code: 400 pages of the Debian riscv64 kernel image (every seventh page from page 100),
 * each entered at offsets 0, 256, 1024 and 2048, as a boot's hot kernel pages are.
 * Run: npx tsx bench/jit-compile.ts [--rounds N] [--json]   (after `npm run build`: it times dist/)
 * Prints the time of the first round (V8 still compiling the compiler's JavaScript, as early in
 * a boot) and the median of the later ones, wasm bytes per guest instruction, and the time
 * V8's baseline compiler (Liftoff, the JIT's only tier) takes for the same modules.
 */
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { ensureImage } from '../src/images/index.js';
import type { compilePage as CompilePage } from '../src/jit/compiler.js';

const { compilePage } = (await import('../dist/jit/compiler.js' as string)) as { compilePage: typeof CompilePage };
((await import('../dist/host/v8-tuning.js' as string)) as { tuneV8ForJit: () => void }).tuneV8ForJit();
// V8 compiles a module's functions at their first call by default; the JIT calls every module
// it builds, so compile them all here, at once, to time it.
setFlagsFromString('--no-wasm-lazy-compilation');

const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const rounds = Math.max(2, Number(argValue('--rounds') ?? 6));
const PAGES = 400;

const img = await ensureImage('tiny');
const kernel = readFileSync(img.kernel);
const first = 100;
if (kernel.length < (first + 7 * PAGES) * 4096) throw new Error(`bench: kernel image ${img.kernel} is smaller than expected`);
const ram16 = new Uint16Array(kernel.buffer.slice(kernel.byteOffset, kernel.byteOffset + kernel.length & ~4095));
const entries = [0, 256, 1024, 2048];
const compileAll = () => {
  const out: Uint8Array[] = [];
  let instructions = 0;
  for (let p = 0; p < PAGES; p++) {
    const page = compilePage({ ram16, pageRamOff: (first + 7 * p) * 4096, entries, slotBase: 0x2000_0000, ramOffset: 0, entryMapAddr: 0x3000_0000 });
    if (page) { out.push(page.bytes); instructions += page.instructions; }
  }
  return { out, instructions };
};

const times: number[] = [];
let last = { out: [] as Uint8Array[], instructions: 0 };
for (let r = 0; r < rounds; r++) {
  const t0 = performance.now();
  last = compileAll();
  times.push(performance.now() - t0);
}
const later = times.slice(1).sort((a, b) => a - b);
const median = later[Math.floor((later.length - 1) / 2)]!;
const bytes = last.out.reduce((n, b) => n + b.length, 0);
const t0 = performance.now();
for (const b of last.out) new WebAssembly.Module(b as Uint8Array<ArrayBuffer>);
const v8Ms = performance.now() - t0;
const result = {
  pages: last.out.length, instructions: last.instructions, firstRoundMs: Math.round(times[0]!), medianMs: Math.round(median),
  usPerInstruction: +(1000 * median / last.instructions).toFixed(2), wasmBytes: bytes, bytesPerInstruction: +(bytes / last.instructions).toFixed(1),
  v8CompileMs: Math.round(v8Ms),
};
if (process.argv.includes('--json')) console.log(JSON.stringify(result));
else {
  console.log(`jit-compile: ${result.pages} kernel pages, ${result.instructions} guest instructions`);
  console.log(`  building modules: first round ${result.firstRoundMs} ms (compiler's JS still cold), then median ${result.medianMs} ms (${result.usPerInstruction} µs per instruction)`);
  console.log(`  wasm: ${result.wasmBytes} bytes, ${result.bytesPerInstruction} per instruction; V8 (Liftoff) compiles them in ${result.v8CompileMs} ms`);
}
