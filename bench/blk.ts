/**
 * virtio-blk benchmark: sequential write and read MB/s through `dd` in the Debian guest on a
 * 256 MiB raw disk, on visor and (where installed) on QEMU TCG in the same run.
 * The guest times itself with /proc/uptime around each dd, so boot time does not count.
 * Usage: npx tsx bench/blk.ts [--size MiB] [--timeout-s N] [--no-qemu | --only-qemu]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileHandle } from '../src/host/file-handle.js';
import { RawDevice } from '../src/storage/raw.js';
import { VirtioBlk } from '../src/virtio/blk/device.js';
import { VirtioMmioTransport } from '../src/virtio/mmio/transport.js';
import { guestImage, runGuest } from '../test/virtio/guest-vm.js';
import { haveQemu, qemuGuest } from './guest-qemu.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
};
const MIB = Number(arg('size', '256'));
const TIMEOUT_MS = Number(arg('timeout-s', '3600')) * 1000;

// Guest side: time each dd with the guest's own clock (uptime has 10 ms resolution).
const SCRIPT = [
  't() { cut -d" " -f1 /proc/uptime; }',
  `a=$(t); dd if=/dev/zero of=/dev/vda bs=1M count=${MIB} conv=fsync 2>/dev/null; b=$(t)`,
  'echo 3 > /proc/sys/vm/drop_caches',
  `c=$(t); dd if=/dev/vda of=/dev/null bs=1M count=${MIB} 2>/dev/null; d=$(t)`,
  'echo "BENCH write $a $b read $c $d"',
].join('; ');

function parse(out: string): { write: number; read: number } {
  const m = /BENCH write ([\d.]+) ([\d.]+) read ([\d.]+) ([\d.]+)/.exec(out);
  if (!m) throw new Error(`no BENCH line in guest output:\n${out.slice(-2000)}`);
  const [a, b, c, d] = m.slice(1).map(Number) as [number, number, number, number];
  return { write: MIB / Math.max(b - a, 0.01), read: MIB / Math.max(d - c, 0.01) };
}

const img = await guestImage();
if (!img) {
  console.log('bench/blk: no debian image in the cache; run `visor image pull debian` first');
  process.exit(process.env.CI ? 1 : 0);
}
const dir = mkdtempSync(join(tmpdir(), 'visor-bench-blk-'));
try {
  const path = join(dir, 'disk.raw');
  const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'exclusive' });
  await fh.truncate(MIB << 20);
  const disk = await RawDevice.open(fh, { readOnly: false });
  console.log(`bench/blk: ${MIB} MiB raw disk, dd bs=1M, ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}`);
  let v = { write: NaN, read: NaN };
  if (!argv.includes('--only-qemu')) {
    const r = await runGuest(img, {
      command: ['sh', '-c', SCRIPT],
      timeoutMs: TIMEOUT_MS,
      attach: (vm) => vm.attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: new VirtioBlk({ disk }), ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource })),
    });
    v = parse(r.output);
    console.log(`visor: write ${v.write.toFixed(2)} MB/s, read ${v.read.toFixed(2)} MB/s (whole run ${(r.wallMs / 1000).toFixed(1)} s, ${(r.instructions / r.wallMs / 1000).toFixed(1)} MIPS)`);
  }
  await disk.close();
  if (argv.includes('--no-qemu') || !haveQemu()) {
    console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');
  } else {
    const out = await qemuGuest(img, ['sh', '-c', SCRIPT], ['-drive', `file=${path},format=raw,if=none,id=d0,cache=writeback`, '-device', 'virtio-blk-device,drive=d0'], TIMEOUT_MS);
    const q = parse(out);
    console.log(`qemu:  write ${q.write.toFixed(2)} MB/s, read ${q.read.toFixed(2)} MB/s`);
    console.log(`ratio visor/qemu: write ${(v.write / q.write).toFixed(3)}, read ${(v.read / q.read).toFixed(3)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
