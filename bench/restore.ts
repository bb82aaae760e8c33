/**
 * Restore benchmark (issue 7 target: a 512 MiB guest restored and running in under 300 ms).
 *
 * Boots the Debian image in a 512 MiB machine until its /init starts (or --boot-seconds pass),
 * snapshots it, then restores it several times and reports:
 *   - restore core: read + verify the file, decompress RAM, rebuild the board (in-process);
 *   - Machine.restore(): the same plus a fresh worker thread, until the guest is running again
 *     (its instruction counter moves); and with a worker started ahead (Machine.prewarm()).
 *
 *   npx tsx bench/restore.ts [--memory MiB] [--boot-seconds S] [--snapshot FILE] [--rounds N]
 *
 * With --snapshot FILE an existing snapshot is reused (and written there when missing).
 * Under tsx the worker compiles TypeScript on start-up; `npm run build` first and run with
 * VISOR_BENCH_DIST=1 to time the built worker.
 */
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { readSnapshotFile } from '../src/host/snapshot-file.js';
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
const sdk: MachineModule = process.env.VISOR_BENCH_DIST ? await import('../dist/sdk/index.js' as string) : await import('../src/sdk/index.js');

async function makeSnapshot(): Promise<void> {
  const img = await ensureImage('debian', { progress: false });
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

// The same machine state without RAM compression: a larger file, a faster restore.
const storedPath = `${snapPath}.stored`;
{
  const vm = await sdk.Machine.restore(snapPath, { start: false });
  const s = await vm.snapshot(storedPath, { compress: false });
  await vm.kill();
  console.log(`uncompressed copy: ${(s.bytes / 2 ** 20).toFixed(1)} MiB, written in ${s.ms.toFixed(0)} ms`);
}

for (const [label, path] of [['zlib', snapPath], ['uncompressed', storedPath]] as const) {
  const core: number[] = [];
  const phases = new Map<string, number[]>();
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const snap = await readSnapshotFile(path);
    const timings: Record<string, number> = { 'read+verify': performance.now() - t0 };
    const r = await MachineRunner.restore(snap, noEvents, { timings });
    core.push(performance.now() - t0);
    for (const [k, v] of Object.entries(timings)) phases.set(k, [...(phases.get(k) ?? []), v]);
    await r.kill();
  }
  const split = [...phases].map(([k, v]) => `${k} ${median(v).toFixed(0)}`).join(', ');
  console.log(`${label}: restore core (read, verify, decompress RAM, rebuild board): median ${median(core).toFixed(0)} ms of ${rounds} [${core.map((x) => x.toFixed(0)).join(', ')}]; phases (median ms): ${split}`);

  const full: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const vm = await sdk.Machine.restore(path);
    const n0 = vm.stats().instructions;
    while (vm.stats().instructions === n0 && vm.state === 'running') await new Promise((r) => setImmediate(r));
    full.push(performance.now() - t0);
    await vm.kill();
  }
  console.log(`${label}: Machine.restore() to running (fresh worker): median ${median(full).toFixed(0)} ms of ${rounds} [${full.map((x) => x.toFixed(0)).join(', ')}]; target < 300 ms`);

  const warm: number[] = [];
  for (let i = 0; i < rounds; i++) {
    sdk.Machine.prewarm(1);
    await new Promise((r) => setTimeout(r, 3000)); // let the worker load its modules
    const t0 = performance.now();
    const vm = await sdk.Machine.restore(path);
    const n0 = vm.stats().instructions;
    while (vm.stats().instructions === n0 && vm.state === 'running') await new Promise((r) => setImmediate(r));
    warm.push(performance.now() - t0);
    await vm.kill();
  }
  console.log(`${label}: Machine.restore() to running (prewarmed worker): median ${median(warm).toFixed(0)} ms of ${rounds} [${warm.map((x) => x.toFixed(0)).join(', ')}]; target < 300 ms`);
}
