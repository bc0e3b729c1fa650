/**
 * The store's relay connections (migration 5), for cluster status: each hub
 * replica writes the connections it holds and refreshes them in one
 * transaction per heartbeat; any replica reads them. Portable SQL, as the
 * rest of the store.
 *
 * Statements that take many rows are cut into chunks of a few fixed sizes:
 * the SQLite engine keeps every statement text it prepared for good
 * (sqlite-engine.ts), so a text per row count would pile up.
 */
import type { SqlEngine, SqlRunner } from './engine.js';
import { type IssuerStore, RELAY_CONNECTION_STALE_HEARTBEATS, type RelayConnection } from './types.js';

interface RelayConnectionRow {
  id: string;
  cluster: string;
  hub_replica: string;
  mode: string;
  relay_version: string | null;
  connected_at: number | string;
  last_heard_at: number | string;
  heartbeat_ms: number | string;
  ready: number | string;
  not_ready_reason: string | null;
  disconnected_at: number | string | null;
}

const COLUMNS = ['id', 'cluster', 'hub_replica', 'mode', 'relay_version', 'connected_at', 'last_heard_at', 'heartbeat_ms', 'ready', 'not_ready_reason', 'disconnected_at'];
/** Rows per INSERT: the largest first, so a batch takes few statements. */
const SAVE_CHUNK_SIZES = [100, 10, 1];
/** Ids per UPDATE … IN (…); a short last chunk is padded with its own last id, which changes nothing. */
const TOUCH_CHUNK_SIZES = [500, 50, 5, 1];
/** When a connection ended: closed, or last heard of (an open row nobody refreshes any more). */
const ENDED_AT = 'COALESCE(disconnected_at, last_heard_at)';

const millis = (value: number | string): Date => new Date(Number(value));

function toConnection(row: RelayConnectionRow): RelayConnection {
  return {
    id: row.id,
    cluster: row.cluster,
    hubReplica: row.hub_replica,
    mode: row.mode === 'direct' ? 'direct' : 'tunnel',
    ...(row.relay_version === null ? {} : { relayVersion: row.relay_version }),
    connectedAt: millis(row.connected_at),
    lastHeardAt: millis(row.last_heard_at),
    heartbeatMs: Number(row.heartbeat_ms),
    ready: Number(row.ready) === 1,
    ...(row.not_ready_reason === null ? {} : { notReadyReason: row.not_ready_reason }),
    ...(row.disconnected_at === null ? {} : { disconnectedAt: millis(row.disconnected_at) }),
  };
}

function values(connection: RelayConnection): unknown[] {
  return [
    connection.id,
    connection.cluster,
    connection.hubReplica,
    connection.mode,
    connection.relayVersion ?? null,
    connection.connectedAt.getTime(),
    connection.lastHeardAt.getTime(),
    connection.heartbeatMs,
    connection.ready ? 1 : 0,
    connection.notReadyReason ?? null,
    connection.disconnectedAt?.getTime() ?? null,
  ];
}

/** `items` cut greedily into chunks whose lengths are among `sizes` (descending, ending in 1). */
function fixedChunks<T>(items: readonly T[], sizes: readonly number[]): T[][] {
  const chunks: T[][] = [];
  let start = 0;
  for (const size of sizes) {
    while (items.length - start >= size) {
      chunks.push(items.slice(start, start + size));
      start += size;
    }
  }
  return chunks;
}

/** `ids` in chunks of the first size that holds them all, or of the largest, the last one padded. */
function paddedChunks(ids: readonly string[], sizes: readonly number[]): string[][] {
  const chunks: string[][] = [];
  for (let start = 0; start < ids.length; start += sizes[0]!) {
    const chunk = ids.slice(start, start + sizes[0]!);
    const size = [...sizes].reverse().find((candidate) => candidate >= chunk.length)!;
    while (chunk.length < size) chunk.push(chunk[chunk.length - 1]!);
    chunks.push(chunk);
  }
  return chunks;
}

async function insertChunk(tx: SqlRunner, chunk: readonly RelayConnection[]): Promise<void> {
  const placeholders = chunk.map(() => `(${COLUMNS.map(() => '?').join(', ')})`).join(', ');
  // A closed row stays closed: a late write of an older state cannot reopen it.
  await tx.execute(
    `INSERT INTO relay_connections (${COLUMNS.join(', ')}) VALUES ${placeholders}
     ON CONFLICT (id) DO UPDATE SET relay_version = excluded.relay_version, last_heard_at = excluded.last_heard_at,
       heartbeat_ms = excluded.heartbeat_ms, ready = excluded.ready, not_ready_reason = excluded.not_ready_reason,
       disconnected_at = COALESCE(relay_connections.disconnected_at, excluded.disconnected_at)`,
    chunk.flatMap(values),
  );
}

type RelayConnectionMethods = Pick<IssuerStore, 'saveRelayConnections' | 'touchRelayConnections' | 'liveRelayConnections' | 'relayConnectionsEndedAt' | 'purgeRelayConnections'>;

export function relayConnectionQueries(engine: SqlEngine): RelayConnectionMethods {
  return {
    async saveRelayConnections(connections) {
      if (connections.length === 0) return;
      await engine.transaction(async (tx) => {
        for (const chunk of fixedChunks(connections, SAVE_CHUNK_SIZES)) await insertChunk(tx, chunk);
      });
    },
    async touchRelayConnections(ids, at) {
      if (ids.length === 0) return;
      await engine.transaction(async (tx) => {
        for (const chunk of paddedChunks(ids, TOUCH_CHUNK_SIZES)) {
          await tx.execute(`UPDATE relay_connections SET last_heard_at = ? WHERE disconnected_at IS NULL AND id IN (${chunk.map(() => '?').join(', ')})`, [at.getTime(), ...chunk]);
        }
      });
    },
    async liveRelayConnections(cluster, now) {
      const rows = await engine.query<RelayConnectionRow>(
        `SELECT * FROM relay_connections WHERE cluster = ? AND disconnected_at IS NULL AND last_heard_at + heartbeat_ms * ${RELAY_CONNECTION_STALE_HEARTBEATS} >= ? ORDER BY connected_at, id`,
        [cluster, now.getTime()],
      );
      return rows.map(toConnection);
    },
    async relayConnectionsEndedAt(cluster) {
      const [row] = await engine.query<{ ended_at: number | string | null }>(`SELECT MAX(${ENDED_AT}) AS ended_at FROM relay_connections WHERE cluster = ?`, [cluster]);
      return row?.ended_at === null || row?.ended_at === undefined ? undefined : millis(row.ended_at);
    },
    async purgeRelayConnections(before) {
      return engine.execute(
        `DELETE FROM relay_connections WHERE ${ENDED_AT} < ? AND EXISTS (
           SELECT 1 FROM relay_connections newer WHERE newer.cluster = relay_connections.cluster
             AND COALESCE(newer.disconnected_at, newer.last_heard_at) > COALESCE(relay_connections.disconnected_at, relay_connections.last_heard_at))`,
        [before.getTime()],
      );
    },
  };
}
