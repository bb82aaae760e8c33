import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findCycles, importGraph, importsOf, staticClosure, type ImportEdge } from './support/import-graph.js';

// docs/ARCHITECTURE.md "Layers": inner layers stay browser-safe and never reach outward;
// every layer imports only layers below it (or itself), and no file imports itself back.
const SRC = resolve(__dirname, '..', 'src');

/** Lowest first. A layer may import only layers of a lower rank, and itself. */
const RANK: Record<string, number> = {
  base: 0,
  cpu: 1,
  jit: 2,
  machine: 3,
  storage: 3,
  virtio: 4,
  net: 4,
  vm: 5,
  // The guest protocols (boot-protocol.ts: the console's spelling; protocol.ts: the vsock
  // agent's frames) and the host's side of the agent (session, connect, the agent's binary).
  guest: 5,
  host: 6,
  // Images open disk files through host/file-handle.ts.
  images: 7,
  sdk: 8,
  server: 9,
  cli: 10,
  web: 10,
};
/** No `node:` module: these bundle for a browser. */
const INNER = new Set(['base', 'cpu', 'jit', 'machine', 'storage', 'virtio', 'net', 'vm']);
const NODE_BUILTINS = new Set(['fs', 'path', 'os', 'child_process', 'worker_threads', 'net', 'http', 'https', 'crypto', 'zlib', 'stream', 'events', 'util', 'url', 'buffer', 'process', 'tty', 'readline', 'dgram', 'dns', 'cluster', 'perf_hooks', 'module', 'vm', 'timers', 'v8']);

const layerOf = (file: string) => file.split(/[\\/]/)[0]!;

/**
 * Upward imports allowed as a dynamic import() only (loaded when called, never at load time),
 * each with its reason. images/configure.ts boots a guest through the SDK to configure a
 * rootfs, while the SDK resolves images through images/.
 */
const RUNTIME_UPWARD = new Set(['images/configure.ts -> sdk/machine.ts']);

export function violations(graph: Map<string, readonly ImportEdge[]> = importGraph(SRC)): string[] {
  const found: string[] = [];
  for (const [file, edges] of graph) {
    const from = layerOf(file);
    if (RANK[from] === undefined) {
      found.push(`${file}: layer '${from}' has no rank in test/layers.test.ts`);
      continue;
    }
    for (const e of edges) {
      if (e.spec.startsWith('node:') || NODE_BUILTINS.has(e.spec.split('/')[0]!)) {
        if (INNER.has(from)) found.push(`${file} imports the Node module '${e.spec}'`);
        continue;
      }
      if (!e.spec.startsWith('.')) continue;
      const to = layerOf(e.target);
      if (to === from) continue;
      if (e.dynamic && RUNTIME_UPWARD.has(`${file} -> ${e.target}`)) continue;
      if (RANK[to] === undefined || RANK[to]! >= RANK[from]!) found.push(`${file} (${from}) imports ${e.target} (${to}): ${from} may not depend on ${to}`);
    }
  }
  return found;
}

/** A graph from { file: [imported files] } (all value imports). */
function graphOf(files: Record<string, string[]>): Map<string, ImportEdge[]> {
  return new Map(Object.entries(files).map(([f, ts]) => [f, ts.map((t) => ({ target: t, spec: `./${t}`, typeOnly: false, dynamic: false }))]));
}

describe('layering', () => {
  it('inner layers import no node: module, and every layer imports only layers below it', () => {
    expect(violations()).toEqual([]);
  });

  it('cpu never imports jit (the hart takes its tier through cpu/tier.ts)', () => {
    const g = importGraph(SRC);
    const bad = [...g].flatMap(([f, es]) => (layerOf(f) === 'cpu' ? es.filter((e) => layerOf(e.target) === 'jit').map((e) => `${f} -> ${e.target}`) : []));
    expect(bad).toEqual([]);
  });

  it('the checks catch a violation', () => {
    const text = "import { x } from 'node:fs';\nimport y from '../cli/main.js';\nimport type { Z } from '../jit/jit.js';\nconst m = import('../images/index.js');";
    const edges = importsOf(text, resolve(SRC, 'cpu', 'hart.ts'), SRC);
    expect(edges.map((e) => [e.target, e.typeOnly, e.dynamic])).toEqual([
      ['node:fs', false, false], ['cli/main.ts', false, false], ['jit/jit.ts', true, false], ['images/index.ts', false, true],
    ]);
    expect(violations(new Map([['cpu/hart.ts', edges]]))).toEqual([
      "cpu/hart.ts imports the Node module 'node:fs'",
      'cpu/hart.ts (cpu) imports cli/main.ts (cli): cpu may not depend on cli',
      'cpu/hart.ts (cpu) imports jit/jit.ts (jit): cpu may not depend on jit',
      'cpu/hart.ts (cpu) imports images/index.ts (images): cpu may not depend on images',
    ]);
  });
});

describe('import cycles', () => {
  it('there are none in src/ (value imports; type-only imports are erased)', () => {
    expect(findCycles(importGraph(SRC))).toEqual([]);
  });

  it('the check finds a planted cycle, and only through value imports', () => {
    const g = graphOf({ 'a.ts': ['b.ts'], 'b.ts': ['c.ts'], 'c.ts': ['a.ts', 'd.ts'], 'd.ts': [], 'e.ts': ['e.ts'] });
    expect(findCycles(g)).toEqual([['a.ts', 'b.ts', 'c.ts', 'a.ts'], ['e.ts', 'e.ts']]);
    // The same edge as a type-only import is no cycle.
    g.set('c.ts', [{ target: 'a.ts', spec: './a.ts', typeOnly: true, dynamic: false }]);
    expect(findCycles(g)).toEqual([['e.ts', 'e.ts']]);
    // Planted in the real graph: cpu/decoder.ts importing cpu/hart.ts back.
    const real = importGraph(SRC);
    real.set('cpu/decoder.ts', [...real.get('cpu/decoder.ts')!, { target: 'cpu/hart.ts', spec: './hart.js', typeOnly: false, dynamic: false }]);
    const cycles = findCycles(real);
    expect(cycles.length).toBe(1);
    expect(cycles[0]).toContain('cpu/decoder.ts');
    expect(cycles[0]).toContain('cpu/hart.ts');
  });
});

describe("import 'visor'", () => {
  it('loads the SDK on the calling thread, not the emulator (that runs on the machine\'s worker)', () => {
    const loaded = [...staticClosure(importGraph(SRC), 'sdk/index.ts')];
    // The config's validation parses MACs, port forwards and firewall rules with net/'s own
    // parsers (pure functions, no device or network state): those load, nothing else of net/.
    const configParsers = new Set(['net/mac.ts', 'net/user/spec.ts', 'net/user/firewall.ts', 'net/user/packet.ts']);
    const emulator = loaded.filter((f) => (/^(cpu|jit|virtio|storage|net)\//.test(f) && !configParsers.has(f)) || f === 'machine/virt.ts' || f === 'sdk/runner.ts' || f === 'vm/driver.ts' || f === 'vm/assembler.ts');
    expect(emulator).toEqual([]);
    expect(loaded).toContain('sdk/machine.ts');
  });
});
