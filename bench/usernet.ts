/**
 * User-mode networking benchmark: inside the guest, `wget -O /dev/null` of MIB MiB from an
 * HTTP server on the host's 127.0.0.1 (reached as 10.0.2.2), then an upload of MIB MiB from
 * a host client through a port forward into busybox nc in the guest; the same on QEMU
 * `-netdev user` with the same kernel and initrd, in the same run. The host's server and
 * client run in a child process (bench/usernet-peer.mjs), so neither shares an event loop
 * with a VM. Download is timed between marker lines from the host (wall, and CPU seconds of
 * the emulator), upload by the client from connect to the guest's close.
 * Usage: npm run build && npx tsx bench/usernet.ts [--mib N] [--timeout-s N] [--no-upload] [--no-qemu | --only-qemu]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { defaultAccel } from '../src/host/accel.js';
import { HostNetworks } from '../src/host/net-attach.js';
import { ensureImage } from '../src/images/index.js';
import { VirtioMmioTransport } from '../src/virtio/mmio/transport.js';
import { GuestVm } from '../test/virtio/guest-vm.js';
import { likeVisorRun } from './visor-host.js';
import { MarkerClock, haveQemu, processCpuSeconds, qemuGuest, selfCpuSeconds } from './guest-qemu.js';
import { benchArg } from './args.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string): string => benchArg(name, def);
const MIB = Number(arg('mib', '64'));
const TIMEOUT_MS = Number(arg('timeout-s', '1800')) * 1000;
const ACCEL = arg('accel', defaultAccel()) as 'interp' | 'jit';
const GUEST_PORT = 5001;
// The hart from the build: tsc inlines its opcode enum, tsx does not (see bench/blk.ts).
const vmDist = (await import('../dist/vm/index.js' as string)) as typeof import('../src/vm/index.js');

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

function peer(mode: 'serve' | 'upload', port: number): { child: ChildProcess; line: Promise<string> } {
  const child = spawn(process.execPath, [new URL('./usernet-peer.mjs', import.meta.url).pathname, mode, String(port), String(MIB)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
  return { child, line };
}

// --no-upload: the download alone.
const UPLOAD = !argv.includes('--no-upload');
const command = (httpPort: number) => ['sh', '-c', [
  `echo BENCH_D0; wget -q -O /dev/null http://10.0.2.2:${httpPort}/${MIB}MiB; echo BENCH_D1`,
  // nc's stdin stays open (a background job's would be /dev/null, whose EOF ends nc early).
  UPLOAD
    // nc -e hands the connection to a sink that reads to EOF and exits (busybox nc alone never
    // exits at the network's EOF: it goes on waiting for its stdin), in cat's large reads.
    ? `printf '#!/bin/sh\\nexec cat > /dev/null\\n' > /tmp/sink; chmod +x /tmp/sink; nc -l -p ${GUEST_PORT} -e /tmp/sink & sleep 1; echo BENCH_UP_READY; echo BENCH_WAITING; wait $!; echo BENCH_U1; echo BENCH_END`
    : 'echo BENCH_END',
].join('; ')];
// The line after the last marker: visor's console filter holds a final line back until the
// exit marker, so a marker must never be the last line.
const MARKERS = ['BENCH_D0', 'BENCH_D1', 'BENCH_UP_READY', 'BENCH_U1'];

interface Figures {
  downWall: number;
  downCpu: number;
  upWall: number;
  upCpu: number;
}

/** Runs one side: `start` boots the guest and returns when it powered off. */
async function measure(who: string, start: (httpPort: number, fwdPort: number, onOutput: (t: string) => void) => Promise<string>, cpu: () => number): Promise<Figures> {
  const httpPort = await freePort();
  const fwdPort = await freePort();
  const server = peer('serve', httpPort);
  await server.line;
  const m = new MarkerClock(MARKERS, cpu);
  // The VM's idle sleeps do not hold the event loop open: this does, until the guest is done.
  const keepAlive = setInterval(() => {}, 1000);
  let upload: Promise<number> | undefined;
  let downShown = false;
  const out = await start(httpPort, fwdPort, (t) => {
    if (process.env.BENCH_VERBOSE) process.stderr.write(t);
    m.feed(t);
    if (!downShown && m.at.has('BENCH_D1')) {
      downShown = true;
      const d = m.span('BENCH_D0', 'BENCH_D1');
      console.log(`${who}: download done: ${d.wallS.toFixed(2)} s wall, ${d.cpuS.toFixed(2)} CPU-s`);
    }
    if (!upload && m.at.has('BENCH_UP_READY')) {
      const u = peer('upload', fwdPort);
      upload = u.line.then((l) => {
        const r = /UPLOAD_S ([\d.]+)/.exec(l);
        if (!r) throw new Error(`${who}: upload failed: ${l}`);
        return Number(r[1]);
      });
    }
  });
  clearInterval(keepAlive);
  server.child.kill();
  if (UPLOAD && !upload) throw new Error(`${who}: the guest never got to the upload:\n${out.slice(-3000)}`);
  if (!m.at.has('BENCH_D1')) throw new Error(`${who}: the download did not finish:\n${out.slice(-3000)}`);
  const upS = upload ? await upload : NaN;
  const d = m.span('BENCH_D0', 'BENCH_D1');
  const u = upload ? m.span('BENCH_UP_READY', 'BENCH_U1') : { wallS: NaN, cpuS: NaN };
  const f = { downWall: d.wallS, downCpu: d.cpuS, upWall: upS, upCpu: u.cpuS };
  console.log(`${who}: download ${MIB} MiB ${f.downWall.toFixed(2)} s (${(MIB / f.downWall).toFixed(1)} MiB/s, ${f.downCpu.toFixed(2)} CPU-s); upload ${f.upWall.toFixed(2)} s (${(MIB / f.upWall).toFixed(1)} MiB/s, ≤${f.upCpu.toFixed(2)} CPU-s incl. 1 s wait)`);
  return f;
}

