/**
 * Rate limits measured on real traffic (issue 14): a TCP transfer between a host server on
 * 127.0.0.1 and a guest's TCP end, through the whole path a NIC on `--net user` has — the
 * user network (NAT onto real host sockets), the NIC's shaper with its token buckets, real
 * timers — and the rate measured on the wall clock at the far end, after the initial burst.
 * The guest end is a minimal TCP peer made of crafted frames (testing.ts): it acknowledges
 * at once, so the limiter is the only bottleneck. The rates are modest (hundreds of frames a
 * second) so that a loaded CI machine still keeps the limiter's queue full.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeHostSockets } from '../../src/host/usernet-sockets.js';
import { NicShaper, type NicLimits } from '../../src/net/nic-shaper.js';
import { TCP_ACK, TCP_PSH, TCP_SYN } from '../../src/net/user/tcp.js';
import { FakeGuest } from '../../src/net/user/testing.js';
import { UserNet } from '../../src/net/user/user-net.js';

const MSS_WS = [2, 4, 0x05, 0xb4, 1, 3, 3, 7];
const WARMUP_MS = 700;
const MEASURE_MS = 3000;

/** A user network with one NIC shaped by `limits`; the guest end sees frames after the shaper. */
function nicOnUserNet(limits: NicLimits) {
  const net = new UserNet({ sockets: new NodeHostSockets() });
  const guest = new FakeGuest(net);
  let handler: (f: Uint8Array) => void = () => {};
  // The guest handles what its NIC received later, as a VM does (never inside the NAT's send).
  let batch: Uint8Array[] = [];
  const shaper = new NicShaper(limits, (f) => net.receive(f), (f) => {
    if (batch.length === 0) {
      setImmediate(() => {
        const got = batch;
        batch = [];
        for (const g of got) {
          guest.frames.push(g);
          handler(g);
        }
      });
    }
    batch.push(f.slice());
  });
  net.connect((f, meta) => shaper.toGuest(f, meta));
  const tick = setInterval(() => net.tick(), 100);
  return {
    net,
    guest,
    shaper,
    /** A frame from the guest, through the shaper. */
    send: (f: Uint8Array) => shaper.fromGuest(f),
    /** What runs on each frame to the guest (replaces the previous handler). */
    onFrame: (h: (f: Uint8Array) => void) => (handler = h),
    close: () => {
      clearInterval(tick);
      net.close();
    },
  };
}

