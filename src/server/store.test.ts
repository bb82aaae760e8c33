import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog } from './audit.js';
import { AuthFailureLimiter, Tokens } from './auth.js';
import { Store } from './store.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('store', () => {
  it('migrates once, reopens, and rolls a failed transaction back', () => {
    const path = join(dir, 'a.db');
    const s = Store.open(path);
    expect(s.schemaVersion).toBe(1);
    s.run(`INSERT INTO projects (name, created_at) VALUES ('p', 'now')`);
    expect(() => s.tx(() => {
      s.run(`INSERT INTO projects (name, created_at) VALUES ('q', 'now')`);
      throw new Error('boom');
    })).toThrow('boom');
    s.close();
    const t = Store.open(path);
    expect(t.schemaVersion).toBe(1);
    expect(t.all('SELECT name FROM projects')).toEqual([{ name: 'p' }]);
    expect(t.integrityCheck()).toBe('ok');
    t.close();
  });
});

describe('tokens', () => {
  it('stores only hashes, verifies, revokes and limits failures', () => {
    const s = Store.open(join(dir, 't.db'));
    const tokens = new Tokens(s);
    const { token, info } = tokens.create('ci', 'operator', 'alpha');
    expect(token).toMatch(/^visor_[A-Za-z0-9_-]{43}$/);
    expect(tokens.verify(token)).toMatchObject({ role: 'operator', project: 'alpha', tokenId: info.id });
    expect(tokens.verify(`${token}x`)).toBeUndefined();
    s.close();
    expect(readFileSync(join(dir, 't.db')).includes(Buffer.from(token))).toBe(false);
    const s2 = Store.open(join(dir, 't.db'));
    const t2 = new Tokens(s2);
    t2.revoke(info.id);
    expect(t2.verify(token)).toBeUndefined();
    expect(() => t2.revoke(info.id)).toThrow(/no such token/);
    s2.close();

    const l = new AuthFailureLimiter(3, 1000);
    for (let i = 0; i < 3; i++) l.fail('a', 100 + i);
    expect(() => l.check('a', 200)).toThrow(/too many failed authentications/);
    expect(() => l.check('b', 200)).not.toThrow();
    expect(() => l.check('a', 1200)).not.toThrow(); // the window passed
  });
});

describe('audit chain', () => {
  it('verifies, and names a changed, removed or re-ordered entry', () => {
    const s = Store.open(join(dir, 'audit.db'));
    const log = new AuditLog(s);
    for (let i = 0; i < 20; i++) log.append({ actor: 'admin', project: 'p', action: 'POST /v1/machines', target: `m${i}`, result: i % 3 ? 'ok' : 'NotAllowed' });
    log.append({ actor: 'x', project: 'p', action: 'a', target: 'nul\u0000byte', result: 'ok' });
    expect(log.verify()).toMatchObject({ ok: true, entries: 21 });

    s.run(`UPDATE audit SET result = 'ok' WHERE seq = 7`);
    expect(log.verify()).toMatchObject({ ok: false, seq: 7, problem: 'entry 7 was changed after it was written' });
    s.run(`UPDATE audit SET result = 'NotAllowed' WHERE seq = 7`);
    expect(log.verify().ok).toBe(true);

    s.run('DELETE FROM audit WHERE seq = 12');
    expect(log.verify()).toMatchObject({ ok: false, seq: 12, problem: 'entry 12 is missing (next is 13)' });
    // Renumbering to close the gap breaks the chain instead.
    s.run('UPDATE audit SET seq = seq - 1 WHERE seq > 12');
    expect(log.verify()).toMatchObject({ ok: false, seq: 12 });
    s.close();
  });
});
