/**
 * Where a management command acts (DESIGN §10): on the local store as the
 * operator (the default: `--data`, or `--store-url`), or through the admin
 * API of a remote issuer given `--issuer URL` and an admin key. Both paths
 * end in the same control operation (src/control/operations.ts), the remote
 * one on the issuer's side of its admin API, and both hand back the same
 * views (src/control/views.ts), so a command prints the same either way.
 */
import { AdminApiClient, withQuery } from '../admin-api/client.js';
import { OPERATOR } from '../control/caller.js';
import { type ClusterStatus, clusterStatus } from '../control/cluster-status.js';
import * as ops from '../control/operations.js';
import * as grants from '../control/grants.js';
import type { GrantRequest } from '../control/grants.js';
import * as sessions from '../control/sessions.js';
import type { AuditQuery, Paging, SessionDetail, SessionQuery } from '../control/sessions.js';
import * as policies from '../control/policies.js';
import type { PolicySubjectRequest } from '../control/policies.js';
import { type AdminView, adminView, type AgentView, agentView, type AuditRecordView, type ClusterView, clusterView, type GrantView, grantView, type PolicyView, policyView } from '../control/views.js';
import type { Registry } from '../issuer/registry.js';
import type { Policy } from '../policy/policy.js';
import type { SessionView } from '../sessions/session.js';
import { type FlagSpec, type Io, str, UsageError, type Values } from './command.js';
import { adminKey, httpsUrl, readFileFlag } from './flag-values.js';
import { STORE_FLAGS, withRegistry } from './local-store.js';

export interface Management {
  createAgent(input: { name: string; org?: string | undefined; teams: string[] }): Promise<{ agent: AgentView; apiKey: string }>;
  listAgents(): Promise<AgentView[]>;
  revokeAgent(name: string): Promise<AgentView>;
  rotateAgentKey(name: string): Promise<{ agent: AgentView; apiKey: string }>;
  createCluster(input: { name: string; org?: string | undefined }): Promise<{ cluster: ClusterView; connectorKey: string }>;
  listClusters(): Promise<ClusterView[]>;
  revokeCluster(name: string): Promise<ClusterView>;
  rotateClusterKey(name: string): Promise<{ cluster: ClusterView; connectorKey: string }>;
  createAdmin(input: { name: string; org?: string | undefined; allOrgs?: boolean }): Promise<{ admin: AdminView; adminKey: string }>;
  listAdmins(): Promise<AdminView[]>;
  revokeAdmin(name: string): Promise<AdminView>;
  rotateAdminKey(name: string): Promise<{ admin: AdminView; adminKey: string }>;
  /** `maxDurationMs` (0: no limit) applies on the local store; a remote issuer applies its own. */
  createGrant(request: GrantRequest, maxDurationMs: number): Promise<GrantView>;
  listGrants(filter: { cluster?: string | undefined; agent?: string | undefined; group?: string | undefined }): Promise<GrantView[]>;
  removeGrant(id: string): Promise<GrantView>;
  listRoles(cluster: string): Promise<grants.ClusterRoles>;
  clusterStatus(name: string): Promise<ClusterStatus>;
  /** One page of each: sessions and records grow without end, so the caller says how much. */
  listSessions(query: SessionQuery): Promise<ops.Page<SessionView>>;
  showSession(id: string, paging: Paging): Promise<SessionDetail>;
  queryAudit(query: AuditQuery): Promise<ops.Page<AuditRecordView>>;
  /** `now`: cut the tokens of the agents the policy applies to. */
  setPolicy(subject: PolicySubjectRequest, policy: Policy, now: boolean): Promise<PolicyView>;
  showPolicy(subject: PolicySubjectRequest): Promise<PolicyView>;
  clearPolicy(subject: PolicySubjectRequest, now: boolean): Promise<PolicyView>;
}

export const REMOTE_FLAGS: FlagSpec[] = [
  { name: 'issuer', value: 'URL', description: 'Act through the admin API of the issuer at URL (https) instead of on a local store.', default: 'the local store' },
  { name: 'admin-key-file', value: 'F', description: 'With --issuer: the file holding an admin key (krl_admin_…).', default: 'env KUBE_RELAY_ADMIN_KEY' },
  { name: 'issuer-ca-file', value: 'F', description: "With --issuer: trust for the issuer's certificate (PEM).", default: 'system roots' },
];

