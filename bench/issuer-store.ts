/**
 * npx tsx bench/issuer-store.ts — what the issuer's store costs (issue 15),
 * in one run on this machine:
 *
 *   tokens    POST /v1/token per second through one `kube-relay issuer`
 *             process on SQLite and through one on PostgreSQL: wrk, a fixed
 *             number of keep-alive HTTPS connections for a fixed time each,
 *             to 127.0.0.1 only (each token is two store reads, the agent by
 *             its key's hash and the cluster, and one ES256 signature); the
 *             two in turn for a few rounds, and the median of each
 *             (this machine may be busy with other work meanwhile)
 *   migrate   how long `kube-relay store migrate` takes to copy an SQLite
 *             store of N agents into an empty PostgreSQL database (the agents
 *             are written straight through the store API, not the CLI)
 *
 * PostgreSQL is a throwaway server made by test/postgres/server.ts (Debian's
 * `postgresql` package), or, with KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL, a
 * server of yours on this machine: a role that may create databases; the
 * bench makes two databases there and drops them when it is done.
 *
 * Usage: npm run build && npx tsx bench/issuer-store.ts [--seconds 10 --connections 16 --rounds 3 --agents 10000 --json FILE]
 * The issuers log at warn (a log line per token would be measured too); the
 * store URL reaches the CLI through its environment twin, not its arguments.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Registry } from '../src/issuer/registry.js';
import { hashKey } from '../src/issuer/secrets.js';
import { openStore } from '../src/issuer/store.js';
import { createDatabase, startPostgres } from '../test/postgres/server.js';
import { freePort } from '../test/helpers/free-port.js';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    agents: { type: 'string', default: '10000' },
    json: { type: 'string' },
  },
});
const SECONDS = positive('seconds');
const CONNECTIONS = positive('connections');
const ROUNDS = positive('rounds');
const AGENTS = positive('agents');
const ROOT = path.resolve(import.meta.dirname, '..');
const CLI = path.join(ROOT, 'bin', 'kube-relay.js');
const PEPPER = 'the-pepper-of-the-store-benchmark-0123456789';
/** wrk's warm-up before each measured run: TLS sessions made, the issuer's code compiled. */
const WARM_UP_SECONDS = 2;

