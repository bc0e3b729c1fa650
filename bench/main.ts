/**
 * npm run bench — what kube-relay costs against going straight to the API
 * server, measured in one run on one machine (issue 6). Every party is its
 * own process and every leg is TLS, as deployed:
 *
 *   upstream   bench/upstream.ts (a lean stand-in for kube-apiserver)
 *   direct     kube-relay relay --mode direct, in front of the upstream
 *   tunnel     kube-relay issuer (with its hub) + kube-relay relay --mode tunnel
 *   bare       bench/bare-proxy.ts, a bare Node https proxy: the floor any Node proxy stands on
 *   load       wrk (Debian's `wrk`) for request rates and latencies; this
 *              process for single-stream throughput
 *
 * Usage: npm run bench [-- --duration 5 --stream-mib 1024 --watches 10000 --json FILE
 *                          --phases small,streams,isolation,watches,tokens,designs]
 *        [--cpu-prof DIR]  (the relays and the issuer write V8 CPU profiles to DIR when the run ends)
 *        --phases watch-rounds [--rounds 5 --round-watches 2000 --heap-snapshots DIR --malloc-trim]
 *                  (opt-in: rounds of idle watches through a relay of its own, its memory after each
 *                  open and close; exits 1 when RSS grew more than 10 %, see watch-rounds.ts)
 * Central audit has scripts of its own (issue 18): npx tsx bench/audit-scale.ts [--records 1000000 --json FILE]
 *   (the store at 1M records) and npx tsx bench/central-audit.ts (issuer intake of POST /v1/audit, a relay's forwarding cost)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import tls from 'node:tls';
import { requestToken } from '../src/client/token.js';
import { issueCertificate, loadOrCreateCa } from '../src/tls/local-ca.js';
import { measureTokenVerification } from './token-verification.js';
import { compareTunnelDesigns, type DesignFigures } from './tunnel-designs.js';
import { Inspector, ROUND_GROWTH_LIMIT, watchRounds } from './watch-rounds.js';

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    'stream-mib': { type: 'string', default: '1024' },
    json: { type: 'string' },
    phases: { type: 'string', default: 'small,streams,isolation,watches,tokens,designs' },
    watches: { type: 'string', default: '10000' },
    'cpu-prof': { type: 'string' },
    rounds: { type: 'string', default: '5' },
    'round-watches': { type: 'string', default: '2000' },
    'heap-snapshots': { type: 'string' },
    'malloc-trim': { type: 'boolean', default: false },
  },
});
const PHASES = new Set(flags.phases.split(','));
const DURATION_S = Number(flags.duration);
const STREAM_BYTES = Number(flags['stream-mib']) * 1024 * 1024;
const ROOT = path.resolve(import.meta.dirname, '..');
const CLI = path.join(ROOT, 'bin', 'kube-relay.js');
const CLUSTER = 'bench';

/** upstream: straight to it; bare: through a bare Node https proxy (the floor); direct, tunnel: through kube-relay. */
type PathName = 'upstream' | 'bare' | 'direct' | 'tunnel';
const PATHS: PathName[] = ['upstream', 'bare', 'direct', 'tunnel'];

interface Target {
  /** Base URL that stands for the API server on this path. */
  base: string;
  headers: () => Promise<Record<string, string>>;
}

// ---------------------------------------------------------------- processes

const children: ChildProcess[] = [];
const pids: Record<string, number> = {};
process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));

/** Starts a child and resolves with the first output line matching `ready`. */
function startProcess(name: string, command: string, args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<RegExpMatchArray> {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  pids[name] = child.pid!;
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 30 s:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = ready.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}) before it was ready:\n${output}`)));
  });
}

function kubeRelay(dataDir: string, args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, KUBE_RELAY_DATA: dataDir } }).trim();
}

async function waitReady(adminPort: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const status = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status, () => 0);
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the relay on admin port ${adminPort} did not become ready`);
}

/** The watch-rounds phase's own direct relay, inspectable (watch-rounds.ts). */
interface InspectedRelay {
  target: Target;
  pid: number;
  adminPort: number;
  inspectorUrl: string;
}

