/**
 * Restart semantics of a real daemon process: SIGTERM snapshots running and paused machines
 * and the next start brings them back in the same state, continuing; after kill -9 they come
 * back stopped with the reason, their qcow2 disks pass `qemu-img check`, the audit chain
 * verifies.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { act, http, spawnDaemon } from './process.js';
import { tempDir } from './support.js';

const tmp = tempDir('visord-restart-');
afterAll(() => tmp.cleanup());

function hasQemuImg(): boolean {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.CI === 'true') throw new Error('qemu-img is missing (apt-get install qemu-utils)');
    console.log('skipping the qemu-img check: qemu-img is not installed');
    return false;
  }
}

describe('daemon restarts', () => {
  it('SIGTERM keeps running and paused machines; kill -9 leaves them stopped with a reason and clean disks', async () => {
    const state = join(tmp.dir, 'state');
    const images = join(tmp.dir, 'images');
    mkdirSync(images);
    let d = await spawnDaemon(state, images);
    const token = readFileSync(join(state, 'admin.token'), 'utf8').trim();
    const a = (await http(d.url, token, 'POST', '/v1/machines', { name: 'a', memoryMiB: 16, diskMiB: 8 })).json.id;
    const b = (await http(d.url, token, 'POST', '/v1/machines', { name: 'b', memoryMiB: 16 })).json.id;
    expect((await act(d.url, token, `/v1/machines/${a}/start`)).status).toBe('success');
    expect((await act(d.url, token, `/v1/machines/${b}/start`)).status).toBe('success');
    expect((await act(d.url, token, `/v1/machines/${b}/pause`)).status).toBe('success');
    const before = (await http(d.url, token, 'GET', `/v1/machines/${a}`)).json.stats.instructions;
    expect(before).toBeGreaterThan(0);

    d.p.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    d = await spawnDaemon(state, images);
    const ma = (await http(d.url, token, 'GET', `/v1/machines/${a}`)).json;
    const mb = (await http(d.url, token, 'GET', `/v1/machines/${b}`)).json;
    expect(ma).toMatchObject({ state: 'running', reason: 'resumed after the daemon restarted' });
    expect(mb.state).toBe('paused');
    // It continued from where it was, not from boot.
    expect(ma.stats.instructions).toBeGreaterThanOrEqual(before);
    expect(readdirSync(join(state, 'machines', a)).filter((f) => f.endsWith('.snap'))).toEqual([]);

    d.p.kill('SIGKILL');
    await d.exited;
    d = await spawnDaemon(state, images);
    for (const id of [a, b]) {
      const m = (await http(d.url, token, 'GET', `/v1/machines/${id}`)).json;
      expect(m.state).toBe('stopped');
      expect(m.reason).toMatch(/^the daemon ended without stopping it/);
    }
    // Machines start again after a crash.
    expect((await act(d.url, token, `/v1/machines/${a}/start`)).status).toBe('success');
    expect((await http(d.url, token, 'GET', '/v1/audit/verify')).json.ok).toBe(true);
    d.p.kill('SIGTERM');
    await d.exited;
    if (hasQemuImg()) execFileSync('qemu-img', ['check', join(state, 'disks', 'default', 'a-root.qcow2')]);
  }, 120_000);
});
