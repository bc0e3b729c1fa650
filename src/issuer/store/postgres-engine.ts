/**
 * The engine for several issuer/hub replicas on separate machines (DESIGN
 * §9): PostgreSQL through a `pg` pool. TLS comes from the URL
 * (`sslmode`, `sslrootcert`, as libpq reads them). Migrations run under a
 * session advisory lock, so replicas starting together migrate once. The
 * URL's password never appears in a message: `location` is the URL without
 * it.
 */
import pg from 'pg';
import { type SqlEngine, type SqlRunner, StoreUnavailableError, UniqueViolationError } from './engine.js';

/** pg_advisory_lock key for migrations: "krlmigr" as a number, any constant will do. */
const MIGRATION_LOCK_KEY = 0x6b726c6d696772n;
/** The first key of pg_advisory_xact_lock(int, int) for named transaction locks ("kr"); the second is the name's hash. */
const TRANSACTION_LOCK_CLASS = 0x6b72;
const CONNECT_TIMEOUT_MS = 10_000;
const POOL_SIZE = 10;

/** The URL as it may be shown: the password replaced. */
export function redactStoreUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = 'redacted';
    return parsed.toString();
  } catch {
    return 'an unparsable store URL';
  }
}

/** `?` placeholders, as the store writes them, to PostgreSQL's `$1, $2, …`. */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

function translated(err: unknown, location: string): Error {
  const e = err as { code?: string; message?: string };
  if (e.code === '23505') return new UniqueViolationError(e.message ?? 'unique violation');
  // Connection-level failures (refused, DNS, TLS, authentication, a server gone) say where, never the password.
  if (e.code === undefined || /^(08|28|57P|53)/.test(e.code) || ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH'].includes(e.code)) {
    return new StoreUnavailableError(`the PostgreSQL store at ${location} cannot be used: ${e.message ?? String(err)}`);
  }
  return err as Error;
}

export async function openPostgresEngine(url: string): Promise<SqlEngine> {
  const location = redactStoreUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // An idle client whose server went away emits 'error' on the pool; without a listener it would crash the process.
  pool.on('error', () => undefined);
  const runnerOf = (client: pg.PoolClient): SqlRunner => ({
    async query<T>(sql: string, params: readonly unknown[] = []) {
      try {
        return (await client.query(numbered(sql), params as unknown[])).rows as T[];
      } catch (err) {
        throw translated(err, location);
      }
    },
    async execute(sql, params = []) {
      try {
        return (await client.query(numbered(sql), params as unknown[])).rowCount ?? 0;
      } catch (err) {
        throw translated(err, location);
      }
    },
  });
  /**
   * A client of its own for `work`. Failing to get one is always the store being unusable, whatever
   * the server's code (a database not accepting connections says 55000, a dropped one 3D000). pg
   * emits 'error' on a checked-out client whose session ends (pg_terminate_backend, a restart) and
   * the pool listens only on idle ones: without a listener here that would crash the process.
   */
  const withClient = async <T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw new StoreUnavailableError(`the PostgreSQL store at ${location} cannot be used: ${(err as Error).message ?? String(err)}`);
    }
    let broken: Error | undefined;
    const onError = (err: Error) => (broken = err);
    client.on('error', onError);
    try {
      return await work(client);
    } finally {
      client.off('error', onError);
      // A client whose session ended is dropped from the pool, not handed to the next caller.
      client.release(broken);
    }
  };
  // Fail at start with the reason (unreachable, wrong password, no such database), not at the first request.
  await withClient(async () => undefined);
  const poolRunner: SqlRunner = {
    query: (sql, params) => withClient((client) => runnerOf(client).query(sql, params)),
    execute: (sql, params) => withClient((client) => runnerOf(client).execute(sql, params)),
  };
  return {
    kind: 'postgres',
    location,
    query: poolRunner.query,
    execute: poolRunner.execute,
    transaction: (work, options) =>
      withClient(async (client) => {
        const tx = runnerOf(client);
        try {
          await tx.execute('BEGIN');
          if (options?.lock !== undefined) await tx.query('SELECT pg_advisory_xact_lock(?, hashtext(?))', [TRANSACTION_LOCK_CLASS, options.lock]);
          const result = await work(tx);
          await tx.execute('COMMIT');
          return result;
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      }),
    withMigrationLock: (work) =>
      withClient(async (client) => {
        await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
        try {
          return await work();
        } finally {
          await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]).catch(() => undefined);
        }
      }),
    async close() {
      await pool.end();
    },
  };
}
