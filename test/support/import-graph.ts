/**
 * The import graph of src/ as text (no TypeScript compiler needed): each file's relative
 * imports, value and type-only apart. The layering test checks directions and cycles on it.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

export interface ImportEdge {
  /** Path relative to src/, or the bare specifier ('node:fs', 'zod'). */
  target: string;
  spec: string;
  /** `import type` / `export type`: erased by tsc, no load at run time. */
  typeOnly: boolean;
  /** `import('…')`: loaded when the code runs there, not with the importing module. */
  dynamic: boolean;
}

const IMPORT_RE = /(?:^|\n)\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g;

/** Every import in `text`; `file` is its path, for resolving relative specifiers against `root`. */
export function importsOf(text: string, file: string, root: string): ImportEdge[] {
  const out: ImportEdge[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[4] ?? m[5] ?? m[6]!;
    // `import { type A, type B } from` is type-only too; a mixed list is not.
    const names = m[3] ?? '';
    const braced = /^\{([\s\S]*)\}$/.exec(names.trim());
    const allTypes = braced !== null && braced[1]!.split(',').map((n) => n.trim()).filter(Boolean).every((n) => n.startsWith('type '));
    const typeOnly = m[2] !== undefined || allTypes;
    const target = spec.startsWith('.') ? relative(root, resolve(dirname(file), spec)).replace(/\.js$/, '.ts') : spec;
    out.push({ target, spec, typeOnly, dynamic: m[5] !== undefined });
  }
  return out;
}

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (p.endsWith('.ts') && !p.endsWith('.test.ts')) yield p;
  }
}

/** The files loading `entry` loads with it (static value imports, followed to the end). */
export function staticClosure(graph: Map<string, readonly ImportEdge[]>, entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const e of graph.get(f) ?? []) if (!e.typeOnly && !e.dynamic && graph.has(e.target)) todo.push(e.target);
  }
  return seen;
}

/** src/'s graph: file (relative to src/) → its imports. Tests are not part of it. */
export function importGraph(root: string): Map<string, ImportEdge[]> {
  const g = new Map<string, ImportEdge[]>();
  for (const file of walk(root)) g.set(relative(root, file), importsOf(readFileSync(file, 'utf8'), file, root));
  return g;
}

/**
 * The cycles among value imports (what runs at load time): each as the files around it,
 * first file repeated at the end. Tarjan's strongly connected components, then one cycle
 * through each component of more than one file (or a file importing itself).
 */
export function findCycles(graph: Map<string, readonly { target: string; typeOnly: boolean; dynamic?: boolean }[]>): string[][] {
  // A dynamic import() loads when called, not at load time: no load-order cycle through it.
  const next = (f: string) => (graph.get(f) ?? []).filter((e) => !e.typeOnly && e.dynamic !== true && graph.has(e.target)).map((e) => e.target);
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const comps: string[][] = [];
  const strong = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || next(v).includes(v)) comps.push(comp);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) strong(v);
  // One concrete cycle per component: a path from its first file back to it, inside the component.
  return comps.map((comp) => {
    const inComp = new Set(comp);
    const start = comp.sort()[0]!;
    const prev = new Map<string, string>();
    const queue = [start];
    const seen = new Set([start]);
    while (queue.length) {
      const v = queue.shift()!;
      for (const w of next(v)) {
        if (!inComp.has(w)) continue;
        if (w === start) {
          const path = [start];
          for (let u: string | undefined = v; u !== undefined && u !== start; u = prev.get(u)) path.splice(1, 0, u);
          return [...path, start];
        }
        if (!seen.has(w)) {
          seen.add(w);
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    return [...comp, comp[0]!];
  });
}
