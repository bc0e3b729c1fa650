/** The two store engines, each given the history, ingested, queried and explained. */
import { statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openStore } from '../../src/issuer/store/open.js';
import type { History } from './history.js';
import { type EngineFigures, ingest, type QueryFigures, querySpecs, timeQuery } from './measure.js';
import { postgresDatabase, show } from './postgres.js';

/** Statements kept from the GC, as sqlite-engine.ts keeps its own (a better-sqlite3 Statement destructor can abort Node 24). */
const RETAINED: unknown[] = [];
function retained<T>(statement: T): T {
  RETAINED.push(statement);
  return statement;
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

export async function runSqlite(history: History, work: string, log: (line: string) => void): Promise<EngineFigures> {
  const dataDir = path.join(work, 'sqlite');
  const store = await openStore({ dataDir });
  const file = path.join(dataDir, 'issuer.db');
  try {
    log(`\nSQLite (${file}): ingesting ${history.records.length.toLocaleString('en')} records`);
    const ingested = await ingest(store, history, log);
    const sizeDetail = { 'issuer.db': fileSize(file), 'issuer.db-wal': fileSize(`${file}-wal`) };
    const storedSessions = (await store.listSessions({ limit: 1_000_000 })).length;
    const specs = await querySpecs(store, history);
    const inspect = new Database(file, { readonly: true });
    const queries: QueryFigures[] = [];
    let settings: Record<string, string>;
    try {
      const value = (sql: string) => String(Object.values(retained(inspect.prepare(sql)).get() as Record<string, unknown>)[0]);
      // The store's own connection has the same defaults: sqlite-engine.ts sets only journal_mode and busy_timeout.
      settings = { version: value('SELECT sqlite_version()'), journal_mode: value('PRAGMA journal_mode'), synchronous: value('PRAGMA synchronous'), cache_size: value('PRAGMA cache_size') };
      for (const spec of specs) {
        const plan = (retained(inspect.prepare(`EXPLAIN QUERY PLAN ${spec.sql}`)).all(...spec.params) as { detail: string }[]).map((row) => row.detail).join('; ');
        queries.push({ ...(await timeQuery(spec)), plan });
      }
    } finally {
      inspect.close();
    }
    return { engine: 'sqlite', settings, ingest: { ...ingested, sizeBytes: sizeDetail['issuer.db'] + sizeDetail['issuer.db-wal'], sizeDetail, storedSessions }, queries };
  } finally {
    await store.close();
  }
}

export async function runPostgres(history: History, work: string, log: (line: string) => void, { noSync }: { noSync: boolean }): Promise<EngineFigures> {
  const database = await postgresDatabase(noSync);
  try {
    const store = await openStore({ dataDir: path.join(work, 'postgres'), storeUrl: database.url });
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const settings: Record<string, string> = { version: database.version };
      for (const name of ['fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'work_mem', 'autovacuum']) {
        settings[name] = await show(client, name);
      }
      log(`\nPostgreSQL ${database.version} (${Object.entries(settings).filter(([name]) => name !== 'version').map(([name, value]) => `${name}=${value}`).join(', ')}): ingesting ${history.records.length.toLocaleString('en')} records`);
      const ingested = await ingest(store, history, log);
      const sizes = (
        await client.query<{ database: string; records: string; sessions: string }>(
          "SELECT pg_database_size(current_database()) AS database, pg_total_relation_size('audit_records') AS records, pg_total_relation_size('sessions') AS sessions",
        )
      ).rows[0]!;
      const analyzed = (await client.query<{ relname: string; last_autoanalyze: Date | null }>("SELECT relname, last_autoanalyze FROM pg_stat_user_tables WHERE relname IN ('audit_records', 'sessions') ORDER BY relname")).rows;
      settings.autoanalyzed = analyzed.map((row) => `${row.relname} ${row.last_autoanalyze ? 'yes' : 'not yet'}`).join(', ');
      const storedSessions = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM sessions')).rows[0]!.n);
      const specs = await querySpecs(store, history);
      const queries: QueryFigures[] = [];
      for (const spec of specs) {
        const figures = await timeQuery(spec);
        let n = 0;
        const sql = spec.sql.replace(/\?/g, () => `$${++n}`);
        const plan = (await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, spec.params)).rows.map((row) => row['QUERY PLAN']).join('\n');
        queries.push({ ...figures, plan });
      }
      return {
        engine: 'postgres',
        settings,
        ingest: { ...ingested, sizeBytes: Number(sizes.database), sizeDetail: { database: Number(sizes.database), audit_records: Number(sizes.records), sessions: Number(sizes.sessions) }, storedSessions },
        queries,
      };
    } finally {
      await client.end();
      await store.close();
    }
  } finally {
    await database.close();
  }
}
