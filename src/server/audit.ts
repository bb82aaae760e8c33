/**
 * The append-only audit log: one entry per state-changing request (who, what, on what, when,
 * with what result). Each entry's hash covers its fields and the previous entry's hash, so
 * changing or removing an entry breaks every hash after it: verify() names the first entry
 * that does not check. (Removing the newest entries leaves a shorter valid chain; the daemon
 * also publishes each entry on the events stream, where a collector can keep the head.)
 */
import { createHash } from 'node:crypto';
import type { Store } from './store.js';

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  project: string;
  action: string;
  target: string;
  result: string;
  prev: string;
  hash: string;
}

const GENESIS = '0'.repeat(64);

function entryHash(e: Omit<AuditEntry, 'hash'>): string {
  // A fixed field order: the hash is over exactly these values.
  const body = JSON.stringify([e.seq, e.at, e.actor, e.project, e.action, e.target, e.result, e.prev]);
  return createHash('sha256').update(body).digest('hex');
}

export class AuditLog {
  constructor(private readonly store: Store) {}

  append(e: { actor: string; project: string; action: string; target: string; result: string }): AuditEntry {
    return this.store.tx(() => {
      const last = this.store.get<{ seq: number; hash: string }>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
      const base = { seq: (last?.seq ?? 0) + 1, at: new Date().toISOString(), ...e, prev: last?.hash ?? GENESIS };
      const entry: AuditEntry = { ...base, hash: entryHash(base) };
      this.store.run('INSERT INTO audit (seq, at, actor, project, action, target, result, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
        entry.seq, entry.at, entry.actor, entry.project, entry.action, entry.target, entry.result, entry.prev, entry.hash,
      ]);
      return entry;
    });
  }

  list(opts: { afterSeq?: number; limit?: number } = {}): AuditEntry[] {
    return this.store.all<AuditEntry>('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?', [opts.afterSeq ?? 0, opts.limit ?? 1000]);
  }

  /** Walks the whole chain: ok, or the first entry that was changed, inserted or removed. */
  verify(): { ok: true; entries: number; head: string } | { ok: false; entries: number; seq: number; problem: string } {
    let prev = GENESIS;
    let expectSeq = 1;
    let n = 0;
    for (;;) {
      const batch = this.store.all<AuditEntry>('SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT 1000', [expectSeq]);
      if (batch.length === 0) break;
      for (const e of batch) {
        n++;
        if (e.seq !== expectSeq) return { ok: false, entries: n, seq: expectSeq, problem: `entry ${expectSeq} is missing (next is ${e.seq})` };
        if (e.prev !== prev) return { ok: false, entries: n, seq: e.seq, problem: `entry ${e.seq} does not follow entry ${e.seq - 1} (an entry was removed or replaced)` };
        if (entryHash(e) !== e.hash) return { ok: false, entries: n, seq: e.seq, problem: `entry ${e.seq} was changed after it was written` };
        prev = e.hash;
        expectSeq++;
      }
    }
    return { ok: true, entries: n, head: prev };
  }
}