async function startEverything(): Promise<{ targets: Record<PathName, Target>; ca: string; roundsRelay?: InspectedRelay }> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'kube-relay-bench-'));
  const ca = loadOrCreateCa(dataDir);
  const upstreamCert = issueCertificate(ca, { commonName: 'bench-upstream', sans: ['127.0.0.1', 'localhost'], usage: 'server' });
  writeFileSync(path.join(dataDir, 'upstream.crt'), upstreamCert.certPem);
  writeFileSync(path.join(dataDir, 'upstream.key'), upstreamCert.keyPem, { mode: 0o600 });

  const connectorKey = kubeRelay(dataDir, ['cluster', 'create', CLUSTER, '--org', 'bench']);
  writeFileSync(path.join(dataDir, 'connector.key'), `${connectorKey}\n`, { mode: 0o600 });
  const agentKey = kubeRelay(dataDir, ['agent', 'create', 'loader', '--org', 'bench', '--team', 'load']);

  const upstreamPort = Number(
    (await startProcess('upstream', process.execPath, ['--import', 'tsx', path.join('bench', 'upstream.ts'), path.join(dataDir, 'upstream.crt'), path.join(dataDir, 'upstream.key')], /listening (\d+)/))[1],
  );
  const barePort = Number(
    (
      await startProcess(
        'bare proxy',
        process.execPath,
        ['--import', 'tsx', path.join('bench', 'bare-proxy.ts'), path.join(dataDir, 'upstream.crt'), path.join(dataDir, 'upstream.key'), ca.certPath, String(upstreamPort)],
        /listening (\d+)/,
      )
    )[1],
  );
  writeFileSync(
    path.join(dataDir, 'upstream.kubeconfig'),
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'bench', cluster: { server: `https://127.0.0.1:${upstreamPort}`, 'certificate-authority': ca.certPath } }],
      users: [{ name: 'relay', user: { token: 'bench-relay-credential' } }],
      contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'relay' } }],
      'current-context': 'bench',
    }),
  );

  const node = process.execPath;
  const profile = flags['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(flags['cpu-prof'])}`] : [];
  const data = { KUBE_RELAY_DATA: dataDir };
  const issuerUrl = (await startProcess('issuer', node, [...profile, CLI, 'issuer', '--listen', '127.0.0.1:0'], /"url":"(https:\/\/[^"]+)"/, data))[1]!;
  // One agent holds every watch of the idle-watch phase: its per-agent quota must not be what is measured.
  const relayArgs = ['--cluster', CLUSTER, '--issuer', issuerUrl, '--issuer-ca-file', ca.certPath, '--kubeconfig', path.join(dataDir, 'upstream.kubeconfig'), '--admin-listen', '127.0.0.1:0', '--max-streams-per-agent', '1000000'];
  const direct = await startProcess(
    'direct relay',
    node,
    [...profile, CLI, 'relay', ...relayArgs, '--mode', 'direct', '--listen', '127.0.0.1:0', '--audit-file', path.join(dataDir, 'direct-audit.jsonl')],
    /"relay listening".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
    data,
  );
  const tunnel = await startProcess(
    'tunnel relay',
    node,
    [...profile, CLI, 'relay', ...relayArgs, '--mode', 'tunnel', '--hub', issuerUrl, '--connector-key-file', path.join(dataDir, 'connector.key'), '--audit-file', path.join(dataDir, 'tunnel-audit.jsonl')],
    /"relay dialling the hub".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
    data,
  );
  // Only for the watch-rounds phase: a direct relay no other phase has used, with the inspector on.
  const rounds = PHASES.has('watch-rounds')
    ? await startProcess(
        'rounds relay',
        node,
        ['--inspect=127.0.0.1:0', CLI, 'relay', ...relayArgs, '--mode', 'direct', '--listen', '127.0.0.1:0', '--audit-file', path.join(dataDir, 'rounds-audit.jsonl')],
        /Debugger listening on (ws:\/\/\S+)[\s\S]*"relay listening".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
        data,
      )
    : undefined;
  await Promise.all([waitReady(Number(direct[2])), waitReady(Number(tunnel[2])), rounds && waitReady(Number(rounds[3]))]);

  // A fresh 60-second token for every measurement that needs one.
  const agentHeaders = async () => ({ authorization: `Bearer ${(await requestToken({ issuer: issuerUrl, cluster: CLUSTER, apiKey: agentKey, issuerCa: ca.certPem })).token}` });
  return {
    ca: ca.certPem,
    targets: {
      upstream: { base: `https://127.0.0.1:${upstreamPort}`, headers: async () => ({ authorization: 'Bearer bench-relay-credential' }) },
      bare: { base: `https://127.0.0.1:${barePort}`, headers: async () => ({ authorization: 'Bearer bench-relay-credential' }) },
      direct: { base: direct[1]!, headers: agentHeaders },
      tunnel: { base: tunnel[1]!, headers: agentHeaders },
    },
    ...(rounds ? { roundsRelay: { target: { base: rounds[2]!, headers: agentHeaders }, pid: pids['rounds relay']!, adminPort: Number(rounds[3]), inspectorUrl: rounds[1]! } } : {}),
  };
}

