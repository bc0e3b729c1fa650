/**
 * npx tsx bench/central-audit.ts — what central audit (DESIGN §12) costs, in
 * one run on this machine, every party its own process, every leg TLS on
 * 127.0.0.1:
 *
 *   intake      records/s that one `kube-relay issuer` process stores through
 *               POST /v1/audit, on SQLite and on PostgreSQL: 4 concurrent
 *               senders (as 4 relay replicas of one cluster would), each
 *               posting batches of 500 completed-request records (the
 *               relay's batch size) one after another for --seconds, after
 *               2 s of warm-up; p50/p99 of a batch's round trip. Each answer's
 *               `stored` must add up to what was sent, with no duplicates,
 *               and the store must hold that many rows afterwards.
 *   forwarding  a direct-mode relay in front of bench/upstream.ts with and
 *               without --connector-key-file (central audit to an issuer on
 *               SQLite), wrk as bench/main.ts's small-GET phase runs it
 *               (-t1, 1/16/64 connections, --duration s a cell), the two
 *               relays in turn for --rounds rounds (the order flips each
 *               round) and the median of each; the relay with the key is
 *               drained (nothing pending for the issuer) before the next
 *               run. The issuer shares this machine, so what it spends
 *               taking the records falls on the runs with the key too (it
 *               is reported). Both relays write their local audit to a
 *               file in a temp dir. Afterwards the issuer's store must hold as many
 *               records of the relay's cluster as the relay wrote
 *               ResponseComplete records locally (wrk's own count is a few
 *               lower: it does not count the requests it cuts off at the end).
 *
 * The records (intake) look like a relay's (src/audit/record.ts AuditRecord):
 * 50 agents, each running kubectl invocations of 5 to 15 requests (about 10)
 * under one kubectlSession id, some exec sessions and refusals, unique
 * requestIds, times now and in order.
 *
 * PostgreSQL is a throwaway server made by test/postgres/server.ts (Debian's
 * `postgresql` package) with fsync, full_page_writes and synchronous_commit
 * back on (the test harness turns them off), so it is as durable as the
 * SQLite store; or, with KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL, a server of
 * yours on this machine (a role that may create databases; the bench makes
 * one database there and drops it).
 *
 * The parts, under central-audit/: records.ts (the records), intake.ts,
 * forwarding.ts (the two measurements), processes.ts (the issuer, relays and
 * upstream as processes, the store seeded and counted), report.ts (the tables).
 *
 * Usage: npm run build && npx tsx bench/central-audit.ts [--seconds 10 --duration 5 --rounds 3 --json FILE]
 * Exits 1 when a count does not add up (stored ≠ sent, duplicates, records
 * missing from the store or dropped by the relay); figures below the intake
 * target (5 000 records/s per issuer) are reported, not failed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { measureForwarding } from './central-audit/forwarding.js';
import { measureIntake, postgresDatabase } from './central-audit/intake.js';
import { problems, ROOT } from './central-audit/processes.js';
import { loadAverage, printForwarding, printIntake } from './central-audit/report.js';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'string' },
  },
});
const SECONDS = positive('seconds');
const WRK_SECONDS = positive('duration');
const ROUNDS = positive('rounds');

function positive(name: 'seconds' | 'duration' | 'rounds'): number {
  const value = Number(flags[name]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive whole number, not ${String(flags[name])}`);
  return value;
}

async function main(): Promise<void> {
  if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('bin/kube-relay.js runs dist/: run npm run build first');
  try {
    execFileSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' });
  } catch {
    throw new Error('the benchmark needs wrk as its load generator: install it (Debian/Ubuntu: apt-get install wrk)');
  }
  const work = mkdtempSync(path.join(os.tmpdir(), 'kube-relay-bench-central-audit-'));
  const postgres = await postgresDatabase();
  try {
    console.log(`Central audit: ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}, PostgreSQL ${postgres.version} (${postgres.durable}) on 127.0.0.1; load average ${loadAverage()}`);

    const intake = [await measureIntake('SQLite', path.join(work, 'sqlite'), undefined, SECONDS), await measureIntake('PostgreSQL', path.join(work, 'postgres'), postgres.url, SECONDS, postgres.postmasterPidFile)];
    printIntake(intake, SECONDS);

    const forwarding = await measureForwarding(work, WRK_SECONDS, ROUNDS);
    printForwarding(forwarding, WRK_SECONDS, ROUNDS);
    console.log(`load average at the end: ${loadAverage()}`);
    for (const problem of problems) console.log(`PROBLEM: ${problem}`);
    if (flags.json) {
      writeFileSync(
        flags.json,
        `${JSON.stringify({ time: new Date().toISOString(), cpus: os.cpus().length, node: process.version, postgres: { version: postgres.version, durability: postgres.durable }, seconds: SECONDS, wrkSeconds: WRK_SECONDS, rounds: ROUNDS, intake, forwarding, problems }, null, 2)}\n`,
      );
    }
  } finally {
    await postgres.close();
    rmSync(work, { recursive: true, force: true });
  }
  if (problems.length > 0) process.exitCode = 1;
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
