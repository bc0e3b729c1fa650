/** The tables bench/central-audit.ts prints. */
import os from 'node:os';
import type { ForwardingResult } from './forwarding.js';
import { BATCH, type IntakeFigures, SENDERS, WARM_UP_SECONDS } from './intake.js';
import { AGENTS } from './records.js';

const fmt = (value: number, digits = 0) => value.toFixed(digits);
export const loadAverage = () => os.loadavg().map((load) => load.toFixed(1)).join(' ');

export function printIntake(intake: IntakeFigures[], seconds: number): void {
  console.log(`\nIntake: POST /v1/audit to one issuer process, ${SENDERS} senders of one cluster, batches of ${BATCH} records (${AGENTS} agents, kubectl invocations of ~10 requests), ${seconds} s after ${WARM_UP_SECONDS} s of warm-up`);
  console.log('| store | records/s | batches | p50 ms | p99 ms | max ms | CPU: issuer / database / senders | stored / sent | duplicates | rows / sessions in store | target 5 000/s |');
  console.log('|---|---:|---:|---:|---:|---:|---|---|---:|---|---|');
  for (const figures of intake) {
    console.log(
      `| ${figures.engine} | ${fmt(figures.recordsPerSecond)} | ${figures.batches} | ${fmt(figures.batchP50Ms, 1)} | ${fmt(figures.batchP99Ms, 1)} | ${fmt(figures.batchMaxMs, 1)} | ${fmt(figures.issuerCpuPercent)} % / ${figures.databaseCpuPercent === undefined ? (figures.engine === 'SQLite' ? 'in the issuer' : '?') : `${fmt(figures.databaseCpuPercent)} %`} / ${fmt(figures.sendersCpuPercent)} % | ${figures.stored} / ${figures.sent} | ${figures.duplicates} | ${figures.storeRecords} / ${figures.storeSessions} | ${figures.meetsTarget ? 'met' : 'BELOW'} |`,
    );
  }
}

export function printForwarding(forwarding: ForwardingResult, wrkSeconds: number, rounds: number): void {
  console.log(`\nForwarding: a direct relay in front of bench/upstream.ts (pod list of 50 items), wrk -t1, ${wrkSeconds} s a run, without and with --connector-key-file in turn, ${rounds} rounds; medians`);
  console.log('| connections | req/s without | req/s with | ratio | p99 ms without | p99 ms with | p99 ratio | relay CPU µs/req without | with | drain after a run (max) |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const cell of forwarding.cells) {
    console.log(
      `| ${cell.connections} | ${fmt(cell.without.rps)} | ${fmt(cell.with.rps)} | ${fmt(cell.rpsRatio, 2)} | ${fmt(cell.without.p99Ms, 2)} | ${fmt(cell.with.p99Ms, 2)} | ${fmt(cell.p99Ratio, 2)} | ${fmt(cell.without.relayCpuUsPerRequest)} | ${fmt(cell.with.relayCpuUsPerRequest)} | ${fmt(cell.drainSecondsMax, 1)} s, ${cell.pendingAtEndMax} records pending |`,
    );
  }
  console.log(`  req/s each round: ${forwarding.cells.map((cell) => `c${cell.connections} without ${cell.without.runs.map((r) => fmt(r.rps)).join('/')}, with ${cell.with.runs.map((r) => fmt(r.rps)).join('/')}`).join('; ')}`);
  console.log(`  the issuer used ${fmt(forwarding.issuerCpuPercentWith)} % of a core during the runs with the key (it shares this machine's ${os.cpus().length} CPUs with the relay, the upstream and wrk)`);
  console.log(
    `\nRecords: wrk made ${forwarding.wrkRequests} requests through the relay with the key (warm-up included; it cut off at most ${forwarding.cutOffAtMost} more at the ends of its runs); the relay wrote ${forwarding.localRecords} ResponseComplete records to its file, ` +
      `delivered ${forwarding.delivered} to the issuer, dropped ${forwarding.dropped}; the issuer's store holds ${forwarding.storeRecords}`,
  );
  if (forwarding.sample) console.log(`  a stored record: ${JSON.stringify(forwarding.sample)}`);
}
