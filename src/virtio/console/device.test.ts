import { describe, expect, it } from 'vitest';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, bit } from '../device.js';
import { MockDriver, collect } from '../testing/driver.js';
import {
  VIRTIO_CONSOLE_CONSOLE_PORT,
  VIRTIO_CONSOLE_DEVICE_ADD,
  VIRTIO_CONSOLE_DEVICE_READY,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VIRTIO_CONSOLE_PORT_NAME,
  VIRTIO_CONSOLE_PORT_OPEN,
  VIRTIO_CONSOLE_PORT_READY,
  VirtioConsole,
} from './device.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
function ctrl(id: number, event: number, value: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, id, true);
  v.setUint16(4, event, true);
  v.setUint16(6, value, true);
  return b;
}
function parse(b: Uint8Array) {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { id: v.getUint32(0, true), event: v.getUint16(4, true), value: v.getUint16(6, true), extra: dec(b.subarray(8)) };
}

describe('virtio-console', () => {
  it('runs the multiport handshake like Linux and moves data both ways', () => {
    const con = new VirtioConsole({ ports: [{ console: true }, { name: 'org.visor.data' }] });
    const { driver } = MockDriver.create(con);
    driver.probe(6);
    expect(driver.has(VIRTIO_CONSOLE_F_MULTIPORT)).toBe(true);
    expect(driver.config(4, 4)).toBe(2); // max_nr_ports
    for (let i = 0; i < 8; i++) driver.add(2, [], [64]); // control receive buffers
    driver.add(3, [ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)], []);
    let msgs = driver.used(2).map((u) => parse(collect(u)));
    expect(msgs.map((m) => [m.id, m.event])).toEqual([[0, VIRTIO_CONSOLE_DEVICE_ADD], [1, VIRTIO_CONSOLE_DEVICE_ADD]]);
    driver.add(3, [ctrl(0, VIRTIO_CONSOLE_PORT_READY, 1)], []);
    driver.add(3, [ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1)], []);
    msgs = driver.used(2).map((u) => parse(collect(u)));
    expect(msgs).toEqual([
      { id: 0, event: VIRTIO_CONSOLE_CONSOLE_PORT, value: 1, extra: '' },
      { id: 0, event: VIRTIO_CONSOLE_PORT_OPEN, value: 1, extra: '' },
      { id: 1, event: VIRTIO_CONSOLE_PORT_NAME, value: 1, extra: 'org.visor.data' },
      { id: 1, event: VIRTIO_CONSOLE_PORT_OPEN, value: 1, extra: '' },
    ]);
    // The guest opens the data port.
    const opened: boolean[] = [];
    con.ports[1]!.onGuestOpen = (o) => opened.push(o);
    driver.add(3, [ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1)], []);
    expect(opened).toEqual([true]);
    // Guest → host on both ports.
    const out: string[] = [];
    con.ports[0]!.onOutput = (b) => out.push(`0:${dec(b)}`);
    con.ports[1]!.onOutput = (b) => out.push(`1:${dec(b)}`);
    driver.add(1, [enc('login: ')], []);
    driver.add(5, [enc('ping'), enc('!')], []);
    expect(out).toEqual(['0:login: ', '1:ping!']);
    // Host → guest: buffered until receive buffers exist, then split across them.
    con.ports[1]!.write(enc('hello from the host'));
    expect(driver.used(4)).toHaveLength(0);
    driver.add(4, [], [8]);
    driver.add(4, [], [8]);
    driver.add(4, [], [8]);
    const got = driver.used(4).map((u) => dec(collect(u)));
    expect(got.join('')).toBe('hello from the host');
    expect(got[0]).toBe('hello fr');
  });

  // The hvc0 data path as Linux's virtio_console drives it (multiport, EVENT_IDX): receive
  // buffers posted up front (fill_queue), host input delivered into them with an interrupt,
  // and hvc's put_chars, which kicks and then spins on virtqueue_get_buf: its used entry must
  // be there when the notify returns. (The hvc0 shell stall of builder 5 images was not here
  // but in visor's init; this keeps the device side of that path pinned.)
  it('port 0 (hvc0) under MULTIPORT and EVENT_IDX: input with an interrupt per batch, output completed within the notify', () => {
    const con = new VirtioConsole({ ports: [{ console: true }, { name: 'org.visor.agent' }] });
    const { driver } = MockDriver.create(con);
    driver.probe(6);
    expect(driver.has(VIRTIO_F_EVENT_IDX)).toBe(true);
    for (let i = 0; i < 4; i++) driver.add(2, [], [64]);
    driver.add(3, [ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)], []);
    driver.add(3, [ctrl(0, VIRTIO_CONSOLE_PORT_READY, 1)], []);
    expect(driver.used(2).map((u) => parse(collect(u)).event)).toContain(VIRTIO_CONSOLE_CONSOLE_PORT);
    driver.ackInterrupt();
    const echo: string[] = [];
    con.ports[0]!.onOutput = (b) => echo.push(dec(b));
    for (let i = 0; i < 4; i++) driver.add(0, [], [4]);
    expect(driver.used(0)).toHaveLength(0);
    for (const line of ['ls\r', 'echo hi\r']) {
      const raised = driver.irq.raised;
      con.ports[0]!.write(enc(line));
      expect(driver.irq.raised, line).toBe(raised + 1);
      expect(driver.ackInterrupt() & 1).toBe(1); // VIRTIO_MMIO_INT_VRING
      const got = driver.used(0);
      expect(got.map((u) => dec(collect(u))).join('')).toBe(line);
      // fill_readbuf() hands each emptied buffer straight back.
      for (const u of got) driver.add(0, [], [u.inBufs[0]!.length]);
      for (const ch of line) {
        driver.add(1, [enc(ch)], []);
        expect(driver.used(1), 'put_chars spins on this').toHaveLength(1);
      }
      driver.ackInterrupt(); // vm_interrupt() for the transmit completions
    }
    expect(echo.join('')).toBe('ls\recho hi\r');
    expect(driver.inFlight(0)).toBe(4);
  });

  it('works as a single console without MULTIPORT, including emergency writes', () => {
    const con = new VirtioConsole();
    const { driver } = MockDriver.create(con);
    const out: number[] = [];
    con.ports[0]!.onOutput = (b) => out.push(...b);
    driver.writeConfig(8, 4, 0x41); // emerg_wr before the driver is up
    driver.probe(2, bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX));
    expect(driver.has(VIRTIO_CONSOLE_F_MULTIPORT)).toBe(false);
    driver.add(1, [enc('BC')], []);
    expect(out).toEqual([0x41, 0x42, 0x43]);
    driver.add(0, [], [16]);
    con.ports[0]!.write(enc('x'));
    expect(dec(collect(driver.used(0)[0]!))).toBe('x');
  });

  it('drops host input beyond the backlog cap instead of growing without bound', () => {
    const con = new VirtioConsole();
    con.ports[0]!.write(new Uint8Array(1 << 20));
    con.ports[0]!.write(new Uint8Array(10));
    expect(con.ports[0]!.dropped).toBe(10);
  });

  it('holds data until the guest opens a port, and closeHost() ends its input after that data (issue 20: EOF to the guest)', () => {
    const con = new VirtioConsole({ ports: [{ console: true }, { name: 'org.visor.stdin' }] });
    const { driver } = MockDriver.create(con);
    driver.probe(6);
    for (let i = 0; i < 8; i++) driver.add(2, [], [64]);
    driver.add(3, [ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)], []);
    driver.add(3, [ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1)], []);
    driver.used(2);
    for (let i = 0; i < 4; i++) driver.add(4, [], [4]); // receive buffers, posted before any open
    con.ports[1]!.write(enc('hi there'));
    con.ports[1]!.closeHost();
    con.ports[1]!.write(enc('ignored'));
    // Linux discards what reaches a port nobody opened: nothing is delivered, no close yet.
    expect(driver.used(4)).toHaveLength(0);
    expect(driver.used(2)).toHaveLength(0);
    driver.add(3, [ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1)], []);
    expect(driver.used(4).map((u) => dec(collect(u))).join('')).toBe('hi there');
    // Then the host end disconnects: the driver's read returns 0 (end of file) once drained.
    expect(driver.used(2).map((u) => parse(collect(u)))).toEqual([{ id: 1, event: VIRTIO_CONSOLE_PORT_OPEN, value: 0, extra: '' }]);
    // A snapshot keeps the closed state.
    const again = new VirtioConsole({ ports: [{ console: true }, { name: 'org.visor.stdin' }] });
    again.restore(JSON.parse(JSON.stringify(con.saveState())));
    expect(again.ports[1]!.hostOpen).toBe(false);
    expect(again.ports[1]!.closeSent).toBe(true);
  });
});
