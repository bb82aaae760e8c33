import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildLocked } from './sandbox-template.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-tpl-lock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A template that is a file: `cached` finds it, `build` writes it after `ms`. */
function fakeTemplate(name: string, ms: number) {
  const path = join(dir, name);
  let builds = 0;
  const cached = async () => (existsSync(path) ? await readFile(path, 'utf8') : undefined);
  const build = async () => {
    builds++;
    expect(readFileSync(`${path}.lock`, 'utf8')).toBe(String(process.pid)); // held while building
    await new Promise((r) => setTimeout(r, ms));
    writeFileSync(path, `built ${builds}`);
    return `built ${builds}`;
  };
  return { path, cached, build, builds: () => builds };
}

describe('template builds: one builder at a time (buildLocked)', () => {
  it('a second caller waits for the first build and takes its result', async () => {
    const t = fakeTemplate('a.snap', 700);
    const [x, y] = await Promise.all([buildLocked(t.path, t.cached, t.build), buildLocked(t.path, t.cached, t.build)]);
    expect(t.builds()).toBe(1);
    expect([x, y]).toEqual(['built 1', 'built 1']);
    expect(existsSync(`${t.path}.lock`)).toBe(false);
  });

  it('a lock whose process is gone is taken over; a failed build leaves no lock', async () => {
    const t = fakeTemplate('b.snap', 10);
    writeFileSync(`${t.path}.lock`, '999999999'); // no such pid
    expect(await buildLocked(t.path, t.cached, t.build)).toBe('built 1');
    expect(existsSync(`${t.path}.lock`)).toBe(false);
    const fails = buildLocked(join(dir, 'c.snap'), async () => undefined, async () => Promise.reject(new Error('boot failed')));
    await expect(fails).rejects.toThrow('boot failed');
    expect(existsSync(join(dir, 'c.snap.lock'))).toBe(false);
  });

  it('waits while a live process holds the lock', async () => {
    const t = fakeTemplate('d.snap', 10);
    writeFileSync(`${t.path}.lock`, String(process.pid)); // alive: this process, as another builder
    const waiting = buildLocked(t.path, t.cached, t.build);
    await new Promise((r) => setTimeout(r, 800));
    expect(t.builds()).toBe(0);
    writeFileSync(t.path, 'built elsewhere'); // that builder finishes (its lock stays until it removes it)
    expect(await waiting).toBe('built elsewhere');
    expect(t.builds()).toBe(0);
  });
});
