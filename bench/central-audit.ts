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
 * Usage: npm run build && npx tsx bench/central-audit.ts [--seconds 10 --duration 5 --rounds 3 --json FILE]
 * Exits 1 when a count does not add up (stored ≠ sent, duplicates, records
 * missing from the store or dropped by the relay); figures below the intake
 * target (5 000 records/s per issuer) are reported, not failed.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { AuditRecord } from '../src/audit/record.js';
import { requestToken } from '../src/client/token.js';
import { Registry } from '../src/issuer/registry.js';
import { openStore } from '../src/issuer/store.js';
import { openEngine } from '../src/issuer/store/open.js';
import { issueCertificate, loadOrCreateCa } from '../src/tls/local-ca.js';
import { freePort } from '../test/helpers/free-port.js';
import { createDatabase, startPostgres } from '../test/postgres/server.js';

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
const ROOT = path.resolve(import.meta.dirname, '..');
const CLI = path.join(ROOT, 'bin', 'kube-relay.js');
const PEPPER = 'the-pepper-of-the-central-audit-benchmark-0123456789';
const ORG = 'bench';
const SENDERS = 4;
const BATCH = 500;
const AGENTS = 50;
const WARM_UP_SECONDS = 2;
const TARGET_RECORDS_PER_SECOND = 5_000;
/** bench/main.ts's small-GET phase: wrk -t1 with these many connections. */
const CONNECTIONS = [1, 16, 64];
const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

function positive(name: 'seconds' | 'duration' | 'rounds'): number {
  const value = Number(flags[name]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive whole number, not ${String(flags[name])}`);
  return value;
}

/** Integrity problems; any makes the run exit 1. */
const problems: string[] = [];
const check = (ok: boolean, problem: string) => {
  if (!ok) problems.push(problem);
  return ok;
};

// ---------------------------------------------------------------- processes

const children = new Set<ChildProcess>();
process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));

/** The CLI's environment: this one's, without KUBE_RELAY_* settings that would change what it does. */
function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('KUBE_RELAY_')) env[key] = value;
  return { ...env, ...extra };
}

interface Started {
  pid: number;
  match: RegExpMatchArray;
  /** Whether it has exited. */
  exited(): boolean;
  /** The last 16 KiB of its output, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

/** Starts a child, keeps reading its output (a full pipe would stall it), resolves at the first output matching `ready` (no `ready`: at once). */
function startProcess(name: string, args: string[], ready: RegExp | undefined, env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  children.add(child);
  let output = '';
  let matched = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 60 s:\n${output}`)), 60_000);
    const settle = () => {
      if (matched) return;
      const match = ready ? ready.exec(output) : ([''] as RegExpMatchArray);
      if (!match) return;
      matched = true;
      clearTimeout(timer);
      resolve({
        pid: child.pid!,
        match,
        exited: () => child.exitCode !== null || child.signalCode !== null,
        output: () => output,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) {
            const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
            child.kill('SIGTERM');
            await exited;
            clearTimeout(kill);
          }
          children.delete(child);
        },
      });
    };
    const onData = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-16_384);
      settle();
    };
    settle();
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      if (!matched) reject(new Error(`${name} exited (${code}) before it was ready:\n${output}`));
    });
  });
}

