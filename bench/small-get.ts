/**
 * The small-GET phase of npm run bench: wrk's request rate and latencies,
 * and the CPU time each party under test spent per request (from /proc,
 * read before and after the cell), which tells a party's own cost apart
 * from the load generator's and the machine's noise.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { processUsage, ROOT, type Target } from './stack.js';

export interface LatencyFigures {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
  /** µs of CPU per request, for each process measured (by name). */
  cpuUsPerRequest: Record<string, number>;
}

/** `measured`: the processes whose CPU per request is reported, by name and pid. */
export async function wrk(target: Target, connections: number, seconds: number, measured: Record<string, number> = {}): Promise<LatencyFigures> {
  const headers = await target.headers();
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', path.join(ROOT, 'bench', 'wrk-report.lua')];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(`${target.base}/api/v1/namespaces/bench/pods`);
  const before = Object.fromEntries(Object.entries(measured).map(([name, pid]) => [name, processUsage(pid).cpuSeconds]));
  const output = execFileSync('wrk', args, { encoding: 'utf8' });
  const report = JSON.parse(/WRK-JSON (.*)/.exec(output)![1]!) as { requests: number; durationUs: number; errors: number; non2xx: number; p50: number; p99: number; p999: number };
  const cpuUsPerRequest = Object.fromEntries(Object.entries(measured).map(([name, pid]) => [name, ((processUsage(pid).cpuSeconds - before[name]!) * 1e6) / Math.max(1, report.requests)]));
  return {
    rps: report.requests / (report.durationUs / 1e6),
    p50Ms: report.p50 / 1000,
    p99Ms: report.p99 / 1000,
    p999Ms: report.p999 / 1000,
    errors: report.errors + report.non2xx,
    cpuUsPerRequest,
  };
}
