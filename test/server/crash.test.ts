/**
 * kill -9 at random points (opt-in: VISOR_DAEMON_CRASH=1; VISOR_DAEMON_CRASH_ROUNDS, default 50;
 * VISOR_DAEMON_CRASH_SEED repeats a run).
 *
 * 1. The store alone: a writer committing two-row transactions is killed mid-stream; the file
 *    passes integrity_check and every transaction is all there or not at all.
 * 2. The daemon: each round starts it on the same state directory, checks what the last kill
 *    left (the store opens, every machine has a true state, every qcow2 passes `qemu-img
 *    check`, the audit chain verifies), then fires creates (with new disks), starts,
 *    snapshots, file writes and stops at it and kills it -9 after a random delay.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../../src/server/store.js';
import { act, http, ROOT, spawnDaemon } from './process.js';
import { tempDir } from './support.js';

const RUN = process.env.VISOR_DAEMON_CRASH === '1';
const ROUNDS = Number(process.env.VISOR_DAEMON_CRASH_ROUNDS ?? 50);
const SEED = Number(process.env.VISOR_DAEMON_CRASH_SEED ?? Date.now() % 1e9);
const tmp = tempDir('visord-crash-');
afterAll(() => tmp.cleanup());

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.runIf(RUN)(`kill -9 (seed ${SEED}, ${ROUNDS} rounds)`, () => {
  it('the store survives a writer killed mid-transaction', async () => {
    const r = rng(SEED);
    const db = join(tmp.dir, 'writer.db');
    for (let round = 0; round < 10; round++) {
      const p = spawn(process.execPath, ['--import', 'tsx', 'test/server/store-writer.ts', db], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((res) => p.stdout!.once('data', () => res()));
      await sleep(20 + r() * 300);
      p.kill('SIGKILL');
      await new Promise((res) => p.once('exit', res));
      const s = Store.open(db);
      expect(s.integrityCheck()).toBe('ok');
      const a = s.get<{ n: number }>('SELECT COUNT(*) AS n FROM audit')!.n;
      const o = s.get<{ n: number }>('SELECT COUNT(*) AS n FROM operations')!.n;
      expect(o).toBe(a); // both rows of every transaction, or neither
      s.close();
    }
  }, 120_000);

  it('the daemon survives kill -9 during creates, starts, snapshots and file writes', async () => {
    const r = rng(SEED + 1);
    const state = join(tmp.dir, 'state');
    const images = join(tmp.dir, 'images');
    mkdirSync(images);
    let token = '';
    let machinesSeen = 0;
    let disksChecked = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const d = await spawnDaemon(state, images);
      token ||= readFileSync(join(state, 'admin.token'), 'utf8').trim();
      // What the last kill left.
      const { machines } = (await http(d.url, token, 'GET', '/v1/machines')).json;
      for (const m of machines) {
        expect(['created', 'stopped']).toContain(m.state); // nothing runs that the daemon did not start
        if (m.state === 'stopped') expect(m.reason).toBeTruthy();
      }
      machinesSeen = Math.max(machinesSeen, machines.length);
      const v = (await http(d.url, token, 'GET', '/v1/audit/verify')).json;
      expect(v.ok, JSON.stringify(v)).toBe(true);
      const diskDir = join(state, 'disks', 'default');
      const { disks } = (await http(d.url, token, 'GET', '/v1/disks')).json;
      for (const disk of disks) {
        const f = join(diskDir, `${disk.name}.qcow2`);
        expect(existsSync(f), f).toBe(true);
        execFileSync('qemu-img', ['check', '-q', f]);
        disksChecked++;
      }
      if (existsSync(diskDir)) expect(readdirSync(diskDir).length).toBe(disks.length); // no orphans

      // Work, then a kill at a random point in it.
      const work = (async () => {
        const name = `m${round}`;
        const c = await http(d.url, token, 'POST', '/v1/machines', { name, memoryMiB: 16, ...(r() < 0.6 ? { diskMiB: 4 + Math.floor(r() * 60) } : {}) });
        const id = c.json.id;
        await act(d.url, token, `/v1/machines/${id}/start`);
        await Promise.all([
          act(d.url, token, `/v1/machines/${id}/snapshot`, { name: `s${round}` }),
          fetch(`${d.url}/v1/machines/${id}/files?path=/tmp/f${round}`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body: new Blob([new Uint8Array(4096)]) }),
          http(d.url, token, 'POST', '/v1/disks', { name: `v${round}`, sizeMiB: 1 + Math.floor(r() * 100) }),
        ]);
        // Keep a handful of machines: stop and delete older ones.
        for (const m of machines.slice(0, Math.max(0, machines.length - 4))) {
          if (m.state !== 'created' && m.state !== 'stopped') await act(d.url, token, `/v1/machines/${m.id}/stop`, { force: true });
          await http(d.url, token, 'DELETE', `/v1/machines/${m.id}`);
        }
        await act(d.url, token, `/v1/machines/${id}/stop`, { force: true });
      })().catch(() => {});
      await sleep(r() * 2500);
      d.p.kill('SIGKILL');
      await d.exited;
      await work;
    }
    expect(machinesSeen).toBeGreaterThan(0);
    expect(disksChecked).toBeGreaterThan(0);
    console.log(`crash rounds: ${ROUNDS}, seed ${SEED}, qcow2 checks ${disksChecked}`);
  }, 3_600_000);
});
