/**
 * npm run bench — what kube-relay costs against going straight to the API
 * server, measured in one run on one machine (issue 6). Every party is its
 * own process and every leg is TLS, as deployed:
 *
 *   upstream   bench/upstream.ts (a lean stand-in for kube-apiserver)
 *   direct     kube-relay relay --mode direct, in front of the upstream
 *   tunnel     kube-relay issuer (with its hub) + kube-relay relay --mode tunnel
 *   bare       bench/bare-proxy.ts, a bare Node https proxy: the floor any Node proxy stands on
 *   load       wrk (Debian's `wrk`) for request rates and latencies over HTTP/1.1,
 *              h2load (Debian's `nghttp2-client`) over HTTP/2; this process for
 *              single-stream throughput and idle watches
 *
 * Usage: USAGE below (npm run bench -- --help).
 * Central audit has scripts of its own (issue 18): npx tsx bench/audit-scale.ts [--records 1000000 --json FILE]
 *   (the store at 1M records) and npx tsx bench/central-audit.ts (issuer intake of POST /v1/audit, a relay's forwarding cost)
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { idleWatches, type WatchFigures, type WatchProtocol } from './idle-watches.js';
import { isolation } from './isolation.js';
import { h2load, type Http2Figures, type LatencyFigures, wrk } from './small-get.js';
import { PATHS, type PathName, pids, startEverything, stopEverything, type Target } from './stack.js';
import { bodyDownload, bodyUpload, upgradedStream } from './streams.js';
import { printTargets, type RunFigures, type SmallGetRow } from './targets.js';
import { measureTokenVerification } from './token-verification.js';
import { requireTool } from './tools.js';
import { compareTunnelDesigns, type DesignFigures } from './tunnel-designs.js';
import { Inspector, ROUND_GROWTH_LIMIT, watchRounds } from './watch-rounds.js';

const USAGE = `Usage: npm run bench [-- OPTIONS]
  --phases small,h2,streams,isolation,watches,tokens,designs   what to measure
  --paths upstream,bare,direct,tunnel   --concurrency 1,16,64   --duration 5 (s per cell)
  --stream-mib 1024   --watches 10000   --json FILE
  --cpu-prof DIR    the relays and the issuer write V8 CPU profiles to DIR when the run ends
  --workers 1,2     small GET: the direct relay also with --workers N for each N > 1, its CPU summed over primary and workers
  --phases watch-rounds [--rounds 5 --round-watches 2000 --round-protocol h2|http/1.1 --heap-snapshots DIR --malloc-trim]
                    opt-in: rounds of idle watches through a relay of its own, its memory after each open and close;
                    exits 1 when RSS grew more than 10 % (watch-rounds.ts)`;

const FLAG_OPTIONS = {
  help: { type: 'boolean', short: 'h', default: false },
  duration: { type: 'string', default: '5' },
  'stream-mib': { type: 'string', default: '1024' },
  json: { type: 'string' },
  phases: { type: 'string', default: 'small,h2,streams,isolation,watches,tokens,designs' },
  watches: { type: 'string', default: '10000' },
  paths: { type: 'string', default: PATHS.join(',') },
  concurrency: { type: 'string', default: '1,16,64' },
  'cpu-prof': { type: 'string' },
  rounds: { type: 'string', default: '5' },
  'round-watches': { type: 'string', default: '2000' },
  'round-protocol': { type: 'string', default: 'h2' },
  'heap-snapshots': { type: 'string' },
  'malloc-trim': { type: 'boolean', default: false },
  workers: { type: 'string', default: '1' },
} as const;

const { values: flags } = parseFlags();

function parseFlags() {
  try {
    const parsed = parseArgs({ options: FLAG_OPTIONS });
    if (parsed.values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    return parsed;
  } catch (err) {
    console.error(`bench: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}

const PHASES = new Set(flags.phases.split(','));
const unknownPaths = flags.paths.split(',').filter((name) => !(PATHS as string[]).includes(name));
if (unknownPaths.length > 0) throw new Error(`--paths: unknown path ${unknownPaths.join(', ')}; the paths are ${PATHS.join(', ')}`);
/** The paths measured: --paths narrows a run while working on one of them; ratios need the ones they compare. */
const MEASURED = PATHS.filter((name) => flags.paths.split(',').includes(name));
const WORKERS = flags.workers.split(',').map((text) => {
  if (!/^[1-9][0-9]?$/.test(text) || Number(text) > 64) throw new Error(`--workers: "${text}" is not a worker count from 1 to 64 (a list such as 1,2)`);
  return Number(text);
});
const CONCURRENCY = flags.concurrency.split(',').map(Number);
const DURATION_S = Number(flags.duration);
if (flags['round-protocol'] !== 'h2' && flags['round-protocol'] !== 'http/1.1') throw new Error(`--round-protocol: h2 or http/1.1, not ${flags['round-protocol']}`);
const ROUND_PROTOCOL: WatchProtocol = flags['round-protocol'];
const STREAM_BYTES = Number(flags['stream-mib']) * 1024 * 1024;
// ---------------------------------------------------------------- report

