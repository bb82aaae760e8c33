/**
 * Runs N generated programs on QEMU and on visor and compares the dumps. QEMU runs as up to
 * `jobs` child processes at once; visor runs on this thread while they execute.
 */
import { firstMismatch, report } from './compare.js';
import { dumpNames, generateProgram, type DiffOptions, type DiffProgram } from './gen.js';
import { BODY, HANDLERS, TLOG_FIELDS } from './layout.js';
import { minimize } from './minimize.js';
import { QemuRunner } from './qemu.js';
import { runOnVisor, type HartConstructor } from './visor.js';

export interface DriverOptions extends DiffOptions {
  seed: number;
  count: number;
  /** Program indices to run (default 0..count-1). */
  only?: number[];
  jobs?: number;
  /** Stop after this many mismatches (default 5). */
  maxMismatches?: number;
  log?: (line: string) => void;
  /** Shrink each mismatching program to its smallest failing body (costs some runs each). */
  minimize?: boolean;
  /** Called with each failing program (e.g. to save its image). */
  onMismatch?: (p: DiffProgram, text: string) => void;
}

export interface DriverResult {
  programs: number;
  mismatches: number;
  reports: string[];
  visorInstructions: number;
  visorMs: number;
  wallMs: number;
  modes: Record<string, number>;
  traps: number;
  /** Trap causes seen in matching programs (interrupt bit shown as "i"), for coverage. */
  causes: Record<string, number>;
}

export async function runDiff(Hart: HartConstructor, opts: DriverOptions): Promise<DriverResult> {
  const log = opts.log ?? (() => {});
  const indices = opts.only ?? Array.from({ length: opts.count }, (_, i) => i);
  const jobs = Math.max(1, opts.jobs ?? 2);
  const maxMismatches = opts.maxMismatches ?? 5;
  const qemu = new QemuRunner();
  const res: DriverResult = { programs: 0, mismatches: 0, reports: [], visorInstructions: 0, visorMs: 0, wallMs: 0, modes: {}, traps: 0, causes: {} };
  const t0 = performance.now();
  let next = 0;
  let stop = false;

  const one = async (index: number): Promise<void> => {
    const p = generateProgram(opts.seed, index, opts);
    const q = await qemu.run(p.image);
    if (stop) return;
    const t = performance.now();
    const v = runOnVisor(Hart, p.image);
    res.visorMs += performance.now() - t;
    res.visorInstructions += v.instructions;
    res.programs++;
    res.modes[p.mode] = (res.modes[p.mode] ?? 0) + 1;
    const extra: string[] = [];
    if (q.error) extra.push(`QEMU: ${q.error}`);
    const bad = handlerTrap(q.output);
    if (bad) extra.push(`harness bug: QEMU trapped inside a trap handler or the epilogue (epc ${bad})`);
    if (v.error) extra.push(`visor: ${v.error}`);
    const m = firstMismatch(v.output, q.output);
    if (!m && !q.error && !v.error && !bad) {
      res.traps += trapCount(q.output);
      for (const c of trapCauses(q.output)) res.causes[c] = (res.causes[c] ?? 0) + 1;
    } else {
      res.mismatches++;
      let text = report(p, m, extra);
      if (opts.minimize) {
        const small = await minimize(Hart, qemu, p, m, opts);
        text += `\n${report(small.program, small.mismatch, [`minimised to ${small.program.bodyEnd - small.program.bodyStart} body bytes in ${small.runs} runs`])}`;
      }
      res.reports.push(text);
      opts.onMismatch?.(p, text);
      log(text);
      if (res.mismatches >= maxMismatches) stop = true;
    }
    if (res.programs % 250 === 0) log(`... ${res.programs}/${indices.length} programs, ${res.mismatches} mismatches`);
  };

  const worker = async () => {
    while (!stop && next < indices.length) await one(indices[next++]!);
  };
  try {
    await Promise.all(Array.from({ length: jobs }, worker));
  } finally {
    qemu.dispose();
  }
  res.wallMs = performance.now() - t0;
  return res;
}

/** The epc of a logged trap taken inside the handlers/epilogue page, if any. */
function handlerTrap(output: string): string | undefined {
  const lines = output.split('\n');
  for (let i = dumpNames().length + 2; i < lines.length && lines[i] !== ''; i += TLOG_FIELDS.length) {
    const epc = Number.parseInt(lines[i]!, 16);
    if (epc >= HANDLERS && epc < BODY) return lines[i];
  }
  return undefined;
}

/** The causes in a dump's trap log. */
function trapCauses(output: string): string[] {
  const lines = output.split('\n');
  const fixed = dumpNames().length;
  const out: string[] = [];
  for (let i = fixed; i < lines.length && lines[i] !== ''; i += TLOG_FIELDS.length) {
    const v = BigInt(`0x${lines[i]}`);
    out.push(v >> 63n ? `i${v & 0xffn}` : String(v));
  }
  return out;
}

/** The trap count line of a dump (see gen.ts dumpNames). */
function trapCount(output: string): number {
  const at = dumpNames().length - 1;
  return Number.parseInt(output.split('\n')[at] ?? '0', 16) || 0;
}
