import { describe, expect, it } from 'vitest';
import { MockDriver, collect } from '../testing/driver.js';
import {
  VIRTIO_VSOCK_HDR_SIZE,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_OP_SHUTDOWN,
  VIRTIO_VSOCK_TYPE_STREAM,
  VirtioVsock,
  encodeHeader,
  parseHeader,
  type VsockBackend,
  type VsockConnection,
} from './device.js';

const GUEST = 3;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function guest(backend?: VsockBackend) {
  const dev = new VirtioVsock({ guestCid: GUEST, ...(backend ? { backend } : {}) });
  const { driver } = MockDriver.create(dev);
  driver.probe(3);
  const post = (n = 4) => {
    for (let i = 0; i < n; i++) driver.add(0, [], [VIRTIO_VSOCK_HDR_SIZE + 4096]);
  };
  post(8);
  const send = (op: number, srcPort: number, dstPort: number, data = new Uint8Array(0), extra: { bufAlloc?: number; fwdCnt?: number; dstCid?: number; flags?: number } = {}) =>
    driver.add(1, [
      encodeHeader({
        srcCid: GUEST, dstCid: extra.dstCid ?? 2, srcPort, dstPort, len: data.length, type: VIRTIO_VSOCK_TYPE_STREAM, op,
        flags: extra.flags ?? 0, bufAlloc: extra.bufAlloc ?? 65536, fwdCnt: extra.fwdCnt ?? 0,
      }),
      ...(data.length ? [data] : []),
    ], []);
  const recv = () => {
    const out = driver.used(0).map((u) => {
      const b = collect(u);
      return { ...parseHeader(b), data: dec(b.subarray(VIRTIO_VSOCK_HDR_SIZE)) };
    });
    post(out.length);
    return out;
  };
  return { dev, driver, send, recv };
}

describe('virtio-vsock', () => {
  it('exposes the guest CID', () => {
    const { driver } = guest();
    expect(driver.config(0, 4)).toBe(GUEST);
    expect(driver.config(4, 4)).toBe(0);
  });

  it('accepts a guest connection and echoes through the backend', async () => {
    const seen: string[] = [];
    const { send, recv } = guest({
      accept(conn) {
        conn.onData = (d) => {
          seen.push(dec(d));
          conn.send(d);
        };
        return conn.hostPort === 1234;
      },
    });
    send(VIRTIO_VSOCK_OP_REQUEST, 50000, 1234);
    let p = recv();
    expect(p.map((x) => [x.op, x.srcCid, x.dstCid, x.srcPort, x.dstPort])).toEqual([[VIRTIO_VSOCK_OP_RESPONSE, 2, GUEST, 1234, 50000]]);
    send(VIRTIO_VSOCK_OP_RW, 50000, 1234, enc('ping'));
    p = recv();
    expect(seen).toEqual(['ping']);
    expect(p.map((x) => [x.op, x.len, x.data])).toEqual([[VIRTIO_VSOCK_OP_RW, 4, 'ping']]);
    expect(p[0]!.fwdCnt).toBe(4); // our consumption rides on every packet
    // Refused port → RST.
    send(VIRTIO_VSOCK_OP_REQUEST, 50001, 9);
    expect(recv().map((x) => x.op)).toEqual([VIRTIO_VSOCK_OP_RST]);
  });

  it('resolves async accepts and resets on a guest shutdown', async () => {
    let closed = 0;
    const { dev, send, recv } = guest({
      accept: async (conn) => {
        conn.onClose = () => closed++;
        return true;
      },
    });
    send(VIRTIO_VSOCK_OP_REQUEST, 40000, 80);
    await Promise.resolve();
    await Promise.resolve();
    expect(recv().map((x) => x.op)).toEqual([VIRTIO_VSOCK_OP_RESPONSE]);
    expect(dev.connectionCount).toBe(1);
    send(VIRTIO_VSOCK_OP_SHUTDOWN, 40000, 80, undefined, { flags: 3 });
    expect(recv().map((x) => x.op)).toEqual([VIRTIO_VSOCK_OP_RST]);
    expect(closed).toBe(1);
    expect(dev.connectionCount).toBe(0);
  });

  it('connects from the host and respects the guest credit', async () => {
    const { dev, send, recv } = guest();
    const pending = dev.connect(7000);
    const [req] = recv();
    expect([req!.op, req!.dstPort]).toEqual([VIRTIO_VSOCK_OP_REQUEST, 7000]);
    const hostPort = req!.srcPort;
    send(VIRTIO_VSOCK_OP_RESPONSE, 7000, hostPort, undefined, { bufAlloc: 10 });
    const conn: VsockConnection = await pending;
    conn.send(enc('0123456789abcdef'));
    let p = recv();
    expect(p.map((x) => x.data)).toEqual(['0123456789']); // 10 bytes of credit
    // The guest consumed 10 bytes and says so.
    send(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 7000, hostPort, undefined, { bufAlloc: 10, fwdCnt: 10 });
    p = recv();
    expect(p.map((x) => x.data)).toEqual(['abcdef']);
    // Host closes: the guest is told with SHUTDOWN, answers RST, the connection is gone.
    conn.close();
    p = recv();
    expect(p.map((x) => [x.op, x.flags])).toEqual([[VIRTIO_VSOCK_OP_SHUTDOWN, 3]]);
    send(VIRTIO_VSOCK_OP_RST, 7000, hostPort);
    expect(dev.connectionCount).toBe(0);
  });

  it('rejects a host connect the guest refuses', async () => {
    const { dev, send, recv } = guest();
    const pending = dev.connect(7001);
    const [req] = recv();
    send(VIRTIO_VSOCK_OP_RST, 7001, req!.srcPort);
    await expect(pending).rejects.toThrow(/refused/);
  });

  it('resets packets for another CID and data on unknown connections', () => {
    const { send, recv, dev } = guest();
    send(VIRTIO_VSOCK_OP_REQUEST, 1, 2, undefined, { dstCid: 7 });
    send(VIRTIO_VSOCK_OP_RW, 1, 2, enc('x'));
    expect(recv().map((x) => x.op)).toEqual([VIRTIO_VSOCK_OP_RST, VIRTIO_VSOCK_OP_RST]);
    expect(dev.counters.badPackets).toBe(1);
  });

  it('sends a credit update once half its buffer has been forwarded', () => {
    const { send, recv } = guest({ accept: () => true });
    send(VIRTIO_VSOCK_OP_REQUEST, 1000, 22);
    recv();
    for (let i = 0; i < 33; i++) send(VIRTIO_VSOCK_OP_RW, 1000, 22, new Uint8Array(4096));
    const p = recv();
    expect(p.map((x) => x.op)).toEqual([VIRTIO_VSOCK_OP_CREDIT_UPDATE]);
    expect(p[0]!.fwdCnt).toBe(32 * 4096);
  });
});
