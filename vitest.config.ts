import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vitest/config';

/**
 * Inlines the hart's opcode numbers (`Op.ADD` → `33`) before esbuild sees the source.
 *
 * tsc inlines `const enum` members everywhere, so the built CLI's interpreter switch has
 * literal case labels and V8 compiles it to a jump table. Vitest transforms each file alone
 * with esbuild, which cannot inline an enum declared in another file: the cases become
 * property loads, V8 falls back to a chain of comparisons, and the hart runs ~20× slower
 * (3 vs 68 MIPS per CPU second measured on the integer loop). Tests that boot Debian need
 * the real speed, so this plugin gives them what tsc gives the build.
 */
function inlineOpcodes(): Plugin {
  const file = fileURLToPath(new URL('./src/cpu/opcodes.ts', import.meta.url));
  const text = readFileSync(file, 'utf8');
  const body = text.slice(text.indexOf('export const enum Op {') + 'export const enum Op {'.length, text.indexOf('\n}', text.indexOf('export const enum Op {')));
  const values = new Map<string, number>();
  let next = 0;
  for (const raw of body.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '').split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const m = /^([A-Z0-9_]+)\s*(?:=\s*(\d+))?$/.exec(entry);
    if (!m) throw new Error(`inlineOpcodes: cannot parse enum entry '${entry}' in ${file}`);
    next = m[2] !== undefined ? Number(m[2]) : next;
    values.set(m[1]!, next++);
  }
  return {
    name: 'visor-inline-opcodes',
    enforce: 'pre',
    transform(code, id) {
      if (!id.endsWith('.ts') || !id.includes('/src/') || !code.includes('Op.')) return undefined;
      return code.replace(/\bOp\.([A-Z0-9_]+)\b/g, (whole, name: string) => {
        const v = values.get(name);
        return v === undefined ? whole : `${v} /* ${whole} */`;
      });
    },
  };
}

export default defineConfig({
  plugins: [inlineOpcodes()],
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
