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
  const runnerOf = (client: pg.Pool | pg.PoolClient): SqlRunner => ({
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
  const checkout = async (): Promise<pg.PoolClient> => {
    try {
      return await pool.connect();
    } catch (err) {
      throw translated(err, location);
    }
  };
  // Fail at start with the reason (unreachable, wrong password, no such database), not at the first request.
  (await checkout()).release();
  const poolRunner = runnerOf(pool);
  return {
    kind: 'postgres',
    location,
    query: poolRunner.query,
    execute: poolRunner.execute,
    async transaction(work) {
      const client = await checkout();
      const tx = runnerOf(client);
      try {
        await tx.execute('BEGIN');
        const result = await work(tx);
        await tx.execute('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    async withMigrationLock(work) {
      const client = await checkout();
      try {
        await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
        try {
          return await work();
        } finally {
          await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]).catch(() => undefined);
        }
      } finally {
        client.release();
      }
    },
    async close() {
      await pool.end();
    },
  };
}
