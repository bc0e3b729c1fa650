/**
 * The embedded engine: one SQLite file in the data directory (mode 0600),
 * WAL so that the CLI and a running issuer can share it. better-sqlite3 is
 * synchronous; calls are queued per file so that a transaction's statements
 * never interleave with another caller's in the same process.
 */
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { type SqlEngine, type SqlRunner, UniqueViolationError } from './engine.js';

type Statement = Database.Statement<unknown[], unknown>;

/**
 * Statements are prepared once per SQL text and never garbage-collected, even after close:
 * better-sqlite3 12 on Node 24 can abort the process in a Statement destructor run by the GC
 * (`RemoveEnvironmentCleanupHook` assertion, seen in our Node 24 CI). The store's SQL is a fixed
 * set of a few dozen texts per database, so this retains little.
 */
const RETAINED: unknown[] = [];
/**
 * One queue per database file, shared by every connection to it in this process: better-sqlite3
 * waits for a lock synchronously (busy_timeout), so a connection waiting for another one's open
 * transaction in the same process would block the event loop that transaction needs to finish.
 */
const QUEUES = new Map<string, Promise<unknown>>();

export function openSqliteEngine(dataDir: string): SqlEngine {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, 'issuer.db');
  const isNew = !existsSync(file);
  const db = new Database(file);
  if (isNew) chmodSync(file, 0o600);
  // exec, not pragma(): pragma() prepares a throwaway statement (see RETAINED).
  db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;');
  const statements = new Map<string, Statement>();
  RETAINED.push(db, statements);
  const prepared = (sql: string): Statement => {
    let statement = statements.get(sql);
    if (!statement) statements.set(sql, (statement = db.prepare<unknown[], unknown>(sql)));
    return statement;
  };
  const uniqueAware = <T>(run: () => T): T => {
    try {
      return run();
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new UniqueViolationError((err as Error).message);
      throw err;
    }
  };
  const runner: SqlRunner = {
    async query<T>(sql: string, params: readonly unknown[] = []) {
      return uniqueAware(() => prepared(sql).all(...(params as unknown[])) as T[]);
    },
    async execute(sql, params = []) {
      // Statements that return no rows (DDL) are run with exec: prepare() would keep them forever.
      if (params.length === 0 && /^\s*(CREATE|DROP|ALTER)\b/i.test(sql)) {
        db.exec(sql);
        return 0;
      }
      return uniqueAware(() => prepared(sql).run(...(params as unknown[])).changes);
    },
  };
  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const result = (QUEUES.get(file) ?? Promise.resolve()).then(work, work);
    QUEUES.set(file, result.catch(() => undefined));
    return result;
  };
  return {
    kind: 'sqlite',
    location: file,
    query: (sql, params) => serialized(() => runner.query(sql, params)),
    execute: (sql, params) => serialized(() => runner.execute(sql, params)),
    transaction: (work) =>
      serialized(async () => {
        db.exec('BEGIN IMMEDIATE');
        try {
          const result = await work(runner);
          db.exec('COMMIT');
          return result;
        } catch (err) {
          db.exec('ROLLBACK');
          throw err;
        }
      }),
    // One file, one machine: BEGIN IMMEDIATE in each migration's transaction already serializes writers.
    withMigrationLock: (work) => work(),
    async close() {
      await serialized(async () => db.close());
    },
  };
}
