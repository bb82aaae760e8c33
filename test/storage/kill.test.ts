import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeFileHandle } from '../../src/host/file-handle.js';
import { checkQcow2 } from '../../src/storage/qcow2/check.js';
import { createQcow2 } from '../../src/storage/qcow2/create.js';
import { Qcow2Device } from '../../src/storage/qcow2/device.js';
import { firstDiff, pattern, rng } from '../../src/storage/testing.js';
import { HAVE_QEMU_IMG, qemuCheck } from './qemu-img.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-kill-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ROUNDS = Number(process.env.VISOR_KILL_ROUNDS ?? 20);
const WRITER = resolve(__dirname, 'kill-writer.ts');
const SIZE = 8 << 20;

/** Starts the writer, waits for "ready", lets it run `ms`, then SIGKILLs it. */
function runAndKill(image: string, seed: number, log: string, ms: number): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, image, String(seed), log], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') res();
      else rej(new Error(`writer exited by itself (code ${code}): ${err}`));
    });
  });
}

/** What the test knows the image holds: the active disk and each snapshot's contents. */
interface Model {
  content: Uint8Array;
  snaps: Map<string, Uint8Array>;
}

type Op =
  | { kind: 'write'; off: number; len: number; tag: number }
  | { kind: 'zero'; off: number; len: number }
  | { kind: 'create' | 'apply' | 'delete'; name: string }
  | { kind: 'flush' };

function parseOp(line: string): Op {
  const [kind, a, b, c] = line.split(' ').slice(1);
  switch (kind) {
    case 'write':
      return { kind, off: Number(a), len: Number(b), tag: Number(c) };
    case 'zero':
      return { kind, off: Number(a), len: Number(b) };
    case 'create':
    case 'apply':
    case 'delete':
      return { kind, name: a! };
    case 'flush':
      return { kind };
    default:
      throw new Error(`bad log line: ${line}`);
  }
}

/** Applies a completed operation to the model. */
function replay(m: Model, op: Op): void {
  if (op.kind === 'write') m.content.set(pattern(op.len, op.tag), op.off);
  else if (op.kind === 'zero') m.content.fill(0, op.off, op.off + op.len);
  else if (op.kind === 'create') m.snaps.set(op.name, m.content.slice());
  else if (op.kind === 'apply') m.content.set(m.snaps.get(op.name)!);
  else if (op.kind === 'delete') m.snaps.delete(op.name);
}

async function readImage(image: string): Promise<{ content: Uint8Array; names: string[] }> {
  const dev = await Qcow2Device.open(await NodeFileHandle.open(image, { readOnly: true }), { readOnly: true });
  const content = new Uint8Array(dev.size);
  await dev.read(0, content);
  const names = dev.listSnapshots().map((s) => s.name);
  await dev.close();
  return { content, names };
}

const sameNames = (a: Iterable<string>, b: Iterable<string>) => [...a].sort().join() === [...b].sort().join();

/**
 * Checks the image against the model after a kill: every completed operation is there, and
 * the interrupted one (if any) is either wholly absent or wholly done: data operations per
 * sector (a block device promises no more), snapshot operations for the whole image.
 * Then the model takes the image's state.
 */
