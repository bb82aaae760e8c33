/**
 * In-memory snapshots (Machine.snapshotInMemory): a restore from one pages RAM in as the guest
 * reaches it (src/cpu/ram-pager.ts). Proof that paging in loses nothing: a deterministic guest
 * restored from memory prints what the same guest restored from a file prints, and at a later
 * instant both machines hold the same RAM and the same state, byte for byte. Bad input is a
 * clear error.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVisorError, Machine, type MemorySnapshot } from '../../src/sdk/index.js';
import { readSnapshotFile } from '../../src/host/snapshot/file.js';
import { counterGuest } from './guest.js';
import { collect, settle } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-memsnap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kernel = join(dir, 'counter.img');
writeFileSync(kernel, counterGuest({ ticks: 12, work: 8000, sleepTicks: 10_000, printTime: true }));
const config = { kernel, memoryMiB: 16, deterministic: true };
const fileSnap = join(dir, 'vm.snap');
let want = '';
let before = '';
let mem: MemorySnapshot;

/**
 * The guest's whole output (a machine run to its end), and a machine run to line 3: its output
 * so far and an in-memory snapshot there (and a file snapshot, when `file` is given).
 */
async function reference(c: typeof config, file?: string): Promise<{ want: string; before: string; mem: MemorySnapshot }> {
  const ref = await Machine.create(c);
  const refOut = collect(ref);
  await ref.start();
  await ref.whenStopped();
  const vm = await Machine.create(c);
  const out = collect(vm);
  await vm.runUntil({ output: '0000000000000003 ' });
  await settle();
  const before = out.text();
  const mem = await vm.snapshotInMemory();
  if (file !== undefined) await vm.snapshot(file);
  await vm.kill();
  return { want: refOut.text(), before, mem };
}

beforeAll(async () => {
  ({ want, before, mem } = await reference(config, fileSnap));
}, 60_000);

/** RAM and machine state of a snapshot file, to compare two machines at one instant. */
async function contents(path: string): Promise<{ ram: Uint8Array; machine: string }> {
  const s = await readSnapshotFile(path);
  const ram = new Uint8Array(config.memoryMiB << 20);
  await s.loadRam(ram);
  return { ram, machine: JSON.stringify(s.machine) };
}

