/**
 * npx tsx bench/audit-scale.ts — issue 18's scale target for the central
 * audit store, on SQLite and then on PostgreSQL, in one run on this machine.
 * With a million stored records:
 *
 *   (a) one agent's sessions over the last day      within 300 ms
 *   (b) one agent's audit records of the last hour  within 300 ms
 *   (c) records are taken in at                     >= 5 000 records/s
 *
 * The history: a seeded, made-up month of work (30 days ending when the run
 * starts) of 3 orgs, 20 clusters and 300 agents, the same on every run with
 * the same --records and --seed. Agents work in bursts: a session of 5-200
 * requests, made of kubectl invocations of 2-20 requests each with their own
 * Kubectl-Session id (KEP-859) and think time between them; CI agents that
 * drive helm/terraform send no kubectl headers. Verbs get, list, watch,
 * create, patch, delete and exec, a few % denied-by-cluster, a few refused
 * by the relay without an identity; paths, queries, user agents and groups
 * as kubectl and the relays write them (src/audit/record.ts).
 *
 * Ingest: store.ingestAudit, one cluster's batch of 500 records at a time,
 * in the order the requests ended (as relays send them), one batch after
 * another; records/s over the whole history and over its last 100 000
 * records (the tables are largest then), and every tenth of the way. Then
 * the store's size on disk (SQLite: issuer.db with its WAL; PostgreSQL:
 * pg_database_size).
 *
 * Queries, each 2 warm-ups and then 20 timed runs (median, p95), for the
 * busiest agent (it is given a session in the history's last hour, so it
 * has one): (a) listSessions({org, agent, sinceMs: now-24h, limit: 100}),
 * (b) queryAudit({org, agent, sinceMs: now-1h, limit: 100}), and for
 * reference the org's audit of the last hour (limit 100) and the records
 * of the agent's largest session of the day (queryAudit({session,
 * limit: 1000})). "now" is the end of the history. A target is met when
 * the p95 is; each query's plan is printed (EXPLAIN QUERY PLAN; EXPLAIN
 * ANALYZE), of the SQL as src/issuer/store/audit-sql.ts builds it.
 *
 * PostgreSQL is a throwaway server made by test/postgres/server.ts (Debian's
 * `postgresql` package), durable as a real one (fsync, full_page_writes and
 * synchronous_commit on, unlike the test harness; --postgres-no-sync keeps
 * the harness's settings), or, with KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL, a
 * server of yours on this machine: a role that may create databases; the
 * bench makes a database there and drops it when it is done. SQLite is the
 * store's own file in a temporary directory (WAL, as src/issuer/store/
 * sqlite-engine.ts opens it).
 *
 * Usage: npm run build && npx tsx bench/audit-scale.ts [--records 1000000 --seed 18 --engines sqlite,postgres
 *        --postgres-no-sync --json FILE]
 * Exits 1 when a target is missed.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { IncomingAuditRecord } from '../src/issuer/store/audit-sql.js';
import { openStore } from '../src/issuer/store/open.js';
import type { IssuerStore } from '../src/issuer/store/types.js';
import { createDatabase, startPostgres } from '../test/postgres/server.js';

const { values: flags } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: '18' },
    engines: { type: 'string', default: 'sqlite,postgres' },
    'postgres-no-sync': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const RECORDS = positive('records');
const SEED = positive('seed');
const ENGINES = flags.engines.split(',').map((engine) => engine.trim());
for (const engine of ENGINES) if (engine !== 'sqlite' && engine !== 'postgres') throw new Error(`--engines takes sqlite and/or postgres, not ${engine}`);

const DAY_MS = 24 * 3_600_000;
const HOUR_MS = 3_600_000;
const HISTORY_MS = 30 * DAY_MS;
/** Records per ingestAudit call: one cluster's batch, as a relay sends it. */
const BATCH = 500;
/** The tail of the history whose ingest rate is reported on its own. */
const TAIL_RECORDS = 100_000;
const WARM_UPS = 2;
const RUNS = 20;
const QUERY_TARGET_MS = 300;
const INGEST_TARGET_PER_SECOND = 5_000;

