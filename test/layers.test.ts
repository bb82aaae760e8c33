import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { describe, expect, it } from 'vitest';

// docs/ARCHITECTURE.md: inner layers stay browser-safe and never reach outward.
const INNER = ['base', 'cpu', 'jit', 'machine', 'virtio', 'storage', 'net'];
const OUTER = ['images', 'guest', 'host', 'sdk', 'server', 'cli', 'web', 'testing'];
const SRC = resolve(__dirname, '..', 'src');

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (p.endsWith('.ts') && !p.endsWith('.test.ts')) yield p;
  }
}

const IMPORT_RE = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;
const NODE_BUILTINS = new Set(['fs', 'path', 'os', 'child_process', 'worker_threads', 'net', 'http', 'https', 'crypto', 'zlib', 'stream', 'events', 'util', 'url', 'buffer', 'process', 'tty', 'readline', 'dgram', 'dns', 'cluster', 'perf_hooks', 'module', 'vm']);

export function violations(): string[] {
  const found: string[] = [];
  for (const layer of INNER) {
    let files: string[] = [];
    try { files = [...walk(join(SRC, layer))]; } catch { continue; }
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(IMPORT_RE)) {
        const spec = m[1] ?? m[2] ?? m[3]!;
        const where = relative(SRC, file);
        if (spec.startsWith('node:') || NODE_BUILTINS.has(spec.split('/')[0]!)) {
          found.push(`${where} imports the Node module '${spec}'`);
        } else if (spec.startsWith('.')) {
          const target = relative(SRC, resolve(dirname(file), spec)).split(/[\\/]/)[0]!;
          if (OUTER.includes(target)) found.push(`${where} imports the outer layer '${target}' via '${spec}'`);
        }
      }
    }
  }
  return found;
}

describe('layering', () => {
  it('inner layers import no node: module and no outer layer', () => {
    expect(violations()).toEqual([]);
  });
  it('the check itself catches a violation', () => {
    const text = "import { x } from 'node:fs';\nimport y from '../cli/main.js';";
    const specs = [...text.matchAll(IMPORT_RE)].map((m) => m[1]);
    expect(specs).toEqual(['node:fs', '../cli/main.js']);
  });
});