function positive(name: keyof typeof flags): number {
  const value = Number(flags[name]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive whole number, not ${String(flags[name])}`);
  return value;
}

interface TokenFigures {
  tokensPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

const children = new Set<ChildProcess>();
process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));

/** The CLI's environment: this one's, without KUBE_RELAY_* settings that would change what it does. */
function cliEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('KUBE_RELAY_')) env[key] = value;
  return { ...env, ...extra };
}


/** An agent and a cluster in the store, written through the store API; the agent's API key. */
async function seed(dataDir: string, storeUrl: string | undefined): Promise<string> {
  const store = await openStore({ dataDir, storeUrl });
  try {
    const registry = new Registry(store, Buffer.from(PEPPER));
    const key = await registry.createAgent('loader', 'bench', ['load']);
    await registry.createCluster('bench', 'bench');
    return key;
  } finally {
    await store.close();
  }
}

/** `kube-relay issuer` on 127.0.0.1, ready once its /readyz says so (on a shared store, about 11 s: its first key propagates). */
async function startIssuer(dataDir: string, pepperFile: string, storeUrl: string | undefined): Promise<{ url: string; stop(): Promise<void> }> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [CLI, 'issuer', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--data', dataDir, '--pepper-file', pepperFile,
      '--audit-file', path.join(dataDir, 'hub-audit.jsonl'), '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv(storeUrl ? { KUBE_RELAY_STORE_URL: storeUrl } : {}) },
  );
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the issuer exited (${child.exitCode}) before it was ready:\n${stderr}`);
    if (Date.now() > deadline) throw new Error(`the issuer was not ready within 60 s:\n${stderr}`);
    if ((await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status, () => 0)) === 200) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    url: `https://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      children.delete(child);
    },
  };
}

/** wrk POSTing token requests; its summary through a copy of bench/wrk-report.lua that sets method and body. */
function wrk(url: string, apiKey: string, seconds: number, scriptDir: string): Promise<TokenFigures> {
  const script = path.join(scriptDir, 'token-request.lua');
  writeFileSync(
    script,
    `wrk.method = "POST"\nwrk.body = '{"cluster":"bench"}'\nwrk.headers["Content-Type"] = "application/json"\n` +
      `wrk.headers["Authorization"] = "Bearer ${apiKey}"\ndofile("${path.join(ROOT, 'bench', 'wrk-report.lua')}")\n`,
  );
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-s', script, `${url}/v1/token`];
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { encoding: 'utf8', timeout: (seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      const match = /WRK-JSON (.*)/.exec(stdout);
      if (!match) return reject(new Error(`wrk printed no summary:\n${stdout}`));
      const report = JSON.parse(match[1]!) as { requests: number; durationUs: number; errors: number; non2xx: number; p50: number; p99: number };
      resolve({ tokensPerSecond: report.requests / (report.durationUs / 1e6), p50Ms: report.p50 / 1000, p99Ms: report.p99 / 1000, errors: report.errors + report.non2xx });
    });
  });
}

/**
 * Both issuers up at once, then wrk on one at a time, SQLite and PostgreSQL in turn for ROUNDS rounds:
 * a load that comes and goes on this machine then falls on both alike, and the median of each stands.
 */
async function measureTokens(storeUrl: string, work: string): Promise<{ sqlite: TokenFigures[]; postgres: TokenFigures[] }> {
  const issuers: { url: string; apiKey: string; stop(): Promise<void> }[] = [];
  try {
    for (const [kind, url] of [['sqlite', undefined], ['postgres', storeUrl]] as const) {
      const dataDir = path.join(work, kind);
      const pepperFile = path.join(work, `${kind}.pepper`);
      writeFileSync(pepperFile, PEPPER, { mode: 0o600 });
      const apiKey = await seed(dataDir, url);
      issuers.push({ ...(await startIssuer(dataDir, pepperFile, url)), apiKey });
    }
    for (const issuer of issuers) await wrk(issuer.url, issuer.apiKey, WARM_UP_SECONDS, work);
    const figures = { sqlite: [] as TokenFigures[], postgres: [] as TokenFigures[] };
    for (let round = 0; round < ROUNDS; round++) {
      figures.sqlite.push(await wrk(issuers[0]!.url, issuers[0]!.apiKey, SECONDS, work));
      figures.postgres.push(await wrk(issuers[1]!.url, issuers[1]!.apiKey, SECONDS, work));
    }
    return figures;
  } finally {
    for (const issuer of issuers) await issuer.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** N agents in a fresh SQLite store (one pepper, one cluster), then `kube-relay store migrate` into `target`, timed. */
async function measureMigrate(target: string, work: string): Promise<{ seedMs: number; migrateMs: number; copyMs: number }> {
  const dataDir = path.join(work, 'migrate-source');
  const seedStartedAt = performance.now();
  const store = await openStore({ dataDir });
  try {
    // The source's own pepper file, as `store migrate` reads it (DATA_DIR/pepper).
    writeFileSync(path.join(dataDir, 'pepper'), PEPPER, { mode: 0o600 });
    const pepper = Buffer.from(PEPPER);
    for (let i = 0; i < AGENTS; i++) await store.createAgent({ name: `agent-${i}`, org: 'bench', teams: ['load'] }, hashKey(pepper, `krl_agent_bench_${i}`));
    await store.createCluster({ name: 'bench', org: 'bench' }, hashKey(pepper, 'krl_cluster_bench'));
  } finally {
    await store.close();
  }
  const seedMs = performance.now() - seedStartedAt;
  const startedAt = performance.now();
  const output = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [CLI, 'store', 'migrate', '--from', dataDir], { encoding: 'utf8', env: cliEnv({ KUBE_RELAY_TO: target }), timeout: 600_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`kube-relay store migrate failed: ${stderr || err.message}`));
      else resolve(stderr);
    });
  });
  const migrateMs = performance.now() - startedAt;
  if (!output.includes(`copied ${AGENTS} agents`)) throw new Error(`kube-relay store migrate did not copy ${AGENTS} agents:\n${output}`);
  return { seedMs, migrateMs, copyMs: Number(/ in (\d+) ms/.exec(output)?.[1] ?? NaN) };
}

/** The PostgreSQL server: yours (on this machine) or a throwaway one; two fresh databases on it. */
async function postgresDatabases(): Promise<{ tokens: string; migrate: string; version: string; close(): Promise<void> }> {
  const adminUrl = process.env.KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL;
  if (adminUrl) {
    const host = new URL(adminUrl).hostname;
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) throw new Error('KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL must name a server on this machine (127.0.0.1, localhost or [::1])');
    const server = { adminUrl, url: adminUrl, user: decodeURIComponent(new URL(adminUrl).username) };
    const names = [`kube_relay_bench_${process.pid}_t`, `kube_relay_bench_${process.pid}_m`];
    const [tokens, migrate] = [await createDatabase(server, names[0]), await createDatabase(server, names[1])];
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    const version = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version.split(' ')[0]!;
    return {
      tokens,
      migrate,
      version,
      async close() {
        for (const name of names) await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await client.end();
      },
    };
  }
  const server = await startPostgres();
  return { tokens: await server.createDatabase(), migrate: await server.createDatabase(), version: server.version, close: () => server.stop() };
}

function loadAverage(): string {
  return os.loadavg().map((load) => load.toFixed(1)).join(' ');
}

async function main(): Promise<void> {
  if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('bin/kube-relay.js runs dist/: run npm run build first');
  try {
    execFileSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' });
  } catch {
    throw new Error('the benchmark needs wrk as its load generator: install it (Debian/Ubuntu: apt-get install wrk)');
  }
  const work = mkdtempSync(path.join(os.tmpdir(), 'kube-relay-bench-store-'));
  const postgres = await postgresDatabases();
  try {
    console.log(`Issuer store: ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}, PostgreSQL ${postgres.version} on 127.0.0.1; load average ${loadAverage()}`);
    const tokens = await measureTokens(postgres.tokens, work);
    const migrated = await measureMigrate(postgres.migrate, work);

    console.log(`\nPOST /v1/token, one issuer process per store, wrk -t1 -c${CONNECTIONS} keep-alive HTTPS, ${SECONDS} s per run, ${ROUNDS} rounds in turn (after ${WARM_UP_SECONDS} s of warm-up)\n`);
    console.log('| store | tokens/s (median) | each round | p50 ms | p99 ms | errors |');
    console.log('|---|---:|---|---:|---:|---:|');
    const summary = (runs: TokenFigures[]) => ({
      tokensPerSecond: median(runs.map((run) => run.tokensPerSecond)),
      p50Ms: median(runs.map((run) => run.p50Ms)),
      p99Ms: median(runs.map((run) => run.p99Ms)),
      errors: runs.reduce((sum, run) => sum + run.errors, 0),
    });
    const sqlite = summary(tokens.sqlite);
    const onPostgres = summary(tokens.postgres);
    for (const [name, figures, runs] of [['SQLite', sqlite, tokens.sqlite], ['PostgreSQL', onPostgres, tokens.postgres]] as const) {
      console.log(`| ${name} | ${figures.tokensPerSecond.toFixed(0)} | ${runs.map((run) => run.tokensPerSecond.toFixed(0)).join(', ')} | ${figures.p50Ms.toFixed(2)} | ${figures.p99Ms.toFixed(2)} | ${figures.errors} |`);
    }
    const ratio = onPostgres.tokensPerSecond / sqlite.tokensPerSecond;
    const perRound = tokens.postgres.map((run, i) => (run.tokensPerSecond / tokens.sqlite[i]!.tokensPerSecond).toFixed(2));
    console.log(`\nPostgreSQL/SQLite: ${ratio.toFixed(2)} (medians; round by round ${perRound.join(', ')})`);
    console.log(`\nkube-relay store migrate, ${AGENTS} agents SQLite -> PostgreSQL: ${(migrated.migrateMs / 1000).toFixed(2)} s wall clock (the copy itself ${(migrated.copyMs / 1000).toFixed(2)} s); writing them to SQLite took ${(migrated.seedMs / 1000).toFixed(2)} s`);
    console.log(`load average at the end: ${loadAverage()}`);
    if (flags.json) {
      writeFileSync(flags.json, `${JSON.stringify({ seconds: SECONDS, connections: CONNECTIONS, rounds: ROUNDS, agents: AGENTS, sqlite: { ...sqlite, runs: tokens.sqlite }, postgres: { ...onPostgres, runs: tokens.postgres }, ratio, migrate: migrated }, null, 2)}\n`);
    }
  } finally {
    await postgres.close();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