/** Bytes seen over time; the rate over [from, to] ms after the start. */
class RateMeter {
  private readonly t0 = performance.now();
  private readonly marks: [number, number][] = [];
  private total = 0;
  add(n: number): void {
    this.total += n;
    this.marks.push([performance.now() - this.t0, this.total]);
  }
  bytesPerSec(from: number, to: number): number {
    const at = (t: number) => {
      let v = 0;
      for (const [ms, tot] of this.marks) if (ms <= t) v = tot;
      return v;
    };
    return ((at(to) - at(from)) * 1000) / (to - from);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

async function hostServer(onConn: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.on('error', () => {});
    onConn(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => server.close());
  return { server, port: (server.address() as AddressInfo).port };
}

/** The guest's SYN to 10.0.2.2:port and the handshake's end; returns the sequence numbers. */
async function handshake(n: ReturnType<typeof nicOnUserNet>, port: number): Promise<{ ours: number; theirs: number }> {
  const synack = new Promise<{ seq: number }>((resolve) =>
    n.onFrame(() => {
      for (const s of n.guest.segments()) if (s.flags === (TCP_SYN | TCP_ACK)) resolve(s);
    }),
  );
  n.send(n.guest.tcpFrame('10.0.2.2', 40000, port, 1000, 0, TCP_SYN, undefined, { options: MSS_WS }));
  const sa = await synack;
  n.send(n.guest.tcpFrame('10.0.2.2', 40000, port, 1001, sa.seq + 1, TCP_ACK, undefined, { window: 65535 }));
  return { ours: 1001, theirs: sa.seq + 1 };
}

describe('rate limits on real traffic through the user network', () => {
  it('holds a download (network → guest) within 10% of its byte rate', { timeout: 30_000 }, async () => {
    const rate = 500_000;
    const n = nicOnUserNet({ rx: { bytesPerSec: rate, bytesBurst: 128 * 1024 } });
    cleanups.push(n.close);
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    let stop = false;
    const { port } = await hostServer((s) => {
      const pump = () => {
        while (!stop && s.write(chunk));
      };
      s.on('drain', pump);
      pump();
      cleanups.push(() => ((stop = true), s.destroy()));
    });
    const meter = new RateMeter();
    const { ours } = await handshake(n, port);
    // The guest reads at once: every in-order segment is acknowledged with a full window.
    let expected = -1;
    n.onFrame((f) => {
      meter.add(f.length);
      for (const s of n.guest.segments()) {
        if (!s.payload.length) continue;
        if (expected === -1) expected = s.seq;
        if (s.seq === expected) expected = (expected + s.payload.length) >>> 0;
        n.send(n.guest.tcpFrame('10.0.2.2', 40000, port, ours, expected, TCP_ACK, undefined, { window: 65535 }));
      }
    });
    await sleep(WARMUP_MS + MEASURE_MS + 100);
    const measured = meter.bytesPerSec(WARMUP_MS, WARMUP_MS + MEASURE_MS);
    console.log(`download through an rx limit of ${rate} B/s: ${Math.round(measured)} B/s (${((100 * measured) / rate).toFixed(1)}%)`);
    expect(measured / rate).toBeGreaterThan(0.9);
    expect(measured / rate).toBeLessThan(1.1);
    // The limiter did the limiting: frames waited for tokens; none were dropped or resent.
    expect(n.shaper.counters.rxDelayed).toBeGreaterThan(0);
    expect(n.shaper.counters.rxRateDrops).toBe(0);
    expect(n.net.counters.drops.internal).toBe(0);
  });

  it('holds an upload (guest → network) within 10% of its packet rate, measured at the host', { timeout: 30_000 }, async () => {
    const pps = 1000;
    const n = nicOnUserNet({ tx: { packetsPerSec: pps, packetsBurst: 100 } });
    cleanups.push(n.close);
    const meter = new RateMeter();
    const { port } = await hostServer((s) => s.on('data', (d: Buffer) => meter.add(d.length)));
    const { ours, theirs } = await handshake(n, port);
    // The guest sends 1000-byte segments as fast as its shaper queue and the NAT's window allow.
    const payload = new Uint8Array(1000).fill(0x61);
    let next = ours;
    let acked = ours;
    let window = 65535;
    n.onFrame(() => {
      for (const s of n.guest.segments()) {
        if (s.flags & TCP_ACK && ((s.ack - acked) | 0) > 0) acked = s.ack;
        window = s.window << 6;
      }
    });
    let stop = false;
    cleanups.push(() => (stop = true));
    const offer = () => {
      if (stop) return;
      while (n.shaper.queued.tx < 400 && ((next - acked) | 0) + payload.length <= window) {
        n.send(n.guest.tcpFrame('10.0.2.2', 40000, port, next, theirs, TCP_ACK | TCP_PSH, payload, { window: 65535 }));
        next = (next + payload.length) >>> 0;
      }
      setTimeout(offer, 5);
    };
    offer();
    await sleep(WARMUP_MS + MEASURE_MS + 100);
    stop = true;
    const measured = meter.bytesPerSec(WARMUP_MS, WARMUP_MS + MEASURE_MS) / payload.length;
    console.log(`upload through a tx limit of ${pps} packets/s: ${measured.toFixed(0)} packets/s (${((100 * measured) / pps).toFixed(1)}%)`);
    expect(measured / pps).toBeGreaterThan(0.9);
    expect(measured / pps).toBeLessThan(1.1);
    expect(n.shaper.counters.txRateDrops).toBe(0);
  });
});