async function failure(p: Promise<Machine>): Promise<string> {
  try {
    await (await p).kill();
  } catch (err) {
    if (isVisorError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'restored';
}

describe('in-memory snapshots', () => {
  it('hold only the pages that hold data, in shared memory', () => {
    expect(mem.kind).toBe('visor-memory-snapshot');
    expect(mem.ram.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(mem.present.length).toBe((16 << 20) / 4096);
    const present = mem.present.reduce((n, b) => n + (b !== 0 ? 1 : 0), 0);
    expect(present).toBe(mem.presentPages);
    // The guest's code and device tree, the 16 KiB table it writes: far less than 16 MiB.
    expect(present).toBeGreaterThanOrEqual(5);
    expect(present).toBeLessThan(2048);
  });

  it('a restore from memory continues exactly, paging in only what the guest reaches', async () => {
    const vm = await Machine.restore(mem);
    const out = collect(vm);
    await vm.whenStopped();
    await settle();
    expect(before + out.text()).toBe(want);
    const { ram } = vm.stats();
    expect(ram.pagedIn).toBeGreaterThan(0);
    expect(ram.pagedIn + ram.pending).toBe(mem.presentPages);
    expect(ram.pending).toBeGreaterThan(0); // the device tree: this guest never reads it
  });

  it('a prewarmed worker rehearses the latest in-memory snapshot while idle; its machine then continues exactly, on the RAM it reserved', async () => {
    await (await Machine.restore(mem, { start: false })).kill(); // this process has restored it: the pool offers it
    Machine.prewarm(1);
    await new Promise((r) => setTimeout(r, 4000)); // start-up, the hart's warm-up, 100 ms idle, the rehearsal
    const vm = await Machine.restore(mem);
    const out = collect(vm);
    expect(vm.startTimings['at.rehearsed']).toBeLessThan(0); // before this restore was asked for
    await vm.whenStopped();
    await settle();
    expect(before + out.text()).toBe(want);
  });

  it('at a later instant, a machine paged in from memory equals one restored from the file', async () => {
    const until = { output: '0000000000000008 ' };
    const a = await Machine.restore(mem, { start: false });
    const b = await Machine.restore(fileSnap, { start: false });
    await a.runUntil(until);
    await b.runUntil(until);
    // A restored machine's pages still pending come from the image while the snapshot is written.
    expect(a.stats().ram.pending).toBeGreaterThan(0);
    const pa = join(dir, 'a.snap');
    const pb = join(dir, 'b.snap');
    await a.snapshot(pa);
    await b.snapshot(pb);
    expect(a.stats().ram.pending).toBe(0); // a file holds all of RAM: it fetched the rest
    const [ca, cb] = await Promise.all([contents(pa), contents(pb)]);
    expect(ca.machine).toBe(cb.machine);
    expect(Buffer.compare(ca.ram, cb.ram)).toBe(0);
    await Promise.all([a.kill(), b.kill()]);
  });

  it('a snapshot of a machine still paging in carries the pages it never fetched', async () => {
    const a = await Machine.restore(mem, { start: false });
    const out = collect(a);
    await a.runUntil({ output: '0000000000000006 ' });
    await settle();
    const mark = out.text().length;
    const pending = a.stats().ram.pending;
    expect(pending).toBeGreaterThan(0);
    const again = await a.snapshotInMemory();
    expect(a.stats().ram.pending).toBe(pending); // left in the image, not fetched
    // On the image it was restored from: only the pages it wrote since (its table), on top.
    expect(again.base).toBeDefined();
    expect(again.presentPages).toBeGreaterThan(0);
    expect(again.presentPages).toBeLessThan(mem.presentPages);
    const c = await Machine.restore(again);
    const cOut = collect(c);
    await a.resume();
    await Promise.all([a.whenStopped(), c.whenStopped()]);
    await settle();
    expect(cOut.text()).toBe(out.text().slice(mark));
    expect(want.endsWith(cOut.text())).toBe(true);
    expect(cOut.text()).toMatch(/done\n$/);
  });

  it('refuses what is not one, or one that does not fit its machine, with a clear error', async () => {
    expect(await failure(Machine.restore({ kind: 'something' } as unknown as MemorySnapshot))).toMatch(/^InvalidArgument: /);
    expect(await failure(Machine.restore({ ...mem, present: mem.present.subarray(1) }))).toMatch(/^CorruptImage: .*layer 0 of the RAM image does not fit/);
    expect(await failure(Machine.restore({ ...mem, machine: '{"runner":' }))).toMatch(/^CorruptImage: .*'machine' is not valid JSON/);
    const meta = JSON.parse(mem.meta) as { config: { memoryMiB: number } };
    meta.config.memoryMiB = 32;
    expect(await failure(Machine.restore({ ...mem, meta: JSON.stringify(meta) }))).toMatch(/^CorruptImage: .*RAM is 16777216 bytes; its machine has 33554432/);
    // Layers: one of another size, and a chain that loops (structured clones keep cycles).
    const other = { bytes: new Uint8Array(4096), present: new Uint8Array(1) };
    expect(await failure(Machine.restore({ ...mem, base: other }))).toMatch(/^CorruptImage: .*layer 1/);
    const loop: { bytes: Uint8Array; present: Uint8Array; base?: unknown } = { bytes: mem.ram, present: mem.present };
    loop.base = loop;
    expect(await failure(Machine.restore({ ...mem, base: loop as MemorySnapshot['base'] }))).toMatch(/^CorruptImage: .*more than 16 layers/);
    expect(await failure(Machine.restore(mem, { keepVsock: [{ guestPort: 1024, hostPort: 2 ** 32 }] }))).toMatch(/^InvalidArgument: keepVsock: .*32-bit port/);
    expect(await failure(Machine.restore(mem))).toBe('restored');
    const vm = await Machine.restore(mem, { start: false });
    await expect(vm.snapshotInMemory({ vsockBarrier: { guestPort: 1024, hostPort: 1, hostBytes: -1 } })).rejects.toThrow(/vsockBarrier.hostBytes must be a whole number/);
    // A machine without vsock: no stream to hold, so no link (its children would reset it).
    expect((await vm.snapshotInMemory({ vsockBarrier: { guestPort: 1024, hostPort: 1, hostBytes: 0 } })).link).toBeUndefined();
    await vm.kill();
  });

  it('snapshots of snapshots stack, each holding only what was written since the last', async () => {
    const a = await Machine.restore(mem, { start: false });
    const out = collect(a);
    await a.runUntil({ output: '0000000000000005 ' });
    const first = await a.snapshotInMemory();
    await a.runUntil({ output: '0000000000000007 ' });
    await settle();
    const mark = out.text().length;
    const second = await a.snapshotInMemory();
    expect(second.base?.base).toBeDefined(); // second, on first, on mem
    expect(second.presentPages).toBeLessThanOrEqual(first.presentPages);
    const c = await Machine.restore(second);
    const cOut = collect(c);
    await a.resume();
    await Promise.all([a.whenStopped(), c.whenStopped()]);
    await settle();
    expect(cOut.text()).toBe(out.text().slice(mark));
    expect(cOut.text()).toMatch(/done\n$/);
    expect(want.endsWith(cOut.text())).toBe(true);
  });

  it('a pause or a snapshot right after a resume finds the machine as it should', async () => {
    // Its own guest, with ~500 M instructions left after the snapshot's line: the shared one
    // finishes ~1 M instructions after it (a few ms with the JIT), so under load it could end
    // before the snapshot below was asked for ("cannot snapshot a machine that is stopped").
    const long = join(dir, 'counter-long.img');
    writeFileSync(long, counterGuest({ ticks: 12, work: 4_000_000, sleepTicks: 10_000, printTime: true }));
    const { want, mem } = await reference({ ...config, kernel: long });
    const a = await Machine.restore(mem, { start: false });
    await a.resume();
    await a.pause();
    expect(a.state).toBe('paused');
    const at = a.stats().instructions;
    await new Promise((r) => setTimeout(r, 100));
    expect(a.stats().instructions).toBe(at); // nothing runs once paused
    const out = collect(a);
    await a.resume();
    const snap = await a.snapshotInMemory(); // parks the loop, then starts it again
    const b = await Machine.restore(snap);
    const bOut = collect(b);
    await Promise.all([a.whenStopped(), b.whenStopped()]);
    await settle();
    // b continues from the snapshot's instant: its output is the end of a's.
    expect(bOut.text()).toMatch(/done\n$/);
    expect(out.text().endsWith(bOut.text())).toBe(true);
    expect(want.endsWith(out.text())).toBe(true);
  });
});
