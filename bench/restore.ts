/**
 * Restore benchmark (issue 7 target: a 512 MiB guest restored and running in under 300 ms).
 *
 * Boots the Debian image in a 512 MiB machine until its /init starts (or --boot-seconds pass),
 * snapshots it, then restores it several times and reports:
 *   - restore core: read + verify the file, load RAM, rebuild the board (in-process);
 *   - Machine.restore(): the same plus a fresh worker thread, until the guest is running again
 *     (its instruction counter moves: at least one run slice retired), with where the time
 *     went (Machine.startTimings); and with a worker started ahead (Machine.prewarm()).
 *
 *   npx tsx bench/restore.ts [--memory MiB] [--boot-seconds S] [--snapshot FILE] [--rounds N]
 *
 * With --snapshot FILE an existing snapshot is reused (and written there when missing).
 * Machines come from the built package (dist/: `npm run build` first), as a user's do;
 * VISOR_BENCH_SRC=1 times the TypeScript sources under tsx instead. The snapshot is copied
 * uncompressed (the default) and with zlib, and each copy is timed in-process, through
 * Machine.restore() on a fresh worker (the default path) and on a prewarmed one.
 */
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { readSnapshotFile } from '../src/host/snapshot/file.js';
import { ensureImage, INIT_START_MARKER } from '../src/images/index.js';
import { MachineRunner } from '../src/sdk/runner.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : dflt;
};
const memoryMiB = Number(opt('--memory', '512'));
const bootSeconds = Number(opt('--boot-seconds', '300'));
const rounds = Number(opt('--rounds', '5'));
const snapPath = opt('--snapshot', join(tmpdir(), `visor-bench-restore-${memoryMiB}.snap`));

type MachineModule = typeof import('../src/sdk/index.js');
// What a user gets is the built package: the bench runs dist/ (npm run build first);
// VISOR_BENCH_SRC=1 runs the TypeScript under tsx (the worker then compiles it as it starts).
const sdk: MachineModule = process.env.VISOR_BENCH_SRC ? await import('../src/sdk/index.js') : await import('../dist/sdk/index.js' as string);

async function makeSnapshot(): Promise<void> {
  const img = await ensureImage('tiny', { progress: false });
  const vm = await sdk.Machine.create({ kernel: img.kernel, initrd: img.initrd, append: img.append, memoryMiB });
  let out = '';
  vm.console.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const t0 = performance.now();
  await vm.start();
  while (!out.includes(INIT_START_MARKER) && performance.now() - t0 < bootSeconds * 1000 && vm.state === 'running') {
    await new Promise((r) => setTimeout(r, 100));
  }
  const reached = out.includes(INIT_START_MARKER) ? '/init' : `${bootSeconds} s of boot`;
  await vm.pause();
  const s = await vm.snapshot(snapPath);
  await vm.kill();
  console.log(`snapshot after ${reached} (${(performance.now() - t0) / 1000 | 0} s, ${(vm.stats().instructions / 1e6).toFixed(0)} M instructions):`);
  console.log(`  ${snapPath}: ${(s.bytes / 2 ** 20).toFixed(1)} MiB, ${s.presentPages} of ${s.ramPages} pages non-zero (${((s.presentPages * 4096) / 2 ** 20).toFixed(0)} MiB), written in ${s.ms.toFixed(0)} ms`);
}

if (!existsSync(snapPath)) await makeSnapshot();
else console.log(`reusing ${snapPath} (${(statSync(snapPath).size / 2 ** 20).toFixed(1)} MiB)`);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const noEvents = { output() {}, state() {}, guest() {}, error() {} };
const fmt = (xs: number[]) => `median ${median(xs).toFixed(0)} ms of ${xs.length} [${xs.map((x) => x.toFixed(0)).join(', ')}]`;
const cpuMs = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;

// The same machine state both ways: uncompressed (the default) and zlib (compress: true).
const variants: [string, string][] = [];
for (const [label, compress] of [['uncompressed (default)', false], ['zlib', true]] as const) {
  const path = `${snapPath}.${compress ? 'zlib' : 'stored'}`;
  const vm = await sdk.Machine.restore(snapPath, { start: false });
  const s = await vm.snapshot(path, { compress });
  await vm.kill();
  console.log(`${label} copy: ${(s.bytes / 2 ** 20).toFixed(1)} MiB, written in ${s.ms.toFixed(0)} ms`);
  variants.push([label, path]);
}

/** The guest's instruction count in the snapshot (a restored, not started machine reports it). */
async function savedInstructions(path: string): Promise<number> {
  const vm = await sdk.Machine.restore(path, { start: false });
  const n = vm.stats().instructions;
  await vm.kill();
  return n;
}

/**
 * Machine.restore() until the guest has run: its instruction count passed the snapshot's (the
 * worker publishes it after each run slice). Wall and this process's CPU ms (all threads).
 */
async function restoreToRunning(path: string, n0: number): Promise<{ ms: number; cpu: number; first: number; phases: Record<string, number> }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const vm = await sdk.Machine.restore(path);
  const returned = performance.now() - t0;
  while (vm.stats().instructions <= n0 && vm.state === 'running') await new Promise((r) => setImmediate(r));
  const ms = performance.now() - t0;
  const cpu = cpuMs(process.cpuUsage(c0));
  const first = vm.stats().instructions - n0;
  const phases = { ...vm.startTimings, 'at.returned': returned, 'at.running': ms };
  await vm.kill();
  return { ms, cpu, first, phases };
}

function phaseSummary(all: Record<string, number>[]): string {
  const keys = Object.keys(all[0]!);
  return keys.map((k) => `${k} ${median(all.map((p) => p[k] ?? 0)).toFixed(0)}`).join(', ');
}

for (const [label, path] of variants) {
  const core: number[] = [];
  const coreCpu: number[] = [];
  const phases = new Map<string, number[]>();
  for (let i = 0; i < rounds; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const snap = await readSnapshotFile(path);
    const timings: Record<string, number> = { read: performance.now() - t0 };
    const r = await MachineRunner.restore(snap, noEvents, { timings });
    core.push(performance.now() - t0);
    coreCpu.push(cpuMs(process.cpuUsage(c0)));
    for (const [k, v] of Object.entries(timings)) phases.set(k, [...(phases.get(k) ?? []), v]);
    await r.kill();
  }
  const split = [...phases].map(([k, v]) => `${k} ${median(v).toFixed(0)}`).join(', ');
  console.log(`${label}: restore core in-process (read, verify, RAM, board): ${fmt(core)}; CPU median ${median(coreCpu).toFixed(0)} ms; phases (median ms): ${split}`);

  const n0 = await savedInstructions(path);
  for (const warm of [false, true]) {
    const res = [];
    for (let i = 0; i < rounds; i++) {
      if (warm) {
        sdk.Machine.prewarm(1);
        await new Promise((r) => setTimeout(r, 3000)); // let the worker load its modules
      }
      res.push(await restoreToRunning(path, n0));
    }
    console.log(`${label}: Machine.restore() to running (${warm ? 'prewarmed' : 'fresh'} worker): ${fmt(res.map((r) => r.ms))}; CPU (all threads) median ${median(res.map((r) => r.cpu)).toFixed(0)} ms; target < 300 ms`);
    console.log(`  where (median ms from the call; at.X = worker reached X): ${phaseSummary(res.map((r) => r.phases))}; the first report had run ${median(res.map((r) => r.first))} instructions`);
  }
}
