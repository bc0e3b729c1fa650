/** The tables of figures, and the targets checked against them. */
import { BATCH, type EngineFigures, INGEST_TARGET_PER_SECOND, RUNS, TAIL_RECORDS, WARM_UPS } from './measure.js';

export const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

export function report(figures: EngineFigures[]): { failures: string[] } {
  const failures: string[] = [];
  const check = (ok: boolean, what: string) => {
    if (!ok) failures.push(what);
    return ok ? 'pass' : 'FAIL';
  };
  console.log(`\nIngest: store.ingestAudit, batches of ${BATCH} records of one cluster, in the order the requests ended, one after another\n`);
  console.log(`| store | records | seconds | records/s overall | records/s, last ${(figures[0]?.ingest.tailRecords ?? TAIL_RECORDS).toLocaleString('en')} | target ${INGEST_TARGET_PER_SECOND}/s | slowest batch ms | size on disk | sessions |`);
  console.log('|---|---:|---:|---:|---:|---|---:|---:|---:|');
  for (const { engine, ingest } of figures) {
    const slowest = Math.min(ingest.perSecond, ingest.tailPerSecond);
    const ok = check(slowest >= INGEST_TARGET_PER_SECOND, `${engine} ingest ${slowest.toFixed(0)}/s < ${INGEST_TARGET_PER_SECOND}/s`);
    console.log(
      `| ${engine} | ${ingest.records.toLocaleString('en')} | ${ingest.seconds.toFixed(1)} | ${ingest.perSecond.toFixed(0)} | ${ingest.tailPerSecond.toFixed(0)} | ${ok} | ${ingest.slowestBatchMs.toFixed(0)} | ${mib(ingest.sizeBytes)} (${Object.entries(ingest.sizeDetail).map(([name, size]) => `${name} ${mib(size)}`).join(', ')}) | ${ingest.storedSessions.toLocaleString('en')} |`,
    );
  }
  console.log('\nrecords/s of each tenth of the history, in order:');
  for (const { engine, ingest } of figures) console.log(`  ${engine}: ${ingest.tenths.map((rate) => rate.toFixed(0)).join(', ')}`);
  console.log(`\nQueries: ${WARM_UPS} warm-ups, then ${RUNS} runs each; a target is met when the p95 is\n`);
  console.log('| store | query | rows (of those matching) | median ms | p95 ms | max ms | target |');
  console.log('|---|---|---:|---:|---:|---:|---|');
  for (const { engine, queries } of figures) {
    for (const query of queries) {
      if (query.expectedRows !== undefined && query.rows !== query.expectedRows) failures.push(`${engine} ${query.name}: ${query.rows} rows, expected ${query.expectedRows}`);
      const verdict = query.targetMs === undefined ? '(reference)' : `${query.targetMs} ms ${check(query.p95Ms <= query.targetMs, `${engine} ${query.name}: p95 ${query.p95Ms.toFixed(1)} ms > ${query.targetMs} ms`)}`;
      const of = query.matching === undefined ? '' : ` of ${query.matching.toLocaleString('en')}`;
      const rows = query.expectedRows === undefined || query.rows === query.expectedRows ? `${query.rows}${of}` : `${query.rows}${of} (expected ${query.expectedRows})`;
      console.log(`| ${engine} | ${query.name} | ${rows} | ${query.medianMs.toFixed(2)} | ${query.p95Ms.toFixed(2)} | ${query.maxMs.toFixed(2)} | ${verdict} |`);
    }
  }
  console.log('\nPlans (the SQL as src/issuer/store/audit-sql.ts builds it):');
  for (const { engine, queries } of figures) {
    for (const query of queries) console.log(`\n  ${engine}, ${query.call}:\n${query.plan.split('\n').map((line) => `    ${line}`).join('\n')}`);
  }
  return { failures };
}