/** The flags of every management command: a local store, or a remote issuer. */
export const MANAGEMENT_FLAGS: FlagSpec[] = [...STORE_FLAGS, ...REMOTE_FLAGS];

export function isRemote(values: Values): boolean {
  return str(values, 'issuer') !== undefined;
}

export async function withManagement<T>(values: Values, io: Io, use: (management: Management) => Promise<T>): Promise<T> {
  const client = remoteClient(values, io.env);
  if (client) return use(remoteManagement(client));
  return withRegistry(values, io, (registry) => use(localManagement(registry)));
}

/** The admin API client of `--issuer` and the admin key, or undefined for the local store; misuse is a UsageError. */
export function remoteClient(values: Values, env: NodeJS.ProcessEnv): AdminApiClient | undefined {
  if (!isRemote(values)) {
    if (str(values, 'admin-key-file') !== undefined) throw new UsageError('--admin-key-file needs --issuer URL: an admin key is for the admin API of an issuer');
    if (str(values, 'issuer-ca-file') !== undefined) throw new UsageError('--issuer-ca-file needs --issuer URL: it is the trust for a remote issuer');
    return undefined;
  }
  for (const local of ['store-url', 'pepper-file', 'data']) {
    if (str(values, local) !== undefined) throw new UsageError(`--${local} is for the local store and --issuer for a remote one: give one of the two`);
  }
  const issuer = httpsUrl(values, 'issuer', 'the issuer whose admin API to use');
  const key = adminKey(values, env);
  if (key === undefined) throw new UsageError('--issuer needs an admin key: pass --admin-key-file F or set KUBE_RELAY_ADMIN_KEY (kube-relay admin create makes one)');
  return new AdminApiClient({ issuer, adminKey: key, ca: readFileFlag(values, 'issuer-ca-file'), trustFlag: '--issuer-ca-file' });
}

/** The operator on the store: every org is in reach. */
function localManagement(registry: Registry): Management {
  return {
    async createAgent(input) {
      const created = await ops.createAgent(registry, OPERATOR, input);
      return { agent: agentView(created.agent), apiKey: created.apiKey };
    },
    async listAgents() {
      return (await ops.listAgents(registry, OPERATOR)).items.map(agentView);
    },
    async revokeAgent(name) {
      return agentView(await ops.revokeAgent(registry, OPERATOR, name));
    },
    async rotateAgentKey(name) {
      const rotated = await ops.rotateAgentKey(registry, OPERATOR, name);
      return { agent: agentView(rotated.agent), apiKey: rotated.apiKey };
    },
    async createCluster(input) {
      const created = await ops.createCluster(registry, OPERATOR, input);
      return { cluster: clusterView(created.cluster), connectorKey: created.connectorKey };
    },
    async listClusters() {
      return (await ops.listClusters(registry, OPERATOR)).items.map(clusterView);
    },
    async revokeCluster(name) {
      return clusterView(await ops.revokeCluster(registry, OPERATOR, name));
    },
    async rotateClusterKey(name) {
      const rotated = await ops.rotateClusterKey(registry, OPERATOR, name);
      return { cluster: clusterView(rotated.cluster), connectorKey: rotated.connectorKey };
    },
    async createAdmin(input) {
      const created = await ops.createAdmin(registry, OPERATOR, input);
      return { admin: adminView(created.admin), adminKey: created.adminKey };
    },
    async listAdmins() {
      return (await ops.listAdmins(registry, OPERATOR)).items.map(adminView);
    },
    async revokeAdmin(name) {
      return adminView(await ops.revokeAdmin(registry, OPERATOR, name));
    },
    async rotateAdminKey(name) {
      const rotated = await ops.rotateAdminKey(registry, OPERATOR, name);
      return { admin: adminView(rotated.admin), adminKey: rotated.adminKey };
    },
    async createGrant(request, maxDurationMs) {
      return grantView(await grants.createGrant(registry, OPERATOR, request, { maxDurationMs: maxDurationMs || undefined }), new Date());
    },
    async listGrants(filter) {
      const now = new Date();
      return (await grants.listGrants(registry, OPERATOR, filter)).items.map((g) => grantView(g, now));
    },
    async removeGrant(id) {
      return grantView(await grants.removeGrant(registry, OPERATOR, id), new Date());
    },
    listRoles: (cluster) => grants.listRoles(registry, OPERATOR, cluster),
    clusterStatus: (name) => clusterStatus(registry, OPERATOR, name),
    listSessions: (query) => sessions.listSessions(registry, OPERATOR, query),
    showSession: (id, paging) => sessions.showSession(registry, OPERATOR, id, paging),
    queryAudit: (query) => sessions.queryAudit(registry, OPERATOR, query),
    setPolicy: async (subject, policy, now) => policyView(await policies.setPolicy(registry, OPERATOR, subject, policy, { now })),
    showPolicy: async (subject) => policyView(await policies.getPolicy(registry, OPERATOR, subject)),
    clearPolicy: async (subject, now) => policyView(await policies.clearPolicy(registry, OPERATOR, subject, { now })),
  };
}

