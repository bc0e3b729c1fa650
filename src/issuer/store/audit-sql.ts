/**
 * Central audit records and sessions in the store (DESIGN §12, migration
 * 7), over the same SqlEngine as the rest of the IssuerStore. A batch of one
 * cluster's records is stored in short transactions of a chunk each, which
 * also place each record in its session (src/sessions/assign.ts); they take
 * a lock named after the cluster, so two issuer replicas never split one
 * session, and pass an IntakeGate, so intake never holds the whole store.
 * Records are de-duplicated by (cluster, requestId): a batch sent again
 * after a lost answer stores nothing twice and counts nothing twice.
 *
 * Statements that take many rows are cut into chunks of a few fixed sizes,
 * as in relay-connections.ts (the SQLite engine keeps every text it prepared).
 */
import { SessionAssigner, type SessionInput } from '../../sessions/assign.js';
import { agentOfUser, PROXY_SILENCE_MS, type Session, type SessionCommand, SESSION_GAP_MS, type SessionKind } from '../../sessions/session.js';
import type { SqlEngine, SqlRunner } from './engine.js';
import { IntakeGate } from './intake-gate.js';

/** A completed request's record as a relay sends it (src/audit/record.ts AuditRecord); the ingest route checks its shape. */
export interface IncomingAuditRecord {
  requestId: string;
  time: string;
  durationMs: number;
  user: string | null;
  verb: string;
  decision: string;
  status: number;
  namespace: string;
  name: string;
  kubectlSession?: string | undefined;
  kubectlCommand?: string | undefined;
  proxySession?: string | undefined;
  container?: string | undefined;
  command?: string[] | undefined;
  [field: string]: unknown;
}

export interface StoredAuditRecord {
  cluster: string;
  id: string;
  org: string;
  agent?: string | undefined;
  time: Date;
  sessionId?: string | undefined;
  /** The record as the relay wrote it. */
  record: Record<string, unknown>;
}

/** Paging position in (time, cluster, id) order. */
export interface AuditCursor {
  timeMs: number;
  cluster: string;
  id: string;
}

export interface AuditFilter {
  org?: string | undefined;
  agent?: string | undefined;
  cluster?: string | undefined;
  verb?: string | undefined;
  decision?: string | undefined;
  sinceMs?: number | undefined;
  untilMs?: number | undefined;
  session?: string | undefined;
  after?: AuditCursor | undefined;
  limit: number;
}

/** Paging position in newest-first (startedAt, id) order. */
export interface SessionCursor {
  startedMs: number;
  id: string;
}

export interface SessionFilter {
  org?: string | undefined;
  agent?: string | undefined;
  cluster?: string | undefined;
  /** Sessions whose last request ended at or after this. */
  sinceMs?: number | undefined;
  /** Sessions that began at or before this. */
  untilMs?: number | undefined;
  after?: SessionCursor | undefined;
  limit: number;
}

export interface AuditStore {
  /** Stores a batch of one cluster's records and places each in its session; duplicates (same cluster and requestId) are skipped. */
  ingestAudit(cluster: { name: string; org: string }, records: readonly IncomingAuditRecord[]): Promise<{ stored: number; duplicates: number }>;
  /** Records in time order (oldest first). */
  queryAudit(filter: AuditFilter): Promise<StoredAuditRecord[]>;
  /** Sessions, newest first. */
  listSessions(filter: SessionFilter): Promise<Session[]>;
  findSession(id: string): Promise<Session | undefined>;
  /** A proxy run begins (src/sessions/proxy-runs.ts). */
  openProxySession(session: { id: string; org: string; cluster: string; agent: string; at: Date }): Promise<void>;
  /** A proxy run says it is alive, or (`end`) that it ended; false when there is no such open run of that agent. */
  touchProxySession(id: string, agent: string, at: Date, end: boolean): Promise<boolean>;
  /** The agent was revoked `at`: its sessions open then end then; returns how many. */
  endAgentSessions(agent: string, at: Date): Promise<number>;
  /** Deletes records that ended, and sessions whose last activity was, before `beforeMs`. */
  pruneAudit(beforeMs: number): Promise<{ records: number; sessions: number }>;
}

