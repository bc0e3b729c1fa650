/**
 * The targets of issue 21, checked against the figures of one run and
 * printed after them: each with the ratio measured, its limit, and whether
 * the run met it. A target whose figures the run did not take (phases or
 * paths left out) is not printed.
 */
import type { WatchFigures } from './idle-watches.js';
import type { LatencyFigures } from './small-get.js';
import type { PathName } from './stack.js';

/** One concurrency of the small-GET phase: each path, and the direct relay with --workers N (N > 1). */
export type SmallGetRow = Partial<Record<PathName, LatencyFigures>> & { workers?: Record<number, LatencyFigures> };

export interface RunFigures {
  smallGet?: Record<string, SmallGetRow>;
  singleStream?: Record<string, Partial<Record<PathName, number>>>;
  watches?: Record<string, WatchFigures>;
}

interface Verdict {
  target: string;
  measured: string;
  met: boolean;
}

const times = (value: number) => `${value.toFixed(2)}×`;
const share = (value: number) => `${(100 * value).toFixed(0)} %`;

export function checkTargets(run: RunFigures): Verdict[] {
  const verdicts: Verdict[] = [];
  const at = (target: string, value: number | undefined, limit: number, atLeast: boolean, show: (value: number) => string) => {
    if (value === undefined || !Number.isFinite(value)) return;
    verdicts.push({ target: `${target} ${atLeast ? '≥' : '≤'} ${show(limit)}`, measured: show(value), met: atLeast ? value >= limit : value <= limit });
  };
  for (const [cell, row] of Object.entries(run.smallGet ?? {})) {
    const concurrency = cell.slice(1);
    const { bare, direct, tunnel } = row;
    at(`small GET c=${concurrency}: direct req/s vs bare proxy`, direct && bare && direct.rps / bare.rps, 0.8, true, times);
    at(`small GET c=${concurrency}: direct CPU per request vs bare proxy`, direct && bare && direct.cpuUsPerRequest.relay! / bare.cpuUsPerRequest['bare proxy']!, 1.25, false, times);
    at(`small GET c=${concurrency}: tunnel req/s vs direct`, tunnel && direct && tunnel.rps / direct.rps, 0.6, true, share);
    const twoWorkers = row.workers?.[2];
    // One keep-alive connection stays on one worker: more workers can only serve more connections.
    if (twoWorkers && direct && Number(concurrency) >= 16) {
      const gain = twoWorkers.rps / direct.rps;
      verdicts.push({ target: `small GET c=${concurrency}: 2 workers serve more than 1 (direct req/s, 2 workers vs 1) > 1.00×`, measured: times(gain), met: gain > 1 });
    }
  }
  for (const [stream, row] of Object.entries(run.singleStream ?? {})) {
    const { upstream, bare, direct, tunnel } = row;
    at(`${stream}: direct vs upstream`, direct && upstream && direct / upstream, 0.6, true, share);
    at(`${stream}: direct vs bare proxy`, direct && bare && direct / bare, 1, true, share);
    at(`${stream}: tunnel vs direct`, tunnel && direct && tunnel / direct, 0.6, true, share);
  }
  for (const [path, figures] of Object.entries(run.watches ?? {})) {
    const perThousand = (figures.relayRssMiB * 1000) / figures.watches;
    verdicts.push({ target: `idle watches, ${path}: relay RSS per 1 000 watches ≤ 40 MiB`, measured: `${perThousand.toFixed(0)} MiB`, met: perThousand <= 40 });
  }
  return verdicts;
}

export function printTargets(run: RunFigures, log: (line: string) => void): void {
  const verdicts = checkTargets(run);
  if (verdicts.length === 0) return;
  log('\nTargets (issue 21), from the figures above');
  log('| target | measured | |');
  log('|---|---|---|');
  for (const { target, measured, met } of verdicts) log(`| ${target} | ${measured} | ${met ? 'met' : 'MISSED'} |`);
}
