import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { FileHandle } from '../../src/storage/block-device.js';
import { MemoryFile } from '../../src/storage/memory-file.js';
import { checkQcow2 } from '../../src/storage/qcow2/check.js';
import { createQcow2 } from '../../src/storage/qcow2/create.js';
import { Qcow2Device } from '../../src/storage/qcow2/device.js';
import { firstDiff, pattern, rng } from '../../src/storage/testing.js';
import { HAVE_QEMU_IMG, qemuCheck } from './qemu-img.js';

/*
 * Snapshot create, apply and delete cut at every write: a process killed between two writes
 * leaves the file as the writes before the cut made it (the page cache keeps completed
 * writes). For each cut, qemu-img check must find no corruption, and the image must read as
 * the state before or the state after the operation, never a mix. The randomized SIGKILL
 * test (kill.test.ts) covers real processes; this one covers every window deterministically.
 */

const dir = mkdtempSync(join(tmpdir(), 'visor-snapcrash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

class Killed extends Error {}

/** A file that stops (throws) at write number `budget`, as a killed process would. */
class CutFile implements FileHandle {
  writes = 0;
  budget = Infinity;
  constructor(readonly inner: MemoryFile) {}
  size() {
    return this.inner.size();
  }
  read(o: number, b: Uint8Array) {
    return this.inner.read(o, b);
  }
  async write(o: number, d: Uint8Array) {
    if (this.writes >= this.budget) throw new Killed('killed');
    this.writes++;
    await this.inner.write(o, d);
  }
  truncate(s: number) {
    return this.inner.truncate(s);
  }
  punchHole(o: number, l: number) {
    return this.inner.punchHole(o, l);
  }
  sync() {
    return this.inner.sync();
  }
  close() {
    return this.inner.close();
  }
}

interface State {
  content: Uint8Array;
  snapshots: string[];
  refcountTableClusters: number;
}

async function stateOf(bytes: Uint8Array): Promise<State> {
  const dev = await Qcow2Device.open(new MemoryFile(bytes), { readOnly: true });
  const content = new Uint8Array(dev.size);
  await dev.read(0, content);
  return { content, snapshots: dev.listSnapshots().map((s) => s.name), refcountTableClusters: dev.header.refcountTableClusters };
}

type Op = (dev: Qcow2Device) => Promise<unknown>;

/** Base image: data, compressed and zero clusters, two snapshots, divergent writes after. */
async function baseImage(clusterSize: number, refcountOrder: number, size: number, fillTo: number): Promise<Uint8Array> {
  const f = new MemoryFile();
  await createQcow2(f, { size, clusterSize, refcountOrder });
  const dev = await Qcow2Device.open(f, { readOnly: false });
  const r = rng(clusterSize + refcountOrder);
  const scribble = async (n: number, tag: number) => {
    for (let i = 0; i < n; i++) {
      const len = (1 + Math.floor(r() * 16)) * 512;
      const off = Math.floor(r() * ((size - len) / 512)) * 512;
      const k = r();
      if (k < 0.7) await dev.write(off, pattern(len, tag + i));
      else if (k < 0.85) await dev.writeZeroes(off, len, r() < 0.5);
      else await dev.writeCompressed(Math.floor(off / clusterSize) * clusterSize, pattern(clusterSize, i & 3));
    }
  };
  await scribble(120, 1);
  await dev.createSnapshot('a');
  await scribble(60, 1000);
  await dev.createSnapshot('b');
  await scribble(60, 2000);
  // Fill every free cluster and grow the file to just below what the refcount table's
  // first cluster covers (one-cluster writes: each allocation takes the first free
  // cluster), so the new metadata of the switch must go past it and needs a bigger table.
  for (let off = 0; dev.file.length < fillTo && off < size; off += clusterSize) await dev.write(off, pattern(clusterSize, off));
  await dev.close();
  return f.bytes();
}

const OPS: [string, Op][] = [
  ['create', (d) => d.createSnapshot('c', 0)],
  ['apply', (d) => d.applySnapshot('a')],
  ['delete', (d) => d.deleteSnapshot('a')],
  ['delete the newest', (d) => d.deleteSnapshot('b')],
];

describe.skipIf(!HAVE_QEMU_IMG)('snapshot operations cut at every write', () => {
  // Every cut, or (`sample`) the first and last few and an even spread between.
  for (const [label, clusterSize, refcountOrder, size, fillTo, sample] of [
    ['4 KiB clusters, 16-bit refcounts', 4096, 4, 4 << 20, 0, 0],
    // 512-byte clusters with 64-bit refcounts: a refcount block covers 32 KiB and the
    // table's first cluster 2 MiB, so the switch touches many blocks and grows the table.
    ['512-byte clusters, 64-bit refcounts', 512, 6, 3 << 20, (2 << 20) - (4 << 10), Number(process.env.VISOR_CUT_SAMPLE ?? 4)],
  ] as const) {
    it(`leave qemu-img check clean and read as before or after (${label})`, async () => {
      const base = await baseImage(clusterSize, refcountOrder, size, fillTo);
      const before = await stateOf(base);
      const image = join(dir, `cut-${clusterSize}.qcow2`);
      let cuts = 0;
      let grown = 0;
      for (const [name, op] of OPS) {
        // The whole operation once: how many writes, and the state after.
        const whole = new CutFile(new MemoryFile(base));
        const d0 = await Qcow2Device.open(whole, { readOnly: false });
        const w0 = whole.writes;
        await op(d0);
        const total = whole.writes - w0;
        const after = await stateOf(whole.inner.bytes());
        if (after.refcountTableClusters > before.refcountTableClusters) grown++;
        writeFileSync(image, whole.inner.bytes());
        const clean = qemuCheck(image);
        expect(clean.corruptions + clean.leaks + clean.checkErrors, `${name}: ${clean.raw}`).toBe(0);
        expect(total).toBeGreaterThan(2);

        const cutsAt = new Set<number>();
        for (let n = 0; n < total; n++) {
          if (!sample || n < 3 || n >= total - 4 || n % Math.ceil(total / sample) === 0) cutsAt.add(n);
        }
        for (const n of cutsAt) {
          const cf = new CutFile(new MemoryFile(base));
          const dev = await Qcow2Device.open(cf, { readOnly: false });
          cf.budget = cf.writes + n;
          await expect(op(dev)).rejects.toBeInstanceOf(Killed);
          const bytes = cf.inner.bytes();
          writeFileSync(image, bytes);
          const c = qemuCheck(image);
          const where = `${label}, ${name}, cut after ${n} of ${total} writes`;
          expect(c.corruptions, `${where}: ${c.raw}`).toBe(0);
          expect(c.checkErrors, `${where}: ${c.raw}`).toBe(0);
          const ours = await checkQcow2(await Qcow2Device.open(new MemoryFile(bytes), { readOnly: true }), { repair: false });
          expect(ours.corruptions, `${where}: ${ours.messages.slice(0, 5).join('\n')}`).toBe(0);
          const s = await stateOf(bytes);
          const isBefore = firstDiff(s.content, before.content) === -1 && s.snapshots.join() === before.snapshots.join();
          const isAfter = firstDiff(s.content, after.content) === -1 && s.snapshots.join() === after.snapshots.join();
          expect(isBefore || isAfter, `${where}: snapshots [${s.snapshots}]`).toBe(true);
          cuts++;
        }
      }
      console.log(`${label}: ${cuts} cut points checked; ${grown} operations grew the refcount table`);
      if (fillTo > 0) expect(grown).toBeGreaterThan(0);
    }, 120_000);
  }
});
