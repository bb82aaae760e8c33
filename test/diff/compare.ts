/**
 * Comparing the two UART dumps and explaining a mismatch.
 */
import { disasmProgram } from '../support/riscv-disasm.js';
import { lineName, type DiffProgram } from './gen.js';

export interface Mismatch {
  line: number;
  name: string;
  visor: string;
  qemu: string;
}

/** The first differing line, or undefined when the dumps are identical. */
export function firstMismatch(visor: string, qemu: string): Mismatch | undefined {
  const v = visor.split('\n');
  const q = qemu.split('\n');
  for (let i = 0; i < Math.max(v.length, q.length); i++) {
    if (v[i] !== q[i]) {
      return { line: i, name: lineName(i), visor: v[i] ?? '<missing>', qemu: q[i] ?? '<missing>' };
    }
  }
  return undefined;
}

/** A report a human can act on: how to rerun, the state set up, the body, the first difference. */
export function report(p: DiffProgram, m: Mismatch | undefined, extra: string[] = []): string {
  const lines = [
    `MISMATCH seed ${p.seed} program ${p.index} (rerun: npm run test:diff -- --seed ${p.seed} --only ${p.index})`,
    ...p.summary.map((s) => `  ${s}`),
    ...extra.map((s) => `  ${s}`),
  ];
  if (m) lines.push(`  first difference: ${m.name} (output line ${m.line}): visor ${m.visor}, QEMU ${m.qemu}`);
  lines.push('  body disassembly:');
  lines.push(disasmProgram(p.image.subarray(p.bodyStart - 0x8000_0000, p.bodyEnd - 0x8000_0000), p.bodyStart, p.marks));
  return lines.join('\n');
}
