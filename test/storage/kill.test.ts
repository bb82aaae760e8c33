import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeFileHandle } from '../../src/host/file-handle.js';
import { checkQcow2 } from '../../src/storage/qcow2/check.js';
import { createQcow2 } from '../../src/storage/qcow2/create.js';
import { Qcow2Device } from '../../src/storage/qcow2/device.js';
import { rng } from '../../src/storage/testing.js';
import { HAVE_QEMU_IMG, qemuCheck } from './qemu-img.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-kill-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ROUNDS = Number(process.env.VISOR_KILL_ROUNDS ?? 20);
const WRITER = resolve(__dirname, 'kill-writer.ts');

/** Starts the writer, waits for "ready", lets it run `ms`, then SIGKILLs it. */
function runAndKill(image: string, seed: number, ms: number): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, image, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
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

describe.skipIf(!HAVE_QEMU_IMG)('crash safety', () => {
  it(`a writer SIGKILLed at random points never leaves corruption (${ROUNDS} rounds)`, async () => {
    const seed = Number(process.env.VISOR_SEED ?? Date.now() % 1_000_000);
    console.log(`kill test seed ${seed} (replay: VISOR_SEED=${seed})`);
    const r = rng(seed);
    const image = join(dir, 'kill.qcow2');
    const f = await NodeFileHandle.open(image, { readOnly: false, create: 'truncate' });
    // Small clusters: more metadata per byte written, so kills land in metadata updates.
    await createQcow2(f, { size: 32 << 20, clusterSize: 4096 });
    await f.close();
    let leaks = 0;
    for (let round = 0; round < ROUNDS; round++) {
      await runAndKill(image, seed + round, 20 + Math.floor(r() * 300));
      const c = qemuCheck(image);
      expect(c.corruptions, `seed ${seed} round ${round}:\n${c.raw}`).toBe(0);
      expect(c.checkErrors, `seed ${seed} round ${round}:\n${c.raw}`).toBe(0);
      leaks += c.leaks;
    }
    console.log(`kill test: ${ROUNDS} rounds, ${leaks} leaked clusters in total (allowed)`);
    // visor's own check agrees with qemu-img on the leaks, and its repair leaves the image clean.
    const before = qemuCheck(image);
    const dev = await Qcow2Device.open(await NodeFileHandle.open(image, { readOnly: false }), { readOnly: false });
    const ours = await checkQcow2(dev, { repair: true });
    await dev.close();
    expect(ours.corruptions).toBe(0);
    expect(ours.leaks).toBe(before.leaks);
    const after = qemuCheck(image);
    expect(after.leaks + after.corruptions, after.raw).toBe(0);
  }, 240_000);
});