async function waitReady(adminPort: number, what: string, process: Started): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (process.exited()) throw new Error(`${what} exited before it was ready:\n${process.output()}`);
    if ((await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status, () => 0)) === 200) return;
    await sleep(200);
  }
  throw new Error(`${what} was not ready within 60 s:\n${process.output()}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU seconds a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds used so far by a PostgreSQL server and its backends (the postmaster's pid in DATA/postmaster.pid), or undefined when it cannot be read. */
function serverCpuSeconds(postmasterPidFile: string | undefined): number | undefined {
  if (postmasterPidFile === undefined) return undefined;
  try {
    const postmaster = Number(readFileSync(postmasterPidFile, 'utf8').split('\n')[0]);
    let total = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue; // gone meanwhile
      }
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(entry) === postmaster || Number(fields[1]) === postmaster) total += (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
    }
    return total;
  } catch {
    return undefined;
  }
}

interface Issuer extends Started {
  url: string;
  adminPort: number;
}

/** `kube-relay issuer` on 127.0.0.1 at warn (a log line per batch would be measured too), ready once /readyz says so. */
async function startIssuer(dataDir: string, storeUrl: string | undefined): Promise<Issuer> {
  const pepperFile = path.join(dataDir, 'bench.pepper');
  writeFileSync(pepperFile, PEPPER, { mode: 0o600 });
  const [port, adminPort] = [await freePort(), await freePort()];
  const started = await startProcess(
    'issuer',
    [CLI, 'issuer', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--data', dataDir, '--pepper-file', pepperFile,
      '--audit-file', path.join(dataDir, 'hub-audit.jsonl'), '--log-level', 'warn'],
    undefined,
    cliEnv(storeUrl ? { KUBE_RELAY_STORE_URL: storeUrl } : {}),
  );
  await waitReady(adminPort, 'the issuer', started);
  return { ...started, url: `https://127.0.0.1:${port}`, adminPort };
}

/** A cluster (and an agent) in the store, written through the registry; the connector key and the agent's API key. */
async function seed(dataDir: string, storeUrl: string | undefined, cluster: string): Promise<{ connectorKey: string; agentKey: string }> {
  mkdirSync(dataDir, { recursive: true });
  const store = await openStore({ dataDir, storeUrl });
  try {
    const registry = new Registry(store, Buffer.from(PEPPER));
    const agentKey = await registry.createAgent('loader', ORG, ['load']);
    const connectorKey = await registry.createCluster(cluster, ORG);
    return { connectorKey, agentKey };
  } finally {
    await store.close();
  }
}

/** What the store holds of `cluster`: records and sessions. */
async function storeCounts(dataDir: string, storeUrl: string | undefined, cluster: string): Promise<{ records: number; sessions: number }> {
  const engine = await openEngine({ dataDir, storeUrl });
  try {
    const [records] = await engine.query<{ n: number | string }>('SELECT COUNT(*) AS n FROM audit_records WHERE cluster = ?', [cluster]);
    const [sessions] = await engine.query<{ n: number | string }>('SELECT COUNT(*) AS n FROM sessions WHERE cluster = ?', [cluster]);
    return { records: Number(records!.n), sessions: Number(sessions!.n) };
  } finally {
    await engine.close();
  }
}

// ---------------------------------------------------------------- records a relay would send

interface Invocation {
  kubectlSession: string;
  kubectlCommand: string;
  left: number;
  namespace: string;
  pod: string;
}

interface Agent {
  name: string;
  team: string;
  tokenId: string;
  sourceIp: string;
  invocation?: Invocation;
}

const KUBECTL = ['kubectl get', 'kubectl get', 'kubectl get', 'kubectl describe', 'kubectl logs', 'kubectl apply', 'kubectl rollout', 'kubectl exec', 'kubectl delete'];
const RESOURCES = ['pods', 'deployments', 'services', 'configmaps', 'events'];
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
const between = (low: number, high: number) => low + Math.floor(Math.random() * (high - low + 1));

/** Completed-request records of one cluster's relay, in the order they end. */
class RecordSource {
  private readonly agents: Agent[];
  private lastMs = 0;
  private sequence = 0;

  constructor(private readonly cluster: string) {
    this.agents = Array.from({ length: AGENTS }, (_, i) => ({
      name: `agent-${String(i).padStart(2, '0')}`,
      team: `team-${i % 7}`,
      tokenId: randomUUID(),
      sourceIp: `10.20.${i >> 4}.${(i % 16) + 10}`,
    }));
  }

  batch(size: number): AuditRecord[] {
    return Array.from({ length: size }, () => this.next());
  }

