/**
 * virtio-blk benchmark: sequential write and read MB/s through `dd` in the Debian guest on a
 * 256 MiB raw disk, on visor and (where installed) on QEMU TCG in the same run.
 * Each dd is timed from the host between marker lines the guest prints around it (wall
 * seconds, and the CPU seconds the emulator used meanwhile), so boot time does not count and
 * a guest clock paced by visor's progress cannot flatter it; the guest's own /proc/uptime
 * figure is printed beside.
 * Usage: npm run build && npx tsx bench/blk.ts [--size MiB] [--timeout-s N] [--no-qemu | --only-qemu] [--accel interp|jit]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultAccel } from '../src/host/accel.js';
import { NodeFileHandle } from '../src/host/file-handle.js';
import { RawDevice } from '../src/storage/raw.js';
import { VirtioBlk } from '../src/virtio/blk/device.js';
import { VirtioMmioTransport } from '../src/virtio/mmio/transport.js';
import { guestImage, runGuest } from '../test/virtio/guest-vm.js';
import { MarkerClock, haveQemu, processCpuSeconds, qemuGuest, selfCpuSeconds } from './guest-qemu.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
};
const MIB = Number(arg('size', '256'));
const TIMEOUT_MS = Number(arg('timeout-s', '3600')) * 1000;
const ACCEL = arg('accel', defaultAccel()) as 'interp' | 'jit';
// The hart from the build (`npm run build`): tsc inlines its opcode enum, which tsx does not
// (the interpreter runs many times slower from sources; see src/sdk/machine.ts).
const vmDist = (await import('../dist/vm/index.js' as string)) as typeof import('../src/vm/index.js');

// Markers around each dd; the guest's own clock (uptime, 10 ms resolution) rides along.
const SCRIPT = [
  't() { cut -d" " -f1 /proc/uptime; }',
  `echo BENCH_W0; a=$(t); dd if=/dev/zero of=/dev/vda bs=1M count=${MIB} conv=fsync 2>/dev/null; b=$(t); echo BENCH_W1`,
  'echo 3 > /proc/sys/vm/drop_caches',
  `echo BENCH_R0; c=$(t); dd if=/dev/vda of=/dev/null bs=1M count=${MIB} 2>/dev/null; d=$(t); echo BENCH_R1`,
  'echo "BENCH guest write $a $b read $c $d"',
].join('; ');
const MARKERS = ['BENCH_W0', 'BENCH_W1', 'BENCH_R0', 'BENCH_R1'];

interface Figures { write: number; read: number; writeCpu: number; readCpu: number; guestWrite: number; guestRead: number }

function figures(out: string, m: MarkerClock): Figures {
  const g = /BENCH guest write ([\d.]+) ([\d.]+) read ([\d.]+) ([\d.]+)/.exec(out);
  if (!g) throw new Error(`no BENCH line in guest output:\n${out.slice(-2000)}`);
  const [a, b, c, d] = g.slice(1).map(Number) as [number, number, number, number];
  const w = m.span('BENCH_W0', 'BENCH_W1');
  const r = m.span('BENCH_R0', 'BENCH_R1');
  return {
    write: MIB / w.wallS, read: MIB / r.wallS, writeCpu: MIB / w.cpuS, readCpu: MIB / r.cpuS,
    guestWrite: MIB / Math.max(b - a, 0.01), guestRead: MIB / Math.max(d - c, 0.01),
  };
}

const show = (who: string, f: Figures) =>
  console.log(`${who}: write ${f.write.toFixed(2)} MB/s (${f.writeCpu.toFixed(2)} per CPU-s), read ${f.read.toFixed(2)} MB/s (${f.readCpu.toFixed(2)} per CPU-s); guest clock: write ${f.guestWrite.toFixed(2)}, read ${f.guestRead.toFixed(2)}`);

const img = await guestImage();
if (!img) {
  console.log('bench/blk: no tiny image in the cache; run `visor image pull tiny` first');
  process.exit(process.env.CI ? 1 : 0);
}
const dir = mkdtempSync(join(tmpdir(), 'visor-bench-blk-'));
try {
  const path = join(dir, 'disk.raw');
  const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'exclusive' });
  await fh.truncate(MIB << 20);
  const disk = await RawDevice.open(fh, { readOnly: false });
  console.log(`bench/blk: ${MIB} MiB raw disk, dd bs=1M, ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, visor tier ${ACCEL}`);
  let v: Figures | undefined;
  if (!argv.includes('--only-qemu')) {
    const m = new MarkerClock(MARKERS, selfCpuSeconds);
    const r = await runGuest(img, {
      command: ['sh', '-c', SCRIPT],
      timeoutMs: TIMEOUT_MS,
      onOutput: (t) => m.feed(t),
      accel: ACCEL,
      vm: vmDist,
      attach: (vm) => vm.attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: new VirtioBlk({ disk }), ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })),
    });
    v = figures(r.output, m);
    show('visor', v);
    console.log(`visor whole run: ${(r.wallMs / 1000).toFixed(1)} s, ${(r.instructions / r.wallMs / 1000).toFixed(1)} MIPS`);
  }
  await disk.close();
  if (argv.includes('--no-qemu') || !haveQemu()) {
    console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');
  } else {
    let pid: number | undefined;
    const m = new MarkerClock(MARKERS, () => processCpuSeconds(pid));
    const out = await qemuGuest(img, ['sh', '-c', SCRIPT], ['-drive', `file=${path},format=raw,if=none,id=d0,cache=writeback`, '-device', 'virtio-blk-device,drive=d0'], TIMEOUT_MS, '', {
      onOutput: (t, p) => {
        pid = p;
        m.feed(t);
      },
    });
    const q = figures(out, m);
    show('qemu ', q);
    if (v) {
      console.log(`ratio visor/qemu, wall: write ${(v.write / q.write).toFixed(4)}, read ${(v.read / q.read).toFixed(4)}`);
      console.log(`ratio visor/qemu, per CPU-s: write ${(v.writeCpu / q.writeCpu).toFixed(4)}, read ${(v.readCpu / q.readCpu).toFixed(4)}`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