interface SessionRow {
  id: string;
  org: string;
  cluster: string;
  agent: string;
  kind: string;
  started_ms: number | string;
  last_activity_ms: number | string;
  ended_ms: number | string | null;
  proxy_seen_ms: number | string | null;
  requests: number | string;
  refusals: number | string;
  commands: string;
  commands_omitted: number | string;
}

interface RecordRow {
  cluster: string;
  id: string;
  org: string;
  agent: string | null;
  time_ms: number | string;
  session_id: string | null;
  record: string;
}

const RECORD_COLUMNS = ['cluster', 'id', 'org', 'agent', 'time_ms', 'started_ms', 'verb', 'decision', 'session_id', 'kubectl_session', 'record'];
/** Records stored per transaction: a relay's batch (500) is one; a larger one is cut, so no transaction holds the store (and SQLite's one queue) for long. */
const INGEST_CHUNK_RECORDS = 500;
/** Intake transactions one process runs at once (intake-gate.ts). */
const INTAKE_CONCURRENCY = 2;
/** Rows per INSERT, the largest first. */
const INSERT_CHUNK_SIZES = [100, 10, 1];
/** Records deleted per statement while pruning are those of at most this span of time. */
const PRUNE_WINDOW_MS = 60 * 60_000;

const optionalMillis = (value: number | string | null): Date | undefined => (value === null ? undefined : new Date(Number(value)));

function toSession(row: SessionRow): Session {
  return {
    id: row.id,
    org: row.org,
    cluster: row.cluster,
    agent: row.agent,
    kind: row.kind as SessionKind,
    startedAt: new Date(Number(row.started_ms)),
    lastActivityAt: new Date(Number(row.last_activity_ms)),
    endedAt: optionalMillis(row.ended_ms),
    proxySeenAt: optionalMillis(row.proxy_seen_ms),
    requests: Number(row.requests),
    refusals: Number(row.refusals),
    commands: JSON.parse(row.commands) as SessionCommand[],
    commandsOmitted: Number(row.commands_omitted),
  };
}

function toRecord(row: RecordRow): StoredAuditRecord {
  return {
    cluster: row.cluster,
    id: row.id,
    org: row.org,
    ...(row.agent === null ? {} : { agent: row.agent }),
    time: new Date(Number(row.time_ms)),
    ...(row.session_id === null ? {} : { sessionId: row.session_id }),
    record: JSON.parse(row.record) as Record<string, unknown>,
  };
}

function sessionInput(agent: string, record: IncomingAuditRecord, endedMs: number): SessionInput {
  return {
    agent,
    startedMs: endedMs - Math.max(0, record.durationMs),
    endedMs,
    decision: record.decision,
    verb: record.verb,
    kubectlSession: record.kubectlSession,
    kubectlCommand: record.kubectlCommand,
    proxySession: record.proxySession,
    namespace: record.namespace,
    name: record.name,
    container: record.container,
    command: record.command,
    status: record.status,
  };
}

/** `WHERE a = ? AND …` from the clauses whose value is defined. */
function where(clauses: [string, unknown][]): { sql: string; params: unknown[] } {
  const kept = clauses.filter(([, value]) => value !== undefined);
  return { sql: kept.length === 0 ? '' : ` WHERE ${kept.map(([clause]) => clause).join(' AND ')}`, params: kept.flatMap(([, value]) => (Array.isArray(value) ? value : [value])) };
}

