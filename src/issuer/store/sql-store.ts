/**
 * The IssuerStore, written once over an SqlEngine: the same statements run
 * on SQLite and PostgreSQL. Times are BIGINT milliseconds; teams a JSON
 * array in TEXT. Nothing outside src/issuer/store writes SQL.
 */
import type { SqlEngine } from './engine.js';
import { auditStore } from './audit-sql.js';
import { grantStore } from './grant-sql.js';
import { policyStore } from './policy-sql.js';
import { consoleSessionStore } from './console-session-sql.js';
import { UniqueViolationError } from './engine.js';
import { relayConnectionQueries } from './relay-connections.js';
import { type Admin, type Agent, AlreadyExistsError, type Cluster, type IssuerStore, type ListFilter, type PublicSigningKey } from './types.js';

interface AgentRow { name: string; org: string; teams: string; api_key_hash: string; created_at: number | string; revoked_at: number | string | null }
interface ClusterRow { name: string; org: string; connector_key_hash: string; created_at: number | string; revoked_at: number | string | null }
interface AdminRow { name: string; org: string | null; key_hash: string; created_at: number | string; revoked_at: number | string | null }
interface SigningKeyRow { kid: string; signer: string; public_jwk: string; created_at: number | string }

/** PostgreSQL returns BIGINT as a string (it may exceed 2^53); ours are milliseconds, far below. */
const millis = (value: number | string): Date => new Date(Number(value));

const toAgent = (row: AgentRow): Agent & { apiKeyHash: string } => ({
  name: row.name,
  org: row.org,
  teams: JSON.parse(row.teams) as string[],
  apiKeyHash: row.api_key_hash,
  createdAt: millis(row.created_at),
  ...(row.revoked_at === null ? {} : { revokedAt: millis(row.revoked_at) }),
});
const toCluster = (row: ClusterRow): Cluster & { connectorKeyHash: string } => ({
  name: row.name,
  org: row.org,
  connectorKeyHash: row.connector_key_hash,
  createdAt: millis(row.created_at),
  ...(row.revoked_at === null ? {} : { revokedAt: millis(row.revoked_at) }),
});
const toAdmin = (row: AdminRow): Admin & { keyHash: string } => ({
  name: row.name,
  ...(row.org === null ? {} : { org: row.org }),
  keyHash: row.key_hash,
  createdAt: millis(row.created_at),
  ...(row.revoked_at === null ? {} : { revokedAt: millis(row.revoked_at) }),
});
const toSigningKey = (row: SigningKeyRow): PublicSigningKey => ({ kid: row.kid, signer: row.signer, publicJwk: row.public_jwk, createdAt: millis(row.created_at) });
const publicAgent = ({ apiKeyHash: _hash, ...agent }: Agent & { apiKeyHash: string }): Agent => agent;
const publicAdmin = ({ keyHash: _hash, ...admin }: Admin & { keyHash: string }): Admin => admin;
const publicCluster = ({ connectorKeyHash: _hash, ...cluster }: Cluster & { connectorKeyHash: string }): Cluster => cluster;

/** `SELECT * FROM table` for one page of a list (ListFilter), in name order. */
function listQuery(table: string, filter: ListFilter = {}): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.org !== undefined) {
    where.push('org = ?');
    params.push(filter.org);
  }
  if (filter.after !== undefined) {
    where.push('name > ?');
    params.push(filter.after);
  }
  let sql = `SELECT * FROM ${table}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY name`;
  if (filter.limit !== undefined) {
    sql += ' LIMIT ?';
    params.push(Math.max(0, Math.floor(filter.limit)));
  }
  return { sql, params };
}

async function insertUnique(run: () => Promise<unknown>, what: string): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (err instanceof UniqueViolationError) throw new AlreadyExistsError(`${what} already exists`);
    throw err;
  }
}

