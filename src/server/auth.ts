/**
 * Bearer tokens, roles and projects. A token is `visor_` + 32 random bytes in base64url; the
 * store keeps only its SHA-256, and a presented token is looked up by the hash of what was
 * presented and then compared in constant time (timingSafeEqual), so neither the store nor
 * the timing of a refusal reveals a token.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { VisorError } from '../base/errors.js';
import type { Store } from './store.js';

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What a role may do: each includes the ones before it. */
const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function roleAllows(have: Role, need: Role): boolean {
  return RANK[have] >= RANK[need];
}

export interface Principal {
  tokenId: string;
  name: string;
  role: Role;
  project: string;
}

export interface TokenInfo {
  id: string;
  name: string;
  role: Role;
  project: string;
  createdAt: string;
  revokedAt: string | null;
}

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class Tokens {
  constructor(private readonly store: Store) {}

  /** A new token: the secret is returned once and never stored. */
  create(name: string, role: Role, project: string): { token: string; info: TokenInfo } {
    const token = `visor_${randomBytes(32).toString('base64url')}`;
    const info: TokenInfo = { id: `tok-${randomUUID().slice(0, 8)}`, name, role, project, createdAt: new Date().toISOString(), revokedAt: null };
    this.store.run('INSERT INTO tokens (id, name, hash, role, project, created_at) VALUES (?, ?, ?, ?, ?, ?)', [
      info.id, name, hashToken(token).toString('hex'), role, project, info.createdAt,
    ]);
    return { token, info };
  }

  list(): TokenInfo[] {
    return this.store.all<Record<string, string | null>>('SELECT id, name, role, project, created_at, revoked_at FROM tokens ORDER BY created_at').map((r) => ({
      id: r.id!, name: r.name!, role: r.role as Role, project: r.project!, createdAt: r.created_at!, revokedAt: r.revoked_at ?? null,
    }));
  }

  revoke(id: string): void {
    const n = this.store.run('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [new Date().toISOString(), id]);
    if (n === 0) throw new VisorError('NotFound', `token ${id}: no such token (or already revoked)`);
  }

  count(): number {
    return this.store.get<{ n: number }>('SELECT COUNT(*) AS n FROM tokens')!.n;
  }

  /** The principal a presented token stands for, or undefined. */
  verify(presented: string): Principal | undefined {
    if (presented.length > 200) return undefined;
    const h = hashToken(presented);
    const row = this.store.get<Record<string, string | null>>('SELECT id, name, hash, role, project, revoked_at FROM tokens WHERE hash = ?', [h.toString('hex')]);
    if (!row) return undefined;
    const stored = Buffer.from(row.hash!, 'hex');
    if (stored.length !== h.length || !timingSafeEqual(stored, h) || row.revoked_at) return undefined;
    return { tokenId: row.id!, name: row.name!, role: row.role as Role, project: row.project! };
  }
}

/**
 * Refuses a client (by address) after `maxFailures` failed authentications within
 * `windowMs`, until the window has passed: guessing tokens is slow, a typo is not punished long.
 */
export class AuthFailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly maxFailures = 10, private readonly windowMs = 60_000) {}

  private recent(client: string, now: number): number[] {
    const list = (this.failures.get(client) ?? []).filter((t) => now - t < this.windowMs);
    if (list.length) this.failures.set(client, list);
    else this.failures.delete(client);
    return list;
  }

  /** Throws RateLimited while the client is over its limit. */
  check(client: string, now = Date.now()): void {
    const list = this.recent(client, now);
    if (list.length >= this.maxFailures) {
      const retry = Math.ceil((list[0]! + this.windowMs - now) / 1000);
      throw new VisorError('RateLimited', `too many failed authentications from ${client}: try again in ${retry} s`);
    }
  }

  fail(client: string, now = Date.now()): void {
    const list = this.recent(client, now);
    list.push(now);
    this.failures.set(client, list);
    // Bound the table against a flood of distinct addresses.
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
  }
}
