/**
 * Where a sandbox's create and fork spend their time (issue 16): each step's wall time and
 * this process's CPU (all threads) over it, for
 *   cold    a create on a fresh worker (nothing prewarmed);
 *   warm    a create on a prewarmed worker (Machine.prewarm: modules loaded, interpreter warmed);
 *   reserve a create that takes a sandbox restored ahead of need (Sandbox.prewarm);
 *   fork    one child of a running sandbox (warm workers), to its first command.
 * The worker's own steps come from Machine.startTimings (`at.X`: ms from the restore call to
 * the worker reaching X; the rest are MachineRunner.restore's phases).
 *
 *   npm run build && npx tsx bench/sandbox-profile.ts [--runs 3] [--memory 256] [--only cold,warm,reserve,fork]
 *
 * Add `node --cpu-prof --cpu-prof-dir DIR` (NODE_OPTIONS) for V8 profiles of every thread.
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type * as Sdk from '../src/sdk/index.js';
import { benchArg } from './args.js';

const { Sandbox, Machine } = (await import('../dist/sdk/index.js' as string)) as typeof Sdk;

const opt = (name: string, def: string): string => benchArg(name, def);
const runs = Number(opt('runs', '3'));
const memoryMiB = Number(opt('memory', '256'));
const only = new Set(opt('only', 'cold,warm,reserve,fork').split(','));
const image = 'tiny';

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ');
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');

/** Wall and CPU ms of each awaited step. */
class Steps {
  readonly wall: Record<string, number> = {};
  readonly cpu: Record<string, number> = {};
  private t = performance.now();
  private c = cpu();
  mark(name: string): void {
    const t = performance.now();
    const c = cpu();
    this.wall[name] = t - this.t;
    this.cpu[name] = c - this.c;
    this.t = t;
    this.c = c;
  }
  total(): { wall: number; cpu: number } {
    return { wall: Object.values(this.wall).reduce((a, b) => a + b, 0), cpu: Object.values(this.cpu).reduce((a, b) => a + b, 0) };
  }
}

function report(what: string, s: Steps, sb: Sdk.Sandbox): void {
  const t = s.total();
  console.log(`${what}: wall ${t.wall.toFixed(0)} ms, CPU ${t.cpu.toFixed(0)} ms | steps wall {${fmt(s.wall)}} cpu {${fmt(s.cpu)}}`);
  console.log(`  sandbox {${fmt(sb.timings)}}`);
  console.log(`  worker {${fmt(sb.machine.startTimings)}}; jit modules compiled ${sb.machine.stats().jit.modulesCompiled}; load ${load()}`);
}

console.log(`sandbox profile: ${image}, ${memoryMiB} MiB, load ${load()}`);
// The template (and the process's shared JIT code): one sandbox that ran a few commands.
const seed = await Sandbox.create({ image, memoryMiB, timeoutMs: 0 });
for (let i = 0; i < 3; i++) await seed.commands.run('true');

async function create(what: string): Promise<void> {
  const s = new Steps();
  const sb = await Sandbox.create({ image, memoryMiB, timeoutMs: 0 });
  s.mark('create');
  await sb.commands.run('true');
  s.mark('first');
  await sb.commands.run('true');
  s.mark('second');
  report(what, s, sb);
  await sb.kill();
}

if (only.has('cold')) for (let i = 0; i < runs; i++) await create('cold create');
if (only.has('warm')) {
  for (let i = 0; i < runs; i++) {
    Machine.prewarm(1);
    await sleep(4000); // the warm worker loads and warms up
    await create('warm-worker create');
  }
}
if (only.has('reserve')) {
  for (let i = 0; i < runs; i++) {
    await Sandbox.prewarm(1, { image, memoryMiB });
    await sleep(2000);
    await create('reserved create');
  }
  await Sandbox.prewarm(0, { image, memoryMiB });
}
if (only.has('fork')) {
  for (let i = 0; i < runs; i++) {
    Machine.prewarm(1);
    await sleep(4000);
    const s = new Steps();
    const [child] = await seed.fork();
    s.mark('fork');
    await child!.commands.run('true');
    s.mark('first');
    report('fork', s, child!);
    await child!.kill();
  }
}
await seed.kill();
