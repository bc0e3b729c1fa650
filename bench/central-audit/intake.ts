/** Intake: records/s that one issuer process stores through POST /v1/audit, on SQLite and on PostgreSQL. */
import https from 'node:https';
import pg from 'pg';
import { loadOrCreateCa } from '../../src/tls/local-ca.js';
import { postgresDatabase as benchPostgresDatabase, show } from '../audit-scale/postgres.js';
import { check, cpuSeconds, seed, serverCpuSeconds, startIssuer, storeCounts } from './processes.js';
import { RecordSource } from './records.js';

export const SENDERS = 4;
export const BATCH = 500;
export const WARM_UP_SECONDS = 2;
const TARGET_RECORDS_PER_SECOND = 5_000;

export interface IntakeFigures {
  engine: string;
  seconds: number;
  batches: number;
  sent: number;
  stored: number;
  duplicates: number;
  recordsPerSecond: number;
  batchP50Ms: number;
  batchP99Ms: number;
  batchMaxMs: number;
  /** The issuer process's CPU while measured, in % of one core. */
  issuerCpuPercent: number;
  /** The PostgreSQL server's (all its processes), when it is the bench's own. */
  databaseCpuPercent?: number | undefined;
  /** This process's (the senders: records made, JSON written, TLS). */
  sendersCpuPercent: number;
  /** What the store holds of the cluster afterwards (warm-up included). */
  storeRecords: number;
  storeSessions: number;
  meetsTarget: boolean;
}

function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** POSTs one batch, resolves with the issuer's answer. */
function postBatch(issuer: string, ca: string, agent: https.Agent, connectorKey: string, body: string): Promise<{ stored: number; duplicates: number }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${issuer}/v1/audit`,
      { method: 'POST', agent, ca, headers: { authorization: `Bearer ${connectorKey}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`POST /v1/audit answered ${res.statusCode}: ${text.slice(0, 500)}`));
          resolve(JSON.parse(text) as { stored: number; duplicates: number });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface SendTotals {
  batches: number;
  sent: number;
  stored: number;
  duplicates: number;
  latencies: number[];
}

/** SENDERS loops, each posting one batch after another until `seconds` have passed; the time until the last answer. */
async function sendFor(seconds: number, post: (body: string) => Promise<{ stored: number; duplicates: number }>, source: RecordSource): Promise<SendTotals & { elapsedS: number }> {
  const totals: SendTotals = { batches: 0, sent: 0, stored: 0, duplicates: 0, latencies: [] };
  const startedAt = performance.now();
  const until = startedAt + seconds * 1000;
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (performance.now() < until) {
        const records = source.batch(BATCH);
        const body = JSON.stringify(records);
        const sentAt = performance.now();
        const answer = await post(body);
        totals.latencies.push(performance.now() - sentAt);
        totals.batches++;
        totals.sent += records.length;
        totals.stored += answer.stored;
        totals.duplicates += answer.duplicates;
      }
    }),
  );
  return { ...totals, elapsedS: (performance.now() - startedAt) / 1000 };
}

export async function measureIntake(engine: 'SQLite' | 'PostgreSQL', dataDir: string, storeUrl: string | undefined, seconds: number, postmasterPidFile?: string): Promise<IntakeFigures> {
  const cluster = engine === 'SQLite' ? 'intake-sqlite' : 'intake-postgres';
  const { connectorKey } = await seed(dataDir, storeUrl, cluster);
  const issuer = await startIssuer(dataDir, storeUrl);
  const ca = loadOrCreateCa(dataDir).certPem;
  const agent = new https.Agent({ keepAlive: true, maxSockets: SENDERS, ca });
  const source = new RecordSource(cluster);
  const post = (body: string) => postBatch(issuer.url, ca, agent, connectorKey, body);
  try {
    const warm = await sendFor(WARM_UP_SECONDS, post, source);
    const cpuBefore = cpuSeconds(issuer.pid);
    const databaseBefore = serverCpuSeconds(postmasterPidFile);
    const sendersBefore = process.cpuUsage();
    const run = await sendFor(seconds, post, source);
    const issuerCpuPercent = (100 * (cpuSeconds(issuer.pid) - cpuBefore)) / run.elapsedS;
    const senders = process.cpuUsage(sendersBefore);
    const sendersCpuPercent = (100 * (senders.user + senders.system)) / 1e6 / run.elapsedS;
    const databaseAfter = serverCpuSeconds(postmasterPidFile);
    const databaseCpuPercent = databaseBefore === undefined || databaseAfter === undefined ? undefined : (100 * (databaseAfter - databaseBefore)) / run.elapsedS;
    agent.destroy();
    await issuer.stop();
    const counts = await storeCounts(dataDir, storeUrl, cluster);
    const sentAll = warm.sent + run.sent;
    check(warm.stored + run.stored === sentAll, `${engine} intake: the answers' stored add up to ${warm.stored + run.stored}, ${sentAll} were sent`);
    check(warm.duplicates + run.duplicates === 0, `${engine} intake: ${warm.duplicates + run.duplicates} records were answered as duplicates`);
    check(counts.records === sentAll, `${engine} intake: the store holds ${counts.records} records of ${cluster}, ${sentAll} were sent`);
    const recordsPerSecond = run.stored / run.elapsedS;
    return {
      engine,
      seconds: run.elapsedS,
      batches: run.batches,
      sent: run.sent,
      stored: run.stored,
      duplicates: run.duplicates,
      recordsPerSecond,
      batchP50Ms: percentile(run.latencies, 50),
      batchP99Ms: percentile(run.latencies, 99),
      batchMaxMs: Math.max(...run.latencies),
      issuerCpuPercent,
      databaseCpuPercent,
      sendersCpuPercent,
      storeRecords: counts.records,
      storeSessions: counts.sessions,
      meetsTarget: recordsPerSecond >= TARGET_RECORDS_PER_SECOND,
    };
  } finally {
    agent.destroy();
    await issuer.stop();
  }
}

/**
 * The PostgreSQL server: yours (on this machine) or a throwaway, durable one (bench/audit-scale's); one fresh database on it,
 * and how durable the server is (its fsync and synchronous_commit).
 */
export async function postgresDatabase(): Promise<{ url: string; version: string; durable: string; postmasterPidFile?: string; close(): Promise<void> }> {
  const database = await benchPostgresDatabase(false);
  try {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      return { ...database, durable: `fsync=${await show(client, 'fsync')} synchronous_commit=${await show(client, 'synchronous_commit')}` };
    } finally {
      await client.end();
    }
  } catch (err) {
    await database.close();
    throw err;
  }
}
