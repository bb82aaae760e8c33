/**
 * Sandbox benchmark (issue 16): what a user of `Sandbox` waits for.
 *
 *   npm run bench:sandbox -- [--image tiny] [--memory 256] [--many 20] [--mib 100] [--forks 4]
 *
 * - create → first command's result, from the image's template (built once, not counted);
 * - `commands.run('true')` round trip (median of 50, after 10 to warm up);
 * - files.write then files.read of --mib MiB (MB/s each);
 * - fork: one child, then --forks children at once (ms per child), RSS added per idle child;
 * - --many sandboxes of --memory MiB at once: RSS added per sandbox (RAM never touched costs nothing).
 *
 * Runs the built package (dist/), as the other benchmarks do.
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type * as Sdk from '../src/sdk/index.js';
import { benchArg } from './args.js';

const { Sandbox, Machine } = (await import('../dist/sdk/index.js' as string)) as typeof Sdk;

const opt = (name: string, def: string): string => benchArg(name, def);
const image = opt('image', 'tiny');
const memoryMiB = Number(opt('memory', '256'));
const many = Number(opt('many', '20'));
const mib = Number(opt('mib', '100'));
const forks = Number(opt('forks', '4'));

/**
 * The process's RSS once this thread's garbage is collected: the files step leaves hundreds of
 * MiB of buffers behind, and collecting them inside the fork step read as children costing
 * less than nothing (session 14: -7.5 MiB per child).
 */
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const rssMiB = () => {
  collectGarbage();
  return process.memoryUsage().rss / 2 ** 20;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (x: number) => `${x.toFixed(1)} ms`;
console.log(`sandbox bench: image ${image}, ${memoryMiB} MiB, ${cpus().length} CPUs (${cpus()[0]?.model}), load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);

// The template: built (one boot) on first use, not part of what is measured.
const t0 = performance.now();
await (await Sandbox.create({ image, memoryMiB, timeoutMs: 0 })).kill();
console.log(`template ready (first create, including any build): ${ms(performance.now() - t0)}`);

/** CPU ms of this process (all threads: the machines' workers too) since `from`. */
const cpuMs = (from: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1000;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let sbx: Sdk.Sandbox | undefined;
// fresh: nothing prewarmed; warm worker: Machine.prewarm (modules loaded, interpreter warmed);
// reserved: Sandbox.prewarm (the template restored, its agent connected, paused).
for (const mode of ['fresh worker', 'warm worker', 'reserved'] as const) {
  // The reserve's warm-up runs `sh -c :`: a 4th reserved create runs another first command.
  for (let i = 0; i < (mode === 'reserved' ? 4 : 3); i++) {
    const first = i === 3 ? 'ls -l /bin | wc -l' : 'true';
    await sbx?.kill();
    if (mode === 'warm worker') {
      Machine.prewarm(1);
      await sleep(5000); // its modules and warm-up
    }
    if (mode === 'reserved') {
      await Sandbox.prewarm(1, { image, memoryMiB });
      await sleep(2000); // the warm worker it also keeps, settled
    }
    const load1 = loadavg()[0]!.toFixed(2);
    const c = process.cpuUsage();
    const t = performance.now();
    sbx = await Sandbox.create({ image, memoryMiB, timeoutMs: 0 });
    const made = performance.now() - t;
    await sbx.commands.run(first);
    const wall = performance.now() - t;
    console.log(`create → first command '${first}' (${mode}): ${ms(wall)}, CPU ${ms(cpuMs(c))} (created ${made.toFixed(0)}: ${Object.entries(sbx.timings).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}; first command ${(wall - made).toFixed(0)}); load ${load1}`);
  }
}
await Sandbox.prewarm(0, { image, memoryMiB });
const s = sbx!;

for (let i = 0; i < 10; i++) await s.commands.run('true');
const rtts: number[] = [];
for (let i = 0; i < 50; i++) {
  const t = performance.now();
  await s.commands.run('true');
  rtts.push(performance.now() - t);
}
console.log(`commands.run('true'): median ${ms(median(rtts))}, min ${ms(Math.min(...rtts))}`);

// The guest's files live in its RAM (tiny's root is the initramfs): a sandbox big enough for them.
const fileBox = mib * 4 > memoryMiB ? await Sandbox.create({ image, memoryMiB: Math.max(512, mib * 4), timeoutMs: 0 }) : s;
await fileBox.commands.run('true');
const data = new Uint8Array(mib << 20);
for (let i = 0; i < data.length; i += 4096) data[i] = i >> 12;
let t = performance.now();
await fileBox.files.write('/tmp/bench.bin', data);
const wMs = performance.now() - t;
t = performance.now();
const back = await fileBox.files.read('/tmp/bench.bin', { format: 'bytes' });
const rMs = performance.now() - t;
if (back.length !== data.length || Buffer.compare(Buffer.from(back), Buffer.from(data)) !== 0) throw new Error('read back differs');
console.log(`files: write ${mib} MiB ${((mib * 1.048576) / (wMs / 1000)).toFixed(1)} MB/s, read ${((mib * 1.048576) / (rMs / 1000)).toFixed(1)} MB/s`);
await fileBox.files.remove('/tmp/bench.bin');
if (fileBox !== s) await fileBox.kill();

{
  // Children restore on warm workers (what Sandbox.prewarm keeps for forks); their RSS counts.
  // The files step's sandbox ends just before: its worker's memory goes back as it exits.
  await sleep(3000);
  const before = rssMiB();
  Machine.prewarm(1);
  await sleep(5000);
  t = performance.now();
  const c = process.cpuUsage();
  const [one] = await s.fork();
  const forked = performance.now() - t;
  await one!.commands.run('true');
  console.log(`fork ×1: ${ms(forked)} fork(), ${ms(performance.now() - t)} to the child's first command, CPU ${ms(cpuMs(c))} (snapshot ${ms(one!.timings.forkSnapshot!)}, restore ${ms(one!.timings.restore!)}, connect ${ms(one!.timings.connect!)}, new address ${ms(one!.timings.renew!)}); load ${loadavg()[0]!.toFixed(2)}`);
  Machine.prewarm(1);
  await sleep(5000);
  t = performance.now();
  const c1 = process.cpuUsage();
  const [same] = await s.fork({ newAddress: false });
  const forkedSame = performance.now() - t;
  await same!.commands.run('true');
  console.log(`fork ×1, newAddress: false: ${ms(forkedSame)} fork(), ${ms(performance.now() - t)} to the child's first command, CPU ${ms(cpuMs(c1))} (snapshot ${ms(same!.timings.forkSnapshot!)}, restore ${ms(same!.timings.restore!)}, connect ${ms(same!.timings.connect!)}); load ${loadavg()[0]!.toFixed(2)}`);
  await same!.kill();
  Machine.prewarm(forks);
  await sleep(8000);
  t = performance.now();
  const c2 = process.cpuUsage();
  const kids = await s.fork({ count: forks });
  const forkCpu = cpuMs(c2);
  const forkMs = performance.now() - t;
  await new Promise((r) => setTimeout(r, 1000));
  const added = rssMiB() - before;
  const t4 = performance.now();
  await Promise.all(kids.map((k) => k.commands.run('true')));
  const firstMs = performance.now() - t4;
  console.log(`fork ×${forks}: ${ms(forkMs)} in all, ${ms(forkMs / forks)} per child, CPU ${ms(forkCpu / forks)} per child; then a first command on every child at once ${ms(firstMs)}; RSS +${(added / (forks + 1)).toFixed(1)} MiB per idle child (${forks + 1} children)`);
  await Promise.all([one!, ...kids].map((k) => k.kill()));
}
await s.kill();

{
  Sandbox.prewarm(0);
  await new Promise((r) => setTimeout(r, 1000));
  const before = rssMiB();
  t = performance.now();
  const all: Sdk.Sandbox[] = [];
  for (let i = 0; i < many; i++) all.push(await Sandbox.create({ image, memoryMiB, timeoutMs: 0 }));
  const made = performance.now() - t;
  await Promise.all(all.map((x, i) => x.commands.run(`echo ${i}`)));
  await new Promise((r) => setTimeout(r, 2000));
  const added = rssMiB() - before;
  console.log(`${many} sandboxes of ${memoryMiB} MiB at once: created in ${ms(made)}; RSS +${added.toFixed(0)} MiB, ${(added / many).toFixed(1)} MiB per sandbox; load ${loadavg()[0]!.toFixed(1)}`);
  await Promise.all(all.map((x) => x.kill()));
}
