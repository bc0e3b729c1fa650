/**
 * The small-GET phase of npm run bench: wrk's request rate and latencies,
 * and the CPU time each party under test spent per request (from /proc,
 * read before and after the cell), which tells a party's own cost apart
 * from the load generator's and the machine's noise.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { cpuSeconds, processUsage, ROOT, type Target } from './stack.js';

export interface LatencyFigures {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
  /** µs of CPU per request, for each process measured (by name). */
  cpuUsPerRequest: Record<string, number>;
}

/**
 * `measured`: the processes whose CPU per request is reported, by name and pid, each with the
 * processes below it (a relay's workers); `alone`: processes counted without theirs (a relay's primary).
 */
export async function wrk(target: Target, connections: number, seconds: number, measured: Record<string, number> = {}, alone: Record<string, number> = {}): Promise<LatencyFigures> {
  const headers = await target.headers();
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', path.join(ROOT, 'bench', 'wrk-report.lua')];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(`${target.base}/api/v1/namespaces/bench/pods`);
  const usage = (pid: number, name: string) => (name in alone ? cpuSeconds(pid) : processUsage(pid).cpuSeconds);
  const all = { ...measured, ...alone };
  const before = Object.fromEntries(Object.entries(all).map(([name, pid]) => [name, usage(pid, name)]));
  const output = execFileSync('wrk', args, { encoding: 'utf8' });
  const report = JSON.parse(/WRK-JSON (.*)/.exec(output)![1]!) as { requests: number; durationUs: number; errors: number; non2xx: number; p50: number; p99: number; p999: number };
  const cpuUsPerRequest = Object.fromEntries(Object.entries(all).map(([name, pid]) => [name, ((usage(pid, name) - before[name]!) * 1e6) / Math.max(1, report.requests)]));
  return {
    rps: report.requests / (report.durationUs / 1e6),
    p50Ms: report.p50 / 1000,
    p99Ms: report.p99 / 1000,
    p999Ms: report.p999 / 1000,
    errors: report.errors + report.non2xx,
    cpuUsPerRequest,
  };
}

export interface Http2Figures {
  rps: number;
  meanMs: number;
  errors: number;
  cpuUsPerRequest: Record<string, number>;
}

/** h2load (nghttp2) over HTTP/2: `connections` connections, each with up to `streams` requests in flight. */
export async function h2load(target: Target, connections: number, streams: number, seconds: number, measured: Record<string, number> = {}): Promise<Http2Figures> {
  const headers = await target.headers();
  const args = ['-c', String(connections), '-m', String(streams), '-D', String(seconds), '-t', '1'];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(`${target.base}/api/v1/namespaces/bench/pods`);
  const before = Object.fromEntries(Object.entries(measured).map(([name, pid]) => [name, processUsage(pid).cpuSeconds]));
  const output = execFileSync('h2load', args, { encoding: 'utf8' });
  const after = Object.fromEntries(Object.entries(measured).map(([name, pid]) => [name, processUsage(pid).cpuSeconds]));
  const finished = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(output);
  const counts = /requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored/.exec(output);
  const statuses = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  const latency = /time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/.exec(output);
  if (!finished || !counts || !statuses || !latency) throw new Error(`h2load's report was not understood:\n${output}`);
  const succeeded = Number(statuses[1]);
  const unit = { us: 1e-3, ms: 1, s: 1e3 }[latency[2] as 'us' | 'ms' | 's'];
  return {
    rps: Number(finished[3]),
    meanMs: Number(latency[1]) * unit,
    errors: Number(counts[1]) + Number(counts[2]) + Number(statuses[2]) + Number(statuses[3]) + Number(statuses[4]),
    cpuUsPerRequest: Object.fromEntries(Object.keys(measured).map((name) => [name, ((after[name]! - before[name]!) * 1e6) / Math.max(1, succeeded)])),
  };
}