async function verify(m: Model, image: string, logText: string, where: string): Promise<string> {
  const lines = logText.split('\n').filter((l) => l !== '');
  let pending: Op | undefined;
  for (const l of lines) {
    if (l === 'E') {
      replay(m, pending!);
      pending = undefined;
    } else pending = parseOp(l);
  }
  const { content, names } = await readImage(image);
  const before = m.content;
  if (!pending || pending.kind === 'flush') {
    expect(sameNames(names, m.snaps.keys()), `${where}: snapshots [${names}] vs [${[...m.snaps.keys()]}]`).toBe(true);
    expect(firstDiff(content, before), `${where}: contents`).toBe(-1);
    return pending ? 'flush' : 'between operations';
  }
  const op = pending;
  if (op.kind === 'write' || op.kind === 'zero') {
    expect(sameNames(names, m.snaps.keys()), `${where}: snapshots`).toBe(true);
    const after = op.kind === 'write' ? pattern(op.len, op.tag) : new Uint8Array(op.len);
    expect(firstDiff(content.subarray(0, op.off), before.subarray(0, op.off)), `${where}: contents before the range`).toBe(-1);
    expect(firstDiff(content.subarray(op.off + op.len), before.subarray(op.off + op.len)), `${where}: contents after the range`).toBe(-1);
    for (let s = 0; s < op.len; s += 512) {
      const got = content.subarray(op.off + s, op.off + s + 512);
      const ok = firstDiff(got, before.subarray(op.off + s, op.off + s + 512)) === -1 || firstDiff(got, after.subarray(s, s + 512)) === -1;
      expect(ok, `${where}: ${op.kind} ${op.off}+${op.len}: sector at ${op.off + s} is neither before nor after`).toBe(true);
    }
    m.content = content;
    return op.kind;
  }
  const afterNames = new Set(m.snaps.keys());
  if (op.kind === 'create') afterNames.add(op.name);
  if (op.kind === 'delete') afterNames.delete(op.name);
  const isBefore = sameNames(names, m.snaps.keys());
  const isAfter = sameNames(names, afterNames);
  expect(isBefore || isAfter, `${where}: ${op.kind} ${op.name}: snapshots [${names}]`).toBe(true);
  if (op.kind === 'apply') {
    const done = firstDiff(content, m.snaps.get(op.name)!) === -1;
    expect(done || firstDiff(content, before) === -1, `${where}: apply ${op.name}: contents are neither before nor after`).toBe(true);
    m.content = content;
    return `apply (${done ? 'done' : 'not done'})`;
  }
  expect(firstDiff(content, before), `${where}: ${op.kind}: contents`).toBe(-1);
  const done = op.kind === 'create' ? names.includes(op.name) : !names.includes(op.name);
  if (done) replay(m, op);
  return `${op.kind} (${done ? 'done' : 'not done'})`;
}

describe.skipIf(!HAVE_QEMU_IMG)('crash safety', () => {
  it(`a writer SIGKILLed at random points never leaves corruption, nor a half-done snapshot operation (${ROUNDS} rounds)`, async () => {
    const seed = Number(process.env.VISOR_SEED ?? Date.now() % 1_000_000);
    console.log(`kill test seed ${seed} (replay: VISOR_SEED=${seed})`);
    const r = rng(seed);
    const image = join(dir, 'kill.qcow2');
    const log = join(dir, 'kill.log');
    const f = await NodeFileHandle.open(image, { readOnly: false, create: 'truncate' });
    // Small clusters: more metadata per byte written, so kills land in metadata updates.
    await createQcow2(f, { size: SIZE, clusterSize: 4096 });
    await f.close();
    const model: Model = { content: new Uint8Array(SIZE), snaps: new Map() };
    const interrupted = new Map<string, number>();
    let leaks = 0;
    for (let round = 0; round < ROUNDS; round++) {
      await runAndKill(image, seed + round, log, 20 + Math.floor(r() * 300));
      const where = `seed ${seed} round ${round}`;
      const c = qemuCheck(image);
      expect(c.corruptions, `${where}:\n${c.raw}`).toBe(0);
      expect(c.checkErrors, `${where}:\n${c.raw}`).toBe(0);
      leaks += c.leaks;
      const what = await verify(model, image, readFileSync(log, 'utf8'), where);
      interrupted.set(what, (interrupted.get(what) ?? 0) + 1);
    }
    console.log(`kill test: ${ROUNDS} rounds, ${leaks} leaked clusters in total (allowed); killed during: ${[...interrupted].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    // visor's own check agrees with qemu-img on the leaks, and its repair leaves the image clean.
    const before = qemuCheck(image);
    const dev = await Qcow2Device.open(await NodeFileHandle.open(image, { readOnly: false }), { readOnly: false });
    const ours = await checkQcow2(dev, { repair: true });
    expect(ours.corruptions).toBe(0);
    expect(ours.leaks).toBe(before.leaks);
    // Every snapshot still holds what it held when it was taken.
    for (const [name, want] of model.snaps) {
      await dev.applySnapshot(name);
      const got = new Uint8Array(SIZE);
      await dev.read(0, got);
      expect(firstDiff(got, want), `snapshot ${name} after ${ROUNDS} kills`).toBe(-1);
    }
    await dev.close();
    const after = qemuCheck(image);
    expect(after.leaks + after.corruptions, after.raw).toBe(0);
  }, 240_000);
});