export function sqlStore(engine: SqlEngine, now: () => number = Date.now): IssuerStore {
  const one = async <T>(sql: string, params: unknown[]) => (await engine.query<T>(sql, params))[0];
  return {
    location: engine.location,
    ...grantStore(engine),
    ...policyStore(engine),
    ...auditStore(engine),
    ...consoleSessionStore(engine),
    async createAgent(agent, apiKeyHash) {
      await insertUnique(
        () => engine.execute('INSERT INTO agents (name, org, teams, api_key_hash, created_at) VALUES (?, ?, ?, ?, ?)', [agent.name, agent.org, JSON.stringify(agent.teams), apiKeyHash, now()]),
        `agent "${agent.name}"`,
      );
    },
    async findAgentByKeyHash(apiKeyHash) {
      const row = await one<AgentRow>('SELECT * FROM agents WHERE api_key_hash = ?', [apiKeyHash]);
      return row && toAgent(row);
    },
    async findAgent(name) {
      const row = await one<AgentRow>('SELECT * FROM agents WHERE name = ?', [name]);
      return row && publicAgent(toAgent(row));
    },
    async listAgents(filter) {
      const { sql, params } = listQuery('agents', filter);
      return (await engine.query<AgentRow>(sql, params)).map((row) => publicAgent(toAgent(row)));
    },
    async replaceAgentKey(name, apiKeyHash) {
      return (await engine.execute('UPDATE agents SET api_key_hash = ? WHERE name = ? AND revoked_at IS NULL', [apiKeyHash, name])) === 1;
    },
    async revokeAgent(name, at) {
      await engine.execute('UPDATE agents SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL', [at.getTime(), name]);
      return (await one('SELECT 1 AS found FROM agents WHERE name = ?', [name])) !== undefined;
    },
    async createCluster(cluster, connectorKeyHash) {
      await insertUnique(
        () => engine.execute('INSERT INTO clusters (name, org, connector_key_hash, created_at) VALUES (?, ?, ?, ?)', [cluster.name, cluster.org, connectorKeyHash, now()]),
        `cluster "${cluster.name}"`,
      );
    },
    async findCluster(name) {
      const row = await one<ClusterRow>('SELECT * FROM clusters WHERE name = ?', [name]);
      return row && publicCluster(toCluster(row));
    },
    async findClusterByKeyHash(connectorKeyHash) {
      const row = await one<ClusterRow>('SELECT * FROM clusters WHERE connector_key_hash = ?', [connectorKeyHash]);
      return row && toCluster(row);
    },
    async listClusters(filter) {
      const { sql, params } = listQuery('clusters', filter);
      return (await engine.query<ClusterRow>(sql, params)).map((row) => publicCluster(toCluster(row)));
    },
    async replaceClusterKey(name, connectorKeyHash) {
      return (await engine.execute('UPDATE clusters SET connector_key_hash = ? WHERE name = ? AND revoked_at IS NULL', [connectorKeyHash, name])) === 1;
    },
    async revokeCluster(name, at) {
      await engine.execute('UPDATE clusters SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL', [at.getTime(), name]);
      return (await one('SELECT 1 AS found FROM clusters WHERE name = ?', [name])) !== undefined;
    },
    async createAdmin(admin, keyHash) {
      await insertUnique(
        () => engine.execute('INSERT INTO admins (name, org, key_hash, created_at) VALUES (?, ?, ?, ?)', [admin.name, admin.org ?? null, keyHash, now()]),
        `admin "${admin.name}"`,
      );
    },
    async findAdmin(name) {
      const row = await one<AdminRow>('SELECT * FROM admins WHERE name = ?', [name]);
      return row && publicAdmin(toAdmin(row));
    },
    async findAdminByKeyHash(keyHash) {
      const row = await one<AdminRow>('SELECT * FROM admins WHERE key_hash = ?', [keyHash]);
      return row && toAdmin(row);
    },
    async listAdmins(filter) {
      const { sql, params } = listQuery('admins', filter);
      return (await engine.query<AdminRow>(sql, params)).map((row) => publicAdmin(toAdmin(row)));
    },
    async replaceAdminKey(name, keyHash) {
      return (await engine.execute('UPDATE admins SET key_hash = ? WHERE name = ? AND revoked_at IS NULL', [keyHash, name])) === 1;
    },
    async revokeAdmin(name, at) {
      await engine.execute('UPDATE admins SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL', [at.getTime(), name]);
      return (await one('SELECT 1 AS found FROM admins WHERE name = ?', [name])) !== undefined;
    },
    async publishSigningKey(key, keep) {
      return engine.transaction(async (tx) => {
        // The newest key signs: two rotations within one millisecond must still be ordered.
        const rows = await tx.query<SigningKeyRow>('SELECT * FROM public_signing_keys WHERE signer = ? ORDER BY created_at DESC, kid DESC', [key.signer]);
        const newest = rows[0];
        const createdAt = Math.max(key.createdAt.getTime(), newest ? Number(newest.created_at) + 1 : 0);
        await tx.execute('INSERT INTO public_signing_keys (kid, signer, public_jwk, created_at) VALUES (?, ?, ?, ?)', [key.kid, key.signer, key.publicJwk, createdAt]);
        for (const stale of rows.slice(Math.max(0, keep - 1))) await tx.execute('DELETE FROM public_signing_keys WHERE kid = ?', [stale.kid]);
        return new Date(createdAt);
      });
    },
    async publicSigningKeys(signersSeenSince) {
      const rows = await engine.query<SigningKeyRow>(
        'SELECT k.* FROM public_signing_keys k JOIN signers s ON s.id = k.signer WHERE s.last_seen_at >= ? ORDER BY k.created_at DESC, k.kid DESC',
        [signersSeenSince.getTime()],
      );
      return rows.map(toSigningKey);
    },
    async touchSigner(signer, at) {
      await engine.execute('INSERT INTO signers (id, last_seen_at) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at', [signer, at.getTime()]);
    },
    async revocationsSince(since) {
      // Revoked agents and cut tokens (policy set --now) are one feed: a relay refuses the agent's tokens issued at or before the time, and ends its live streams.
      const rows = await engine.query<{ subject: string; at: number | string }>(
        `SELECT 'agent:' || name AS subject, revoked_at AS at FROM agents WHERE revoked_at IS NOT NULL AND revoked_at >= ?
         UNION ALL SELECT subject, cut_at AS at FROM token_cuts WHERE cut_at >= ?
         ORDER BY at, subject`,
        [since.getTime(), since.getTime()],
      );
      return rows.map((row) => ({ subject: row.subject, revokedAt: millis(row.at) }));
    },
    async setting(name) {
      return (await one<{ value: string }>('SELECT value FROM store_settings WHERE name = ?', [name]))?.value;
    },
    async initSetting(name, value) {
      try {
        await engine.execute('INSERT INTO store_settings (name, value) VALUES (?, ?)', [name, value]);
        return value;
      } catch (err) {
        if (!(err instanceof UniqueViolationError)) throw err;
        return (await one<{ value: string }>('SELECT value FROM store_settings WHERE name = ?', [name]))!.value;
      }
    },
    ...relayConnectionQueries(engine),
    close: () => engine.close(),
  };
}
