/** The world of bench/audit-scale.ts's history: orgs, clusters, agents, and the requests they send. */
import type { Random } from './random.js';

export interface Org {
  name: string;
  namespaces: string[];
  teams: string[];
}

export interface Cluster {
  name: string;
  org: Org;
  mode: 'direct' | 'tunnel';
  /** Each app's pods: the ReplicaSet hash is fixed per app and cluster. */
  pods: Map<string, string[]>;
}

export interface Agent {
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

export interface World {
  orgs: Org[];
  clusters: Cluster[];
  agents: Agent[];
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

export function makeWorld(random: Random): World {
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

export interface Request {
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

export class RequestMaker {
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

/** An app of the org: its namespace is named after it (not one of the canaries). */
function pickApp(random: Random, org: Org): string {
  return random.pick(org.namespaces.filter((ns) => !ns.includes('-canary')));
}

export type KubectlCommand = 'get' | 'describe' | 'logs' | 'apply' | 'exec' | 'delete' | 'rollout status' | 'edit' | 'scale';

/** The requests of one kubectl invocation, `count` of them (2-20), in the order kubectl sends them. */
export function kubectlInvocation(random: Random, maker: RequestMaker, command: KubectlCommand, org: Org, count: number): Request[] {
  const app = pickApp(random, org);
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
    case 'apply': {
      const object = () => `${app}-${random.pick(['config', 'svc', 'web', 'api'])}`;
      core.push(maker.openapi(), maker.get('deployments', namespace, app), maker.patch('deployments', namespace, app));
      padding.push(
        () => maker.get(random.pick(['configmaps', 'services', 'serviceaccounts', 'ingresses']), namespace, object()),
        () => maker.patch(random.pick(['configmaps', 'services', 'ingresses', 'horizontalpodautoscalers']), namespace, object()),
        () => maker.create(random.pick(['configmaps', 'secrets', 'jobs']), namespace),
      );
      break;
    }
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
export function clientBurst(random: Random, maker: RequestMaker, org: Org, count: number): Request[] {
  const app = pickApp(random, org);
  const object = () => `${app}-${random.pick(['config', 'web', 'api', 'worker'])}`;
  const migration = () => `${app}-migrate-${random.int(1, 999)}`;
  const requests: Request[] = [maker.discovery(), maker.list('secrets', app, app)];
  while (requests.length < count) {
    requests.push(
      random.weighted<() => Request>([
        [() => maker.get(random.pick(['deployments', 'services', 'configmaps', 'secrets', 'serviceaccounts']), app, object()), 35],
        [() => maker.list(random.pick(LISTABLE), app, app), 15],
        [() => maker.patch(random.pick(['deployments', 'services', 'configmaps', 'horizontalpodautoscalers']), app, object()), 20],
        [() => maker.create(random.pick(['secrets', 'configmaps', 'jobs']), app), 10],
        [() => maker.watch('jobs', app, migration()), 8],
        [() => maker.delete(random.pick(['jobs', 'secrets', 'pods']), app, migration()), 7],
        [() => maker.discovery(), 5],
      ])(),
    );
  }
  return requests.slice(0, count);
}