  next(): AuditRecord {
    const agent = pick(this.agents);
    if (!agent.invocation || agent.invocation.left === 0) {
      if (Math.random() < 0.05) agent.tokenId = randomUUID(); // a fresh token now and then
      agent.invocation = {
        kubectlSession: randomUUID(),
        kubectlCommand: pick(KUBECTL),
        left: between(5, 15),
        namespace: `${agent.team}-${pick(['dev', 'staging', 'prod'])}`,
        pod: `web-${randomBytes(4).toString('hex')}-${randomBytes(3).toString('hex').slice(0, 5)}`,
      };
    }
    const invocation = agent.invocation;
    invocation.left--;
    const endedMs = (this.lastMs = Math.max(this.lastMs, Date.now()));
    const first = invocation.left >= 3 && Math.random() < 0.2; // discovery
    const verbOf = (command: string): { method: string; verb: string; resource: string; subresource: string; name: string } => {
      if (first) return { method: 'GET', verb: 'get', resource: '', subresource: '', name: '' };
      switch (command) {
        case 'kubectl describe':
          return { method: 'GET', verb: Math.random() < 0.5 ? 'get' : 'list', resource: pick(['pods', 'events']), subresource: '', name: invocation.pod };
        case 'kubectl logs':
          return { method: 'GET', verb: 'get', resource: 'pods', subresource: 'log', name: invocation.pod };
        case 'kubectl apply':
          return Math.random() < 0.5 ? { method: 'GET', verb: 'get', resource: 'deployments', subresource: '', name: 'web' } : { method: 'PATCH', verb: 'patch', resource: 'deployments', subresource: '', name: 'web' };
        case 'kubectl rollout':
          return { method: 'GET', verb: Math.random() < 0.3 ? 'watch' : 'get', resource: 'deployments', subresource: Math.random() < 0.5 ? 'status' : '', name: 'web' };
        case 'kubectl exec':
          return invocation.left === 0 ? { method: 'POST', verb: 'exec', resource: 'pods', subresource: 'exec', name: invocation.pod } : { method: 'GET', verb: 'get', resource: 'pods', subresource: '', name: invocation.pod };
        case 'kubectl delete':
          return Math.random() < 0.5 ? { method: 'DELETE', verb: 'delete', resource: 'pods', subresource: '', name: invocation.pod } : { method: 'GET', verb: 'get', resource: 'pods', subresource: '', name: invocation.pod };
        default:
          return { method: 'GET', verb: 'list', resource: pick(RESOURCES), subresource: '', name: '' };
      }
    };
    const request = verbOf(invocation.kubectlCommand);
    const exec = request.verb === 'exec';
    const durationMs = exec ? between(800, 30_000) : request.verb === 'watch' ? between(1_000, 60_000) : between(2, 120);
    const roll = Math.random();
    const [status, decision, reason] =
      roll < 0.01 ? [429, 'denied-by-relay' as const, 'too-many-requests'] : roll < 0.03 ? [403, 'denied-by-cluster' as const, undefined] : [exec ? 101 : request.method === 'POST' ? 201 : 200, 'allowed' as const, undefined];
    const namespaced = request.resource !== '';
    const apiPath = !namespaced
      ? pick(['/api', '/apis', '/api/v1', '/apis/apps/v1'])
      : `/${request.resource === 'deployments' ? 'apis/apps/v1' : 'api/v1'}/namespaces/${invocation.namespace}/${request.resource}${request.name ? `/${request.name}` : ''}${request.subresource ? `/${request.subresource}` : ''}`;
    const query = exec ? `command=sh&command=-c&command=cat+%2Fetc%2Fhostname&container=main&stdin=true&stdout=true&tty=true` : request.verb === 'list' ? 'limit=500' : request.verb === 'watch' ? 'watch=true&resourceVersion=12345' : '';
    const record: AuditRecord = {
      time: new Date(endedMs).toISOString(),
      requestId: `${this.cluster}-${(++this.sequence).toString(36)}-${randomUUID()}`,
      stage: 'ResponseComplete',
      cluster: this.cluster,
      mode: 'direct',
      user: `agent:${agent.name}`,
      groups: [`${ORG}/${agent.team}`],
      tokenId: agent.tokenId,
      sourceIp: agent.sourceIp,
      userAgent: 'kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0',
      method: request.method,
      path: apiPath,
      query,
      verb: request.verb,
      namespace: namespaced ? invocation.namespace : '',
      resource: request.resource,
      subresource: request.subresource,
      name: request.name,
      kubectlCommand: invocation.kubectlCommand,
      kubectlSession: invocation.kubectlSession,
      status,
      decision,
      durationMs,
      bytesIn: request.method === 'PATCH' ? between(800, 4_000) : 0,
      bytesOut: between(300, 40_000),
    };
    if (reason) record.reason = reason;
    if (exec) {
      record.command = ['sh', '-c', 'cat /etc/hostname'];
      record.container = 'main';
      record.protocol = 'v5.channel.k8s.io';
      record.startedAt = new Date(endedMs - durationMs).toISOString();
      record.endedAt = record.time;
    }
    return record;
  }
}