const fmt = (value: number, digits = 2) => value.toFixed(digits);
/** A ratio of two figures of one run; '-' when the run did not measure one of them (--paths). */
const ratio = (value: number | undefined, base: number | undefined) => (value === undefined || base === undefined ? '-' : `${fmt(value / base)}×`);
const percent = (part: number | undefined, whole: number | undefined) => (part === undefined || whole === undefined ? '-' : `${fmt((100 * part) / whole, 0)} %`);

/** The processes whose CPU per request is reported for a path, by name and pid (once they run). */
function measuredProcesses(name: PathName): Record<string, number> {
  return {
    upstream: { upstream: pids.upstream! },
    bare: { 'bare proxy': pids['bare proxy']! },
    direct: { relay: pids['direct relay']! },
    tunnel: { relay: pids['tunnel relay']!, hub: pids.issuer! },
  }[name];
}

async function main(): Promise<void> {
  if (PHASES.has('small')) requireTool('wrk', { debian: 'wrk', brew: 'wrk' }, 'the HTTP/1.1 load generator');
  if (PHASES.has('h2')) requireTool('h2load', { debian: 'nghttp2-client', brew: 'nghttp2' }, 'the HTTP/2 load generator');
  const { targets, ca, roundsRelay, workerRelays } = await startEverything({ cpuProfileDir: flags['cpu-prof'], roundsRelay: PHASES.has('watch-rounds'), workers: MEASURED.includes('direct') ? WORKERS : [] });
  /** The direct relay with --workers N > 1, measured after the paths in the small-GET phase. */
  const multiWorker = MEASURED.includes('direct') ? WORKERS.filter((count) => count > 1) : [];
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`kube-relay benchmark, ${new Date().toISOString()}: ${os.cpus().length} cores (${cpu}), Node ${process.version}, ${os.platform()} ${os.release()}`);
  console.log(`TLS on every leg; upstream, issuer/hub, direct relay, tunnel relay and load generator each in its own process.\n`);

  const results: RunFigures & Record<string, unknown> = { cores: os.cpus().length, cpu, node: process.version, time: new Date().toISOString() };

  if (PHASES.has('small')) {
    console.log(`Small GET: pod list of 50 items (wrk -t1, ${DURATION_S} s per cell); CPU per request of the processes on each path, from /proc`);
    console.log('| concurrency | path | req/s | p50 ms | p99 ms | p99.9 ms | vs upstream req/s | vs bare proxy req/s | CPU µs per request | added p50 ms |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    const small: Record<string, SmallGetRow> = {};
    for (const name of MEASURED) await wrk(targets[name], 16, 1); // warm-up
    for (const count of multiWorker) await wrk(workerRelays.targets[count]!, 16, 1);
    for (const connections of CONCURRENCY) {
      const row: SmallGetRow = {};
      for (const name of MEASURED) row[name] = await wrk(targets[name], connections, DURATION_S, measuredProcesses(name));
      for (const count of multiWorker) (row.workers ??= {})[count] = await wrk(workerRelays.targets[count]!, connections, DURATION_S, { relay: pids[workerRelays.names[count]!]! }, { primary: pids[workerRelays.names[count]!]! });
      small[`c${connections}`] = row;
      const rows: [string, LatencyFigures][] = [...MEASURED.map((name): [string, LatencyFigures] => [name, row[name]!]), ...multiWorker.map((count): [string, LatencyFigures] => [`direct, ${count} workers`, row.workers![count]!])];
      for (const [name, figures] of rows) {
        const { primary, ...parties } = figures.cpuUsPerRequest;
        const cpuUs =
          Object.entries(parties).map(([process, us]) => (name === 'tunnel' ? `${fmt(us, 0)} (${process})` : fmt(us, 0))).join(' + ') + (primary === undefined ? '' : ` (primary and workers; the primary ${fmt(primary, 0)})`);
        console.log(
          `| ${connections} | ${name} | ${fmt(figures.rps, 0)} | ${fmt(figures.p50Ms)} | ${fmt(figures.p99Ms)} | ${fmt(figures.p999Ms)} | ${ratio(figures.rps, row.upstream?.rps)} | ${name === 'upstream' ? '-' : ratio(figures.rps, row.bare?.rps)} | ${cpuUs} | ${name === 'upstream' || !row.upstream ? '-' : fmt(figures.p50Ms - row.upstream.p50Ms)}${figures.errors ? ` (${figures.errors} errors)` : ''} |`,
        );
      }
    }
    results.smallGet = small;
  }

  if (PHASES.has('h2')) {
    // client-go speaks HTTP/2 to any server that offers it: many requests in flight on one connection.
    console.log(`\nSmall GET over HTTP/2 (h2load, ${DURATION_S} s per cell): the relays offer h2 to clients (upstream, short requests take HTTP/1.1 keep-alive)`);
    console.log('| connections × streams | path | req/s | mean ms | vs upstream req/s | CPU µs per request |');
    console.log('|---|---|---|---|---|---|');
    const cells: [number, number][] = [...CONCURRENCY.map((connections): [number, number] => [connections, 1]), [1, 64]];
    const h2: Record<string, Partial<Record<PathName, Http2Figures>>> = {};
    const paths = MEASURED.filter((name) => name !== 'bare'); // the bare proxy speaks HTTP/1.1 only
    for (const name of paths) await h2load(targets[name], 16, 1, 1); // warm-up
    for (const [connections, streams] of cells) {
      const row: Partial<Record<PathName, Http2Figures>> = {};
      for (const name of paths) row[name] = await h2load(targets[name], connections, streams, DURATION_S, measuredProcesses(name));
      h2[`c${connections}m${streams}`] = row;
      for (const name of paths) {
        const figures = row[name]!;
        const cpuUs = Object.entries(figures.cpuUsPerRequest).map(([process, us]) => (name === 'tunnel' ? `${fmt(us, 0)} (${process})` : fmt(us, 0))).join(' + ');
        console.log(`| ${connections} × ${streams} | ${name} | ${fmt(figures.rps, 0)} | ${fmt(figures.meanMs)} | ${ratio(figures.rps, row.upstream?.rps)} | ${cpuUs}${figures.errors ? ` (${figures.errors} errors)` : ''} |`);
      }
    }
    results.http2SmallGet = h2;
  }

  if (PHASES.has('streams')) {
  console.log(`\nSingle stream, ${STREAM_BYTES / 1024 / 1024} MiB each (MB/s)`);
  console.log('| stream | upstream | bare Node proxy | direct | tunnel | bare / upstream | direct / upstream | tunnel / direct |');
  console.log('|---|---|---|---|---|---|---|---|');
  const streams: Record<string, Partial<Record<PathName, number>>> = {};
  const kinds: [string, (t: Target) => Promise<number>][] = [
    ['response body (download)', (t) => bodyDownload(t, ca, STREAM_BYTES)],
    ['request body (upload)', (t) => bodyUpload(t, ca, STREAM_BYTES)],
    ['upgraded, upstream → client', (t) => upgradedStream(t, ca, 'source', STREAM_BYTES)],
    ['upgraded, client → upstream', (t) => upgradedStream(t, ca, 'sink', STREAM_BYTES)],
  ];
  for (const [label, run] of kinds) {
    const row: Partial<Record<PathName, number>> = {};
    for (const name of MEASURED) row[name] = await run(targets[name]);
    streams[label] = row;
    const cell = (value: number | undefined) => (value === undefined ? '-' : fmt(value, 0));
    console.log(`| ${label} | ${cell(row.upstream)} | ${cell(row.bare)} | ${cell(row.direct)} | ${cell(row.tunnel)} | ${percent(row.bare, row.upstream)} | ${percent(row.direct, row.upstream)} | ${percent(row.tunnel, row.direct)} |`);
  }
  results.singleStream = streams;
  }

  if (PHASES.has('isolation')) {
    console.log('\nIsolation: p99 of 100 parallel small GETs (5 rounds), alone and beside one stalled port-forward on the same path');
    console.log('| path | p99 ms | p99 ms with a stalled stream | change |');
    console.log('|---|---|---|---|');
    const isolated: Record<string, { p99Ms: number; p99StalledMs: number }> = {};
    for (const name of ['upstream', 'direct', 'tunnel'] as const) {
      const figures = (isolated[name] = await isolation(targets[name], ca));
      console.log(`| ${name} | ${fmt(figures.p99Ms)} | ${fmt(figures.p99StalledMs)} | ${fmt((100 * (figures.p99StalledMs - figures.p99Ms)) / figures.p99Ms, 0)} % |`);
    }
    results.isolation = isolated;
  }

  if (PHASES.has('watches')) {
    const limit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
    const wanted = Number(flags.watches);
    // Over HTTP/1.1 a direct-mode relay holds two descriptors per watch (client and upstream), a tunnelled one
    // one; over HTTP/2 a watch is a stream of a shared connection on both legs.
    const directCount = Math.min(wanted, Math.floor((limit - 500) / 2));
    console.log(`\nIdle watches through one relay: memory and CPU while idle, and one event delivered to all`);
    if (directCount < wanted) console.log(`(direct mode capped at ${directCount} watches: this shell allows ${limit} open files, the relay needs two per watch; raise ulimit -n to measure ${wanted})`);
    console.log('| path | protocol | watches | opened in s | relay RSS MiB | relay RSS before MiB | hub RSS MiB | relay CPU idle | event to all ms |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    const watches: Record<string, WatchFigures> = {};
    for (const [name, protocol, count, relayPid, hubPid] of [
      // HTTP/2 first: a process keeps the memory it once held (glibc's arenas), so the larger HTTP/1.1 figure comes second.
      ['direct', 'h2', wanted, pids['direct relay']!, undefined],
      ['direct', 'http/1.1', directCount, pids['direct relay']!, undefined],
      ['tunnel', 'h2', wanted, pids['tunnel relay']!, pids.issuer!],
      ['tunnel', 'http/1.1', wanted, pids['tunnel relay']!, pids.issuer!],
    ] as const) {
      const figures = (watches[`${name} ${protocol}`] = await idleWatches(targets[name], targets.upstream, ca, count, protocol, relayPid, hubPid));
      console.log(`| ${name} | ${protocol} | ${figures.watches} | ${fmt(figures.openSeconds, 1)} | ${fmt(figures.relayRssMiB, 0)} | ${fmt(figures.relayRssBeforeMiB, 0)} | ${figures.hubRssMiB ? fmt(figures.hubRssMiB, 0) : '-'} | ${fmt(figures.idleCpuPercent, 1)} % | ${fmt(figures.fanOutMs, 0)} |`);
    }
    results.watches = watches;
  }

  if (PHASES.has('watch-rounds') && roundsRelay) {
    const roundCount = Number(flags.rounds);
    const perRound = Number(flags['round-watches']);
    console.log(`\nWatch rounds: ${roundCount} rounds of ${perRound} idle watches (${ROUND_PROTOCOL}) opened and closed through one direct relay; its memory after a forced full GC`);
    const allocator = ['MALLOC_ARENA_MAX', 'LD_PRELOAD', 'MALLOC_CONF'].filter((name) => process.env[name]).map((name) => `${name}=${process.env[name]}`);
    if (allocator.length > 0) console.log(`(${allocator.join(' ')} for every process of this run)`);
    const inspector = await Inspector.connect(roundsRelay.inspectorUrl);
    const figures = await watchRounds({
      target: roundsRelay.target,
      upstream: targets.upstream,
      ca,
      rounds: roundCount,
      watches: perRound,
      protocol: ROUND_PROTOCOL,
      relayPid: roundsRelay.pid,
      adminPort: roundsRelay.adminPort,
      inspector,
      heapSnapshotDir: flags['heap-snapshots'] && path.resolve(flags['heap-snapshots']),
      mallocTrim: flags['malloc-trim'],
      log: (line) => console.log(line),
    });
    inspector.close();
    const first = figures.rounds[0]!.closed.rssMiB;
    const last = figures.rounds.at(-1)!.closed.rssMiB;
    console.log(
      `${figures.pass ? 'PASS' : 'FAIL'}: relay RSS after the last close ${fmt(last, 1)} MiB is ${fmt(100 * figures.growth, 1)} % ${figures.growth >= 0 ? 'above' : 'below'} after the first close (${fmt(first, 1)} MiB); the limit is ${fmt(100 * ROUND_GROWTH_LIMIT, 0)} %`,
    );
    if (!figures.pass) process.exitCode = 1;
    results.watchRounds = figures;
  }

  if (PHASES.has('tokens')) {
    const figures = await measureTokenVerification(5_000);
    console.log('\nToken verification in one process (ES256, jose): verifications/s');
    console.log('| distinct tokens (signature checked) | the same token again (verified-token cache) |');
    console.log('|---|---|');
    console.log(`| ${fmt(figures.distinctPerSecond, 0)} | ${fmt(figures.repeatedPerSecond, 0)} |`);
    results.tokenVerification = figures;
  }

  if (PHASES.has('designs')) {
  console.log('\nTunnel transport designs (DESIGN §4), in one process, plain HTTP over a loopback WebSocket');
  const designs: DesignFigures[] = await compareTunnelDesigns({ bodyBytes: Math.min(STREAM_BYTES, 512 * 1024 * 1024), seconds: Math.min(DURATION_S, 5) });
  console.log('| design | body MB/s | small GET c=16 req/s |');
  console.log('|---|---|---|');
  for (const design of designs) console.log(`| ${design.name} | ${fmt(design.bodyMBps, 0)} | ${fmt(design.smallGetRps, 0)} |`);
  results.tunnelDesigns = designs;
  }

  printTargets(results, (line) => console.log(line));
  if (flags.json) writeFileSync(flags.json, `${JSON.stringify(results, null, 2)}\n`);
}

main().then(
  async () => {
    await stopEverything();
    process.exit(process.exitCode ?? 0);
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
