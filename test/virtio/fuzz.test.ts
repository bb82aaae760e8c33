/**
 * Fuzzing every virtio device through its MMIO transport (issue 5, DESIGN.md testing §5):
 * random register traffic, random and malformed descriptor tables, indirect tables, ring
 * indices and notifications, plus host-side events. The host must never throw (sync or
 * async), never hang, and never touch memory outside guest RAM (guard zones around RAM must
 * stay intact; the disk must never see an out-of-range request).
 *
 * FUZZ_SEED and FUZZ_ITERS override the defaults; the seed is printed.
 */
import { describe, expect, it } from 'vitest';
import type { VirtioDevice } from '../../src/virtio/device.js';
import { VirtioMmioTransport } from '../../src/virtio/mmio/transport.js';
import { IrqRecorder, MockDriver, TEST_RAM_BASE } from '../../src/virtio/testing/driver.js';
import { EchoDevice } from '../../src/virtio/testing/echo-device.js';
import { MemoryBlockDevice } from '../../src/virtio/testing/memory-block-device.js';
import { VirtioBlk } from '../../src/virtio/blk/device.js';
import { VirtioRng } from '../../src/virtio/rng/device.js';
import { VirtioConsole } from '../../src/virtio/console/device.js';
import { VirtioNet } from '../../src/virtio/net/device.js';
import { VirtioBalloon } from '../../src/virtio/balloon/device.js';
import { VirtioVsock, encodeHeader, parseHeader, VIRTIO_VSOCK_HDR_SIZE } from '../../src/virtio/vsock/device.js';
import { collect } from '../../src/virtio/testing/driver.js';
import { L2Switch } from '../../src/net/switch.js';
import { stableMac } from '../../src/net/mac.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
const ITERS = Number(process.env.FUZZ_ITERS ?? 30);
const RAM = 256 * 1024;
const GUARD = 64 * 1024;
const GUARD_BYTE = 0xa5;
/** Buffers live above the rings. */
const DATA = 0x10000;

/** xorshift32: small, seedable, reproducible. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
  return {
    u32: next,
    int: (n: number) => next() % n,
    chance: (p: number) => next() / 2 ** 32 < p,
  };
}
type Rng = ReturnType<typeof rng>;

interface Target {
  device: VirtioDevice;
  /** Host-side stimulus (frames, console input, balloon requests). */
  poke?: (r: Rng) => void;
  settle?: () => Promise<void>;
  check?: () => void;
}

const factories: Record<string, () => Target> = {
  echo: () => ({ device: new EchoDevice(16) }),
  blk: () => {
    const disk = new MemoryBlockDevice(64 * 1024);
    const device = new VirtioBlk({ disk, serial: 'fuzz', queueSize: 16, maxInFlight: 4 });
    return {
      device,
      settle: async () => {
        for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      },
      check: () => expect(disk.invalidCalls).toBe(0),
    };
  },
  rng: () => ({ device: new VirtioRng({ queueSize: 16 }) }),
  console: () => {
    const device = new VirtioConsole({ ports: [{ console: true }, { name: 'data' }], queueSize: 16 });
    return { device, poke: (r) => device.ports[r.int(2)]!.write(new Uint8Array(r.int(300))) };
  },
  net: () => {
    const sw = new L2Switch('fuzz');
    const device = new VirtioNet({ mac: stableMac('fuzz'), queueSize: 16 });
    const peer = sw.attach(() => {});
    device.connect(sw.attach((f) => device.receive(f)));
    return {
      device,
      poke: (r) => peer.send(Uint8Array.from({ length: 14 + r.int(1600) }, () => r.int(256))),
    };
  },
  balloon: () => {
    const device = new VirtioBalloon();
    return {
      device,
      poke: (r) => {
        if (r.chance(0.5)) device.setTarget(r.u32());
        else void device.requestStats();
      },
    };
  },
  vsock: () => {
    const device = new VirtioVsock({
      guestCid: 3,
      backend: {
        accept: (c) => {
          c.onData = (d) => c.send(d);
          return c.hostPort % 2 === 0;
        },
      },
    });
    const conns: import('../../src/virtio/vsock/device.js').VsockConnection[] = [];
    return {
      device,
      poke: (r) => {
        if (r.chance(0.3)) device.connect(r.int(4)).then((c) => conns.push(c), () => {});
        else if (conns.length) {
          const c = conns[r.int(conns.length)]!;
          if (r.chance(0.8)) c.send(new Uint8Array(1 + r.int(5000)));
          else c.close();
        }
      },
    };
  },
};