// ---------------------------------------------------------------- intake

interface IntakeFigures {
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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
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

async function measureIntake(engine: 'SQLite' | 'PostgreSQL', dataDir: string, storeUrl: string | undefined, postmasterPidFile?: string): Promise<IntakeFigures> {
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
    const run = await sendFor(SECONDS, post, source);
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

/** The PostgreSQL server: yours (on this machine) or a throwaway, durable one; one fresh database on it. */
async function postgresDatabase(): Promise<{ url: string; version: string; durable: string; postmasterPidFile?: string; close(): Promise<void> }> {
  const adminUrl = process.env.KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL;
  if (adminUrl) {
    const host = new URL(adminUrl).hostname;
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) throw new Error('KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL must name a server on this machine (127.0.0.1, localhost or [::1])');
    const name = `kube_relay_bench_${process.pid}_audit`;
    const url = await createDatabase({ adminUrl, url: adminUrl, user: decodeURIComponent(new URL(adminUrl).username) }, name);
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    const setting = async (name: string) => (await client.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name]!;
    const version = (await setting('server_version')).split(' ')[0]!;
    const durable = `fsync=${await setting('fsync')} synchronous_commit=${await setting('synchronous_commit')}`;
    return {
      url,
      version,
      durable,
      async close() {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await client.end();
      },
    };
  }
  const server = await startPostgres({ settings: { fsync: true, full_page_writes: true, synchronous_commit: true } });
  return {
    url: await server.createDatabase(),
    version: server.version,
    durable: 'fsync=on synchronous_commit=on',
    postmasterPidFile: path.join(server.dir, 'data', 'postmaster.pid'),
    close: () => server.stop(),
  };
}

// ---------------------------------------------------------------- forwarding

interface WrkFigures {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** The relay's CPU per request, in microseconds. */
  relayCpuUsPerRequest: number;
}

interface Relay extends Started {
  base: string;
  adminPort: number;
  auditFile: string;
}

function wrk(base: string, token: string, connections: number, seconds: number): Promise<Omit<WrkFigures, 'relayCpuUsPerRequest'>> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', path.join(ROOT, 'bench', 'wrk-report.lua'), '-H', `authorization: Bearer ${token}`, `${base}/api/v1/namespaces/bench/pods`];
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { encoding: 'utf8', timeout: (seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      const match = /WRK-JSON (.*)/.exec(stdout);
      if (!match) return reject(new Error(`wrk printed no summary:\n${stdout}`));
      const report = JSON.parse(match[1]!) as { requests: number; durationUs: number; errors: number; non2xx: number; p50: number; p99: number };
      resolve({ requests: report.requests, rps: report.requests / (report.durationUs / 1e6), p50Ms: report.p50 / 1000, p99Ms: report.p99 / 1000, errors: report.errors + report.non2xx });
    });
  });
}

