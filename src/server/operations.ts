/**
 * Long actions as operations: the request gets 202 and `Location: /v1/operations/{id}`, the
 * work goes on, and `GET /v1/operations/{id}/wait` returns when it is done. Operations are
 * rows in the store, so a client can read an outcome after the fact; ones a daemon restart
 * cut short are marked failed on start.
 */
import { randomBytes } from 'node:crypto';
import { VisorError } from '../base/errors.js';
import type { EventBus } from './events.js';
import type { Store } from './store.js';

export interface OperationView {
  id: string;
  kind: string;
  target: string;
  status: 'running' | 'success' | 'failure';
  result?: unknown;
  error?: { code: string; message: string };
  createdAt: string;
  updatedAt: string;
}

interface OpRow {
  id: string;
  project: string;
  kind: string;
  target: string;
  status: OperationView['status'];
  result: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
}

function view(r: OpRow): OperationView {
  return {
    id: r.id, kind: r.kind, target: r.target, status: r.status,
    ...(r.result !== null ? { result: JSON.parse(r.result) } : {}),
    ...(r.error !== null ? { error: JSON.parse(r.error) } : {}),
    createdAt: r.created_at, updatedAt: r.updated_at,
  };
}

export class Operations {
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly store: Store, private readonly events: EventBus) {}

  /** Marks operations left running by a previous daemon as failed. */
  recover(): number {
    return this.store.run(`UPDATE operations SET status = 'failure', error = ?, updated_at = ? WHERE status = 'running'`, [
      JSON.stringify({ code: 'Internal', message: 'the daemon stopped before the operation finished' }), new Date().toISOString(),
    ]);
  }

  get running(): number {
    return this.inFlight.size;
  }

  start(project: string, kind: string, target: string, work: () => Promise<unknown>): OperationView {
    const now = new Date().toISOString();
    const id = `op-${randomBytes(8).toString('hex')}`;
    this.store.run('INSERT INTO operations (id, project, kind, target, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [id, project, kind, target, 'running', now, now]);
    this.events.publish({ type: 'operation', project, id, kind, target, status: 'running' });
    const done = (async () => {
      let status: OperationView['status'] = 'success';
      let result: string | null = null;
      let error: string | null = null;
      try {
        const r = await work();
        result = r === undefined ? null : JSON.stringify(r);
      } catch (err) {
        status = 'failure';
        const e = err instanceof VisorError ? err : new VisorError('Internal', err instanceof Error ? err.message : String(err));
        error = JSON.stringify({ code: e.code, message: e.message });
      }
      try {
        this.store.run('UPDATE operations SET status = ?, result = ?, error = ?, updated_at = ? WHERE id = ?', [status, result, error, new Date().toISOString(), id]);
      } catch {
        // the store is closing (daemon shutdown): recover() marks it on the next start
      }
      this.events.publish({ type: 'operation', project, id, kind, target, status });
    })().finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, done);
    return this.get(project, id);
  }

  get(project: string, id: string): OperationView {
    const r = this.store.get<OpRow>('SELECT * FROM operations WHERE id = ? AND project = ?', [id, project]);
    if (!r) throw new VisorError('NotFound', `operation ${id}: no such operation`);
    return view(r);
  }

  list(project: string, limit = 100): OperationView[] {
    return this.store.all<OpRow>('SELECT * FROM operations WHERE project = ? ORDER BY created_at DESC LIMIT ?', [project, limit]).map(view);
  }

  /** The operation once done, or as it stands after `timeoutMs`. */
  async wait(project: string, id: string, timeoutMs: number): Promise<OperationView> {
    this.get(project, id);
    const p = this.inFlight.get(id);
    if (p) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([p, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    return this.get(project, id);
  }

  /** Resolves when every operation in flight has finished. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
  }
}
