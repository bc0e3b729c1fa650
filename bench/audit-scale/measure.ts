/** Measuring a store: the ingest of the history, and the queries timed. */
import type { AuditFilter, IncomingAuditRecord } from '../../src/issuer/store/audit-sql.js';
import type { IssuerStore } from '../../src/issuer/store/types.js';
import { DAY_MS, type History, HOUR_MS } from './history.js';

/** Records per ingestAudit call: one cluster's batch, as a relay sends it. */
export const BATCH = 500;
/** The tail of the history whose ingest rate is reported on its own. */
export const TAIL_RECORDS = 100_000;
export const WARM_UPS = 2;
export const RUNS = 20;
export const QUERY_TARGET_MS = 300;
export const INGEST_TARGET_PER_SECOND = 5_000;

export interface IngestFigures {
  records: number;
  seconds: number;
  perSecond: number;
  tailRecords: number;
  tailPerSecond: number;
  /** Records/s of each tenth of the history, in order. */
  tenths: number[];
  batches: number;
  slowestBatchMs: number;
  sizeBytes: number;
  sizeDetail: Record<string, number>;
  storedSessions: number;
}

export interface QueryFigures {
  name: string;
  call: string;
  rows: number;
  expectedRows?: number;
  /** Records of the history that match the filter (the query answers at most its limit of them). */
  matching?: number;
  medianMs: number;
  p95Ms: number;
  maxMs: number;
  targetMs?: number;
  plan: string;
}

export interface EngineFigures {
  engine: 'sqlite' | 'postgres';
  settings: Record<string, string>;
  ingest: IngestFigures;
  queries: QueryFigures[];
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Every record through store.ingestAudit: one cluster's batch of BATCH at a time, in the order the requests ended. */
export async function ingest(store: IssuerStore, history: History, log: (line: string) => void): Promise<Omit<IngestFigures, 'sizeBytes' | 'sizeDetail' | 'storedSessions'>> {
  const orgOf = new Map(history.clusters.map((cluster) => [cluster.name, cluster.org.name]));
  const buffers = new Map<string, IncomingAuditRecord[]>();
  const marks: { records: number; ms: number }[] = [{ records: 0, ms: 0 }];
  let ingested = 0;
  let batches = 0;
  let slowestBatchMs = 0;
  let nextReport = 0.1;
  const started = performance.now();
  const send = async (cluster: string, batch: IncomingAuditRecord[]) => {
    const batchStarted = performance.now();
    const result = await store.ingestAudit({ name: cluster, org: orgOf.get(cluster)! }, batch);
    const now = performance.now();
    slowestBatchMs = Math.max(slowestBatchMs, now - batchStarted);
    if (result.stored !== batch.length || result.duplicates !== 0) throw new Error(`a batch of ${batch.length} records of ${cluster} stored ${result.stored} (${result.duplicates} duplicates): every record is new`);
    ingested += batch.length;
    batches++;
    marks.push({ records: ingested, ms: now - started });
    if (ingested >= nextReport * history.records.length) {
      const previous = marks.findLast((mark) => mark.records <= ingested - history.records.length / 10) ?? marks[0]!;
      log(`  ${ingested.toLocaleString('en')} records in ${((now - started) / 1000).toFixed(1)} s: ${((ingested / (now - started)) * 1000).toFixed(0)}/s overall, ${(((ingested - previous.records) / (now - started - previous.ms)) * 1000).toFixed(0)}/s lately`);
      while (nextReport * history.records.length <= ingested) nextReport += 0.1;
    }
  };
  for (const record of history.records) {
    const cluster = record.cluster as string;
    let buffer = buffers.get(cluster);
    if (!buffer) buffers.set(cluster, (buffer = []));
    buffer.push(record);
    if (buffer.length === BATCH) {
      buffers.delete(cluster);
      await send(cluster, buffer);
    }
  }
  // What the relays still hold at the end, the oldest first.
  const rest = [...buffers.entries()].sort((a, b) => Date.parse(a[1][0]!.time) - Date.parse(b[1][0]!.time));
  for (const [cluster, batch] of rest) await send(cluster, batch);
  const totalMs = performance.now() - started;
  const rateBetween = (fromRecords: number, toRecords: number) => {
    const from = marks.findLast((mark) => mark.records <= fromRecords)!;
    const to = marks.find((mark) => mark.records >= toRecords)!;
    return ((to.records - from.records) / (to.ms - from.ms)) * 1000;
  };
  const tailRecords = Math.min(TAIL_RECORDS, ingested);
  return {
    records: ingested,
    seconds: totalMs / 1000,
    perSecond: (ingested / totalMs) * 1000,
    tailRecords,
    tailPerSecond: rateBetween(ingested - tailRecords, ingested),
    tenths: Array.from({ length: 10 }, (_, i) => rateBetween(Math.floor((i * ingested) / 10), Math.floor(((i + 1) * ingested) / 10))),
    batches,
    slowestBatchMs,
  };
}

interface QuerySpec {
  name: string;
  call: string;
  run: () => Promise<unknown[]>;
  expectedRows?: number;
  matching?: number;
  targetMs?: number;
  /** The SQL src/issuer/store/audit-sql.ts sends for it, with its parameters, for the plan. */
  sql: string;
  params: unknown[];
}

export async function timeQuery(spec: QuerySpec): Promise<Omit<QueryFigures, 'plan'>> {
  let rows = 0;
  for (let i = 0; i < WARM_UPS; i++) rows = (await spec.run()).length;
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    const result = await spec.run();
    times.push(performance.now() - started);
    rows = result.length;
  }
  return { name: spec.name, call: spec.call, rows, ...(spec.expectedRows === undefined ? {} : { expectedRows: spec.expectedRows }), ...(spec.matching === undefined ? {} : { matching: spec.matching }), medianMs: median(times), p95Ms: percentile(times, 95), maxMs: Math.max(...times), ...(spec.targetMs === undefined ? {} : { targetMs: spec.targetMs }) };
}