function positive(name: 'records' | 'seed'): number {
  const value = Number(flags[name]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive whole number, not ${String(flags[name])}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// A seeded PRNG (sfc32), so every run makes the same history.

class Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.next();
  }

  /** [0, 1) */
  next(): number {
    this.a >>>= 0;
    this.b >>>= 0;
    this.c >>>= 0;
    this.d >>>= 0;
    let t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    t = (t + this.d) | 0;
    this.c = (this.c + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  /** A whole number in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(values: readonly T[]): T {
    return values[Math.floor(this.next() * values.length)]!;
  }

  weighted<T>(choices: readonly (readonly [T, number])[]): T {
    let total = 0;
    for (const [, weight] of choices) total += weight;
    let at = this.next() * total;
    for (const [value, weight] of choices) if ((at -= weight) < 0) return value;
    return choices[choices.length - 1]![0];
  }

  /** Spread evenly over the logarithm: many small values, a few large ones. */
  logUniform(lo: number, hi: number): number {
    return Math.exp(Math.log(lo) + this.next() * (Math.log(hi) - Math.log(lo)));
  }

  hex(length: number): string {
    let out = '';
    while (out.length < length) out += Math.floor(this.next() * 0x100000000).toString(16).padStart(8, '0');
    return out.slice(0, length);
  }

  /** Lower-case letters and digits, as in generated pod names. */
  alnum(length: number): string {
    const chars = 'bcdfghjklmnpqrstvwxz2456789';
    let out = '';
    for (let i = 0; i < length; i++) out += chars[Math.floor(this.next() * chars.length)];
    return out;
  }

  uuid(): string {
    const h = this.hex(32);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${'89ab'[Math.floor(this.next() * 4)]}${h.slice(17, 20)}-${h.slice(20, 32)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The world: orgs, clusters, agents.

interface Org {
  name: string;
  namespaces: string[];
  teams: string[];
}

interface Cluster {
  name: string;
  org: Org;
  mode: 'direct' | 'tunnel';
  /** Each app's pods: the ReplicaSet hash is fixed per app and cluster. */
  pods: Map<string, string[]>;
}

interface Agent {
  name: string;
  org: Org;
  clusters: Cluster[];
  /** Share of the history's sessions (Zipf-like: a few agents do most of the work). */
  weight: number;
  kind: 'human' | 'ci-kubectl' | 'ci-client';
  userAgent: string;
  groups: string[];
  sourceIp: string;
}

const APPS = ['checkout', 'payments', 'cart', 'search', 'catalog', 'ledger', 'auth', 'notifications', 'billing', 'inventory', 'gateway', 'recommendations', 'orders', 'shipping', 'reporting', 'fraud-detection'];
const SYSTEM_NAMESPACES = ['kube-system', 'monitoring', 'ingress-nginx', 'cert-manager', 'argocd'];
const TEAMS = ['platform', 'payments', 'storefront', 'data', 'sre', 'security', 'growth', 'mobile-backend'];
const KUBECTL_AGENTS = [
  'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350',
  'kubectl/v1.31.1 (darwin/arm64) kubernetes/948afe5',
  'kubectl/v1.29.6 (linux/amd64) kubernetes/062798d',
  'kubectl/v1.32.0 (darwin/arm64) kubernetes/70d3cc9',
  'kubectl/v1.31.4 (windows/amd64) kubernetes/a78aa47',
];
const CLIENT_AGENTS = [
  'Helm/3.15.2',
  'terraform-provider-kubernetes/2.31.0 (+https://www.terraform.io) Terraform/1.9.2',
  'argocd-application-controller/v2.11.3 (linux/amd64) kubernetes/6e6ebb0',
  'Go-http-client/2.0',
  'fluxcd/kustomize-controller/v1.3.0',
];

function makeWorld(random: Random): { orgs: Org[]; clusters: Cluster[]; agents: Agent[] } {
  const orgSpecs = [
    ['acme', 9, 150],
    ['globex', 7, 100],
    ['initech', 4, 50],
  ] as const;
  const orgs: Org[] = [];
  const clusters: Cluster[] = [];
  const agents: Agent[] = [];
  const environments = ['prod', 'staging', 'dev'];
  const regions = ['eu-west-1', 'us-east-1', 'ap-south-1', 'eu-central-1'];
  let rank = 0;
  for (const [orgName, clusterCount, agentCount] of orgSpecs) {
    const apps = APPS.filter(() => random.chance(0.6));
    const org: Org = { name: orgName, namespaces: [...apps, ...apps.slice(0, 3).map((app) => `${app}-canary`), ...SYSTEM_NAMESPACES], teams: TEAMS.filter(() => random.chance(0.7)) };
    orgs.push(org);
    const orgClusters: Cluster[] = [];
    for (let i = 0; i < clusterCount; i++) {
      const cluster: Cluster = {
        name: `${orgName}-${environments[i % environments.length]}-${regions[Math.floor(i / environments.length) % regions.length]}`,
        org,
        mode: random.chance(0.6) ? 'tunnel' : 'direct',
        pods: new Map(),
      };
      for (const app of [...apps, ...SYSTEM_NAMESPACES]) {
        const hash = random.alnum(10);
        cluster.pods.set(app, Array.from({ length: random.int(2, 12) }, () => `${app}-${hash}-${random.alnum(5)}`));
      }
      orgClusters.push(cluster);
    }
    clusters.push(...orgClusters);
    for (let i = 0; i < agentCount; i++) {
      const kind = random.weighted([
        ['human', 70],
        ['ci-kubectl', 18],
        ['ci-client', 12],
      ] as const);
      const teams = [random.pick(org.teams), ...org.teams.filter(() => random.chance(0.15))];
      const first = random.pick(['alice', 'bob', 'carol', 'dmitri', 'erin', 'farah', 'gustavo', 'hana', 'ivan', 'jun', 'kofi', 'lena', 'mateo', 'nadia', 'oskar', 'priya']);
      agents.push({
        name: kind === 'human' ? `${first}-${random.alnum(4)}` : `${random.pick(['deploy', 'ci', 'release', 'sync', 'backup', 'e2e'])}-${random.pick(APPS)}-${i}`,
        org,
        clusters: Array.from(new Set(Array.from({ length: random.int(1, 4) }, () => random.pick(orgClusters)))),
        weight: 0,
        kind,
        userAgent: kind === 'ci-client' ? random.pick(CLIENT_AGENTS) : random.pick(KUBECTL_AGENTS),
        groups: [...new Set(teams)].map((team) => `${org.name}/${team}`),
        sourceIp: kind === 'human' ? `10.20.${random.int(0, 255)}.${random.int(1, 254)}` : `10.1.${random.int(0, 63)}.${random.int(1, 254)}`,
      });
    }
  }
  // Ranks interleaved across orgs: the busiest agent is acme's first, the next globex's, and so on.
  const byOrg = orgs.map((org) => agents.filter((agent) => agent.org === org));
  const ranked: Agent[] = [];
  for (let i = 0; ranked.length < agents.length; i++) for (const list of byOrg) if (list[i]) ranked.push(list[i]!);
  for (const agent of ranked) agent.weight = 1 / Math.pow(++rank, 0.8);
  return { orgs, clusters, agents: ranked };
}

// ---------------------------------------------------------------------------------------------
// Requests: what kubectl (and helm-like clients) send for a command.

interface Request {
  method: string;
  verb: string;
  path: string;
  query: string;
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  status?: number;
  command?: string[];
  container?: string;
  protocol?: string;
}

const RESOURCES: Record<string, { prefix: string; namespaced: boolean }> = {
  pods: { prefix: '/api/v1', namespaced: true },
  services: { prefix: '/api/v1', namespaced: true },
  configmaps: { prefix: '/api/v1', namespaced: true },
  secrets: { prefix: '/api/v1', namespaced: true },
  events: { prefix: '/api/v1', namespaced: true },
  serviceaccounts: { prefix: '/api/v1', namespaced: true },
  nodes: { prefix: '/api/v1', namespaced: false },
  namespaces: { prefix: '/api/v1', namespaced: false },
  deployments: { prefix: '/apis/apps/v1', namespaced: true },
  replicasets: { prefix: '/apis/apps/v1', namespaced: true },
  statefulsets: { prefix: '/apis/apps/v1', namespaced: true },
  jobs: { prefix: '/apis/batch/v1', namespaced: true },
  cronjobs: { prefix: '/apis/batch/v1', namespaced: true },
  ingresses: { prefix: '/apis/networking.k8s.io/v1', namespaced: true },
  horizontalpodautoscalers: { prefix: '/apis/autoscaling/v2', namespaced: true },
};
const LISTABLE = ['pods', 'services', 'deployments', 'replicasets', 'configmaps', 'statefulsets', 'jobs', 'cronjobs', 'ingresses', 'horizontalpodautoscalers', 'events'];

class RequestMaker {
  constructor(
    private readonly random: Random,
    private readonly cluster: Cluster,
  ) {}

  private request(method: string, verb: string, resource: string, namespace: string, name: string, subresource: string, query: string, durationMs: number, bytesOut: number, bytesIn = 0): Request {
    const spec = RESOURCES[resource]!;
    const ns = spec.namespaced && namespace !== '' ? `/namespaces/${namespace}` : '';
    const path = `${spec.prefix}${ns}/${resource}${name ? `/${name}` : ''}${subresource ? `/${subresource}` : ''}`;
    return { method, verb, path, query, namespace: spec.namespaced ? namespace : '', resource, subresource, name, durationMs: Math.round(durationMs), bytesIn, bytesOut: Math.round(bytesOut) };
  }

  pod(app: string): string {
    return this.random.pick(this.cluster.pods.get(app) ?? this.cluster.pods.values().next().value!);
  }

  discovery(): Request {
    const r = this.random;
    const path = r.pick(['/api', '/apis', '/apis/apps/v1', '/apis/batch/v1', '/apis/networking.k8s.io/v1', '/apis/autoscaling/v2', '/api/v1', '/version']);
    return { method: 'GET', verb: 'get', path, query: r.chance(0.7) ? 'timeout=32s' : '', namespace: '', resource: '', subresource: '', name: '', durationMs: r.int(2, 25), bytesIn: 0, bytesOut: r.int(300, 40_000) };
  }

  openapi(): Request {
    const r = this.random;
    return { method: 'GET', verb: 'get', path: r.pick(['/openapi/v3/apis/apps/v1', '/openapi/v3/api/v1', '/openapi/v3/apis/batch/v1']), query: `hash=${r.hex(128).toUpperCase()}&timeout=32s`, namespace: '', resource: '', subresource: '', name: '', durationMs: r.int(5, 60), bytesIn: 0, bytesOut: r.int(80_000, 900_000) };
  }

  list(resource: string, namespace: string, app: string): Request {
    const r = this.random;
    const selector = r.chance(0.3) ? `labelSelector=${encodeURIComponent(r.chance(0.5) ? `app=${app}` : `app.kubernetes.io/name=${app},app.kubernetes.io/component in (api,worker)`)}&` : '';
    return this.request('GET', 'list', resource, namespace, '', '', `${selector}limit=500`, r.logUniform(8, 600), r.logUniform(2_000, 400_000));
  }

  get(resource: string, namespace: string, name: string): Request {
    return this.request('GET', 'get', resource, namespace, name, '', '', this.random.logUniform(2, 40), this.random.logUniform(1_000, 30_000));
  }

  watch(resource: string, namespace: string, name: string): Request {
    const r = this.random;
    const field = name ? `fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}&` : '';
    return this.request('GET', 'watch', resource, namespace, '', '', `allowWatchBookmarks=true&${field}resourceVersion=${r.int(10_000_000, 999_999_999)}&timeoutSeconds=${r.int(300, 600)}&watch=true`, r.logUniform(3_000, 300_000), r.logUniform(500, 200_000));
  }

  patch(resource: string, namespace: string, name: string): Request {
    const r = this.random;
    return this.request('PATCH', 'patch', resource, namespace, name, '', r.chance(0.6) ? 'fieldManager=kubectl-client-side-apply&fieldValidation=Strict' : 'fieldManager=kubectl-edit&fieldValidation=Strict', r.logUniform(8, 150), r.logUniform(2_000, 30_000), r.int(400, 9_000));
  }

  create(resource: string, namespace: string): Request {
    const r = this.random;
    return this.request('POST', 'create', resource, namespace, '', '', 'fieldManager=kubectl-client-side-apply&fieldValidation=Strict', r.logUniform(10, 200), r.logUniform(1_000, 20_000), r.int(500, 12_000));
  }

  delete(resource: string, namespace: string, name: string): Request {
    return this.request('DELETE', 'delete', resource, namespace, name, '', this.random.chance(0.2) ? 'propagationPolicy=Foreground' : '', this.random.logUniform(8, 120), this.random.logUniform(300, 8_000));
  }

  logs(namespace: string, pod: string, follow: boolean): Request {
    const r = this.random;
    const container = r.pick(['app', 'app', 'sidecar', 'istio-proxy']);
    return this.request('GET', 'get', 'pods', namespace, pod, 'log', `container=${container}${follow ? '&follow=true' : ''}&tailLines=${r.pick([10, 50, 100, 500])}`, follow ? r.logUniform(5_000, 900_000) : r.logUniform(20, 800), r.logUniform(1_000, 2_000_000));
  }

  exec(namespace: string, pod: string): Request {
    const r = this.random;
    const command = r.weighted<string[]>([
      [['sh'], 30],
      [['bash'], 20],
      [['sh', '-c', 'env | sort'], 10],
      [['cat', '/etc/resolv.conf'], 8],
      [['sh', '-c', `curl -s http://localhost:8080/healthz && ls -la /var/run/${r.pick(APPS)}`], 8],
      [['psql', '-h', 'localhost', '-U', 'app', '-c', 'select count(*) from pg_stat_activity'], 6],
    ]);
    const container = r.pick(['app', 'app', 'worker']);
    const query = `${command.map((arg) => `command=${encodeURIComponent(arg)}`).join('&')}&container=${container}&stdin=true&stdout=true&stderr=true${command.length === 1 ? '&tty=true' : ''}`;
    const interactive = command.length === 1;
    const req = this.request('GET', 'exec', 'pods', namespace, pod, 'exec', query, interactive ? r.logUniform(10_000, 1_800_000) : r.logUniform(300, 5_000), r.logUniform(200, 500_000), r.int(0, 20_000));
    return { ...req, status: 101, command, container, protocol: 'v5.channel.k8s.io' };
  }
}

type KubectlCommand = 'get' | 'describe' | 'logs' | 'apply' | 'exec' | 'delete' | 'rollout status' | 'edit' | 'scale';

/** The requests of one kubectl invocation, `count` of them (2-20), in the order kubectl sends them. */
function kubectlInvocation(random: Random, maker: RequestMaker, command: KubectlCommand, org: Org, count: number): Request[] {
  const app = random.pick(org.namespaces.filter((ns) => !ns.includes('-canary')));
  const namespace = random.chance(0.85) ? app : random.pick(org.namespaces);
  const podApp = namespace.endsWith('-canary') ? namespace.slice(0, -'-canary'.length) : namespace;
  const pod = maker.pod(podApp);
  const core: Request[] = [];
  const padding: (() => Request)[] = [];
  switch (command) {
    case 'get':
      core.push(maker.list(random.pick(['pods', 'pods', 'pods', 'deployments', 'services', 'events', 'jobs']), namespace, app));
      if (random.chance(0.15)) core.push(maker.get('pods', namespace, pod));
      padding.push(() => maker.list(random.pick(LISTABLE), namespace, app), () => maker.discovery());
      break;
    case 'describe':
      core.push(maker.get('pods', namespace, pod), maker.list('events', namespace, app));
      padding.push(() => maker.discovery(), () => maker.get(random.pick(['replicasets', 'deployments', 'services']), namespace, app));
      break;
    case 'logs':
      core.push(maker.get('pods', namespace, pod), maker.logs(namespace, pod, random.chance(0.4)));
      padding.push(() => maker.discovery());
      break;
    case 'apply':
      core.push(maker.openapi(), maker.get('deployments', namespace, app), maker.patch('deployments', namespace, app));
      padding.push(
        () => maker.get(random.pick(['configmaps', 'services', 'serviceaccounts', 'ingresses']), namespace, `${app}-${random.pick(['config', 'svc', 'web', 'api'])}`),
        () => maker.patch(random.pick(['configmaps', 'services', 'ingresses', 'horizontalpodautoscalers']), namespace, `${app}-${random.pick(['config', 'svc', 'web', 'api'])}`),
        () => maker.create(random.pick(['configmaps', 'secrets', 'jobs']), namespace),
      );
      break;
    case 'exec':
      core.push(maker.get('pods', namespace, pod), maker.exec(namespace, pod));
      padding.push(() => maker.discovery());
      break;
    case 'delete':
      core.push(maker.get('pods', namespace, pod), maker.delete(random.pick(['pods', 'pods', 'jobs', 'configmaps']), namespace, pod));
      padding.push(() => maker.get('pods', namespace, maker.pod(podApp)), () => maker.delete('pods', namespace, maker.pod(podApp)));
      break;
    case 'rollout status':
      core.push(maker.get('deployments', namespace, app), maker.watch('deployments', namespace, app));
      padding.push(() => maker.list('replicasets', namespace, app), () => maker.discovery());
      break;
    case 'edit':
    case 'scale':
      core.push(maker.get('deployments', namespace, app), maker.patch('deployments', namespace, app));
      padding.push(() => maker.discovery(), () => maker.get('horizontalpodautoscalers', namespace, app));
      break;
  }
  // kubectl reads what it needs first (discovery, extra lists), then does the command's work.
  const extra = Array.from({ length: Math.max(0, count - core.length) }, () => random.pick(padding)());
  const requests = command === 'get' ? [...extra, ...core] : [core[0]!, ...extra, ...core.slice(1)];
  return requests.slice(0, Math.max(count, 2));
}

/** A helm/terraform-like client's burst: no kubectl headers. */
function clientBurst(random: Random, maker: RequestMaker, org: Org, count: number): Request[] {
  const app = random.pick(org.namespaces.filter((ns) => !ns.includes('-canary')));
  const requests: Request[] = [maker.discovery(), maker.list('secrets', app, app)];
  while (requests.length < count) {
    requests.push(
      random.weighted<() => Request>([
        [() => maker.get(random.pick(['deployments', 'services', 'configmaps', 'secrets', 'serviceaccounts']), app, `${app}-${random.pick(['config', 'web', 'api', 'worker'])}`), 35],
        [() => maker.list(random.pick(LISTABLE), app, app), 15],
        [() => maker.patch(random.pick(['deployments', 'services', 'configmaps', 'horizontalpodautoscalers']), app, `${app}-${random.pick(['config', 'web', 'api', 'worker'])}`), 20],
        [() => maker.create(random.pick(['secrets', 'configmaps', 'jobs']), app), 10],
        [() => maker.watch('jobs', app, `${app}-migrate-${random.int(1, 999)}`), 8],
        [() => maker.delete(random.pick(['jobs', 'secrets', 'pods']), app, `${app}-migrate-${random.int(1, 999)}`), 7],
        [() => maker.discovery(), 5],
      ])(),
    );
  }
  return requests.slice(0, count);
}

// ---------------------------------------------------------------------------------------------
// The history.

type Outcome = 'allowed' | 'denied-by-relay' | 'denied-by-cluster' | 'error';

interface History {
  /** Records in the order the requests ended. */
  records: IncomingAuditRecord[];
  endMs: number[];
  nowMs: number;
  orgs: Org[];
  clusters: Cluster[];
  agents: Agent[];
  /** The agent the queries are about. */
  busy: Agent;
  sessions: number;
}

/** Human work follows the working day (of the history's own clock, so runs on any day compare); CI runs around the clock. */
function placeSession(random: Random, agent: Agent, spanMs: number, nowMs: number): number {
  for (;;) {
    const startMs = nowMs - HISTORY_MS + random.next() * (HISTORY_MS - spanMs);
    if (agent.kind !== 'human') return startMs;
    const hour = Math.floor(((nowMs - startMs) % DAY_MS) / HOUR_MS);
    const weekDay = Math.floor((nowMs - startMs) / DAY_MS) % 7 < 5;
    if (random.chance((hour >= 8 && hour <= 18 ? 1 : 0.12) * (weekDay ? 1 : 0.2))) return startMs;
  }
}

function makeHistory(total: number, seed: number, nowMs: number): History {
  const random = new Random(seed);
  const { orgs, clusters, agents } = makeWorld(random);
  const busy = agents[0]!;
  const totalWeight = agents.reduce((sum, agent) => sum + agent.weight, 0);
  const pickAgent = () => {
    let at = random.next() * totalWeight;
    for (const agent of agents) if ((at -= agent.weight) < 0) return agent;
    return agents[agents.length - 1]!;
  };
  const records: IncomingAuditRecord[] = [];
  const endMs: number[] = [];
  let sessions = 0;

  /** One burst of `agent` on `cluster`: the requests laid out in time from 0, then placed. */
  const session = (agent: Agent, cluster: Cluster, size: number, place: (spanMs: number) => number) => {
    const maker = new RequestMaker(random, cluster);
    const laid: { request: Request; outcome: Outcome; durationMs: number; startOffset: number; kubectlSession?: string; kubectlCommand?: string }[] = [];
    let cursor = 0;
    let left = size;
    while (left > 0) {
      let count = Math.min(left, random.int(2, 20));
      if (left - count === 1) count++;
      left -= count;
      let requests: Request[];
      let kubectlSession: string | undefined;
      let kubectlCommand: string | undefined;
      if (agent.kind === 'ci-client') {
        requests = clientBurst(random, maker, agent.org, count);
      } else {
        const command = random.weighted<KubectlCommand>(
          agent.kind === 'human'
            ? [['get', 38], ['describe', 12], ['logs', 12], ['apply', 9], ['exec', 7], ['delete', 5], ['rollout status', 6], ['edit', 5], ['scale', 3]]
            : [['apply', 40], ['get', 20], ['rollout status', 20], ['delete', 10], ['scale', 5], ['logs', 5]],
        );
        requests = kubectlInvocation(random, maker, command, agent.org, count);
        kubectlSession = random.uuid();
        kubectlCommand = `kubectl ${command}`;
      }
      for (const request of requests) {
        // Refused or failed requests end at once: the client goes on sooner.
        const outcome: Outcome = random.chance(0.003)
          ? 'denied-by-relay'
          : request.resource !== '' && random.chance(agent.kind === 'human' ? 0.05 : 0.015)
            ? 'denied-by-cluster'
            : random.chance(0.002)
              ? 'error'
              : 'allowed';
        const durationMs = outcome === 'denied-by-relay' ? random.int(0, 2) : outcome === 'allowed' ? request.durationMs : Math.min(request.durationMs, random.int(2, 30));
        laid.push({ request, outcome, durationMs, startOffset: cursor, ...(kubectlSession ? { kubectlSession, kubectlCommand } : {}) });
        cursor += durationMs + random.int(1, 40);
      }
      // Think time before the next invocation: people read, scripts don't.
      cursor += agent.kind === 'human' ? random.logUniform(2_000, 120_000) : random.logUniform(100, 8_000);
    }
    const startMs = Math.round(place(cursor));
    // A token lives a minute (src/identity.ts): its jti changes as the client renews it.
    let tokenId = random.uuid();
    let tokenMinted = 0;
    for (const { request, outcome, durationMs, startOffset, kubectlSession, kubectlCommand } of laid) {
      if (startOffset - tokenMinted > 55_000) {
        tokenId = random.uuid();
        tokenMinted = startOffset;
      }
      const started = startMs + startOffset;
      const refusedByRelay = outcome === 'denied-by-relay';
      const deniedByCluster = outcome === 'denied-by-cluster';
      const failed = outcome === 'error';
      const endedMs = started + durationMs;
      const upgraded = request.subresource === 'exec' && !refusedByRelay && !deniedByCluster;
      const record: IncomingAuditRecord = {
        time: new Date(endedMs).toISOString(),
        requestId: random.uuid(),
        stage: 'ResponseComplete',
        cluster: cluster.name,
        mode: cluster.mode,
        user: refusedByRelay ? null : `agent:${agent.name}`,
        groups: refusedByRelay ? [] : agent.groups,
        tokenId: refusedByRelay ? null : tokenId,
        sourceIp: agent.sourceIp,
        userAgent: agent.userAgent,
        method: request.method,
        path: request.path,
        query: request.query,
        verb: request.verb,
        namespace: request.namespace,
        resource: request.resource,
        subresource: request.subresource,
        name: request.name,
        ...(kubectlCommand ? { kubectlCommand, kubectlSession } : {}),
        ...(request.command && upgraded ? { command: request.command } : {}),
        ...(request.container && upgraded ? { container: request.container } : {}),
        status: refusedByRelay ? 401 : deniedByCluster ? 403 : failed ? random.pick([500, 503, 504]) : (request.status ?? (request.verb === 'create' ? 201 : 200)),
        decision: outcome,
        durationMs,
        bytesIn: request.bytesIn,
        bytesOut: refusedByRelay || deniedByCluster || failed ? random.int(150, 400) : request.bytesOut,
        ...(refusedByRelay ? { reason: random.pick(['expired-token', 'unknown-key', 'missing-token']) } : {}),
        ...(upgraded ? { protocol: request.protocol, startedAt: new Date(started).toISOString(), endedAt: new Date(endedMs).toISOString() } : {}),
      };
      records.push(record);
      endMs.push(endedMs);
    }
    sessions++;
  };

  // The busiest agent is at work now: a session in the history's last hour (the queries are about it).
  const current = Math.min(total, 150);
  session(busy, busy.clusters[0]!, current, (spanMs) => nowMs - Math.min(spanMs + 2 * 60_000, 50 * 60_000));
  while (records.length < total) {
    const agent = pickAgent();
    const size = Math.min(total - records.length, Math.round(random.logUniform(5, 200)));
    session(agent, random.pick(agent.clusters), size, (spanMs) => placeSession(random, agent, spanMs, nowMs));
  }
  // Time order: the order the requests ended, as the relays write and send their records.
  const order = Array.from(records.keys()).sort((a, b) => endMs[a]! - endMs[b]! || a - b);
  const sorted = order.map((i) => records[i]!);
  const sortedEnd = order.map((i) => endMs[i]!);
  const last = sortedEnd[sortedEnd.length - 1]!;
  // A session placed near the end may run past "now" by a long request's tail: the history ends at its last record.
  return { records: sorted, endMs: sortedEnd, nowMs: Math.max(nowMs, last), orgs, clusters, agents, busy, sessions };
}

// ---------------------------------------------------------------------------------------------
// Measuring.

interface IngestFigures {
  records: number;
  seconds: number;
  perSecond: number;
  tailRecords: number;
  tailPerSecond: number;
  /** Records/s of each tenth of the history, in order. */
  tenths: number[];
  batches: number;
  slowestBatchMs: number;
  sizeBytes: number;
  sizeDetail: Record<string, number>;
  storedSessions: number;
}

interface QueryFigures {
  name: string;
  call: string;
  rows: number;
  expectedRows?: number;
  /** Records of the history that match the filter (the query answers at most its limit of them). */
  matching?: number;
  medianMs: number;
  p95Ms: number;
  maxMs: number;
  targetMs?: number;
  plan: string;
}

interface EngineFigures {
  engine: 'sqlite' | 'postgres';
  settings: Record<string, string>;
  ingest: IngestFigures;
  queries: QueryFigures[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Every record through store.ingestAudit: one cluster's batch of BATCH at a time, in the order the requests ended. */
async function ingest(store: IssuerStore, history: History, log: (line: string) => void): Promise<Omit<IngestFigures, 'sizeBytes' | 'sizeDetail' | 'storedSessions'>> {
  const orgOf = new Map(history.clusters.map((cluster) => [cluster.name, cluster.org.name]));
  const buffers = new Map<string, IncomingAuditRecord[]>();
  const marks: { records: number; ms: number }[] = [{ records: 0, ms: 0 }];
  let ingested = 0;
  let batches = 0;
  let slowestBatchMs = 0;
  let nextReport = 0.1;
  const started = performance.now();
  const send = async (cluster: string, batch: IncomingAuditRecord[]) => {
    const batchStarted = performance.now();
    const result = await store.ingestAudit({ name: cluster, org: orgOf.get(cluster)! }, batch);
    const now = performance.now();
    slowestBatchMs = Math.max(slowestBatchMs, now - batchStarted);
    if (result.stored !== batch.length || result.duplicates !== 0) throw new Error(`a batch of ${batch.length} records of ${cluster} stored ${result.stored} (${result.duplicates} duplicates): every record is new`);
    ingested += batch.length;
    batches++;
    marks.push({ records: ingested, ms: now - started });
    if (ingested >= nextReport * history.records.length) {
      const previous = marks.findLast((mark) => mark.records <= ingested - history.records.length / 10) ?? marks[0]!;
      log(`  ${ingested.toLocaleString('en')} records in ${((now - started) / 1000).toFixed(1)} s: ${((ingested / (now - started)) * 1000).toFixed(0)}/s overall, ${(((ingested - previous.records) / (now - started - previous.ms)) * 1000).toFixed(0)}/s lately`);
      while (nextReport * history.records.length <= ingested) nextReport += 0.1;
    }
  };
  for (const record of history.records) {
    let buffer = buffers.get(record.cluster as string);
    if (!buffer) buffers.set(record.cluster as string, (buffer = []));
    buffer.push(record);
    if (buffer.length === BATCH) {
      buffers.delete(record.cluster as string);
      await send(record.cluster as string, buffer);
    }
  }
  // What the relays still hold at the end, the oldest first.
  const rest = [...buffers.entries()].sort((a, b) => Date.parse(a[1][0]!.time) - Date.parse(b[1][0]!.time));
  for (const [cluster, batch] of rest) await send(cluster, batch);
  const totalMs = performance.now() - started;
  const rateBetween = (fromRecords: number, toRecords: number) => {
    const from = marks.findLast((mark) => mark.records <= fromRecords)!;
    const to = marks.find((mark) => mark.records >= toRecords)!;
    return ((to.records - from.records) / (to.ms - from.ms)) * 1000;
  };
  const tailRecords = Math.min(TAIL_RECORDS, ingested);
  return {
    records: ingested,
    seconds: totalMs / 1000,
    perSecond: (ingested / totalMs) * 1000,
    tailRecords,
    tailPerSecond: rateBetween(ingested - tailRecords, ingested),
    tenths: Array.from({ length: 10 }, (_, i) => rateBetween(Math.floor((i * ingested) / 10), Math.floor(((i + 1) * ingested) / 10))),
    batches,
    slowestBatchMs,
  };
}

interface QuerySpec {
  name: string;
  call: string;
  run: () => Promise<unknown[]>;
  expectedRows?: number;
  matching?: number;
  targetMs?: number;
  /** The SQL src/issuer/store/audit-sql.ts sends for it, with its parameters, for the plan. */
  sql: string;
  params: unknown[];
}

async function timeQuery(spec: QuerySpec): Promise<Omit<QueryFigures, 'plan'>> {
  let rows = 0;
  for (let i = 0; i < WARM_UPS; i++) rows = (await spec.run()).length;
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    const result = await spec.run();
    times.push(performance.now() - started);
    rows = result.length;
  }
  return { name: spec.name, call: spec.call, rows, ...(spec.expectedRows === undefined ? {} : { expectedRows: spec.expectedRows }), ...(spec.matching === undefined ? {} : { matching: spec.matching }), medianMs: median(times), p95Ms: percentile(times, 95), maxMs: Math.max(...times), ...(spec.targetMs === undefined ? {} : { targetMs: spec.targetMs }) };
}

const RECORD_SELECT = 'SELECT cluster, id, org, agent, time_ms, session_id, record FROM audit_records';
const RECORD_ORDER = 'ORDER BY time_ms, cluster, id LIMIT ?';

/** The queries, for the busiest agent; the session one needs listSessions' answer first. */
async function querySpecs(store: IssuerStore, history: History): Promise<QuerySpec[]> {
  const { busy, nowMs } = history;
  const org = busy.org.name;
  const dayAgo = nowMs - DAY_MS;
  const hourAgo = nowMs - HOUR_MS;
  const orgClusters = new Set(history.clusters.filter((cluster) => cluster.org === busy.org).map((cluster) => cluster.name));
  const count = (test: (record: IncomingAuditRecord, endMs: number) => boolean) => history.records.filter((record, i) => test(record, history.endMs[i]!)).length;
  const agentRecordsLastHour = count((record, endMs) => record.user === `agent:${busy.name}` && endMs >= hourAgo);
  const orgRecordsLastHour = count((record, endMs) => orgClusters.has(record.cluster as string) && endMs >= hourAgo);
  const orgDeniedLastDay = count((record, endMs) => orgClusters.has(record.cluster as string) && record.decision === 'denied-by-cluster' && endMs >= dayAgo);
  // The agent with the fewest records: asked for by name alone, its few rows are anywhere in the month.
  const perAgent = new Map<string, number>();
  for (const record of history.records) if (record.user !== null) perAgent.set(record.user, (perAgent.get(record.user) ?? 0) + 1);
  const [quietUser, quietRecords] = [...perAgent].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))[0]!;
  const quiet = quietUser.slice('agent:'.length);
  const sessions = await store.listSessions({ org, agent: busy.name, sinceMs: dayAgo, limit: 100 });
  if (sessions.length === 0) throw new Error(`${busy.name} has no session in the last day: the history is not what the bench means it to be`);
  const largest = sessions.reduce((a, b) => (b.requests > a.requests ? b : a));
  return [
    {
      name: `(a) sessions of ${busy.name}, last day`,
      call: `listSessions({org: '${org}', agent: '${busy.name}', sinceMs: now-24h, limit: 100})`,
      run: () => store.listSessions({ org, agent: busy.name, sinceMs: dayAgo, limit: 100 }),
      targetMs: QUERY_TARGET_MS,
      sql: 'SELECT * FROM sessions WHERE org = ? AND agent = ? AND last_activity_ms >= ? ORDER BY started_ms DESC, id DESC LIMIT ?',
      params: [org, busy.name, dayAgo, 100],
    },
    {
      name: `(b) audit of ${busy.name}, last hour`,
      call: `queryAudit({org: '${org}', agent: '${busy.name}', sinceMs: now-1h, limit: 100})`,
      run: () => store.queryAudit({ org, agent: busy.name, sinceMs: hourAgo, limit: 100 }),
      expectedRows: Math.min(100, agentRecordsLastHour),
      matching: agentRecordsLastHour,
      targetMs: QUERY_TARGET_MS,
      sql: `${RECORD_SELECT} WHERE org = ? AND agent = ? AND time_ms >= ? ${RECORD_ORDER}`,
      params: [org, busy.name, hourAgo, 100],
    },
    {
      name: `org ${org}'s audit, last hour`,
      call: `queryAudit({org: '${org}', sinceMs: now-1h, limit: 100})`,
      run: () => store.queryAudit({ org, sinceMs: hourAgo, limit: 100 }),
      expectedRows: Math.min(100, orgRecordsLastHour),
      matching: orgRecordsLastHour,
      sql: `${RECORD_SELECT} WHERE org = ? AND time_ms >= ? ${RECORD_ORDER}`,
      params: [org, hourAgo, 100],
    },
    {
      name: `one session's records (${largest.requests} requests)`,
      call: `queryAudit({session: '${largest.id}', limit: 1000})`,
      run: () => store.queryAudit({ session: largest.id, limit: 1000 }),
      expectedRows: Math.min(1000, largest.requests),
      matching: largest.requests,
      sql: `${RECORD_SELECT} WHERE session_id = ? ${RECORD_ORDER}`,
      params: [largest.id, 1000],
    },
    {
      name: `org ${org}'s refusals by the cluster, last day`,
      call: `queryAudit({org: '${org}', decision: 'denied-by-cluster', sinceMs: now-24h, limit: 100})`,
      run: () => store.queryAudit({ org, decision: 'denied-by-cluster', sinceMs: dayAgo, limit: 100 }),
      expectedRows: Math.min(100, orgDeniedLastDay),
      matching: orgDeniedLastDay,
      sql: `${RECORD_SELECT} WHERE org = ? AND decision = ? AND time_ms >= ? ${RECORD_ORDER}`,
      params: [org, 'denied-by-cluster', dayAgo, 100],
    },
    {
      name: `audit of ${busy.name} by name alone (no org), last hour`,
      call: `queryAudit({agent: '${busy.name}', sinceMs: now-1h, limit: 100})`,
      run: () => store.queryAudit({ agent: busy.name, sinceMs: hourAgo, limit: 100 }),
      expectedRows: Math.min(100, agentRecordsLastHour),
      matching: agentRecordsLastHour,
      sql: `${RECORD_SELECT} WHERE agent = ? AND time_ms >= ? ${RECORD_ORDER}`,
      params: [busy.name, hourAgo, 100],
    },
    {
      name: `audit of the quietest agent ${quiet} by name alone (no org), whole month`,
      call: `queryAudit({agent: '${quiet}', limit: 100})`,
      run: () => store.queryAudit({ agent: quiet, limit: 100 }),
      expectedRows: Math.min(100, quietRecords),
      matching: quietRecords,
      sql: `${RECORD_SELECT} WHERE agent = ? ${RECORD_ORDER}`,
      params: [quiet, 100],
    },
  ];
}

/** Statements kept from the GC, as sqlite-engine.ts keeps its own (a better-sqlite3 Statement destructor can abort Node 24). */
const RETAINED: unknown[] = [];
function retained<T>(statement: T): T {
  RETAINED.push(statement);
  return statement;
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

async function runSqlite(history: History, work: string, log: (line: string) => void): Promise<EngineFigures> {
  const dataDir = path.join(work, 'sqlite');
  const store = await openStore({ dataDir });
  const file = path.join(dataDir, 'issuer.db');
  try {
    log(`\nSQLite (${file}): ingesting ${history.records.length.toLocaleString('en')} records`);
    const ingested = await ingest(store, history, log);
    const sizeDetail = { 'issuer.db': fileSize(file), 'issuer.db-wal': fileSize(`${file}-wal`) };
    const storedSessions = (await store.listSessions({ limit: 1_000_000 })).length;
    const specs = await querySpecs(store, history);
    const inspect = new Database(file, { readonly: true });
    const queries: QueryFigures[] = [];
    let settings: Record<string, string>;
    try {
      const value = (sql: string) => String(Object.values(retained(inspect.prepare(sql)).get() as Record<string, unknown>)[0]);
      // The store's own connection has the same defaults: sqlite-engine.ts sets only journal_mode and busy_timeout.
      settings = { version: value('SELECT sqlite_version()'), journal_mode: value('PRAGMA journal_mode'), synchronous: value('PRAGMA synchronous'), cache_size: value('PRAGMA cache_size') };
      for (const spec of specs) {
        const plan = (retained(inspect.prepare(`EXPLAIN QUERY PLAN ${spec.sql}`)).all(...spec.params) as { detail: string }[]).map((row) => row.detail).join('; ');
        queries.push({ ...(await timeQuery(spec)), plan });
      }
    } finally {
      inspect.close();
    }
    return { engine: 'sqlite', settings, ingest: { ...ingested, sizeBytes: sizeDetail['issuer.db'] + sizeDetail['issuer.db-wal'], sizeDetail, storedSessions }, queries };
  } finally {
    await store.close();
  }
}

/** The PostgreSQL database: on yours (on this machine), or on a throwaway server. */
async function postgresDatabase(): Promise<{ url: string; version: string; close(): Promise<void> }> {
  const adminUrl = process.env.KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL;
  if (adminUrl) {
    const host = new URL(adminUrl).hostname;
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) throw new Error('KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL must name a server on this machine (127.0.0.1, localhost or [::1])');
    const server = { adminUrl, url: adminUrl, user: decodeURIComponent(new URL(adminUrl).username) };
    const name = `kube_relay_bench_${process.pid}_audit`;
    const url = await createDatabase(server, name);
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    const version = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version.split(' ')[0]!;
    return {
      url,
      version,
      async close() {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await client.end();
      },
    };
  }
  const durable: Record<string, boolean> = flags['postgres-no-sync'] ? {} : { fsync: true, full_page_writes: true, synchronous_commit: true };
  const server = await startPostgres({ settings: durable });
  return { url: await server.createDatabase(), version: server.version, close: () => server.stop() };
}

async function runPostgres(history: History, work: string, log: (line: string) => void): Promise<EngineFigures> {
  const database = await postgresDatabase();
  try {
    const store = await openStore({ dataDir: path.join(work, 'postgres'), storeUrl: database.url });
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const settings: Record<string, string> = { version: database.version };
      for (const name of ['fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'work_mem', 'autovacuum']) {
        settings[name] = (await client.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name]!;
      }
      log(`\nPostgreSQL ${database.version} (${Object.entries(settings).filter(([name]) => name !== 'version').map(([name, value]) => `${name}=${value}`).join(', ')}): ingesting ${history.records.length.toLocaleString('en')} records`);
      const ingested = await ingest(store, history, log);
      const sizes = (
        await client.query<{ database: string; records: string; sessions: string }>(
          "SELECT pg_database_size(current_database()) AS database, pg_total_relation_size('audit_records') AS records, pg_total_relation_size('sessions') AS sessions",
        )
      ).rows[0]!;
      const analyzed = (await client.query<{ relname: string; last_autoanalyze: Date | null }>("SELECT relname, last_autoanalyze FROM pg_stat_user_tables WHERE relname IN ('audit_records', 'sessions') ORDER BY relname")).rows;
      settings.autoanalyzed = analyzed.map((row) => `${row.relname} ${row.last_autoanalyze ? 'yes' : 'not yet'}`).join(', ');
      const storedSessions = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM sessions')).rows[0]!.n);
      const specs = await querySpecs(store, history);
      const queries: QueryFigures[] = [];
      for (const spec of specs) {
        const figures = await timeQuery(spec);
        let n = 0;
        const sql = spec.sql.replace(/\?/g, () => `$${++n}`);
        const plan = (await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, spec.params)).rows.map((row) => row['QUERY PLAN']).join('\n');
        queries.push({ ...figures, plan });
      }
      return {
        engine: 'postgres',
        settings,
        ingest: { ...ingested, sizeBytes: Number(sizes.database), sizeDetail: { database: Number(sizes.database), audit_records: Number(sizes.records), sessions: Number(sizes.sessions) }, storedSessions },
        queries,
      };
    } finally {
      await client.end();
      await store.close();
    }
  } finally {
    await database.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

function report(figures: EngineFigures[]): { failures: string[] } {
  const failures: string[] = [];
  const check = (ok: boolean, what: string) => {
    if (!ok) failures.push(what);
    return ok ? 'pass' : 'FAIL';
  };
  console.log(`\nIngest: store.ingestAudit, batches of ${BATCH} records of one cluster, in the order the requests ended, one after another\n`);
  console.log(`| store | records | seconds | records/s overall | records/s, last ${(figures[0]?.ingest.tailRecords ?? TAIL_RECORDS).toLocaleString('en')} | target ${INGEST_TARGET_PER_SECOND}/s | slowest batch ms | size on disk | sessions |`);
  console.log('|---|---:|---:|---:|---:|---|---:|---:|---:|');
  for (const { engine, ingest } of figures) {
    const ok = check(Math.min(ingest.perSecond, ingest.tailPerSecond) >= INGEST_TARGET_PER_SECOND, `${engine} ingest ${Math.min(ingest.perSecond, ingest.tailPerSecond).toFixed(0)}/s < ${INGEST_TARGET_PER_SECOND}/s`);
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

async function main(): Promise<void> {
  const cpus = os.cpus();
  console.log(`Audit store at scale (issue 18): ${cpus.length} CPUs, ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}; load average ${os.loadavg().map((load) => load.toFixed(1)).join(' ')}`);
  const generated = performance.now();
  const history = makeHistory(RECORDS, SEED, Date.now());
  const bytes = history.records.reduce((sum, record) => sum + JSON.stringify(record).length, 0);
  const agentsSeen = new Set(history.records.flatMap((record) => (record.user === null ? [] : [record.user]))).size;
  const busyRecords = history.records.filter((record) => record.user === `agent:${history.busy.name}`).length;
  console.log(
    `History (seed ${SEED}): ${history.records.length.toLocaleString('en')} records in ${history.sessions.toLocaleString('en')} bursts over 30 days ending ${new Date(history.nowMs).toISOString()}, ` +
      `${history.orgs.length} orgs, ${history.clusters.length} clusters, ${agentsSeen} agents with records; ${(bytes / history.records.length).toFixed(0)} bytes of JSON a record; ` +
      `made in ${((performance.now() - generated) / 1000).toFixed(1)} s (heap ${mib(process.memoryUsage().heapUsed)}). The queries' agent: ${history.busy.name} (${history.busy.org.name}, ${history.busy.kind}, ${busyRecords.toLocaleString('en')} records)`,
  );
  const verbs = new Map<string, number>();
  const decisions = new Map<string, number>();
  for (const record of history.records) {
    verbs.set(record.verb, (verbs.get(record.verb) ?? 0) + 1);
    decisions.set(record.decision, (decisions.get(record.decision) ?? 0) + 1);
  }
  const share = (counts: Map<string, number>) => [...counts].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${((100 * n) / history.records.length).toFixed(1)} %`).join(', ');
  console.log(`  verbs: ${share(verbs)}\n  decisions: ${share(decisions)}`);

  const work = mkdtempSync(path.join(os.tmpdir(), 'kube-relay-bench-audit-'));
  const log = (line: string) => console.log(line);
  const figures: EngineFigures[] = [];
  try {
    if (ENGINES.includes('sqlite')) figures.push(await runSqlite(history, work, log));
    if (ENGINES.includes('postgres')) figures.push(await runPostgres(history, work, log));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const { failures } = report(figures);
  console.log(`\nload average at the end: ${os.loadavg().map((load) => load.toFixed(1)).join(' ')}`);
  if (flags.json) {
    writeFileSync(
      flags.json,
      `${JSON.stringify({ records: RECORDS, seed: SEED, historyEnd: new Date(history.nowMs).toISOString(), machine: { cpus: cpus.length, model: cpus[0]?.model, memoryBytes: os.totalmem(), node: process.version }, targets: { queryMs: QUERY_TARGET_MS, ingestPerSecond: INGEST_TARGET_PER_SECOND }, engines: figures, failures }, null, 2)}\n`,
    );
  }
  if (failures.length > 0) {
    console.log(`\nMissed: ${failures.join('; ')}`);
    process.exitCode = 1;
  } else {
    console.log('\nEvery target met.');
  }
}

await main();
