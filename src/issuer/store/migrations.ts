/**
 * The store's schema, as numbered migrations applied in order at start-up
 * (under the engine's migration lock) and recorded in kube_relay_schema.
 * SQL here is portable: TEXT, BIGINT (milliseconds since the epoch) and
 * INTEGER only, no engine-specific types, so every table exists on both
 * engines from its first line. A store whose schema is newer than this
 * code knows is refused: an older replica must not write to it.
 *
 * Version 1 is the schema issuers created before migrations existed (with
 * IF NOT EXISTS, so such a database passes through it unchanged).
 */
import type { SqlEngine, SqlRunner } from './engine.js';

interface Migration {
  version: number;
  name: string;
  /** SQL, or SQL with one `?` bound to the migration's time (milliseconds). */
  statements: (string | { sql: string; bindNow: true })[];
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'agents, clusters and signing keys',
    statements: [
      `CREATE TABLE IF NOT EXISTS agents (
        name TEXT PRIMARY KEY,
        org TEXT NOT NULL,
        teams TEXT NOT NULL,
        api_key_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
      )`,
      `CREATE TABLE IF NOT EXISTS clusters (
        name TEXT PRIMARY KEY,
        org TEXT NOT NULL,
        connector_key_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
      )`,
      `CREATE TABLE IF NOT EXISTS signing_keys (
        kid TEXT PRIMARY KEY,
        private_jwk TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        created_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    name: 'store settings (the pepper check) and the revocation index',
    statements: [
      `CREATE TABLE IF NOT EXISTS store_settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
      )`,
      `CREATE INDEX IF NOT EXISTS agents_revoked_at ON agents (revoked_at)`,
    ],
  },
  {
    version: 3,
    name: "signing keys per issuer replica: only public halves in the store",
    statements: [
      `CREATE TABLE IF NOT EXISTS public_signing_keys (
        kid TEXT PRIMARY KEY,
        signer TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      `CREATE INDEX IF NOT EXISTS public_signing_keys_signer ON public_signing_keys (signer, created_at)`,
      `CREATE TABLE IF NOT EXISTS signers (
        id TEXT PRIMARY KEY,
        last_seen_at BIGINT NOT NULL
      )`,
      // Keys made before replicas had keys of their own: published for a while under a signer that no
      // process renews, so tokens they signed verify until they expire; their private halves leave the store.
      `INSERT INTO public_signing_keys (kid, signer, public_jwk, created_at) SELECT kid, 'before-replica-keys', public_jwk, created_at FROM signing_keys`,
      { sql: `INSERT INTO signers (id, last_seen_at) SELECT 'before-replica-keys', CAST(? AS BIGINT) WHERE EXISTS (SELECT 1 FROM signing_keys)`, bindNow: true },
      `DROP TABLE signing_keys`,
    ],
  },
  {
    version: 4,
    name: 'admins (DESIGN §10), and org indexes for lists of one org',
    statements: [
      // org NULL: an all-orgs admin (the operator's); otherwise the one org it manages.
      `CREATE TABLE IF NOT EXISTS admins (
        name TEXT PRIMARY KEY,
        org TEXT,
        key_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
      )`,
      `CREATE INDEX IF NOT EXISTS admins_org ON admins (org, name)`,
      `CREATE INDEX IF NOT EXISTS agents_org ON agents (org, name)`,
      `CREATE INDEX IF NOT EXISTS clusters_org ON clusters (org, name)`,
    ],
  },
  {
    version: 5,
    name: 'relay connections each hub replica holds, for cluster status (DESIGN §10)',
    statements: [
      // ready: 1 or 0. last_heard_at is refreshed every heartbeat_ms by the replica while it holds the
      // connection; an open row three heartbeats older belongs to a replica that died without closing it.
      `CREATE TABLE IF NOT EXISTS relay_connections (
        id TEXT PRIMARY KEY,
        cluster TEXT NOT NULL,
        hub_replica TEXT NOT NULL,
        mode TEXT NOT NULL,
        relay_version TEXT,
        connected_at BIGINT NOT NULL,
        last_heard_at BIGINT NOT NULL,
        heartbeat_ms BIGINT NOT NULL,
        ready INTEGER NOT NULL,
        not_ready_reason TEXT,
        disconnected_at BIGINT
      )`,
      `CREATE INDEX IF NOT EXISTS relay_connections_cluster ON relay_connections (cluster, disconnected_at)`,
    ],
  },
  {
    version: 6,
    name: 'grants and the grantable roles relays report (DESIGN §11)',
    statements: [
      // namespace '' for a cluster-wide grant, so the unique key covers it (NULLs are distinct in SQL).
      `CREATE TABLE IF NOT EXISTS grants (
        id TEXT PRIMARY KEY,
        cluster TEXT NOT NULL,
        org TEXT NOT NULL,
        grantee_kind TEXT NOT NULL,
        grantee TEXT NOT NULL,
        role TEXT NOT NULL,
        namespace TEXT NOT NULL,
        expires_at BIGINT,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        state TEXT NOT NULL,
        state_reason TEXT,
        state_at BIGINT,
        UNIQUE (cluster, grantee_kind, grantee, role, namespace)
      )`,
      `CREATE INDEX IF NOT EXISTS grants_org ON grants (org, id)`,
      `CREATE INDEX IF NOT EXISTS grants_cluster ON grants (cluster, id)`,
      // The ClusterRoles labelled kube-relay.dev/grantable in each cluster, as its relay reports them.
      `CREATE TABLE IF NOT EXISTS grantable_roles (
        cluster TEXT NOT NULL,
        role TEXT NOT NULL,
        reported_at BIGINT NOT NULL,
        PRIMARY KEY (cluster, role)
      )`,
    ],
  },
  {
    version: 7,
    name: 'central audit records and sessions (DESIGN §12)',
    statements: [
      // One row per completed request a relay (or the hub) recorded. The key is (cluster, id): a relay
      // can only ever collide with its own cluster's records, so a forged id cannot hide another's.
      // time_ms is when the request ended (the record's time), started_ms when it began.
      `CREATE TABLE IF NOT EXISTS audit_records (
        cluster TEXT NOT NULL,
        id TEXT NOT NULL,
        org TEXT NOT NULL,
        agent TEXT,
        time_ms BIGINT NOT NULL,
        started_ms BIGINT NOT NULL,
        verb TEXT NOT NULL,
        decision TEXT NOT NULL,
        session_id TEXT,
        kubectl_session TEXT,
        record TEXT NOT NULL,
        PRIMARY KEY (cluster, id)
      )`,
      `CREATE INDEX IF NOT EXISTS audit_records_org_time ON audit_records (org, time_ms)`,
      // Agent names are unique across orgs: an all-orgs admin asking by agent alone needs no org to use it.
      `CREATE INDEX IF NOT EXISTS audit_records_agent_time ON audit_records (agent, time_ms)`,
      `CREATE INDEX IF NOT EXISTS audit_records_cluster_time ON audit_records (org, cluster, time_ms)`,
      `CREATE INDEX IF NOT EXISTS audit_records_session ON audit_records (session_id, started_ms)`,
      `CREATE INDEX IF NOT EXISTS audit_records_kubectl_session ON audit_records (cluster, kubectl_session)`,
      `CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_ms)`,
      // kind: 'activity' (an agent's requests to one cluster with no gap over five minutes) or 'proxy'
      // (one kube-relay proxy run: opened and ended by the proxy, alive while proxy_seen_ms is recent).
      // commands: a JSON array in time order, at most a bounded number (commands_omitted counts the rest).
      `CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        org TEXT NOT NULL,
        cluster TEXT NOT NULL,
        agent TEXT NOT NULL,
        kind TEXT NOT NULL,
        started_ms BIGINT NOT NULL,
        last_activity_ms BIGINT NOT NULL,
        ended_ms BIGINT,
        proxy_seen_ms BIGINT,
        requests INTEGER NOT NULL,
        refusals INTEGER NOT NULL,
        commands TEXT NOT NULL,
        commands_omitted INTEGER NOT NULL
      )`,
      `CREATE INDEX IF NOT EXISTS sessions_org ON sessions (org, last_activity_ms)`,
      `CREATE INDEX IF NOT EXISTS sessions_agent ON sessions (agent, last_activity_ms)`,
      `CREATE INDEX IF NOT EXISTS sessions_cluster_agent ON sessions (cluster, agent, kind, last_activity_ms)`,
    ],
  },
  {
    version: 8,
    name: 'agent and team policies, and the token cuts of policy set --now (DESIGN §13)',
    statements: [
      // subject_kind 'agent' (subject: the agent's name) or 'team' (subject: its group ORG/TEAM);
      // policy: the JSON of a Policy (src/policy/policy.ts), replaced whole by each policy set.
      `CREATE TABLE IF NOT EXISTS policies (
        subject_kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        org TEXT NOT NULL,
        policy TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        updated_by TEXT NOT NULL,
        PRIMARY KEY (subject_kind, subject)
      )`,
      // subject: agent:NAME. Tokens of that agent issued at or before cut_at are refused (the revocation feed carries it).
      `CREATE TABLE IF NOT EXISTS token_cuts (
        subject TEXT PRIMARY KEY,
        cut_at BIGINT NOT NULL
      )`,
      `CREATE INDEX IF NOT EXISTS token_cuts_cut_at ON token_cuts (cut_at)`,
    ],
  },
  {
    version: 9,
    name: 'web console sign-in sessions (DESIGN §14)',
    statements: [
      // id_digest: HMAC of the session cookie's id with the pepper; data: express-session's JSON.
      `CREATE TABLE IF NOT EXISTS console_sessions (
        id_digest TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        expires_at BIGINT NOT NULL
      )`,
      `CREATE INDEX IF NOT EXISTS console_sessions_expires_at ON console_sessions (expires_at)`,
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

export class SchemaTooNewError extends Error {}

const SCHEMA_TABLE = `CREATE TABLE IF NOT EXISTS kube_relay_schema (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`;

async function appliedVersion(runner: SqlRunner): Promise<number> {
  const rows = await runner.query<{ version: number | string | null }>('SELECT MAX(version) AS version FROM kube_relay_schema');
  return Number(rows[0]?.version ?? 0);
}

/** Brings the store to SCHEMA_VERSION; returns the versions applied now. */
export async function migrate(engine: SqlEngine, now: () => number = Date.now): Promise<number[]> {
  return engine.withMigrationLock(async () => {
    await engine.execute(SCHEMA_TABLE);
    const current = await appliedVersion(engine);
    if (current > SCHEMA_VERSION) {
      throw new SchemaTooNewError(
        `the store at ${engine.location} has schema version ${current}, newer than this kube-relay knows (${SCHEMA_VERSION}): run a kube-relay at least as new as the one that upgraded it`,
      );
    }
    const applied: number[] = [];
    for (const migration of MIGRATIONS.filter((m) => m.version > current)) {
      const appliedNow = await engine.transaction(async (tx) => {
        // Another process may have applied it since we looked (SQLite's writers meet only here).
        if ((await appliedVersion(tx)) >= migration.version) return false;
        for (const statement of migration.statements) {
          if (typeof statement === 'string') await tx.execute(statement);
          else await tx.execute(statement.sql, [now()]);
        }
        await tx.execute('INSERT INTO kube_relay_schema (version, name, applied_at) VALUES (?, ?, ?)', [migration.version, migration.name, now()]);
        return true;
      });
      if (appliedNow) applied.push(migration.version);
    }
    return applied;
  });
}
