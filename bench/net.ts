/**
 * virtio-net benchmark: TCP throughput between two Debian guests on one visor switch (both
 * VMs in this process), and between two QEMU TCG guests joined by a socket netdev where QEMU
 * is installed. Guest B pipes dd through busybox nc to guest A; B times it with /proc/uptime.
 * Usage: npx tsx bench/net.ts [--mib N] [--timeout-s N] [--no-qemu | --only-qemu]
 */
import { cpus } from 'node:os';
import { L2Switch } from '../src/net/switch.js';
import { stableMac } from '../src/net/mac.js';
import { VirtioMmioTransport } from '../src/virtio/mmio/transport.js';
import { VirtioNet } from '../src/virtio/net/device.js';
import { GuestVm, guestImage } from '../test/virtio/guest-vm.js';
import { haveQemu, qemuGuest } from './guest-qemu.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
};
const MIB = Number(arg('mib', '16'));
const TIMEOUT_MS = Number(arg('timeout-s', '3600')) * 1000;

const SERVER = ['sh', '-c', 'nc -l -p 5001 > /dev/null; echo SERVER_DONE'];
const CLIENT = ['sh', '-c', [
  't() { cut -d" " -f1 /proc/uptime; }',
  'until ping -c 1 -W 1 10.0.9.1 >/dev/null 2>&1; do sleep 1; done',
  'sleep 1',
  `a=$(t); dd if=/dev/zero bs=64k count=${MIB * 16} 2>/dev/null | nc 10.0.9.1 5001; b=$(t)`,
  'echo "BENCH $a $b"',
].join('; ')];

function parse(out: string): number {
  const m = /BENCH ([\d.]+) ([\d.]+)/.exec(out);
  if (!m) throw new Error(`no BENCH line in guest output:\n${out.slice(-2000)}`);
  return MIB / Math.max(Number(m[2]) - Number(m[1]), 0.01);
}

const img = await guestImage();
if (!img) {
  console.log('bench/net: no debian image in the cache; run `visor image pull debian` first');
  process.exit(process.env.CI ? 1 : 0);
}
console.log(`bench/net: ${MIB} MiB over TCP between two guests, ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}`);
const ONLY_QEMU = argv.includes('--only-qemu');
const sw = new L2Switch('bench');
const nic = (name: string) => (vm: import('../src/machine/virt.js').VirtMachine) => {
  const net = new VirtioNet({ mac: stableMac(name) });
  net.connect(sw.attach((f) => net.receive(f), name));
  vm.attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: net, ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource }));
};
let v = NaN;
if (!ONLY_QEMU) {
  const server = await GuestVm.create(img, { command: SERVER, append: 'visor.ip=10.0.9.1/24', timeoutMs: TIMEOUT_MS, attach: nic('bench-a') });
  const client = await GuestVm.create(img, { command: CLIENT, append: 'visor.ip=10.0.9.2/24', timeoutMs: TIMEOUT_MS, attach: nic('bench-b') });
  const [, c] = await Promise.all([server.run(TIMEOUT_MS), client.run(TIMEOUT_MS)]);
  v = parse(c.output);
  console.log(`visor: ${v.toFixed(2)} MB/s (client run ${(c.wallMs / 1000).toFixed(1)} s)`);
}
if (argv.includes('--no-qemu') || !haveQemu()) {
  console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');
} else {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const nd = (mode: string, mac: string) => ['-netdev', `socket,id=n0,${mode}=127.0.0.1:${port}`, '-device', `virtio-net-device,netdev=n0,mac=${mac}`];
  const srv = qemuGuest(img, SERVER, nd('listen', '02:00:00:00:09:01'), TIMEOUT_MS, 'visor.ip=10.0.9.1/24');
  await new Promise((r) => setTimeout(r, 500));
  const cl = await qemuGuest(img, CLIENT, nd('connect', '02:00:00:00:09:02'), TIMEOUT_MS, 'visor.ip=10.0.9.2/24');
  await srv;
  const q = parse(cl);
  console.log(`qemu:  ${q.toFixed(2)} MB/s`);
  console.log(`ratio visor/qemu: ${(v / q).toFixed(3)}`);
}
