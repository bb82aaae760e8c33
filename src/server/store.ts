/**
 * The daemon's state in SQLite: machines, disks, snapshots, networks, projects, tokens,
 * operations and the audit log.
 *
 * SQLite is node-sqlite3-wasm: SQLite compiled to WebAssembly with a VFS over node:fs's
 * synchronous calls (pwrite, fsync), so it installs from the npm registry alone (no node-gyp,
 * no prebuilt download) and persists to a real file. Its rollback journal and fsync make a
 * transaction atomic across `kill -9` (test/server/crash.test.ts kills writers mid-transaction).
 * Its VFS locks with a directory `FILE.lock`: a killed process leaves it behind, so open()
 * removes it, which is safe only because the daemon holds the state directory's own lock
 * (state-dir.ts) and so is the only process using the file.
 */
import fs, { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import type { Database as DatabaseT } from 'node-sqlite3-wasm';
import { VisorError } from '../base/errors.js';

const { Database } = createRequire(import.meta.url)('node-sqlite3-wasm') as typeof import('node-sqlite3-wasm');

type Row = Record<string, number | bigint | string | Uint8Array | null>;
type Value = string | number | null;

/**
 * node-sqlite3-wasm's VFS answers "does another connection hold a RESERVED lock?" by checking
 * that `FILE.lock` exists, and its own SHARED lock creates that directory before SQLite asks.
 * So SQLite never sees a journal left by a killed writer as hot, never rolls it back, and reads
 * the half-written pages: "database disk image is malformed" after ~3 % of kill -9s in
 * test/server/crash.test.ts (the same files open clean in another SQLite, which rolls back).
 * The store's file has one user, the daemon holding the state directory's lock, so for these
 * files the true answer is always "no": the check is answered so here, for them alone. The
 * library calls fs.accessSync through the module object, which is what this wraps.
 */
const ownLockPaths = new Set<string>();
let accessWrapped = false;
function answerReservedLockForOwnFile(dbPath: string): void {
  if (!accessWrapped) {
    const original = fs.accessSync;
    fs.accessSync = function accessSync(this: unknown, p: fs.PathLike, mode?: number): void {
      if (typeof p === 'string' && ownLockPaths.has(p)) {
        throw Object.assign(new Error(`ENOENT: ${p} (store: no other connection holds a lock)`), { code: 'ENOENT' });
      }
      return original.call(fs, p, mode);
    } as typeof fs.accessSync;
    accessWrapped = true;
  }
  ownLockPaths.add(`${dbPath}.lock`);
  ownLockPaths.add(`${resolve(dbPath)}.lock`);
}

/** Numbered migrations, applied in order once each, each in its own transaction. */
const MIGRATIONS: readonly string[] = [
  // 1: the first schema
  `CREATE TABLE projects (
     name TEXT PRIMARY KEY,
     limits TEXT NOT NULL DEFAULT '{}',
     created_at TEXT NOT NULL
   );
   CREATE TABLE machines (
     id TEXT PRIMARY KEY,
     project TEXT NOT NULL,
     name TEXT NOT NULL,
     spec TEXT NOT NULL,
     state TEXT NOT NULL,
     reason TEXT,
     resume_snapshot TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     UNIQUE (project, name)
   );
   CREATE TABLE disks (
     id TEXT PRIMARY KEY,
     project TEXT NOT NULL,
     name TEXT NOT NULL,
     machine_id TEXT,
     format TEXT NOT NULL,
     size_bytes INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     UNIQUE (project, name)
   );
   CREATE TABLE snapshots (
     id TEXT PRIMARY KEY,
     project TEXT NOT NULL,
     machine_id TEXT NOT NULL,
     name TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     UNIQUE (project, name)
   );
   CREATE TABLE networks (
     id TEXT PRIMARY KEY,
     project TEXT NOT NULL,
     name TEXT NOT NULL,
     spec TEXT NOT NULL,
     created_at TEXT NOT NULL,
     UNIQUE (project, name)
   );
   CREATE TABLE tokens (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     role TEXT NOT NULL,
     project TEXT NOT NULL,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );
   CREATE TABLE operations (
     id TEXT PRIMARY KEY,
     project TEXT NOT NULL,
     kind TEXT NOT NULL,
     target TEXT NOT NULL,
     status TEXT NOT NULL,
     result TEXT,
     error TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE audit (
     seq INTEGER PRIMARY KEY,
     at TEXT NOT NULL,
     actor TEXT NOT NULL,
     project TEXT NOT NULL,
     action TEXT NOT NULL,
     target TEXT NOT NULL,
     result TEXT NOT NULL,
     prev TEXT NOT NULL,
     hash TEXT NOT NULL
   );`,
];

export class Store {
  private readonly db: DatabaseT;
  private depth = 0;

  private constructor(db: DatabaseT) {
    this.db = db;
  }

  /** Opens (creating if needed) and migrates the store at `path`. Only its owner may call this. */
  static open(path: string): Store {
    // A stale lock directory from a killed owner (see the file comment).
    if (existsSync(`${path}.lock`)) rmSync(`${path}.lock`, { recursive: true, force: true });
    answerReservedLockForOwnFile(path);
    let db: DatabaseT;
    try {
      db = new Database(path);
      // Rollback journal (the VFS has no shared memory for WAL), fsync at every commit. The
      // lock is taken once and held (EXCLUSIVE): the VFS locks with mkdir/rmdir, which per
      // statement was most of a read's cost, and the daemon is the file's only user anyway.
      db.exec('PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;');
    } catch (err) {
      throw new VisorError('IoError', `store ${path}: cannot open: ${(err as Error).message}`, { cause: err });
    }
    const s = new Store(db);
    s.migrate();
    return s;
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    const row = this.db.get('SELECT MAX(version) AS v FROM migrations') as { v: number | null } | null;
    const have = row?.v ?? 0;
    if (have > MIGRATIONS.length) {
      throw new VisorError('Unsupported', `store: schema version ${have} is newer than this visor knows (${MIGRATIONS.length}): upgrade visor`);
    }
    for (let v = have + 1; v <= MIGRATIONS.length; v++) {
      this.tx(() => {
        this.db.exec(MIGRATIONS[v - 1]!);
        this.db.run('INSERT INTO migrations (version, applied_at) VALUES (?, ?)', [v, new Date().toISOString()]);
      });
    }
  }

  get schemaVersion(): number {
    return ((this.db.get('SELECT MAX(version) AS v FROM migrations') as { v: number }).v) ?? 0;
  }

  /** Runs `fn` in one transaction (nested calls join the outer one). */
  tx<T>(fn: () => T): T {
    if (this.depth > 0) {
      this.depth++;
      try {
        return fn();
      } finally {
        this.depth--;
      }
    }
    this.db.exec('BEGIN IMMEDIATE');
    this.depth = 1;
    try {
      const r = fn();
      this.db.exec('COMMIT');
      return r;
    } catch (err) {
      try {
        this.db.exec('ROLLBACK');
      } catch {
        // the transaction is already gone (SQLite rolled back on error)
      }
      throw err;
    } finally {
      this.depth = 0;
    }
  }

  run(sql: string, values: Value[] = []): number {
    return this.db.run(sql, values).changes;
  }

  all<T = Row>(sql: string, values: Value[] = []): T[] {
    return this.db.all(sql, values) as T[];
  }

  get<T = Row>(sql: string, values: Value[] = []): T | undefined {
    return (this.db.get(sql, values) as T | null) ?? undefined;
  }

  /** SQLite's own consistency check: 'ok' or what is wrong. */
  integrityCheck(): string {
    const rows = this.db.all('PRAGMA integrity_check') as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join('; ');
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}
