/**
 * Boot snapshots through `visor run` (docs/guest-init.md "Boot snapshots"), on the 'tiny' image
 * in a private copy of the cache: the first run saves the machine where /init waits for its
 * arguments, later runs restore it and still get their own command, the host's time and
 * random state of their own; a damaged file is replaced by a boot; --cold-boot boots.
 * Opt-in (boots): VISOR_BOOT_TESTS=1.
 */
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureImage } from '../../src/images/index.js';

const ON = process.env.VISOR_BOOT_TESTS === '1';
const TIMEOUT = 900_000;
const root = new URL('../..', import.meta.url).pathname;

let cache = '';

/** `visor ARGS` from the sources with the private cache; stdin `input` (undefined: /dev/null). */
function visor(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string; from: number; at: number }> {
  const from = Date.now() / 1000;
  const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
    `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(args)}))`], { cwd: root, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: { ...process.env, XDG_CACHE_HOME: cache } });
  if (input !== undefined) p.stdin!.end(input);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, stdout: out, stderr: err, from, at: Date.now() / 1000 })));
}

async function snapshots(): Promise<string[]> {
  return (await readdir(join(cache, 'visor', 'images', 'tiny'))).filter((n) => n.startsWith('boot-') && n.endsWith('.snap'));
}

/** Prints the guest's clock and a UUID from the kernel's CRNG, then exits 7. */
const PROBE = ['--verbose', '--', 'sh', '-c', 'echo "clock $(date +%s) uuid $(cat /proc/sys/kernel/random/uuid)"; exit 7'];

function probe(r: { stdout: string; stderr: string }): { clock: number; uuid: string } {
  const m = /clock (\d+) uuid ([0-9a-f-]{36})/.exec(r.stdout);
  expect(m, `${r.stdout}\n${r.stderr}`).not.toBeNull();
  return { clock: Number(m![1]), uuid: m![2]! };
}

describe.skipIf(!ON)('visor run from a boot snapshot', () => {
  beforeAll(async () => {
    const img = await ensureImage('tiny');
    cache = await mkdtemp(join(tmpdir(), 'visor-bootsnap-cache-'));
    await cp(img.dir, join(cache, 'visor', 'images', 'tiny'), { recursive: true, filter: (src) => !/\/boot-[^/]*\.snap$/.test(src) });
  }, TIMEOUT);
  afterAll(async () => {
    if (cache) await rm(cache, { recursive: true, force: true });
  });

  it('the first run saves one, later runs restore it: own command, exit status, clock and random state', async () => {
    const first = await visor(['run', ...PROBE]);
    expect(first.code, first.stderr).toBe(7);
    expect(first.stderr).toMatch(/machine created \(booted, saving a boot snapshot\)/);
    expect(first.stderr).toMatch(/boot snapshot: saved /);
    expect(await snapshots()).toHaveLength(1);
    const a = probe(first);

    // Long enough that a clock left where the snapshot stopped it would show.
    await new Promise((r) => setTimeout(r, 15_000));
    const [second, third] = await Promise.all([visor(['run', ...PROBE]), visor(['run', ...PROBE])]);
    for (const r of [second, third]) {
      expect(r.code, r.stderr).toBe(7);
      expect(r.stderr).toMatch(/machine created \(restored\)/);
      expect(r.stderr).not.toMatch(/VISOR_ARGS/); // the line is not echoed
      // The clock is this run's, not the one saved 15 s before it started. (It may fall behind
      // the host's while the guest runs slowly: guest time is paced by its progress, clock-host.ts.)
      expect(probe(r).clock).toBeGreaterThanOrEqual(Math.floor(r.from) - 1);
      expect(probe(r).clock).toBeLessThanOrEqual(Math.ceil(r.at) + 1);
    }
    // Restored from one file, each run drew from random state of its own.
    const uuids = new Set([a.uuid, probe(second).uuid, probe(third).uuid]);
    expect(uuids.size).toBe(3);

    // Another command on the same snapshot.
    const other = await visor(['run', '--', 'sh', '-c', 'echo other; exit 0']);
    expect(other.code, other.stderr).toBe(0);
    expect(other.stdout).toBe('other\n');
    expect(await snapshots()).toHaveLength(1);
  }, TIMEOUT);

  it('nothing of the saving run\'s input is in the snapshot: each run reads its own stdin', async () => {
    for (const n of await snapshots()) await rm(join(cache, 'visor', 'images', 'tiny', n));
    const first = await visor(['run', '--verbose', '--', 'head', '-1'], 'first run\n');
    expect(first.stderr).toMatch(/boot snapshot: saved /);
    expect(first.stdout, first.stderr).toBe('first run\n');
    const second = await visor(['run', '--verbose', '--', 'head', '-1'], 'second run\n');
    expect(second.stderr).toMatch(/machine created \(restored\)/);
    expect(second.stdout, second.stderr).toBe('second run\n');
    expect(second.code).toBe(0);
  }, TIMEOUT);

  it('a damaged boot snapshot is replaced by a boot that saves a new one; --cold-boot boots', async () => {
    const [name] = await snapshots();
    const fh = await open(join(cache, 'visor', 'images', 'tiny', name!), 'r+');
    await fh.write(Buffer.from('garbage!'), 0, 8, 4096);
    await fh.close();
    const r = await visor(['run', ...PROBE]);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toMatch(/did not restore/);
    expect(r.stderr).toMatch(/boot snapshot: saved /);
    const again = await visor(['run', ...PROBE]);
    expect(again.stderr).toMatch(/machine created \(restored\)/);

    const cold = await visor(['run', '--cold-boot', ...PROBE]);
    expect(cold.code, cold.stderr).toBe(7);
    expect(cold.stderr).toMatch(/boot snapshot: not used \(asked to boot cold\)/);
    expect(cold.stderr).toMatch(/machine created \(booted\)/);
  }, TIMEOUT);
});