/** The relay's audit figures for the issuer, from its /metrics. */
async function issuerSinkMetrics(relay: Relay): Promise<{ pending: number; delivered: number; dropped: number }> {
  const text = await (await fetch(`http://127.0.0.1:${relay.adminPort}/metrics`)).text();
  const value = (pattern: RegExp) => [...text.matchAll(pattern)].reduce((sum, m) => sum + Number(m[1]), 0);
  return {
    pending: value(/^kube_relay_audit_pending_records\{sink="issuer"\} (\S+)$/gm),
    delivered: value(/^kube_relay_audit_records_total\{sink="issuer"\} (\S+)$/gm),
    dropped: value(/^kube_relay_audit_records_dropped_total\{[^}]*sink="issuer"[^}]*\} (\S+)$/gm),
  };
}

/** Waits until the relay holds nothing for the issuer; the seconds it took and the most it held meanwhile. */
async function drain(relay: Relay): Promise<{ seconds: number; pendingAtStart: number }> {
  const startedAt = performance.now();
  const pendingAtStart = (await issuerSinkMetrics(relay)).pending;
  for (;;) {
    const { pending } = await issuerSinkMetrics(relay);
    if (pending === 0) return { seconds: (performance.now() - startedAt) / 1000, pendingAtStart };
    if (performance.now() - startedAt > 300_000) throw new Error(`the relay still holds ${pending} records for the issuer after 300 s`);
    await sleep(100);
  }
}

async function startRelay(name: string, dataDir: string, issuerUrl: string, caFile: string, kubeconfig: string, cluster: string, connectorKeyFile: string | undefined): Promise<Relay> {
  const auditFile = path.join(dataDir, `${name}-audit.jsonl`);
  const started = await startProcess(
    `relay (${name})`,
    [CLI, 'relay', '--mode', 'direct', '--cluster', cluster, '--issuer', issuerUrl, '--issuer-ca-file', caFile, '--kubeconfig', kubeconfig, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
      '--max-streams-per-agent', '1000000', '--data', dataDir, '--audit-file', auditFile, ...(connectorKeyFile ? ['--connector-key-file', connectorKeyFile] : [])],
    /"relay listening".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
    cliEnv(),
  );
  const adminPort = Number(started.match[2]);
  await waitReady(adminPort, `the relay (${name})`, started);
  return { ...started, base: started.match[1]!, adminPort, auditFile };
}

/** ResponseComplete records in a relay's local audit file. */
async function completedRecords(file: string): Promise<number> {
  let count = 0;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) if (line.includes('"stage":"ResponseComplete"')) count++;
  return count;
}

interface ForwardingFigures {
  connections: number;
  without: WrkFigures & { runs: WrkFigures[] };
  with: WrkFigures & { runs: WrkFigures[] };
  rpsRatio: number;
  p99Ratio: number;
  /** How long the relay with the key took, after each run, to hand the issuer what it still held; the most it held. */
  drainSecondsMax: number;
  pendingAtEndMax: number;
}