async function insertRecords(tx: SqlRunner, rows: unknown[][]): Promise<Set<string>> {
  const stored = new Set<string>();
  let at = 0;
  while (at < rows.length) {
    const size = INSERT_CHUNK_SIZES.find((n) => n <= rows.length - at)!;
    const chunk = rows.slice(at, at + size);
    at += size;
    const placeholders = chunk.map(() => `(${RECORD_COLUMNS.map(() => '?').join(', ')})`).join(', ');
    const inserted = await tx.query<{ id: string }>(`INSERT INTO audit_records (${RECORD_COLUMNS.join(', ')}) VALUES ${placeholders} ON CONFLICT (cluster, id) DO NOTHING RETURNING id`, chunk.flat());
    for (const row of inserted) stored.add(row.id);
  }
  return stored;
}

/** Values per `IN (…)`, the largest first (a few fixed statement texts, as INSERT_CHUNK_SIZES). */
const LOOKUP_CHUNK_SIZES = [100, 10, 1];

/** `values` in chunks of LOOKUP_CHUNK_SIZES, each with the `?, ?, …` it needs. */
function* lookupChunks(values: readonly string[]): Generator<{ placeholders: string; params: string[] }> {
  for (let at = 0; at < values.length; ) {
    const size = LOOKUP_CHUNK_SIZES.find((n) => n <= values.length - at) ?? 1;
    const chunk = values.slice(at, at + size);
    at += size;
    yield { placeholders: chunk.map(() => '?').join(', '), params: chunk };
  }
}

/** The sessions of these kubectl invocations on `cluster`, in two queries a chunk: which session holds each, then the sessions. */
async function kubectlSessionsOf(tx: SqlRunner, cluster: string, kubectlSessions: string[]): Promise<{ kubectlSession: string; session: Session }[]> {
  const held: { kubectl_session: string; session_id: string }[] = [];
  for (const { placeholders, params } of lookupChunks(kubectlSessions)) {
    held.push(...(await tx.query<{ kubectl_session: string; session_id: string }>(`SELECT DISTINCT kubectl_session, session_id FROM audit_records WHERE cluster = ? AND session_id IS NOT NULL AND kubectl_session IN (${placeholders})`, [cluster, ...params])));
  }
  const sessions = new Map<string, Session>();
  for (const { placeholders, params } of lookupChunks([...new Set(held.map((row) => row.session_id))])) {
    for (const row of await tx.query<SessionRow>(`SELECT * FROM sessions WHERE id IN (${placeholders})`, params)) sessions.set(row.id, toSession(row));
  }
  return held.flatMap((row) => (sessions.has(row.session_id) ? [{ kubectlSession: row.kubectl_session, session: sessions.get(row.session_id)! }] : []));
}

const SESSION_COLUMNS = ['id', 'org', 'cluster', 'agent', 'kind', 'started_ms', 'last_activity_ms', 'ended_ms', 'proxy_seen_ms', 'requests', 'refusals', 'commands', 'commands_omitted'];

/** New sessions inserted, changed ones updated, a chunk per statement; a proxy run's end and last sign of life are the proxy's to write. */
async function saveSessions(tx: SqlRunner, sessions: readonly Session[]): Promise<void> {
  const rows = sessions.map((session) => [
    session.id,
    session.org,
    session.cluster,
    session.agent,
    session.kind,
    session.startedAt.getTime(),
    session.lastActivityAt.getTime(),
    null,
    null,
    session.requests,
    session.refusals,
    JSON.stringify(session.commands),
    session.commandsOmitted,
  ]);
  for (let at = 0; at < rows.length; ) {
    const size = INSERT_CHUNK_SIZES.find((n) => n <= rows.length - at)!;
    const chunk = rows.slice(at, at + size);
    at += size;
    await tx.execute(
      `INSERT INTO sessions (${SESSION_COLUMNS.join(', ')}) VALUES ${chunk.map(() => `(${SESSION_COLUMNS.map(() => '?').join(', ')})`).join(', ')}
       ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms, last_activity_ms = excluded.last_activity_ms, requests = excluded.requests,
         refusals = excluded.refusals, commands = excluded.commands, commands_omitted = excluded.commands_omitted`,
      chunk.flat(),
    );
  }
}