// ---------------------------------------------------------------- small GETs (wrk)

interface LatencyFigures {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
}

async function wrk(target: Target, connections: number, seconds: number): Promise<LatencyFigures> {
  const headers = await target.headers();
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', path.join(ROOT, 'bench', 'wrk-report.lua')];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(`${target.base}/api/v1/namespaces/bench/pods`);
  const output = execFileSync('wrk', args, { encoding: 'utf8' });
  const report = JSON.parse(/WRK-JSON (.*)/.exec(output)![1]!) as { requests: number; durationUs: number; errors: number; non2xx: number; p50: number; p99: number; p999: number };
  return {
    rps: report.requests / (report.durationUs / 1e6),
    p50Ms: report.p50 / 1000,
    p99Ms: report.p99 / 1000,
    p999Ms: report.p999 / 1000,
    errors: report.errors + report.non2xx,
  };
}

// ---------------------------------------------------------------- single streams

const CHUNK = Buffer.alloc(64 * 1024, 'b');

function writeBytes(out: NodeJS.WritableStream, size: number, done: () => void): void {
  let left = size;
  const pump = () => {
    while (left > 0) {
      const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= chunk.length;
      if (!out.write(chunk)) {
        out.once('drain', pump);
        return;
      }
    }
    done();
  };
  pump();
}

const megabytesPerSecond = (bytes: number, startedAt: number) => bytes / 1e6 / ((performance.now() - startedAt) / 1000);

async function bodyDownload(target: Target, ca: string, size: number): Promise<number> {
  const headers = await target.headers();
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    https
      .get(`${target.base}/bench/bytes?size=${size}`, { ca, agent: false, headers }, (res) => {
        let received = 0;
        res.on('data', (chunk: Buffer) => (received += chunk.length));
        res.on('end', () => (received === size ? resolve(megabytesPerSecond(size, startedAt)) : reject(new Error(`got ${received} of ${size} bytes`))));
      })
      .on('error', reject);
  });
}

