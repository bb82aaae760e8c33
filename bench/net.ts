/**
 * virtio-net benchmark: TCP throughput between two Debian guests on one visor switch (both
 * VMs in this process), and between two QEMU TCG guests joined by a socket netdev where QEMU
 * is installed. Guest B pipes dd through busybox nc to guest A. The transfer is timed from the
 * host between marker lines B prints around it (wall seconds, and CPU seconds of the
 * emulator: this process for visor, both QEMU processes for QEMU); B's /proc/uptime figure
 * is printed beside.
 * Usage: npm run build && npx tsx bench/net.ts [--mib N] [--timeout-s N] [--no-qemu | --only-qemu] [--accel interp|jit]
 * bench/parity.ts imports netVisor/netQemu from here.
 */
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import type { GuestImage } from '../src/images/index.js';
import { defaultAccel } from '../src/host/accel.js';
import { L2Switch } from '../src/net/switch.js';
import { stableMac } from '../src/net/mac.js';
import { VirtioMmioTransport } from '../src/virtio/mmio/transport.js';
import { VirtioNet } from '../src/virtio/net/device.js';
import { GuestVm, guestImage } from '../test/virtio/guest-vm.js';
import { likeVisorRun } from './visor-host.js';
import { SETTLE, type Span } from './guest-cpu.js';
import { MarkerClock, haveQemu, processCpuSeconds, qemuGuest, selfCpuSeconds } from './guest-qemu.js';
import { benchArg } from './args.js';

// The hart from the build: tsc inlines its opcode enum, tsx does not (see bench/blk.ts).
const builtVm = async () => (await import('../dist/vm/index.js' as string)) as typeof import('../src/vm/index.js');

export interface NetOptions { mib: number; accel?: 'interp' | 'jit'; timeoutMs?: number }

const SERVER = ['sh', '-c', `${SETTLE}; nc -l -p 5001 > /dev/null; echo SERVER_DONE`];
const client = (mib: number) => ['sh', '-c', [
  SETTLE,
  't() { cut -d" " -f1 /proc/uptime; }',
  'until ping -c 1 -W 1 10.0.9.1 >/dev/null 2>&1; do sleep 1; done',
  'sleep 1',
  `echo BENCH_N0; a=$(t); dd if=/dev/zero bs=64k count=${mib * 16} 2>/dev/null | nc 10.0.9.1 5001; b=$(t); echo BENCH_N1`,
  'echo "BENCH guest $a $b"',
].join('; ')];
const MARKERS = ['BENCH_N0', 'BENCH_N1'];

function span(out: string, m: MarkerClock): Span {
  const g = /BENCH guest ([\d.]+) ([\d.]+)/.exec(out);
  if (!g) throw new Error(`no BENCH line in guest output:\n${out.slice(-2000)}`);
  return { ...m.span('BENCH_N0', 'BENCH_N1'), guestS: Number(g[2]) - Number(g[1]) };
}

/** Two visor guests (harts from dist/) on one L2 switch in this process; CPU is this process's. */
export async function netVisor(img: GuestImage, o: NetOptions): Promise<Span> {
  const timeoutMs = o.timeoutMs ?? 3_600_000;
  const accel = o.accel ?? defaultAccel();
  await likeVisorRun(accel);
  const vm = await builtVm();
  const sw = new L2Switch('bench');
  const nic = (name: string) => (machine: import('../src/machine/virt.js').VirtMachine) => {
    const net = new VirtioNet({ mac: stableMac(name) });
    net.connect(sw.attach((f) => net.receive(f), name));
    machine.attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: net, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource }));
  };
  const m = new MarkerClock(MARKERS, selfCpuSeconds);
  const server = await GuestVm.create(img, { command: SERVER, append: 'visor.ip=10.0.9.1/24', timeoutMs, attach: nic('bench-a'), accel, vm });
  const cl = await GuestVm.create(img, { command: client(o.mib), append: 'visor.ip=10.0.9.2/24', timeoutMs, attach: nic('bench-b'), accel, vm, onOutput: (t) => m.feed(t) });
  const [, c] = await Promise.all([server.run(timeoutMs), cl.run(timeoutMs)]);
  return span(c.output, m);
}

/** Two QEMU TCG guests joined by a socket netdev; CPU is both processes'. */
export async function netQemu(img: GuestImage, o: NetOptions): Promise<Span> {
  const timeoutMs = o.timeoutMs ?? 3_600_000;
  const port = 20000 + Math.floor(Math.random() * 20000);
  const nd = (mode: string, mac: string) => ['-netdev', `socket,id=n0,${mode}=127.0.0.1:${port}`, '-device', `virtio-net-device,netdev=n0,mac=${mac}`];
  let serverPid: number | undefined;
  let clientPid: number | undefined;
  // The server QEMU powers off as soon as nc ends, often before the client prints its end
  // marker: keep its last reading.
  let serverCpu = 0;
  const sample = setInterval(() => {
    const c = processCpuSeconds(serverPid);
    if (!Number.isNaN(c)) serverCpu = c;
  }, 100);
  const m = new MarkerClock(MARKERS, () => {
    const c = processCpuSeconds(serverPid);
    if (!Number.isNaN(c)) serverCpu = c;
    return serverCpu + processCpuSeconds(clientPid);
  });
  try {
    const srv = qemuGuest(img, SERVER, nd('listen', '02:00:00:00:09:01'), timeoutMs, 'visor.ip=10.0.9.1/24', { onOutput: (_t, p) => (serverPid = p) });
    await new Promise((r) => setTimeout(r, 500));
    const cl = await qemuGuest(img, client(o.mib), nd('connect', '02:00:00:00:09:02'), timeoutMs, 'visor.ip=10.0.9.2/24', {
      onOutput: (t, p) => {
        clientPid = p;
        m.feed(t);
      },
    });
    await srv;
    return span(cl, m);
  } finally {
    clearInterval(sample);
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, def: string): string => benchArg(name, def);
  const MIB = Number(arg('mib', '16'));
  const o: NetOptions = { mib: MIB, timeoutMs: Number(arg('timeout-s', '3600')) * 1000, accel: arg('accel', defaultAccel()) as 'interp' | 'jit' };
  const figures = (s: Span) => ({ wall: MIB / s.wallS, cpu: MIB / s.cpuS, guest: MIB / Math.max(s.guestS, 0.01) });
  const show = (who: string, f: ReturnType<typeof figures>) =>
    console.log(`${who}: ${f.wall.toFixed(3)} MB/s (${f.cpu.toFixed(3)} per CPU-s of both VMs); guest clock ${f.guest.toFixed(3)} MB/s`);

  const img = await guestImage();
  if (!img) {
    console.log('bench/net: no tiny image in the cache; run `visor image pull tiny` first');
    process.exit(process.env.CI ? 1 : 0);
  }
  console.log(`bench/net: ${MIB} MiB over TCP between two guests, ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, visor tier ${o.accel}`);
  let v: ReturnType<typeof figures> | undefined;
  if (!argv.includes('--only-qemu')) {
    v = figures(await netVisor(img, o));
    show('visor', v);
  }
  if (argv.includes('--no-qemu') || !haveQemu()) {
    console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');
    return;
  }
  const q = figures(await netQemu(img, o));
  show('qemu ', q);
  if (v) console.log(`ratio visor/qemu: wall ${(v.wall / q.wall).toFixed(4)}, per CPU-s ${(v.cpu / q.cpu).toFixed(4)}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