/** Random guest address: mostly inside RAM, sometimes straddling or far outside it. */
function addr(r: Rng): number {
  switch (r.int(8)) {
    case 0:
      return r.u32() * 2 ** 32 + r.u32();
    case 1:
      return TEST_RAM_BASE + RAM - r.int(64);
    case 2:
      return TEST_RAM_BASE - r.int(4096);
    default:
      return TEST_RAM_BASE + r.int(RAM);
  }
}
function len(r: Rng): number {
  return r.chance(0.1) ? r.u32() : r.int(r.chance(0.5) ? 64 : 8192);
}

async function fuzzOne(name: string, seed: number): Promise<{ used: number; resets: number }> {
  const r = rng(seed);
  const t = factories[name]!();
  const backing = new Uint8Array(GUARD + RAM + GUARD).fill(GUARD_BYTE);
  const ram = backing.subarray(GUARD, GUARD + RAM);
  ram.fill(0);
  const irq = new IrqRecorder();
  const transport = new VirtioMmioTransport({ device: t.device, ram: { ram, ramBase: TEST_RAM_BASE }, irq, irqSource: 3 });
  const driver = new MockDriver(transport, ram, TEST_RAM_BASE, irq, 0x1000);
  const view = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  const nq = t.device.queueSizes.length;
  let used = 0;
  const probe = () => {
    used += transport.queues.reduce((a, q) => a + q.usedIdx, 0);
    driver.resetHeap();
    driver.queues.length = 0;
    // A well-behaved start most of the time, so the fuzzing reaches the device logic.
    const want = BigInt(r.u32()) | (BigInt(r.u32()) << 32n) | (r.chance(0.8) ? 1n << 32n : 0n);
    if (driver.init(r.chance(0.2) ? want : undefined)) {
      for (let q = 0; q < nq; q++) driver.setupQueue(q, 1 << r.int(5));
      driver.driverOk();
    }
  };
  probe();
  const writeDesc = (table: number, i: number, a: number, l: number, flags: number, next: number) => {
    const d = table - TEST_RAM_BASE + 16 * i;
    view.setUint32(d, a % 2 ** 32, true);
    view.setUint32(d + 4, Math.floor(a / 2 ** 32), true);
    view.setUint32(d + 8, l >>> 0, true);
    view.setUint16(d + 12, flags, true);
    view.setUint16(d + 14, next, true);
  };
  const dataAddr = (l: number) => TEST_RAM_BASE + DATA + r.int(Math.max(1, RAM - DATA - l));
  for (let step = 0; step < 200; step++) {
    const queues = driver.queues.filter(Boolean);
    const q = queues.length ? queues[r.int(queues.length)]! : undefined;
    const op = r.int(12);
    if (q && op < 6) {
      // A plausible chain (readable then writable, maybe indirect), sometimes with one
      // field mutated. The first readable buffer looks like a request header.
      const n = 1 + r.int(Math.min(4, q.size));
      const nRead = r.int(n + 1);
      const lens = Array.from({ length: n }, () => [16, 1, 8, 12, 512, 4096, 20, r.int(3000)][r.int(8)]!);
      if (nRead > 0) lens[0] = Math.max(lens[0]!, 16);
      const addrs = lens.map((l) => dataAddr(l));
      if (nRead > 0) {
        const h = addrs[0]! - TEST_RAM_BASE;
        view.setUint32(h, [0, 1, 4, 8, 11, 13, 0, 1, r.u32()][r.int(9)]!, true);
        view.setUint32(h + 8, r.chance(0.9) ? r.int(140) : r.u32(), true);
        view.setUint32(h + 12, r.chance(0.9) ? 0 : r.u32(), true);
      }
      const indirect = r.chance(0.3);
      const tableAt = dataAddr(16 * n + 16);
      const table = indirect ? tableAt - ((tableAt - TEST_RAM_BASE) % 16) : q.desc;
      // Distinct descriptor indices (a repeated one would be a loop, tested separately).
      const pool = Array.from({ length: q.size }, (_, i) => i);
      for (let i = pool.length - 1; i > 0; i--) {
        const j = r.int(i + 1);
        [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      }
      const ids = indirect ? Array.from({ length: n }, (_, i) => i) : pool.slice(0, n);
      for (let i = 0; i < n; i++) {
        const flags = (i < nRead ? 0 : 2) | (i + 1 < n ? 1 : 0);
        writeDesc(table, ids[i]!, addrs[i]!, lens[i]!, flags, ids[i + 1] ?? 0);
      }
      let head = ids[0]!;
      if (indirect) {
        head = r.int(q.size);
        writeDesc(q.desc, head, table, 16 * n, 4, 0);
      }
      if (r.chance(0.1)) {
        // Mutate one field of one descriptor.
        const d = (indirect && r.chance(0.5) ? table : q.desc) - TEST_RAM_BASE + 16 * r.int(n) + [0, 4, 8, 12, 14][r.int(5)]!;
        view.setUint16(d, r.u32() & 0xffff, true);
      }
      const idxOff = q.avail - TEST_RAM_BASE + 2;
      const idx = view.getUint16(idxOff, true);
      view.setUint16(q.avail - TEST_RAM_BASE + 4 + 2 * (idx % q.size), head, true);
      view.setUint16(idxOff, (idx + 1) & 0xffff, true);
      if (r.chance(0.8)) transport.write(0x50, 4, q.index);
    } else if (q && op < 7) {
      // Garbage descriptors and wild indices.
      for (let i = 0; i < 4; i++) writeDesc(q.desc, r.int(q.size), addr(r), len(r), r.int(65536), r.int(65536));
      if (r.chance(0.3)) {
        const at = r.int(RAM - 256);
        for (let i = 0; i < 256; i += 4) view.setUint32(at + i, r.u32(), true);
      }
      if (r.chance(0.3)) view.setUint16(q.avail - TEST_RAM_BASE + 2, r.u32() & 0xffff, true);
      if (r.chance(0.3)) view.setUint16(q.avail - TEST_RAM_BASE + 4 + 2 * q.size, r.u32() & 0xffff, true);
      transport.write(0x50, 4, r.chance(0.8) ? q.index : r.u32());
    } else if (op < 8) {
      // Raw register traffic, including odd widths and the occasional status write.
      const off = r.int(0x140) & ~(r.chance(0.8) ? 3 : 0);
      const size = ([1, 2, 4] as const)[r.int(3)]!;
      if (r.chance(0.5)) transport.read(off, size);
      else if (off !== 0x70 || r.chance(0.1)) transport.write(off, size, r.u32());
    } else if (op < 10) {
      t.poke?.(r);
    } else {
      driver.ackInterrupt();
      if (t.settle && r.chance(0.3)) await t.settle();
      // A driver that sees DEVICE_NEEDS_RESET (or lost its setup) starts over.
      if (driver.status() & 0x40 || r.chance(0.05)) probe();
    }
  }
  await t.settle?.();
  t.check?.();
  for (let i = 0; i < GUARD; i++) {
    if (backing[i] !== GUARD_BYTE || backing[GUARD + RAM + i] !== GUARD_BYTE) {
      throw new Error(`${name} seed ${seed}: wrote outside guest RAM`);
    }
  }
  return { used: used + transport.queues.reduce((a, q) => a + q.usedIdx, 0), resets: transport.counters.needsReset };
}

describe('virtio fuzz', () => {
  console.log(`virtio fuzz: FUZZ_SEED=${SEED} FUZZ_ITERS=${ITERS}`);
  for (const name of Object.keys(factories)) {
    it(`${name}: malformed rings never throw, hang or escape RAM`, async () => {
      const t0 = Date.now();
      let used = 0;
      let resets = 0;
      for (let i = 0; i < ITERS; i++) {
        const seed = (SEED * 1000003 + i * 7919 + name.length) >>> 0;
        try {
          const s = await fuzzOne(name, seed);
          used += s.used;
          resets += s.resets;
        } catch (e) {
          throw new Error(`${name}: iteration ${i} seed ${seed}: ${(e as Error).stack}`);
        }
      }
      console.log(`${name}: ${ITERS} runs, ${used} chains completed, ${resets} DEVICE_NEEDS_RESET, ${Date.now() - t0} ms`);
      // The fuzzer must reach device logic, not only the validation that rejects garbage.
      expect(used).toBeGreaterThan(0);
      expect(resets).toBeGreaterThan(0);
      expect(Date.now() - t0).toBeLessThan(20_000);
    });
  }

  it('vsock: random well-formed packet sequences keep the protocol state sane', async () => {
    for (let run = 0; run < ITERS; run++) {
      const r = rng((SEED ^ 0x50c4) + run * 104729);
      const accepted: import('../../src/virtio/vsock/device.js').VsockConnection[] = [];
      const dev = new VirtioVsock({
        guestCid: 3,
        backend: {
          accept: (c) => {
            c.onData = (d) => (r.chance(0.5) ? c.send(d) : undefined);
            accepted.push(c);
            return r.chance(0.8) ? true : Promise.resolve(r.chance(0.5));
          },
        },
      });
      const { driver, transport } = MockDriver.create(dev, 2 << 20);
      driver.probe(3);
      for (let i = 0; i < 8; i++) driver.add(0, [], [VIRTIO_VSOCK_HDR_SIZE + 1 + r.int(4096)]);
      const ports = [1000, 1001, 1002];
      for (let step = 0; step < 150; step++) {
        const op = r.int(10);
        if (op < 6) {
          const data = new Uint8Array(r.chance(0.5) ? r.int(3000) : 0);
          const hdr = encodeHeader({
            srcCid: r.chance(0.95) ? 3 : r.u32(), dstCid: r.chance(0.95) ? 2 : r.u32(),
            srcPort: ports[r.int(3)]!, dstPort: ports[r.int(3)]! + 5000,
            len: r.chance(0.9) ? data.length : r.u32(), type: r.chance(0.95) ? 1 : r.int(5),
            op: r.int(9), flags: r.int(4), bufAlloc: r.chance(0.5) ? 65536 : r.int(5000), fwdCnt: r.u32() & 0xffff,
          });
          driver.add(1, data.length ? [hdr, data] : [hdr], []);
          driver.used(1);
        } else if (op < 8) {
          const c = accepted[r.int(accepted.length + 1)];
          if (c) r.chance(0.8) ? c.send(new Uint8Array(1 + r.int(9000))) : c.close();
          else dev.connect(ports[r.int(3)]!).catch(() => {});
        } else {
          for (const u of driver.used(0)) {
            // Every packet the device hands the guest is addressed to it and fits its buffer.
            const b = collect(u);
            const h = parseHeader(b);
            expect(u.len).toBe(VIRTIO_VSOCK_HDR_SIZE + h.len);
            expect(h.dstCid).toBe(3);
            expect(h.srcCid).toBe(2);
            driver.add(0, [], [VIRTIO_VSOCK_HDR_SIZE + 1 + r.int(4096)]);
          }
          driver.ackInterrupt();
          await Promise.resolve();
        }
        expect(dev.connectionCount).toBeLessThanOrEqual(3 * 3 + 200);
      }
      expect(transport.deviceStatus & 0x40).toBe(0);
    }
  });
});