async function bodyUpload(target: Target, ca: string, size: number): Promise<number> {
  const headers = await target.headers();
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${target.base}/bench/sink`,
      { method: 'POST', ca, agent: false, headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': size } },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => {
          const received = (JSON.parse(text) as { received: number }).received;
          if (received === size) resolve(megabytesPerSecond(size, startedAt));
          else reject(new Error(`upstream got ${received} of ${size} bytes`));
        });
      },
    );
    req.on('error', reject);
    writeBytes(req, size, () => req.end());
  });
}

/** A port-forward-like upgrade: `source` streams `size` bytes to us, `sink` takes `size` bytes from us. */
async function upgradedStream(target: Target, ca: string, kind: 'source' | 'sink', size: number): Promise<number> {
  const headers = await target.headers();
  const base = new URL(target.base);
  const socket = tls.connect({ host: base.hostname, port: Number(base.port), ca });
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const headerLines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.write(
    `POST ${base.pathname.replace(/\/$/, '')}/api/v1/namespaces/bench/pods/${kind}/portforward?size=${size} HTTP/1.1\r\nHost: ${base.host}\r\n${headerLines}` +
      'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n',
  );
  let startedAt = 0;
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let upgraded = false;
    let received = 0;
    let tail = '';
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      if (!upgraded) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        if (!head.subarray(0, 12).toString().startsWith('HTTP/1.1 101')) return reject(new Error(`no upgrade: ${head.toString().split('\r\n')[0]}`));
        upgraded = true;
        startedAt = performance.now();
        chunk = head.subarray(end + 4);
        if (kind === 'sink') writeBytes(socket, size, () => socket.end());
      }
      if (kind === 'source') received += chunk.length;
      else tail += chunk.toString();
    });
    socket.on('end', () => {
      socket.end();
      let got = received;
      if (kind === 'sink') {
        try {
          got = (JSON.parse(tail) as { received: number }).received;
        } catch {
          return reject(new Error(`${target.base}: the sink's answer never came back (${JSON.stringify(tail)})`));
        }
      }
      if (got === size) resolve(megabytesPerSecond(size, startedAt));
      else reject(new Error(`${target.base}: ${kind} moved ${got} of ${size} bytes`));
    });
  });
}

// ---------------------------------------------------------------- isolation

const percentile = (samples: number[], p: number) => [...samples].sort((a, b) => a - b)[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))]!;

function timedGet(url: string, agent: https.Agent, headers: Record<string, string>): Promise<number> {
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    https
      .get(url, { agent, headers }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - startedAt) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

/** Opens a port-forward-like upgrade to the echoing upstream, writes `bytes` and never reads: a stalled consumer. */
async function stalledStream(target: Target, ca: string, bytes: number): Promise<tls.TLSSocket> {
  const headers = await target.headers();
  const base = new URL(target.base);
  const socket = tls.connect({ host: base.hostname, port: Number(base.port), ca });
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  const headerLines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.write(
    `POST ${base.pathname.replace(/\/$/, '')}/api/v1/namespaces/bench/pods/stall/portforward HTTP/1.1\r\nHost: ${base.host}\r\n${headerLines}` +
      'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n',
  );
  socket.write(Buffer.alloc(bytes, 's'));
  socket.pause();
  return socket;
}

/** p99 of 100 parallel GETs (5 rounds), without and then beside one stalled stream on the same path. */
async function isolation(target: Target, ca: string): Promise<{ p99Ms: number; p99StalledMs: number }> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 100, ca });
  const url = `${target.base}/api/v1/namespaces/bench/pods`;
  const rounds = async () => {
    const headers = await target.headers();
    const samples: number[] = [];
    for (let round = 0; round < 5; round++) samples.push(...(await Promise.all(Array.from({ length: 100 }, () => timedGet(url, agent, headers)))));
    return samples;
  };
  await rounds(); // warm-up: connections open
  const p99Ms = percentile(await rounds(), 99);
  const stalled = await stalledStream(target, ca, 8 * 1024 * 1024);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const p99StalledMs = percentile(await rounds(), 99);
  stalled.destroy();
  agent.destroy();
  return { p99Ms, p99StalledMs };
}

// ---------------------------------------------------------------- idle watches

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** Resident memory and CPU time used so far by a process, from /proc. */
function processUsage(pid: number): { rssMiB: number; cpuSeconds: number } {
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
  return { rssMiB: rssKiB / 1024, cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND };
}

interface WatchFigures {
  watches: number;
  openSeconds: number;
  relayRssMiB: number;
  hubRssMiB?: number;
  idleCpuPercent: number;
  fanOutMs: number;
}