type IngestEntry = { record: IncomingAuditRecord; endedMs: number; agent: string | undefined };

/** One chunk of a batch in one transaction, under the cluster's lock: each record stored once and placed in its session; returns how many were new. */
function ingestChunk(engine: SqlEngine, cluster: { name: string; org: string }, entries: readonly IngestEntry[]): Promise<number> {
  return engine.transaction(
    async (tx) => {
      const assigner = new SessionAssigner(cluster.org, cluster.name, {
        activitySessions: async (agents, sinceMs) => {
          const sessions: Session[] = [];
          for (const { placeholders, params } of lookupChunks(agents)) {
            const rows = await tx.query<SessionRow>(`SELECT * FROM sessions WHERE cluster = ? AND kind = 'activity' AND last_activity_ms >= ? AND agent IN (${placeholders})`, [cluster.name, sinceMs, ...params]);
            sessions.push(...rows.map(toSession));
          }
          return sessions;
        },
        kubectlSessions: (kubectlSessions) => kubectlSessionsOf(tx, cluster.name, kubectlSessions),
        session: async (id) => {
          const [row] = await tx.query<SessionRow>('SELECT * FROM sessions WHERE id = ?', [id]);
          return row && toSession(row);
        },
      });
      const inputs = entries.map(({ record, endedMs, agent }) => (agent === undefined ? undefined : sessionInput(agent, record, endedMs)));
      await assigner.prefetch(inputs.filter((input) => input !== undefined));
      const rows: unknown[][] = [];
      const placed: { id: string; sessionId: string; input: SessionInput }[] = [];
      for (const [index, { record, endedMs, agent }] of entries.entries()) {
        const input = inputs[index];
        const sessionId = input === undefined ? null : await assigner.assign(input);
        if (input !== undefined && sessionId !== null) placed.push({ id: record.requestId, sessionId, input });
        rows.push([cluster.name, record.requestId, cluster.org, agent ?? null, endedMs, endedMs - Math.max(0, record.durationMs), record.verb, record.decision, sessionId, record.kubectlSession ?? null, JSON.stringify(record)]);
      }
      const stored = await insertRecords(tx, rows);
      for (const { id, sessionId, input } of placed) if (stored.has(id)) assigner.count(sessionId, input);
      await saveSessions(tx, assigner.sessionsToSave());
      return stored.size;
    },
    { lock: `audit:${cluster.name}` },
  );
}

