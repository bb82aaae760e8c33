/**
 * virtio-blk benchmark: sequential write and read MB/s through `dd` in the Debian guest on a
 * 256 MiB raw disk, on visor and (where installed) on QEMU TCG in the same run.
 * Each dd is timed from the host between marker lines the guest prints around it (wall
 * seconds, and the CPU seconds the emulator used meanwhile), so boot time does not count and
 * a guest clock paced by visor's progress cannot flatter it; the guest's own /proc/uptime
 * figure is printed beside.
 * Usage: npm run build && npx tsx bench/blk.ts [--size MiB] [--timeout-s N] [--no-qemu | --only-qemu] [--accel interp|jit]
 * bench/parity.ts imports blkVisor/blkQemu from here (its read-only row).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { GuestImage } from '../src/images/index.js';
import type { VirtMachine } from '../src/machine/virt.js';
import { defaultAccel } from '../src/host/accel.js';
import { NodeFileHandle } from '../src/host/file-handle.js';
import { RawDevice } from '../src/storage/raw.js';
import { VirtioBlk } from '../src/virtio/blk/device.js';
import { VirtioMmioTransport } from '../src/virtio/mmio/transport.js';
import { guestImage, runGuest } from '../test/virtio/guest-vm.js';
import { SETTLE, type Span } from './guest-cpu.js';
import { likeVisorRun } from './visor-host.js';
import { MarkerClock, haveQemu, processCpuSeconds, qemuGuest, selfCpuSeconds } from './guest-qemu.js';
import { benchArg } from './args.js';

// The hart from the build (`npm run build`): tsc inlines its opcode enum, which tsx does not
// (the interpreter runs many times slower from sources; see src/sdk/machine.ts).
const builtVm = async () => (await import('../dist/vm/index.js' as string)) as typeof import('../src/vm/index.js');

export interface BlkOptions {
  /** Disk size and bytes moved by each dd, in MiB. */
  mib: number;
  /** Write the disk (dd from /dev/zero, conv=fsync) before reading it. */
  write: boolean;
  accel?: 'interp' | 'jit';
  timeoutMs?: number;
}

// Markers around each dd; the guest's own clock (uptime, 10 ms resolution) rides along.
function script(o: BlkOptions): string {
  return [
    SETTLE,
    't() { cut -d" " -f1 /proc/uptime; }',
    ...(o.write ? [`echo BENCH_W0; a=$(t); dd if=/dev/zero of=/dev/vda bs=1M count=${o.mib} conv=fsync 2>/dev/null; b=$(t); echo BENCH_W1`] : ['a=0; b=0']),
    'echo 3 > /proc/sys/vm/drop_caches',
    `echo BENCH_R0; c=$(t); dd if=/dev/vda of=/dev/null bs=1M count=${o.mib} 2>/dev/null; d=$(t); echo BENCH_R1`,
    'echo "BENCH guest write $a $b read $c $d"',
  ].join('; ');
}
const markers = (o: BlkOptions) => [...(o.write ? ['BENCH_W0', 'BENCH_W1'] : []), 'BENCH_R0', 'BENCH_R1'];

export interface BlkSpans { write?: Span; read: Span }

function spans(out: string, m: MarkerClock, o: BlkOptions): BlkSpans {
  const g = /BENCH guest write ([\d.]+) ([\d.]+) read ([\d.]+) ([\d.]+)/.exec(out);
  if (!g) throw new Error(`no BENCH line in guest output:\n${out.slice(-2000)}`);
  const [a, b, c, d] = g.slice(1).map(Number) as [number, number, number, number];
  return {
    ...(o.write ? { write: { ...m.span('BENCH_W0', 'BENCH_W1'), guestS: b - a } } : {}),
    read: { ...m.span('BENCH_R0', 'BENCH_R1'), guestS: d - c },
  };
}

/** A sparse raw disk of `mib` MiB in a temporary directory, and a function removing it. */
export async function scratchDisk(mib: number): Promise<{ path: string; remove(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'visor-bench-blk-'));
  const path = join(dir, 'disk.raw');
  const fh = await NodeFileHandle.open(path, { readOnly: false, create: 'exclusive' });
  await fh.truncate(mib << 20);
  await fh.close();
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The hart's and the JIT's counters over the read phase (where its exits go). */
export interface ReadCounters { instructions: number; tlbMisses: number; stepExits: number; noCodeExits: number; modulesCompiled: number }