const RECORD_SELECT = 'SELECT cluster, id, org, agent, time_ms, session_id, record FROM audit_records';
const RECORD_ORDER = 'ORDER BY time_ms, cluster, id LIMIT ?';

/** The queries, for the busiest agent; the session one needs listSessions' answer first. */
export async function querySpecs(store: IssuerStore, history: History): Promise<QuerySpec[]> {
  const { busy, nowMs } = history;
  const org = busy.org.name;
  const dayAgo = nowMs - DAY_MS;
  const hourAgo = nowMs - HOUR_MS;
  const orgClusters = new Set(history.clusters.filter((cluster) => cluster.org === busy.org).map((cluster) => cluster.name));
  const count = (test: (record: IncomingAuditRecord, endMs: number) => boolean) => history.records.filter((record, i) => test(record, history.endMs[i]!)).length;
  const agentRecordsLastHour = count((record, endMs) => record.user === `agent:${busy.name}` && endMs >= hourAgo);
  const orgRecordsLastHour = count((record, endMs) => orgClusters.has(record.cluster as string) && endMs >= hourAgo);
  const orgDeniedLastDay = count((record, endMs) => orgClusters.has(record.cluster as string) && record.decision === 'denied-by-cluster' && endMs >= dayAgo);
  // The agent with the fewest records: asked for by name alone, its few rows are anywhere in the month.
  const perAgent = new Map<string, number>();
  for (const record of history.records) if (record.user !== null) perAgent.set(record.user, (perAgent.get(record.user) ?? 0) + 1);
  const [quietUser, quietRecords] = [...perAgent].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))[0]!;
  const quiet = quietUser.slice('agent:'.length);
  const sessions = await store.listSessions({ org, agent: busy.name, sinceMs: dayAgo, limit: 100 });
  if (sessions.length === 0) throw new Error(`${busy.name} has no session in the last day: the history is not what the bench means it to be`);
  const largest = sessions.reduce((a, b) => (b.requests > a.requests ? b : a));
  /** A queryAudit: it answers at most filter.limit of the `matching` records; `where` and `params` are its SQL's, as audit-sql.ts builds it. */
  const audit = (spec: { name: string; call: string; filter: AuditFilter; matching: number; targetMs?: number; where: string; params: unknown[] }): QuerySpec => ({
    name: spec.name,
    call: spec.call,
    run: () => store.queryAudit(spec.filter),
    expectedRows: Math.min(spec.filter.limit, spec.matching),
    matching: spec.matching,
    ...(spec.targetMs === undefined ? {} : { targetMs: spec.targetMs }),
    sql: `${RECORD_SELECT} WHERE ${spec.where} ${RECORD_ORDER}`,
    params: [...spec.params, spec.filter.limit],
  });
  return [
    {
      name: `(a) sessions of ${busy.name}, last day`,
      call: `listSessions({org: '${org}', agent: '${busy.name}', sinceMs: now-24h, limit: 100})`,
      run: () => store.listSessions({ org, agent: busy.name, sinceMs: dayAgo, limit: 100 }),
      targetMs: QUERY_TARGET_MS,
      sql: 'SELECT * FROM sessions WHERE org = ? AND agent = ? AND last_activity_ms >= ? ORDER BY started_ms DESC, id DESC LIMIT ?',
      params: [org, busy.name, dayAgo, 100],
    },
    audit({
      name: `(b) audit of ${busy.name}, last hour`,
      call: `queryAudit({org: '${org}', agent: '${busy.name}', sinceMs: now-1h, limit: 100})`,
      filter: { org, agent: busy.name, sinceMs: hourAgo, limit: 100 },
      matching: agentRecordsLastHour,
      targetMs: QUERY_TARGET_MS,
      where: 'org = ? AND agent = ? AND time_ms >= ?',
      params: [org, busy.name, hourAgo],
    }),
    audit({
      name: `org ${org}'s audit, last hour`,
      call: `queryAudit({org: '${org}', sinceMs: now-1h, limit: 100})`,
      filter: { org, sinceMs: hourAgo, limit: 100 },
      matching: orgRecordsLastHour,
      where: 'org = ? AND time_ms >= ?',
      params: [org, hourAgo],
    }),
    audit({
      name: `one session's records (${largest.requests} requests)`,
      call: `queryAudit({session: '${largest.id}', limit: 1000})`,
      filter: { session: largest.id, limit: 1000 },
      matching: largest.requests,
      where: 'session_id = ?',
      params: [largest.id],
    }),
    audit({
      name: `org ${org}'s refusals by the cluster, last day`,
      call: `queryAudit({org: '${org}', decision: 'denied-by-cluster', sinceMs: now-24h, limit: 100})`,
      filter: { org, decision: 'denied-by-cluster', sinceMs: dayAgo, limit: 100 },
      matching: orgDeniedLastDay,
      where: 'org = ? AND decision = ? AND time_ms >= ?',
      params: [org, 'denied-by-cluster', dayAgo],
    }),
    audit({
      name: `audit of ${busy.name} by name alone (no org), last hour`,
      call: `queryAudit({agent: '${busy.name}', sinceMs: now-1h, limit: 100})`,
      filter: { agent: busy.name, sinceMs: hourAgo, limit: 100 },
      matching: agentRecordsLastHour,
      where: 'agent = ? AND time_ms >= ?',
      params: [busy.name, hourAgo],
    }),
    audit({
      name: `audit of the quietest agent ${quiet} by name alone (no org), whole month`,
      call: `queryAudit({agent: '${quiet}', limit: 100})`,
      filter: { agent: quiet, limit: 100 },
      matching: quietRecords,
      where: 'agent = ?',
      params: [quiet],
    }),
  ];
}
