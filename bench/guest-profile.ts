/**
 * Where a guest spends its instructions, by kernel function: boots the `tiny` image on the
 * build's vm layer with the driver sampling the pc every N instructions (VmDriver's
 * pcSamples), runs the command, then prints /proc/kallsyms from the same boot and charges each
 * sample to its symbol (bench/guest-symbols.ts). The samples stop at the command's end, so the
 * table listing is not in the profile. This is how the module signature checks and the crypto
 * self-tests were found to be most of a boot (docs/benchmarks.md, "Guest work cut from every
 * boot").
 *
 *   npm run build && npx tsx bench/guest-profile.ts [--cmd 'sh -c "..."'] [--every 997]
 *     [--top 40] [--append 'extra kernel args'] [--initrd FILE] [--disk MiB] [--start MARK]
 *     [--usernet MiB] [--json]
 *
 * --disk attaches a sparse raw scratch disk of that size as /dev/vda (virtio-blk); --start
 * drops the samples taken before the command prints MARK (e.g. `--cmd 'echo 3 >
 * /proc/sys/vm/drop_caches; echo GO; dd if=/dev/vda of=/dev/null bs=1M' --start GO`).
 * --usernet attaches a user-network NIC (DHCP at boot) and serves MiB MiB of zeros over HTTP
 * on the host's 127.0.0.1 (bench/usernet-peer.mjs); `$URL` in --cmd becomes its address as the
 * guest sees it (e.g. `--usernet 64 --cmd 'echo GO; wget -q -O /dev/null $URL' --start GO`).
 *
 * A sampled run is slower than a plain one (the batches are cut into steps): read shares of
 * instructions here, and time with the other benches.
 */
import { existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileHandle } from '../src/host/file-handle.js';
import { RawDevice } from '../src/storage/raw.js';
import { VirtioBlk } from '../src/virtio/blk/device.js';
import { VirtioMmioTransport } from '../src/virtio/mmio/transport.js';
import { performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { HostNetworks } from '../src/host/net-attach.js';
import { GuestVm, guestImage } from '../test/virtio/guest-vm.js';
import { benchArg } from './args.js';
import { parseKallsyms, profileBySymbol } from './guest-symbols.js';

const args = process.argv.slice(2);
const cmd = benchArg('cmd', 'true');
const every = Number(benchArg('every', '997'));
const top = Number(benchArg('top', '40'));
const extra = benchArg('append', '');
const initrd = benchArg('initrd', '');
const json = args.includes('--json');
const diskMiB = Number(benchArg('disk', '0'));
const startMark = benchArg('start', '');
const usernetMiB = Number(benchArg('usernet', '0'));
if (!Number.isInteger(every) || every < 1) throw new Error('--every: a positive whole number of instructions');

const END = 'VISOR-PROFILE-END';
const vm = (await import('../dist/vm/index.js' as string)) as typeof import('../src/vm/index.js');
const img = await guestImage();
if (!img) throw new Error('no tiny image in the cache: run `npx visor image pull tiny` first');
if (initrd && !existsSync(initrd)) throw new Error(`--initrd ${initrd}: no such file`);
const image = initrd ? { ...img, initrd } : img;

const counts = new Map<number, number>();
let frozen: Map<number, number> | undefined;
let instructionsAtEnd = 0;
let instructionsAtStart = 0;
let started = startMark === '';
let out = '';
const scratch = diskMiB > 0 ? mkdtempSync(join(tmpdir(), 'visor-gprof-')) : '';
let disk: RawDevice | undefined;
if (diskMiB > 0) {
  const path = join(scratch, 'disk.raw');
  writeFileSync(path, '');
  truncateSync(path, diskMiB * 2 ** 20);
  disk = await RawDevice.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
}
let guestCmd = cmd;
let peer: import('node:child_process').ChildProcess | undefined;
let nic: Awaited<ReturnType<HostNetworks['attachSpec']>> | undefined;
if (usernetMiB > 0) {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  peer = spawn(process.execPath, [new URL('./usernet-peer.mjs', import.meta.url).pathname, 'serve', String(port), String(usernetMiB)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => peer!.stdout!.once('data', resolve));
  nic = await new HostNetworks({ crossProcess: false }).attachSpec({ user: null, publish: [], firewall: [], hostAccess: true }, 'profile');
  guestCmd = cmd.replaceAll('$URL', `http://10.0.2.2:${port}/${usernetMiB}MiB`);
}
type Vm = import('../src/machine/virt.js').VirtMachine;
const attach = (m: Vm): void => {
  if (disk) m.attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: new VirtioBlk({ disk: disk! }), ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource }));
  if (nic) m.attachVirtio(disk ? 1 : 0, (ctx) => new VirtioMmioTransport({ device: nic!.device, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource }));
};
const g: GuestVm = await GuestVm.create(image, {
  command: ['sh', '-c', `${guestCmd}; echo ${END}; cat /proc/kallsyms`],
  timeoutMs: 600_000,
  vm,
  append: [extra, nic ? 'visor.dhcp=1' : ''].filter(Boolean).join(' '),
  pcSamples: { every, counts },
  ...(disk || nic ? { attach } : {}),
  onOutput: (text) => {
    out += text;
    if (!started && out.includes(startMark)) {
      started = true;
      counts.clear();
      instructionsAtStart = g.driver.executed;
    }
    if (frozen === undefined && out.includes(END)) {
      frozen = new Map(counts);
      instructionsAtEnd = g.driver.executed - instructionsAtStart;
    }
  },
});
const t0 = performance.now();
const r = await g.run(600_000);
const ms = performance.now() - t0;
await disk?.close();
peer?.kill();
await nic?.dispose();
if (scratch) rmSync(scratch, { recursive: true, force: true });
if (frozen === undefined) throw new Error(`the command did not finish (${r.exit}): ${out.slice(-500)}`);
const table = out.slice(out.indexOf(END) + END.length);
const rows = profileBySymbol(frozen, parseKallsyms(table));
if (json) {
  console.log(JSON.stringify({ cmd, every, instructions: instructionsAtEnd, wallMs: ms, rows: rows.slice(0, top) }, null, 2));
} else {
  console.log(`${cmd}: ${(instructionsAtEnd / 1e6).toFixed(0)} M instructions to the command's end, the pc sampled every ${every} (or where the hart went idle); ${(ms / 1000).toFixed(1)} s sampled run`);
  const byModule = new Map<string, number>();
  for (const row of rows) {
    const where = row.module || (row.name.startsWith('(') ? row.name : 'kernel');
    byModule.set(where, (byModule.get(where) ?? 0) + row.share);
  }
  console.log(`by module: ${[...byModule].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([m, s]) => `${m} ${(100 * s).toFixed(1)}%`).join(', ')}`);
  for (const row of rows.slice(0, top)) console.log(`${(100 * row.share).toFixed(2).padStart(6)}%  ${row.name}${row.module ? ` [${row.module}]` : ''}`);
}