/** The dd phases on visor (the hart from dist/, a virtio-blk disk on `path`). */
export async function blkVisor(img: GuestImage, path: string, o: BlkOptions): Promise<BlkSpans & { wallMs: number; instructions: number; readCounters?: ReadCounters }> {
  await likeVisorRun(o.accel ?? defaultAccel());
  const disk = await RawDevice.open(await NodeFileHandle.open(path, { readOnly: false }), { readOnly: false });
  try {
    const m = new MarkerClock(markers(o), selfCpuSeconds);
    let board: VirtMachine | undefined;
    const counters = (): ReadCounters => {
      const h = board!.hart.stats;
      const j = board!.hart.jitStats;
      return { instructions: h.instructions, tlbMisses: h.tlbMisses, stepExits: j?.stepExits ?? 0, noCodeExits: j?.noCodeExits ?? 0, modulesCompiled: j?.modulesCompiled ?? 0 };
    };
    let seen = '';
    let atStart: ReadCounters | undefined;
    let readCounters: ReadCounters | undefined;
    const r = await runGuest(img, {
      command: ['sh', '-c', script(o)],
      timeoutMs: o.timeoutMs ?? 3_600_000,
      onOutput: (t) => {
        m.feed(t);
        if (readCounters) return;
        seen += t;
        if (!atStart && seen.includes('BENCH_R0')) atStart = counters();
        if (atStart && seen.includes('BENCH_R1')) {
          const end = counters();
          readCounters = Object.fromEntries(Object.entries(end).map(([k, v]) => [k, v - atStart![k as keyof ReadCounters]])) as unknown as ReadCounters;
        }
      },
      accel: o.accel ?? defaultAccel(),
      vm: await builtVm(),
      attach: (vm) => {
        board = vm;
        vm.attachVirtio(0, (ctx) => new VirtioMmioTransport({ device: new VirtioBlk({ disk }), ram: ctx, irq: ctx.irq, irqSource: ctx.irqSource }));
      },
    });
    return { ...spans(r.output, m, o), wallMs: r.wallMs, instructions: r.instructions, ...(readCounters ? { readCounters } : {}) };
  } finally {
    await disk.close();
  }
}

/** The same under QEMU TCG (virtio-blk-device on the same file, cache=writeback). */
export async function blkQemu(img: GuestImage, path: string, o: BlkOptions): Promise<BlkSpans> {
  let pid: number | undefined;
  const m = new MarkerClock(markers(o), () => processCpuSeconds(pid));
  const out = await qemuGuest(img, ['sh', '-c', script(o)], ['-drive', `file=${path},format=raw,if=none,id=d0,cache=writeback`, '-device', 'virtio-blk-device,drive=d0'], o.timeoutMs ?? 3_600_000, '', {
    onOutput: (t, p) => {
      pid = p;
      m.feed(t);
    },
  });
  return spans(out, m, o);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, def: string): string => benchArg(name, def);
  const MIB = Number(arg('size', '256'));
  const o: BlkOptions = { mib: MIB, write: true, timeoutMs: Number(arg('timeout-s', '3600')) * 1000, accel: arg('accel', defaultAccel()) as 'interp' | 'jit' };
  interface Figures { write: number; read: number; writeCpu: number; readCpu: number; guestWrite: number; guestRead: number }
  const figures = (s: BlkSpans): Figures => ({
    write: MIB / s.write!.wallS, read: MIB / s.read.wallS, writeCpu: MIB / s.write!.cpuS, readCpu: MIB / s.read.cpuS,
    guestWrite: MIB / Math.max(s.write!.guestS, 0.01), guestRead: MIB / Math.max(s.read.guestS, 0.01),
  });
  const show = (who: string, f: Figures) =>
    console.log(`${who}: write ${f.write.toFixed(2)} MB/s (${f.writeCpu.toFixed(2)} per CPU-s), read ${f.read.toFixed(2)} MB/s (${f.readCpu.toFixed(2)} per CPU-s); guest clock: write ${f.guestWrite.toFixed(2)}, read ${f.guestRead.toFixed(2)}`);

  const img = await guestImage();
  if (!img) {
    console.log('bench/blk: no tiny image in the cache; run `visor image pull tiny` first');
    process.exit(process.env.CI ? 1 : 0);
  }
  const disk = await scratchDisk(MIB);
  try {
    console.log(`bench/blk: ${MIB} MiB raw disk, dd bs=1M, ${cpus()[0]?.model ?? '?'} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, visor tier ${o.accel}`);
    let v: Figures | undefined;
    if (!argv.includes('--only-qemu')) {
      const r = await blkVisor(img, disk.path, o);
      v = figures(r);
      show('visor', v);
      console.log(`visor whole run: ${(r.wallMs / 1000).toFixed(1)} s, ${(r.instructions / r.wallMs / 1000).toFixed(1)} MIPS`);
      if (r.readCounters) console.log(`visor read phase counters: ${JSON.stringify(r.readCounters)}`);
    }
    if (argv.includes('--no-qemu') || !haveQemu()) {
      console.log('qemu: not run (qemu-system-riscv64 missing or --no-qemu)');
    } else {
      const q = figures(await blkQemu(img, disk.path, o));
      show('qemu ', q);
      if (v) {
        console.log(`ratio visor/qemu, wall: write ${(v.write / q.write).toFixed(4)}, read ${(v.read / q.read).toFixed(4)}`);
        console.log(`ratio visor/qemu, per CPU-s: write ${(v.writeCpu / q.writeCpu).toFixed(4)}, read ${(v.readCpu / q.readCpu).toFixed(4)}`);
      }
    }
  } finally {
    disk.remove();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