async function measureForwarding(work: string): Promise<{ cells: ForwardingFigures[]; storeRecords: number; localRecords: number; wrkRequests: number; cutOffAtMost: number; delivered: number; dropped: number; sample: Record<string, unknown> | undefined; issuerCpuPercentWith: number }> {
  const dataDir = path.join(work, 'forwarding');
  const cluster = 'forwarding';
  const { connectorKey, agentKey } = await seed(dataDir, undefined, cluster);
  const ca = loadOrCreateCa(dataDir);
  const upstreamCert = issueCertificate(ca, { commonName: 'bench-upstream', sans: ['127.0.0.1', 'localhost'], usage: 'server' });
  writeFileSync(path.join(dataDir, 'upstream.crt'), upstreamCert.certPem);
  writeFileSync(path.join(dataDir, 'upstream.key'), upstreamCert.keyPem, { mode: 0o600 });
  const keyFile = path.join(dataDir, 'connector.key');
  writeFileSync(keyFile, `${connectorKey}\n`, { mode: 0o600 });

  const stops: (() => Promise<void>)[] = [];
  try {
    const upstream = await startProcess('upstream', ['--import', 'tsx', path.join('bench', 'upstream.ts'), path.join(dataDir, 'upstream.crt'), path.join(dataDir, 'upstream.key')], /listening (\d+)/, cliEnv());
    stops.push(upstream.stop);
    const kubeconfig = path.join(dataDir, 'upstream.kubeconfig');
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'bench', cluster: { server: `https://127.0.0.1:${upstream.match[1]}`, 'certificate-authority': ca.certPath } }],
        users: [{ name: 'relay', user: { token: 'bench-relay-credential' } }],
        contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'relay' } }],
        'current-context': 'bench',
      }),
    );
    const issuer = await startIssuer(dataDir, undefined);
    stops.unshift(issuer.stop);
    const plain = await startRelay('without-key', dataDir, issuer.url, ca.certPath, kubeconfig, cluster, undefined);
    stops.unshift(plain.stop);
    const central = await startRelay('with-key', dataDir, issuer.url, ca.certPath, kubeconfig, cluster, keyFile);
    stops.unshift(central.stop);

    // A fresh 60-second token for every wrk run.
    const token = async () => (await requestToken({ issuer: issuer.url, cluster, apiKey: agentKey, issuerCa: ca.certPem })).token;
    let wrkRequests = 0;
    /** wrk does not count the requests it cuts off at the end of a run: at most one per connection. */
    let cutOffAtMost = 0;
    let issuerCpuWith = 0;
    let secondsWith = 0;
    const measure = async (relay: Relay, connections: number, seconds: number): Promise<WrkFigures> => {
      const bearer = await token();
      const relayBefore = cpuSeconds(relay.pid);
      const issuerBefore = cpuSeconds(issuer.pid);
      const figures = await wrk(relay.base, bearer, connections, seconds);
      const relayCpu = cpuSeconds(relay.pid) - relayBefore;
      if (relay === central) {
        wrkRequests += figures.requests;
        cutOffAtMost += connections;
        issuerCpuWith += cpuSeconds(issuer.pid) - issuerBefore;
        secondsWith += seconds;
      }
      check(figures.errors === 0, `wrk through the relay ${relay === central ? 'with' : 'without'} the key, ${connections} connections: ${figures.errors} errors or non-2xx answers`);
      return { ...figures, relayCpuUsPerRequest: (1e6 * relayCpu) / Math.max(1, figures.requests) };
    };

    for (const relay of [plain, central]) await measure(relay, 16, 1); // warm-up
    await drain(central);
    const cells: ForwardingFigures[] = [];
    for (const connections of CONNECTIONS) {
      const runs = { without: [] as WrkFigures[], with: [] as WrkFigures[] };
      let drainSecondsMax = 0;
      let pendingAtEndMax = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? (['without', 'with'] as const) : (['with', 'without'] as const);
        for (const variant of order) {
          runs[variant].push(await measure(variant === 'with' ? central : plain, connections, WRK_SECONDS));
          if (variant === 'with') {
            // The issuer is on this machine: what it still has to take must not fall on the next run.
            const drained = await drain(central);
            drainSecondsMax = Math.max(drainSecondsMax, drained.seconds);
            pendingAtEndMax = Math.max(pendingAtEndMax, drained.pendingAtStart);
          }
        }
      }
      const summary = (list: WrkFigures[]) => ({
        requests: list.reduce((sum, run) => sum + run.requests, 0),
        rps: median(list.map((run) => run.rps)),
        p50Ms: median(list.map((run) => run.p50Ms)),
        p99Ms: median(list.map((run) => run.p99Ms)),
        errors: list.reduce((sum, run) => sum + run.errors, 0),
        relayCpuUsPerRequest: median(list.map((run) => run.relayCpuUsPerRequest)),
        runs: list,
      });
      const without = summary(runs.without);
      const withKey = summary(runs.with);
      cells.push({ connections, without, with: withKey, rpsRatio: withKey.rps / without.rps, p99Ratio: withKey.p99Ms / without.p99Ms, drainSecondsMax, pendingAtEndMax });
    }

    await drain(central);
    const { delivered, dropped } = await issuerSinkMetrics(central);
    // SIGTERM: the relay closes its sinks (the local file flushed) before the counts.
    await central.stop();
    await plain.stop();
    const localRecords = await completedRecords(central.auditFile);
    await issuer.stop();
    const counts = await storeCounts(dataDir, undefined, cluster);
    const store = await openStore({ dataDir });
    const [sample] = await store.queryAudit({ cluster, limit: 1, sinceMs: Date.now() - 3_600_000 }).finally(() => store.close());
    check(dropped === 0, `the relay with the key dropped ${dropped} records for the issuer`);
    check(counts.records === localRecords, `the issuer's store holds ${counts.records} records of the relay's cluster; the relay wrote ${localRecords} ResponseComplete records locally`);
    check(
      counts.records >= wrkRequests && counts.records <= wrkRequests + cutOffAtMost,
      `the issuer's store holds ${counts.records} records of the relay's cluster; wrk made ${wrkRequests} requests through the relay with the key (and cut off at most ${cutOffAtMost})`,
    );
    return { cells, storeRecords: counts.records, localRecords, wrkRequests, cutOffAtMost, delivered, dropped, sample: sample?.record, issuerCpuPercentWith: (100 * issuerCpuWith) / secondsWith };
  } finally {
    for (const stop of stops) await stop();
  }
}

