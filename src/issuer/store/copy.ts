/**
 * `kube-relay store migrate`: every row of one store copied into another,
 * empty one (SQLite → PostgreSQL, when an issuer grows past one machine).
 * Key hashes are copied as they are, so every API key and connector key
 * keeps working provided the target's replicas use the source's pepper.
 */
import type { SqlEngine } from './engine.js';

/** Every table the schema has, parents first, each with its primary key (the order pages are read in); the schema table itself is the target's own. */
/** Every table but console_sessions: a move signs everyone out of the web console, which loses nothing. */
const TABLES: { name: string; key: string[] }[] = [
  { name: 'agents', key: ['name'] },
  { name: 'clusters', key: ['name'] },
  { name: 'admins', key: ['name'] },
  { name: 'grants', key: ['id'] },
  { name: 'grantable_roles', key: ['cluster', 'role'] },
  { name: 'policies', key: ['subject_kind', 'subject'] },
  { name: 'token_cuts', key: ['subject'] },
  { name: 'public_signing_keys', key: ['kid'] },
  { name: 'signers', key: ['id'] },
  { name: 'store_settings', key: ['name'] },
  { name: 'relay_connections', key: ['id'] },
  { name: 'sessions', key: ['id'] },
  { name: 'audit_records', key: ['cluster', 'id'] },
];
/** Rows read at a time: the central audit may hold millions. */
const PAGE_ROWS = 1_000;

export class TargetNotEmptyError extends Error {}

export async function copyStore(from: SqlEngine, to: SqlEngine): Promise<Record<string, number>> {
  for (const { name } of TABLES) {
    const [row] = await to.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${name}`);
    if (Number(row?.n ?? 0) > 0) throw new TargetNotEmptyError(`the target store at ${to.location} is not empty (table ${name} has rows): migrate into a new, empty database`);
  }
  const copied: Record<string, number> = {};
  await to.transaction(async (tx) => {
    for (const { name, key } of TABLES) {
      copied[name] = 0;
      const keyList = key.join(', ');
      let after: unknown[] | undefined;
      for (;;) {
        const rows = await from.query<Record<string, unknown>>(
          `SELECT * FROM ${name}${after ? ` WHERE (${keyList}) > (${key.map(() => '?').join(', ')})` : ''} ORDER BY ${keyList} LIMIT ${PAGE_ROWS}`,
          after ?? [],
        );
        for (const row of rows) {
          const columns = Object.keys(row);
          await tx.execute(`INSERT INTO ${name} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`, columns.map((c) => row[c]));
        }
        copied[name] += rows.length;
        if (rows.length < PAGE_ROWS) break;
        after = key.map((column) => rows[rows.length - 1]![column]);
      }
    }
  });
  return copied;
}