export function auditStore(engine: SqlEngine): AuditStore {
  const intake = new IntakeGate(INTAKE_CONCURRENCY);
  return {
    async ingestAudit(cluster, records) {
      // Once each, in the order the requests began, so each session grows forward.
      const seen = new Set<string>();
      const entries = records
        .filter((record) => !seen.has(record.requestId) && seen.add(record.requestId))
        .map((record) => ({ record, endedMs: Date.parse(record.time), agent: agentOfUser(record.user) }))
        .sort((a, b) => a.endedMs - Math.max(0, a.record.durationMs) - (b.endedMs - Math.max(0, b.record.durationMs)));
      return intake.run(cluster.name, async () => {
        let stored = 0;
        // A transaction a chunk: the store (and SQLite's one queue) serves others between chunks.
        for (let at = 0; at < entries.length; at += INGEST_CHUNK_RECORDS) stored += await ingestChunk(engine, cluster, entries.slice(at, at + INGEST_CHUNK_RECORDS));
        return { stored, duplicates: records.length - stored };
      });
    },

    async queryAudit(filter) {
      const { sql, params } = where([
        ['org = ?', filter.org],
        ['agent = ?', filter.agent],
        ['cluster = ?', filter.cluster],
        ['verb = ?', filter.verb],
        ['decision = ?', filter.decision],
        ['time_ms >= ?', filter.sinceMs],
        ['time_ms <= ?', filter.untilMs],
        ['session_id = ?', filter.session],
        ['(time_ms, cluster, id) > (?, ?, ?)', filter.after && [filter.after.timeMs, filter.after.cluster, filter.after.id]],
      ]);
      const rows = await engine.query<RecordRow>(`SELECT cluster, id, org, agent, time_ms, session_id, record FROM audit_records${sql} ORDER BY time_ms, cluster, id LIMIT ?`, [...params, filter.limit]);
      return rows.map(toRecord);
    },

    async listSessions(filter) {
      const { sql, params } = where([
        ['org = ?', filter.org],
        ['agent = ?', filter.agent],
        ['cluster = ?', filter.cluster],
        ['last_activity_ms >= ?', filter.sinceMs],
        ['started_ms <= ?', filter.untilMs],
        ['(started_ms, id) < (?, ?)', filter.after && [filter.after.startedMs, filter.after.id]],
      ]);
      const rows = await engine.query<SessionRow>(`SELECT * FROM sessions${sql} ORDER BY started_ms DESC, id DESC LIMIT ?`, [...params, filter.limit]);
      return rows.map(toSession);
    },

    async findSession(id) {
      const [row] = await engine.query<SessionRow>('SELECT * FROM sessions WHERE id = ?', [id]);
      return row && toSession(row);
    },

    async openProxySession(session) {
      const at = session.at.getTime();
      await engine.execute(
        `INSERT INTO sessions (id, org, cluster, agent, kind, started_ms, last_activity_ms, ended_ms, proxy_seen_ms, requests, refusals, commands, commands_omitted)
         VALUES (?, ?, ?, ?, 'proxy', ?, ?, NULL, ?, 0, 0, '[]', 0)`,
        [session.id, session.org, session.cluster, session.agent, at, at, at],
      );
    },

    async touchProxySession(id, agent, at, end) {
      const changed = await engine.execute(`UPDATE sessions SET proxy_seen_ms = ?${end ? ', ended_ms = ?' : ''} WHERE id = ? AND agent = ? AND kind = 'proxy' AND ended_ms IS NULL`, [
        at.getTime(),
        ...(end ? [at.getTime()] : []),
        id,
        agent,
      ]);
      return changed > 0;
    },

    endAgentSessions(agent, at) {
      const atMs = at.getTime();
      // Open at `at` as sessionEnd decides it: an activity session within the gap, a proxy run heard of recently.
      return engine.execute(
        `UPDATE sessions SET ended_ms = ? WHERE agent = ? AND ended_ms IS NULL
           AND ((kind = 'activity' AND last_activity_ms >= ?) OR (kind = 'proxy' AND (last_activity_ms >= ? OR proxy_seen_ms >= ?)))`,
        [atMs, agent, atMs - SESSION_GAP_MS, atMs - PROXY_SILENCE_MS, atMs - PROXY_SILENCE_MS],
      );
    },

    async pruneAudit(beforeMs) {
      let records = 0;
      // A window at a time, oldest first, so no one statement holds the store for long.
      for (;;) {
        const [oldest] = await engine.query<{ time_ms: number | string | null }>('SELECT MIN(time_ms) AS time_ms FROM audit_records');
        if (oldest?.time_ms === null || oldest?.time_ms === undefined || Number(oldest.time_ms) >= beforeMs) break;
        records += await engine.execute('DELETE FROM audit_records WHERE time_ms < ?', [Math.min(beforeMs, Number(oldest.time_ms) + PRUNE_WINDOW_MS)]);
      }
      const sessions = await engine.execute('DELETE FROM sessions WHERE last_activity_ms < ? AND (proxy_seen_ms IS NULL OR proxy_seen_ms < ?)', [beforeMs, beforeMs]);
      return { records, sessions };
    },
  };
}
