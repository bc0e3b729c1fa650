/**
 * The issuer's whole state behind one interface (DESIGN §9): agents,
 * clusters, signing keys and revocations. SQLite (better-sqlite3) is the
 * embedded default; the SQL stays portable so a PostgreSQL implementation
 * can sit behind the same interface. Nothing outside this module writes SQL.
 */
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export interface Agent {
  name: string;
  org: string;
  teams: string[];
  createdAt: Date;
  revokedAt?: Date;
}

export interface Cluster {
  name: string;
  org: string;
  createdAt: Date;
  revokedAt?: Date;
}

export interface StoredSigningKey {
  kid: string;
  privateJwk: string;
  publicJwk: string;
  createdAt: Date;
}

export interface Revocation {
  subject: string;
  revokedAt: Date;
}

export class AlreadyExistsError extends Error {}

export interface IssuerStore {
  createAgent(agent: { name: string; org: string; teams: string[] }, apiKeyHash: string): void;
  findAgentByKeyHash(apiKeyHash: string): (Agent & { apiKeyHash: string }) | undefined;
  findAgent(name: string): Agent | undefined;
  listAgents(): Agent[];
  /** Replaces an active agent's API key hash; false when there is no such active agent. */
  replaceAgentKey(name: string, apiKeyHash: string): boolean;
  /** Returns false when no such agent exists. Revoking twice keeps the first time. */
  revokeAgent(name: string, at: Date): boolean;
  createCluster(cluster: { name: string; org: string }, connectorKeyHash: string): void;
  findCluster(name: string): Cluster | undefined;
  findClusterByKeyHash(connectorKeyHash: string): (Cluster & { connectorKeyHash: string }) | undefined;
  listClusters(): Cluster[];
  /** Replaces an active cluster's connector key hash; false when there is no such active cluster. */
  replaceClusterKey(name: string, connectorKeyHash: string): boolean;
  revokeCluster(name: string, at: Date): boolean;
  /** Newest first. */
  signingKeys(): StoredSigningKey[];
  /** Adds a key and deletes all but the newest `keep` keys, atomically. */
  addSigningKey(key: StoredSigningKey, keep: number): void;
  /** Agents revoked at or after `since`, as Kubernetes user names. */
  revocationsSince(since: Date): Revocation[];
  close(): void;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS agents (
  name TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  teams TEXT NOT NULL,
  api_key_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS clusters (
  name TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  connector_key_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS signing_keys (
  kid TEXT PRIMARY KEY,
  private_jwk TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
`;

interface AgentRow { name: string; org: string; teams: string; api_key_hash: string; created_at: number; revoked_at: number | null }
interface ClusterRow { name: string; org: string; connector_key_hash: string; created_at: number; revoked_at: number | null }
interface SigningKeyRow { kid: string; private_jwk: string; public_jwk: string; created_at: number }

const RETAINED: unknown[] = [];

export function openSqliteStore(dataDir: string): IssuerStore {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, 'issuer.db');
  const isNew = !existsSync(file);
  const db = new Database(file);
  if (isNew) chmodSync(file, 0o600);
  // exec, not pragma(): pragma() prepares a throwaway statement (see the note on `sql` below).
  db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;');
  db.exec(SCHEMA);

  const toAgent = (row: AgentRow): Agent & { apiKeyHash: string } => ({
    name: row.name,
    org: row.org,
    teams: JSON.parse(row.teams) as string[],
    apiKeyHash: row.api_key_hash,
    createdAt: new Date(row.created_at),
    ...(row.revoked_at === null ? {} : { revokedAt: new Date(row.revoked_at) }),
  });
  const toCluster = (row: ClusterRow): Cluster & { connectorKeyHash: string } => ({
    name: row.name,
    org: row.org,
    connectorKeyHash: row.connector_key_hash,
    createdAt: new Date(row.created_at),
    ...(row.revoked_at === null ? {} : { revokedAt: new Date(row.revoked_at) }),
  });
  const publicAgent = ({ apiKeyHash: _hash, ...agent }: Agent & { apiKeyHash: string }): Agent => agent;
  const publicCluster = ({ connectorKeyHash: _hash, ...cluster }: Cluster & { connectorKeyHash: string }): Cluster => cluster;

  // Every statement is prepared once and is never garbage-collected (RETAINED keeps it, even after
  // close): better-sqlite3 12 on Node 24 can abort the process in a Statement destructor run by the
  // GC (`RemoveEnvironmentCleanupHook` assertion; seen in our Node 24 CI). A store is opened once
  // per process, so what this retains is a few dozen small objects.
  const sql = {
    insertAgent: db.prepare('INSERT INTO agents (name, org, teams, api_key_hash, created_at) VALUES (?, ?, ?, ?, ?)'),
    agentByKeyHash: db.prepare('SELECT * FROM agents WHERE api_key_hash = ?'),
    agentByName: db.prepare('SELECT * FROM agents WHERE name = ?'),
    agents: db.prepare('SELECT * FROM agents ORDER BY name'),
    replaceAgentKey: db.prepare('UPDATE agents SET api_key_hash = ? WHERE name = ? AND revoked_at IS NULL'),
    revokeAgent: db.prepare('UPDATE agents SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL'),
    agentExists: db.prepare('SELECT 1 FROM agents WHERE name = ?'),
    insertCluster: db.prepare('INSERT INTO clusters (name, org, connector_key_hash, created_at) VALUES (?, ?, ?, ?)'),
    clusterByName: db.prepare('SELECT * FROM clusters WHERE name = ?'),
    clusterByKeyHash: db.prepare('SELECT * FROM clusters WHERE connector_key_hash = ?'),
    clusters: db.prepare('SELECT * FROM clusters ORDER BY name'),
    replaceClusterKey: db.prepare('UPDATE clusters SET connector_key_hash = ? WHERE name = ? AND revoked_at IS NULL'),
    revokeCluster: db.prepare('UPDATE clusters SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL'),
    clusterExists: db.prepare('SELECT 1 FROM clusters WHERE name = ?'),
    insertSigningKey: db.prepare('INSERT INTO signing_keys (kid, private_jwk, public_jwk, created_at) VALUES (?, ?, ?, ?)'),
    signingKeys: db.prepare('SELECT * FROM signing_keys ORDER BY created_at DESC, kid DESC'),
    deleteSigningKey: db.prepare('DELETE FROM signing_keys WHERE kid = ?'),
    revocationsSince: db.prepare('SELECT name, revoked_at FROM agents WHERE revoked_at IS NOT NULL AND revoked_at >= ? ORDER BY revoked_at'),
  };
  RETAINED.push(db, sql);
  const addSigningKey = db.transaction((key: StoredSigningKey, keep: number) => {
    // The newest key signs and the oldest go: two rotations within one millisecond must still be ordered.
    const newest = (sql.signingKeys.all() as SigningKeyRow[])[0];
    const createdAt = Math.max(key.createdAt.getTime(), newest ? newest.created_at + 1 : 0);
    sql.insertSigningKey.run(key.kid, key.privateJwk, key.publicJwk, createdAt);
    const rows = sql.signingKeys.all() as SigningKeyRow[];
    for (const stale of rows.slice(keep)) sql.deleteSigningKey.run(stale.kid);
  });

  const insertUnique = (run: () => void, what: string) => {
    try {
      run();
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) throw new AlreadyExistsError(`${what} already exists`);
      throw err;
    }
  };

  return {
    createAgent(agent, apiKeyHash) {
      insertUnique(
        () =>
          sql.insertAgent.run(agent.name, agent.org, JSON.stringify(agent.teams), apiKeyHash, Date.now()),
        `agent "${agent.name}"`,
      );
    },
    findAgentByKeyHash(apiKeyHash) {
      const row = sql.agentByKeyHash.get(apiKeyHash) as AgentRow | undefined;
      return row && toAgent(row);
    },
    findAgent(name) {
      const row = sql.agentByName.get(name) as AgentRow | undefined;
      return row && publicAgent(toAgent(row));
    },
    replaceAgentKey(name, apiKeyHash) {
      return sql.replaceAgentKey.run(apiKeyHash, name).changes === 1;
    },
    listAgents() {
      return (sql.agents.all() as AgentRow[]).map((row) => publicAgent(toAgent(row)));
    },
    revokeAgent(name, at) {
      sql.revokeAgent.run(at.getTime(), name);
      return sql.agentExists.get(name) !== undefined;
    },
    createCluster(cluster, connectorKeyHash) {
      insertUnique(
        () =>
          sql.insertCluster.run(cluster.name, cluster.org, connectorKeyHash, Date.now()),
        `cluster "${cluster.name}"`,
      );
    },
    findCluster(name) {
      const row = sql.clusterByName.get(name) as ClusterRow | undefined;
      return row && publicCluster(toCluster(row));
    },
    findClusterByKeyHash(connectorKeyHash) {
      const row = sql.clusterByKeyHash.get(connectorKeyHash) as ClusterRow | undefined;
      return row && toCluster(row);
    },
    replaceClusterKey(name, connectorKeyHash) {
      return sql.replaceClusterKey.run(connectorKeyHash, name).changes === 1;
    },
    listClusters() {
      return (sql.clusters.all() as ClusterRow[]).map((row) => publicCluster(toCluster(row)));
    },
    revokeCluster(name, at) {
      sql.revokeCluster.run(at.getTime(), name);
      return sql.clusterExists.get(name) !== undefined;
    },
    signingKeys() {
      return (sql.signingKeys.all() as SigningKeyRow[]).map((row) => ({
        kid: row.kid,
        privateJwk: row.private_jwk,
        publicJwk: row.public_jwk,
        createdAt: new Date(row.created_at),
      }));
    },
    addSigningKey(key, keep) {
      addSigningKey(key, keep);
    },
    revocationsSince(since) {
      const rows = sql.revocationsSince.all(since.getTime()) as { name: string; revoked_at: number }[];
      return rows.map((row) => ({ subject: `agent:${row.name}`, revokedAt: new Date(row.revoked_at) }));
    },
    close() {
      db.close();
    },
  };
}
