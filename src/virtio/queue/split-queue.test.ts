import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../guest-memory.js';
import { writtenPages } from '../../cpu/ram-pager.js';
import { SplitQueue, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from './split-queue.js';

const BASE = 0x8000_0000;
const DESC = BASE + 0x1000;
const AVAIL = BASE + 0x2000;
const USED = BASE + 0x3000;
const N = 8;

function make(opts: { indirect?: boolean; maxChainBytes?: number; onDeviceWrite?: (off: number, len: number) => void } = {}) {
  const ram = new Uint8Array(0x10000);
  const view = new DataView(ram.buffer);
  const q = new SplitQueue(new GuestMemory({ ram, ramBase: BASE, ...(opts.onDeviceWrite ? { onDeviceWrite: opts.onDeviceWrite } : {}) }), { maxSize: N, ...(opts.maxChainBytes ? { maxChainBytes: opts.maxChainBytes } : {}) });
  q.size = N;
  q.descAddr = DESC;
  q.driverAddr = AVAIL;
  q.deviceAddr = USED;
  q.indirect = opts.indirect ?? true;
  const reasons: string[] = [];
  q.onBroken = (r) => reasons.push(r);
  expect(q.enable()).toBe(null);
  let availIdx = 0;
  const desc = (table: number, i: number, addr: number, len: number, flags: number, next = 0) => {
    const o = table - BASE + 16 * i;
    view.setUint32(o, addr % 2 ** 32, true);
    view.setUint32(o + 4, Math.floor(addr / 2 ** 32), true);
    view.setUint32(o + 8, len, true);
    view.setUint16(o + 12, flags, true);
    view.setUint16(o + 14, next, true);
  };
  const publish = (head: number) => {
    view.setUint16(AVAIL - BASE + 4 + 2 * (availIdx % N), head, true);
    availIdx = (availIdx + 1) & 0xffff;
    view.setUint16(AVAIL - BASE + 2, availIdx, true);
  };
  return { ram, view, q, desc, publish, reasons };
}

const DATA = BASE + 0x8000;

describe('split virtqueue', () => {
  it('pops a chain with readable then writable parts and pushes it used', () => {
    const { q, desc, publish, view } = make();
    desc(DESC, 3, DATA, 16, VIRTQ_DESC_F_NEXT, 5);
    desc(DESC, 5, DATA + 16, 100, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    desc(DESC, 1, DATA + 200, 1, VIRTQ_DESC_F_WRITE);
    publish(3);
    const c = q.pop()!;
    expect(c.head).toBe(3);
    expect(c.readableLen).toBe(16);
    expect(c.writableLen).toBe(101);
    expect(q.pop()).toBe(null);
    q.pushUsed(3, 42);
    expect(view.getUint16(USED - BASE + 2, true)).toBe(1);
    expect(view.getUint32(USED - BASE + 4, true)).toBe(3);
    expect(view.getUint32(USED - BASE + 8, true)).toBe(42);
  });

  it('reads and writes across segment boundaries', () => {
    const { q, desc, publish, ram } = make();
    ram.set([1, 2, 3], DATA - BASE);
    ram.set([4, 5], DATA - BASE + 0x100);
    desc(DESC, 0, DATA, 3, VIRTQ_DESC_F_NEXT, 1);
    desc(DESC, 1, DATA + 0x100, 2, VIRTQ_DESC_F_NEXT, 2);
    desc(DESC, 2, DATA + 0x200, 2, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
    desc(DESC, 3, DATA + 0x300, 2, VIRTQ_DESC_F_WRITE);
    publish(0);
    const c = q.pop()!;
    const got = new Uint8Array(4);
    expect(c.read(1, got)).toBe(4);
    expect([...got]).toEqual([2, 3, 4, 5]);
    expect(c.write(1, Uint8Array.from([9, 9, 9, 9]))).toBe(3);
    expect([...ram.subarray(DATA - BASE + 0x200, DATA - BASE + 0x202)]).toEqual([0xee & 0, 9]);
    expect([...ram.subarray(DATA - BASE + 0x300, DATA - BASE + 0x302)]).toEqual([9, 9]);
  });

  const malformed: [string, (t: ReturnType<typeof make>) => void, RegExp][] = [
    ['a loop', ({ desc }) => { desc(DESC, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 1); desc(DESC, 1, DATA, 1, VIRTQ_DESC_F_NEXT, 0); }, /loops/],
    ['a self loop', ({ desc }) => desc(DESC, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 0), /loops/],
    ['next out of range', ({ desc }) => desc(DESC, 0, DATA, 1, VIRTQ_DESC_F_NEXT, N), /out of range/],
    ['a buffer past the end of RAM', ({ desc }) => desc(DESC, 0, BASE + 0xfff0, 0x11, 0), /outside RAM/],
    ['a buffer below RAM', ({ desc }) => desc(DESC, 0, 0x1000, 16, 0), /outside RAM/],
    ['a 64-bit address', ({ desc }) => desc(DESC, 0, 2 ** 63, 16, 0), /outside RAM/],
    ['a huge length that wraps', ({ desc }) => desc(DESC, 0, DATA, 0xffff_ffff, 0), /outside RAM/],
    ['readable after writable', ({ desc }) => { desc(DESC, 0, DATA, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1); desc(DESC, 1, DATA, 1, 0); }, /after writable/],
    ['indirect with NEXT', ({ desc }) => desc(DESC, 0, DATA, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1), /NEXT/],
    ['an indirect table of odd length', ({ desc }) => desc(DESC, 0, DATA, 17, VIRTQ_DESC_F_INDIRECT), /length/],
    ['a nested indirect table', ({ desc }) => { desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_INDIRECT); desc(DATA, 0, DATA, 16, VIRTQ_DESC_F_INDIRECT); }, /nested/],
    ['a loop inside an indirect table', ({ desc }) => { desc(DESC, 0, DATA, 32, VIRTQ_DESC_F_INDIRECT); desc(DATA, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 1); desc(DATA, 1, DATA, 1, VIRTQ_DESC_F_NEXT, 0); }, /loops/],
    ['an indirect next past the table', ({ desc }) => { desc(DESC, 0, DATA, 32, VIRTQ_DESC_F_INDIRECT); desc(DATA, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 2); }, /out of range/],
    ['a chain longer than the queue', ({ desc }) => { desc(DESC, 0, DATA + 0x100, 16 * 9, VIRTQ_DESC_F_INDIRECT); for (let i = 0; i < 9; i++) desc(DATA + 0x100, i, DATA, 1, VIRTQ_DESC_F_NEXT, i + 1); }, /too long/],
  ];
  for (const [what, build, reason] of malformed) {
    it(`breaks the queue on ${what}`, () => {
      const t = make();
      build(t);
      t.publish(0);
      expect(t.q.pop()).toBe(null);
      expect(t.reasons).toHaveLength(1);
      expect(t.reasons[0]).toMatch(reason);
      expect(t.q.broken).toMatch(reason);
      // A broken queue hands out nothing more, even good chains, until reset.
      t.desc(DESC, 2, DATA, 1, 0);
      t.publish(2);
      expect(t.q.pop()).toBe(null);
      expect(t.reasons).toHaveLength(1);
    });
  }

  it('breaks on an avail index that runs more than a ring ahead', () => {
    const t = make();
    t.view.setUint16(AVAIL - BASE + 2, N + 1, true);
    expect(t.q.pop()).toBe(null);
    expect(t.reasons[0]).toMatch(/ahead/);
  });

  it('rejects indirect tables when the feature is off', () => {
    const t = make({ indirect: false });
    t.desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_INDIRECT);
    t.desc(DATA, 0, DATA, 1, 0);
    t.publish(0);
    expect(t.q.pop()).toBe(null);
    expect(t.reasons[0]).toMatch(/INDIRECT_DESC/);
  });

  it('caps the bytes of one chain even when descriptors alias the same RAM', () => {
    const t = make({ maxChainBytes: 0x4000 });
    for (let i = 0; i < 4; i++) t.desc(DESC, i, BASE, 0x1800, i < 3 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
    t.publish(0);
    expect(t.q.pop()).toBe(null);
    expect(t.reasons[0]).toMatch(/too large/);
  });

  it('accepts zero-length descriptors and keeps the device-writable order rule', () => {
    const t = make();
    t.desc(DESC, 0, DATA, 0, VIRTQ_DESC_F_NEXT, 1);
    t.desc(DESC, 1, DATA, 4, VIRTQ_DESC_F_WRITE);
    t.publish(0);
    const c = t.q.pop()!;
    expect(c.readable).toHaveLength(0);
    expect(c.writableLen).toBe(4);
  });

  it('saves and restores its state, rejecting invalid saved state', () => {
    const t = make();
    t.desc(DESC, 0, DATA, 4, VIRTQ_DESC_F_WRITE);
    t.publish(0);
    t.q.pushUsed(t.q.pop()!.head, 4);
    const s = t.q.saveState();
    const q2 = new SplitQueue(new GuestMemory({ ram: t.ram, ramBase: BASE }), { maxSize: N });
    expect(q2.restore(structuredClone(s))).toBe(null);
    expect(q2.saveState()).toEqual(s);
    expect(q2.restore({ ...s, usedIdx: 70000 })).toMatch(/index/);
    expect(q2.restore({ ...s, descAddr: 0 })).toMatch(/outside RAM/);
    expect(q2.restore({ ...s, size: 3 })).toMatch(/size/);
  });
});

describe('device writes are reported for the hart', () => {
  it('reports the written part of the writable segments when the chain is returned', () => {
    const writes: [number, number][] = [];
    const { q, desc, publish } = make({ onDeviceWrite: (off, len) => writes.push([off, len]) });
    desc(DESC, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1); // device-readable header
    desc(DESC, 1, DATA + 0x100, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    desc(DESC, 2, DATA + 0x200, 100, VIRTQ_DESC_F_WRITE);
    publish(0);
    const chain = q.pop();
    expect(chain).not.toBeNull();
    expect(writes).toEqual([]); // nothing before the device hands the chain back
    q.pushUsed(chain!.head, 150);
    expect(writes).toEqual([[DATA + 0x100 - BASE, 100], [DATA + 0x200 - BASE, 50]]);
  });
});

describe('device writes mark RAM pages written (cpu/ram-pager.ts writtenPages, for in-memory snapshots)', () => {
  it('marks the pages a chain writes and the used ring, and no page a device only reads', () => {
    const { ram, q, desc, publish } = make();
    const written = writtenPages(ram);
    written.fill(0); // as after an in-memory snapshot: only writes from here on count
    desc(DESC, 0, BASE + 0x9000, 16, VIRTQ_DESC_F_NEXT, 1); // device-readable, page 9
    desc(DESC, 1, BASE + 0xaff0, 0x20, VIRTQ_DESC_F_WRITE, 0); // device-writable, across pages 10 and 11
    publish(0);
    const chain = q.pop()!;
    chain.read(0, new Uint8Array(16));
    expect([...written].flatMap((b, p) => (b ? [p] : []))).toEqual([]); // popping and reading write nothing
    chain.write(0, new Uint8Array(0x18).fill(7));
    q.pushUsed(chain.head, 0x18);
    expect([...written].flatMap((b, p) => (b ? [p] : []))).toEqual([(USED - BASE) / 0x1000, 10, 11]);
  });
});