const img = await ensureImage('tiny', { progress: false });
console.log(`bench/usernet: ${MIB} MiB each way, ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, visor tier ${ACCEL}`);
let v: Figures | undefined;
if (!argv.includes('--only-qemu')) {
  await likeVisorRun(ACCEL);
  v = await measure(
    'visor',
    async (httpPort, fwdPort, onOutput) => {
      const nets = new HostNetworks({ crossProcess: false });
      let board: import('../src/machine/virt.js').VirtMachine | undefined;
      let g: GuestVm | undefined;
      // The hart's and the driver's counters over the download (where its time goes).
      const snap = (): Record<string, number> => ({ instructions: g!.driver.executed, idleMs: g!.driver.idleMs, tlbMisses: board!.hart.stats.tlbMisses, ...board!.hart.jitStats });
      let d0: Record<string, number> | undefined;
      let seen = '';
      const nic = await nets.attachSpec({ user: null, publish: [{ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: fwdPort, guestPort: GUEST_PORT }], firewall: [], hostAccess: true }, 'bench');
      g = await GuestVm.create(img, {
        command: command(httpPort),
        append: 'visor.dhcp=1',
        timeoutMs: TIMEOUT_MS,
        accel: ACCEL,
        vm: vmDist,
        onOutput: (t) => {
          if (seen !== 'done') {
            seen += t;
            if (!d0 && seen.includes('BENCH_D0')) d0 = snap();
            if (d0 && seen.includes('BENCH_D1')) {
              const d1 = snap();
              seen = 'done';
              console.log(`visor download counters: ${JSON.stringify(Object.fromEntries(Object.entries(d1).map(([k, v]) => [k, Math.round(v - d0![k]!)])))}`);
            }
          }
          onOutput(t);
        },
        attach: (vm) => (board = vm).attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: nic.device, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })),
      });
      // BENCH_VERBOSE: the NIC's and the NAT's counters every 5 s (where a transfer stalls).
      const watch = process.env.BENCH_VERBOSE ? setInterval(() => console.error(`counters: ${JSON.stringify(nic.counters())} device ${JSON.stringify(nic.device.counters)}`), 5000) : undefined;
      const r = await g.run(TIMEOUT_MS);
      clearInterval(watch);
      console.log(`visor counters: ${JSON.stringify(nic.counters())} device ${JSON.stringify(nic.device.counters)}`);
      await nic.dispose();
      return r.output;
    },
    selfCpuSeconds,
  );
}
if (argv.includes('--no-qemu') || !haveQemu()) {
  console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');
} else {
  let pid: number | undefined;
  const q = await measure(
    'qemu ',
    (httpPort, fwdPort, onOutput) =>
      qemuGuest(img, command(httpPort), ['-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${fwdPort}-:${GUEST_PORT}`, '-device', 'virtio-net-device,netdev=n0'], TIMEOUT_MS, 'visor.dhcp=1', {
        onOutput: (t, p) => {
          pid = p;
          onOutput(t);
        },
      }),
    () => processCpuSeconds(pid),
  );
  if (v) {
    console.log(`ratio visor/qemu time: download wall ${(v.downWall / q.downWall).toFixed(2)}, CPU ${(v.downCpu / q.downCpu).toFixed(2)}; upload wall ${(v.upWall / q.upWall).toFixed(2)}`);
  }
}