/** The holder of an admin key, through the admin API: the issuer applies the key's org. */
function remoteManagement(api: AdminApiClient): Management {
  const split = <V, K extends string>(answer: V & Record<K, string>, key: K) => {
    const { [key]: secret, ...view } = answer;
    return { view: view as unknown as V, secret: secret as string };
  };
  const path = (kind: string, name: string, tail = '') => `/v1/${kind}/${encodeURIComponent(name)}${tail}`;
  return {
    async createAgent(input) {
      const { view, secret } = split<AgentView, 'apiKey'>(await api.post('/v1/agents', input), 'apiKey');
      return { agent: view, apiKey: secret };
    },
    listAgents: () => api.list<AgentView>('/v1/agents'),
    revokeAgent: (name) => api.delete<AgentView>(path('agents', name)),
    async rotateAgentKey(name) {
      const { view, secret } = split<AgentView, 'apiKey'>(await api.post(path('agents', name, '/keys')), 'apiKey');
      return { agent: view, apiKey: secret };
    },
    async createCluster(input) {
      const { view, secret } = split<ClusterView, 'connectorKey'>(await api.post('/v1/clusters', input), 'connectorKey');
      return { cluster: view, connectorKey: secret };
    },
    listClusters: () => api.list<ClusterView>('/v1/clusters'),
    revokeCluster: (name) => api.delete<ClusterView>(path('clusters', name)),
    async rotateClusterKey(name) {
      const { view, secret } = split<ClusterView, 'connectorKey'>(await api.post(path('clusters', name, '/keys')), 'connectorKey');
      return { cluster: view, connectorKey: secret };
    },
    async createAdmin(input) {
      const { view, secret } = split<AdminView, 'adminKey'>(await api.post('/v1/admins', input), 'adminKey');
      return { admin: view, adminKey: secret };
    },
    listAdmins: () => api.list<AdminView>('/v1/admins'),
    revokeAdmin: (name) => api.delete<AdminView>(path('admins', name)),
    async rotateAdminKey(name) {
      const { view, secret } = split<AdminView, 'adminKey'>(await api.post(path('admins', name, '/keys')), 'adminKey');
      return { admin: view, adminKey: secret };
    },
    createGrant: ({ expiresInMs, ...request }) =>
      api.post<GrantView>('/v1/grants', { ...request, ...(expiresInMs === undefined ? {} : { expires: `${Math.round(expiresInMs / 1000)}s` }) }),
    listGrants: (filter) => api.list<GrantView>(withQuery('/v1/grants', filter)),
    removeGrant: (id) => api.delete<GrantView>(`/v1/grants/${encodeURIComponent(id)}`),
    listRoles: (cluster) => api.get<grants.ClusterRoles>(path('clusters', cluster, '/roles')),
    clusterStatus: (name) => api.get<ClusterStatus>(path('clusters', name, '/status')),
    listSessions: (query) => api.listSessions(query),
    showSession: (id, paging) => api.showSession(id, paging),
    queryAudit: (query) => api.queryAudit(query),
    setPolicy: (subject, policy, now) => api.setPolicy(subject, policy, now),
    showPolicy: (subject) => api.getPolicy(subject),
    clearPolicy: (subject, now) => api.clearPolicy(subject, now),
  };
}
