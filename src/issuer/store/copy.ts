/**
 * `kube-relay store migrate`: every row of one store copied into another,
 * empty one (SQLite → PostgreSQL, when an issuer grows past one machine).
 * Key hashes are copied as they are, so every API key and connector key
 * keeps working provided the target's replicas use the source's pepper.
 */
import type { SqlEngine } from './engine.js';

/** Every table the schema has, parents first; the schema table itself is the target's own. */
const TABLES = ['agents', 'clusters', 'admins', 'grants', 'grantable_roles', 'public_signing_keys', 'signers', 'store_settings', 'relay_connections'];

export class TargetNotEmptyError extends Error {}

export async function copyStore(from: SqlEngine, to: SqlEngine): Promise<Record<string, number>> {
  for (const table of TABLES) {
    const [row] = await to.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${table}`);
    if (Number(row?.n ?? 0) > 0) throw new TargetNotEmptyError(`the target store at ${to.location} is not empty (table ${table} has rows): migrate into a new, empty database`);
  }
  const copied: Record<string, number> = {};
  await to.transaction(async (tx) => {
    for (const table of TABLES) {
      const rows = await from.query<Record<string, unknown>>(`SELECT * FROM ${table}`);
      for (const row of rows) {
        const columns = Object.keys(row);
        await tx.execute(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`, columns.map((c) => row[c]));
      }
      copied[table] = rows.length;
    }
  });
  return copied;
}