async function upstreamWatches(upstream: Target, ca: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    https.get(`${upstream.base}/bench/watches`, { agent: false, ca }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  return (JSON.parse(text) as { open: number }).open;
}

async function idleWatches(target: Target, upstream: Target, ca: string, count: number, relayPid: number, hubPid?: number): Promise<WatchFigures> {
  const agent = new https.Agent({ keepAlive: false, maxSockets: Infinity, maxCachedSessions: 1000, ca });
  const requests: import('node:http').ClientRequest[] = [];
  let waitingForEvent: (() => void) | undefined;
  const openedAt = performance.now();
  for (let first = 0; first < count; first += 250) {
    const headers = await target.headers(); // a fresh 60-second token per batch: opening them all takes a while
    await Promise.all(
      Array.from({ length: Math.min(250, count - first) }, () => new Promise<void>((resolve, reject) => {
        const req = https.get(`${target.base}/api/v1/namespaces/bench/pods?watch=1`, { agent, headers }, (res) => {
          if (res.statusCode !== 200) return reject(new Error(`watch: HTTP ${res.statusCode}`));
          res.on('data', () => waitingForEvent?.());
          resolve();
        });
        req.on('error', reject);
        requests.push(req);
      })),
    );
  }
  const openSeconds = (performance.now() - openedAt) / 1000;
  while ((await upstreamWatches(upstream, ca)) < count) await new Promise((resolve) => setTimeout(resolve, 200));

  const before = processUsage(relayPid);
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const after = processUsage(relayPid);

  let delivered = 0;
  const allDelivered = new Promise<void>((resolve) => {
    waitingForEvent = () => {
      if (++delivered === count) resolve();
    };
  });
  const sentAt = performance.now();
  await new Promise<void>((resolve, reject) => {
    const req = https.request(`${upstream.base}/bench/event`, { method: 'POST', agent: false, ca }, (res) => res.resume().on('end', resolve));
    req.on('error', reject);
    req.end();
  });
  await allDelivered;
  const fanOutMs = performance.now() - sentAt;

  for (const req of requests) req.destroy();
  agent.destroy();
  while ((await upstreamWatches(upstream, ca)) > 0) await new Promise((resolve) => setTimeout(resolve, 200));
  return {
    watches: count,
    openSeconds,
    relayRssMiB: after.rssMiB,
    ...(hubPid ? { hubRssMiB: processUsage(hubPid).rssMiB } : {}),
    idleCpuPercent: (100 * (after.cpuSeconds - before.cpuSeconds)) / 5,
    fanOutMs,
  };
}

// ---------------------------------------------------------------- report

const fmt = (value: number, digits = 2) => value.toFixed(digits);
const ratio = (value: number, base: number) => `${fmt(value / base)}×`;

async function main(): Promise<void> {
  try {
    if (PHASES.has('small')) execFileSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' });
  } catch {
    throw new Error('the benchmark needs wrk as its load generator: install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)');
  }
  const { targets, ca, roundsRelay } = await startEverything();
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`kube-relay benchmark, ${new Date().toISOString()}: ${os.cpus().length} cores (${cpu}), Node ${process.version}, ${os.platform()} ${os.release()}`);
  console.log(`TLS on every leg; upstream, issuer/hub, direct relay, tunnel relay and load generator each in its own process.\n`);

  const results: Record<string, unknown> = { cores: os.cpus().length, cpu, node: process.version, time: new Date().toISOString() };

  if (PHASES.has('small')) {
  console.log(`Small GET: pod list of 50 items (wrk -t1, ${DURATION_S} s per cell)`);
  console.log('| concurrency | path | req/s | p50 ms | p99 ms | p99.9 ms | vs upstream req/s | added p50 ms |');
  console.log('|---|---|---|---|---|---|---|---|');
  const small: Record<string, Record<PathName, LatencyFigures>> = {};
  for (const name of PATHS) await wrk(targets[name], 16, 1); // warm-up
  for (const connections of [1, 16, 64]) {
    const row = {} as Record<PathName, LatencyFigures>;
    for (const name of PATHS) row[name] = await wrk(targets[name], connections, DURATION_S);
    small[`c${connections}`] = row;
    for (const name of PATHS) {
      const figures = row[name];
      const base = row.upstream;
      console.log(
        `| ${connections} | ${name} | ${fmt(figures.rps, 0)} | ${fmt(figures.p50Ms)} | ${fmt(figures.p99Ms)} | ${fmt(figures.p999Ms)} | ${ratio(figures.rps, base.rps)} | ${name === 'upstream' ? '-' : fmt(figures.p50Ms - base.p50Ms)}${figures.errors ? ` (${figures.errors} errors)` : ''} |`,
      );
    }
  }
  results.smallGet = small;
  }

  if (PHASES.has('streams')) {
  console.log(`\nSingle stream, ${STREAM_BYTES / 1024 / 1024} MiB each (MB/s)`);
  console.log('| stream | upstream | bare Node proxy | direct | tunnel | bare / upstream | direct / upstream | tunnel / direct |');
  console.log('|---|---|---|---|---|---|---|---|');
  const streams: Record<string, Record<PathName, number>> = {};
  const kinds: [string, (t: Target) => Promise<number>][] = [
    ['response body (download)', (t) => bodyDownload(t, ca, STREAM_BYTES)],
    ['request body (upload)', (t) => bodyUpload(t, ca, STREAM_BYTES)],
    ['upgraded, upstream → client', (t) => upgradedStream(t, ca, 'source', STREAM_BYTES)],
    ['upgraded, client → upstream', (t) => upgradedStream(t, ca, 'sink', STREAM_BYTES)],
  ];
  for (const [label, run] of kinds) {
    const row = {} as Record<PathName, number>;
    for (const name of PATHS) row[name] = await run(targets[name]);
    streams[label] = row;
    const percent = (part: number, whole: number) => `${fmt((100 * part) / whole, 0)} %`;
    console.log(`| ${label} | ${fmt(row.upstream, 0)} | ${fmt(row.bare, 0)} | ${fmt(row.direct, 0)} | ${fmt(row.tunnel, 0)} | ${percent(row.bare, row.upstream)} | ${percent(row.direct, row.upstream)} | ${percent(row.tunnel, row.direct)} |`);
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
    // A direct-mode relay holds two descriptors per watch (client and upstream); a tunnelled one, one.
    const directCount = Math.min(wanted, Math.floor((limit - 500) / 2));
    console.log(`\nIdle watches through one relay: memory and CPU while idle, and one event delivered to all`);
    if (directCount < wanted) console.log(`(direct mode capped at ${directCount} watches: this shell allows ${limit} open files, the relay needs two per watch; raise ulimit -n to measure ${wanted})`);
    console.log('| path | watches | opened in s | relay RSS MiB | hub RSS MiB | relay CPU idle | event to all ms |');
    console.log('|---|---|---|---|---|---|---|');
    const watches: Record<string, WatchFigures> = {};
    for (const [name, count, relayPid, hubPid] of [
      ['direct', directCount, pids['direct relay']!, undefined],
      ['tunnel', wanted, pids['tunnel relay']!, pids.issuer!],
    ] as const) {
      const figures = (watches[name] = await idleWatches(targets[name], targets.upstream, ca, count, relayPid, hubPid));
      console.log(`| ${name} | ${figures.watches} | ${fmt(figures.openSeconds, 1)} | ${fmt(figures.relayRssMiB, 0)} | ${figures.hubRssMiB ? fmt(figures.hubRssMiB, 0) : '-'} | ${fmt(figures.idleCpuPercent, 1)} % | ${fmt(figures.fanOutMs, 0)} |`);
    }
    results.watches = watches;
  }

  if (PHASES.has('watch-rounds') && roundsRelay) {
    const roundCount = Number(flags.rounds);
    const perRound = Number(flags['round-watches']);
    console.log(`\nWatch rounds: ${roundCount} rounds of ${perRound} idle watches opened and closed through one direct relay; its memory after a forced full GC`);
    const allocator = ['MALLOC_ARENA_MAX', 'LD_PRELOAD', 'MALLOC_CONF'].filter((name) => process.env[name]).map((name) => `${name}=${process.env[name]}`);
    if (allocator.length > 0) console.log(`(${allocator.join(' ')} for every process of this run)`);
    const inspector = await Inspector.connect(roundsRelay.inspectorUrl);
    const figures = await watchRounds({
      target: roundsRelay.target,
      upstream: targets.upstream,
      ca,
      rounds: roundCount,
      watches: perRound,
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

  if (flags.json) writeFileSync(flags.json, `${JSON.stringify(results, null, 2)}\n`);
}

/** SIGTERM, so each process shuts down as in production (and writes its CPU profile). */
async function stopEverything(): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
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
