/**
 * Machine worker threads: spawning them (from the build, or from TypeScript sources under tsx)
 * and the pool of workers started ahead of need. Kept apart from machine.ts and light (Node's
 * worker_threads and url only) so that `bin/visor.js` can start a `visor run`'s worker before
 * the CLI's own modules have loaded: the thread's start-up, visor's modules and the hart's
 * warm-up (~0.6 s) then overlap the CLI's (~0.35 s) instead of following it.
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Command, WorkerInit } from './protocol.js';
import type { MemorySnapshot } from '../host/snapshot/memory.js';

/**
 * Module loader hooks for running from TypeScript sources: inline the hart's opcode numbers
 * (each member of the `Op` const enum becomes its number) in what tsx produced, as tsc does for the build and vitest.config.ts does
 * for tests. Without it V8 compiles the interpreter's switch to a chain of comparisons and the
 * hart runs ~20× slower in the worker.
 */
function opcodeHooks(opcodesFile: string): string {
  return `
import { readFileSync } from 'node:fs';
const text = readFileSync(${JSON.stringify(opcodesFile)}, 'utf8');
const head = 'export const enum Op {';
const start = text.indexOf(head) + head.length;
const body = text.slice(start, text.indexOf('\\n}', start));
const values = new Map();
let next = 0;
for (const raw of body.replace(/\\/\\/.*$/gm, '').replace(/\\/\\*[\\s\\S]*?\\*\\//g, '').split(',')) {
  const m = /^([A-Z0-9_]+)\\s*(?:=\\s*(\\d+))?$/.exec(raw.trim());
  if (!m) continue;
  next = m[2] !== undefined ? Number(m[2]) : next;
  values.set(m[1], next++);
}
export async function load(url, context, nextLoad) {
  const r = await nextLoad(url, context);
  if (!url.includes('/src/') || !url.endsWith('.ts') || r.source == null) return r;
  const src = typeof r.source === 'string' ? r.source : new TextDecoder().decode(r.source);
  if (!src.includes('Op.')) return r;
  return { ...r, source: src.replace(/\\bOp\\.([A-Z0-9_]+)\\b/g, (w, n) => (values.has(n) ? String(values.get(n)) : w)) };
}`;
}

/**
 * Workers started ahead of need (Machine.prewarm, prewarmWorkers): loading visor's modules is most of a
 * worker's start-up, so a warm one takes a machine at once. They do not keep the process alive.
 */
const warm: Worker[] = [];

export function takeWorker(init: WorkerInit): Worker {
  const w = warm.shift();
  if (!w) return spawnWorker(init);
  w.removeAllListeners('exit');
  w.removeAllListeners('error');
  w.ref();
  w.postMessage({ op: 'init', init } satisfies Command);
  return w;
}

/** The worker script, as TypeScript under tsx (tests, development) or as built JavaScript. */
function spawnWorker(workerData: WorkerInit | null): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const entry = new URL('./worker-entry.ts', here).href;
    const hooks = 'data:text/javascript,' + encodeURIComponent(opcodeHooks(fileURLToPath(new URL('../cpu/opcodes.ts', here))));
    const boot = `import('tsx/esm/api').then(async (m) => {
      m.register();
      (await import('node:module')).register(${JSON.stringify(hooks)});
      return import(${JSON.stringify(entry)});
    })`;
    return new Worker(boot, { eval: true, workerData });
  }
  return new Worker(new URL('./worker-entry.js', here), { workerData });
}

/**
 * What idle warm workers rehearse (worker-entry.ts rehearse): the latest snapshots this process
 * restored from memory, templates' and forks', newest first, held weakly (a fork's goes with
 * its children; a template's image stays while sandbox.ts caches it).
 */
const rehearsals: WeakRef<MemorySnapshot>[] = [];
const REHEARSALS = 4;
const rehearsing = new WeakSet<Worker>();

function offerRehearsal(w: Worker): void {
  let image: MemorySnapshot | undefined;
  for (const r of rehearsals) if ((image = r.deref())) break;
  if (!image || rehearsing.has(w)) return;
  rehearsing.add(w);
  w.postMessage({ op: 'rehearse', image } satisfies Command);
}

/** A snapshot in memory was restored: warm workers waiting, and those to come, rehearse with it. */
export function rehearseWith(image: MemorySnapshot): void {
  const i = rehearsals.findIndex((r) => r.deref() === image);
  if (i === 0) return;
  if (i > 0) rehearsals.splice(i, 1);
  rehearsals.unshift(new WeakRef(image));
  rehearsals.length = Math.min(rehearsals.length, REHEARSALS);
  for (const w of warm) offerRehearsal(w);
}

/**
 * Starts workers until `count` wait in the pool, so the next create() or restore() skips
 * worker start-up. Idle warm workers do not keep the process alive.
 */
export function prewarmWorkers(count = 1): void {
  while (warm.length < count) {
    const w = spawnWorker(null);
    offerRehearsal(w);
    w.unref();
    const drop = () => {
      const i = warm.indexOf(w);
      if (i >= 0) warm.splice(i, 1);
    };
    w.on('error', drop);
    w.on('exit', drop);
    warm.push(w);
  }
}
