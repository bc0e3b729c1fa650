/**
 * npx tsx bench/audit-scale.ts — issue 18's scale target for the central
 * audit store, on SQLite and then on PostgreSQL, in one run on this machine.
 * With a million stored records:
 *
 *   (a) one agent's sessions over the last day      within 300 ms
 *   (b) one agent's audit records of the last hour  within 300 ms
 *   (c) records are taken in at                     >= 5 000 records/s
 *
 * The history (audit-scale/history.ts): a seeded, made-up month of 3 orgs,
 * 20 clusters and 300 agents, the same on every run with the same --records
 * and --seed: bursts of kubectl invocations (each with its Kubectl-Session
 * id) and of helm/terraform-like clients, records as the relays write them.
 *
 * Ingest (audit-scale/measure.ts): store.ingestAudit, one cluster's batch of
 * 500 records at a time, in the order the requests ended; records/s overall,
 * over the last 100 000 records and every tenth of the way; then the size on
 * disk. Queries: for the busiest agent (given a session in the last hour),
 * (a), (b) and a few for reference, 2 warm-ups and 20 timed runs each; a
 * target is met when the p95 is; each query's plan is printed.
 *
 * Engines (audit-scale/engines.ts): SQLite is the store's own file in a
 * temporary directory. PostgreSQL is a throwaway server made by
 * test/postgres/server.ts, durable as a real one (--postgres-no-sync keeps
 * the test harness's settings), or, with KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL,
 * a database made (and dropped) on a server of yours on this machine.
 *
 * Usage: npm run build && npx tsx bench/audit-scale.ts [--records 1000000 --seed 18 --engines sqlite,postgres
 *        --postgres-no-sync --json FILE]
 * Exits 1 when a target is missed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runPostgres, runSqlite } from './audit-scale/engines.js';
import { makeHistory } from './audit-scale/history.js';
import { type EngineFigures, INGEST_TARGET_PER_SECOND, QUERY_TARGET_MS } from './audit-scale/measure.js';
import { mib, report } from './audit-scale/report.js';

const { values: flags } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: '18' },
    engines: { type: 'string', default: 'sqlite,postgres' },
    'postgres-no-sync': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const RECORDS = positive('records');
const SEED = positive('seed');
const ENGINES = flags.engines.split(',').map((engine) => engine.trim());
for (const engine of ENGINES) if (engine !== 'sqlite' && engine !== 'postgres') throw new Error(`--engines takes sqlite and/or postgres, not ${engine}`);

function positive(name: 'records' | 'seed'): number {
  const value = Number(flags[name]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive whole number, not ${String(flags[name])}`);
  return value;
}

const loadAverage = () => os.loadavg().map((load) => load.toFixed(1)).join(' ');

async function main(): Promise<void> {
  const cpus = os.cpus();
  console.log(`Audit store at scale (issue 18): ${cpus.length} CPUs, ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}; load average ${loadAverage()}`);
  const generated = performance.now();
  const history = makeHistory(RECORDS, SEED, Date.now());
  const bytes = history.records.reduce((sum, record) => sum + JSON.stringify(record).length, 0);
  const agentsSeen = new Set(history.records.flatMap((record) => (record.user === null ? [] : [record.user]))).size;
  const busyRecords = history.records.filter((record) => record.user === `agent:${history.busy.name}`).length;
  console.log(
    `History (seed ${SEED}): ${history.records.length.toLocaleString('en')} records in ${history.sessions.toLocaleString('en')} bursts over 30 days ending ${new Date(history.nowMs).toISOString()}, ` +
      `${history.orgs.length} orgs, ${history.clusters.length} clusters, ${agentsSeen} agents with records; ${(bytes / history.records.length).toFixed(0)} bytes of JSON a record; ` +
      `made in ${((performance.now() - generated) / 1000).toFixed(1)} s (heap ${mib(process.memoryUsage().heapUsed)}). The queries' agent: ${history.busy.name} (${history.busy.org.name}, ${history.busy.kind}, ${busyRecords.toLocaleString('en')} records)`,
  );
  const verbs = new Map<string, number>();
  const decisions = new Map<string, number>();
  for (const record of history.records) {
    verbs.set(record.verb, (verbs.get(record.verb) ?? 0) + 1);
    decisions.set(record.decision, (decisions.get(record.decision) ?? 0) + 1);
  }
  const share = (counts: Map<string, number>) => [...counts].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${((100 * n) / history.records.length).toFixed(1)} %`).join(', ');
  console.log(`  verbs: ${share(verbs)}\n  decisions: ${share(decisions)}`);

  const work = mkdtempSync(path.join(os.tmpdir(), 'kube-relay-bench-audit-'));
  const log = (line: string) => console.log(line);
  const figures: EngineFigures[] = [];
  try {
    if (ENGINES.includes('sqlite')) figures.push(await runSqlite(history, work, log));
    if (ENGINES.includes('postgres')) figures.push(await runPostgres(history, work, log, { noSync: flags['postgres-no-sync'] }));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const { failures } = report(figures);
  console.log(`\nload average at the end: ${loadAverage()}`);
  if (flags.json) {
    writeFileSync(
      flags.json,
      `${JSON.stringify({ records: RECORDS, seed: SEED, historyEnd: new Date(history.nowMs).toISOString(), machine: { cpus: cpus.length, model: cpus[0]?.model, memoryBytes: os.totalmem(), node: process.version }, targets: { queryMs: QUERY_TARGET_MS, ingestPerSecond: INGEST_TARGET_PER_SECOND }, engines: figures, failures }, null, 2)}\n`,
    );
  }
  if (failures.length > 0) {
    console.log(`\nMissed: ${failures.join('; ')}`);
    process.exitCode = 1;
  } else {
    console.log('\nEvery target met.');
  }
}

await main();
