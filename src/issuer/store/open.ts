/**
 * Opening the store: SQLite in the data directory unless a PostgreSQL URL
 * is given (`--store-url`, env KUBE_RELAY_STORE_URL), migrated to the
 * schema this code knows before anything reads it.
 */
import type { SqlEngine } from './engine.js';
import { migrate } from './migrations.js';
import { openPostgresEngine } from './postgres-engine.js';
import { sqlStore } from './sql-store.js';
import { openSqliteEngine } from './sqlite-engine.js';
import type { IssuerStore } from './types.js';

export interface StoreLocation {
  dataDir: string;
  /** postgres://… or postgresql://…; undefined: SQLite in `dataDir`. */
  storeUrl?: string | undefined;
}

export class StoreUrlError extends Error {}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

export async function openEngine(location: StoreLocation): Promise<SqlEngine> {
  if (location.storeUrl === undefined || location.storeUrl === '') return openSqliteEngine(location.dataDir);
  if (!isPostgresUrl(location.storeUrl)) throw new StoreUrlError('the store URL must be postgres://USER:PASSWORD@HOST:PORT/DATABASE (leave it unset for SQLite in the data directory)');
  return openPostgresEngine(location.storeUrl);
}

export async function openStore(location: StoreLocation): Promise<IssuerStore> {
  const engine = await openEngine(location);
  try {
    await migrate(engine);
  } catch (err) {
    await engine.close();
    throw err;
  }
  return sqlStore(engine);
}