// ---------------------------------------------------------------- report

const fmt = (value: number, digits = 0) => value.toFixed(digits);
const loadAverage = () => os.loadavg().map((load) => load.toFixed(1)).join(' ');

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

    const intake = [await measureIntake('SQLite', path.join(work, 'sqlite'), undefined), await measureIntake('PostgreSQL', path.join(work, 'postgres'), postgres.url, postgres.postmasterPidFile)];
    console.log(`\nIntake: POST /v1/audit to one issuer process, ${SENDERS} senders of one cluster, batches of ${BATCH} records (${AGENTS} agents, kubectl invocations of ~10 requests), ${SECONDS} s after ${WARM_UP_SECONDS} s of warm-up`);
    console.log('| store | records/s | batches | p50 ms | p99 ms | max ms | CPU: issuer / database / senders | stored / sent | duplicates | rows / sessions in store | target 5 000/s |');
    console.log('|---|---:|---:|---:|---:|---:|---|---|---:|---|---|');
    for (const figures of intake) {
      console.log(
        `| ${figures.engine} | ${fmt(figures.recordsPerSecond)} | ${figures.batches} | ${fmt(figures.batchP50Ms, 1)} | ${fmt(figures.batchP99Ms, 1)} | ${fmt(figures.batchMaxMs, 1)} | ${fmt(figures.issuerCpuPercent)} % / ${figures.databaseCpuPercent === undefined ? (figures.engine === 'SQLite' ? 'in the issuer' : '?') : `${fmt(figures.databaseCpuPercent)} %`} / ${fmt(figures.sendersCpuPercent)} % | ${figures.stored} / ${figures.sent} | ${figures.duplicates} | ${figures.storeRecords} / ${figures.storeSessions} | ${figures.meetsTarget ? 'met' : 'BELOW'} |`,
      );
    }

    const forwarding = await measureForwarding(work);
    console.log(`\nForwarding: a direct relay in front of bench/upstream.ts (pod list of 50 items), wrk -t1, ${WRK_SECONDS} s a run, without and with --connector-key-file in turn, ${ROUNDS} rounds; medians`);
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
