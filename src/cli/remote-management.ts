/** A management command through a remote issuer's admin API (management.ts). */
import { type AdminApiClient, withQuery } from '../admin-api/client.js';
import type { ClusterStatus } from '../control/cluster-status.js';
import type * as grants from '../control/grants.js';
import type { AdminView, AgentView, ClusterView, GrantView } from '../control/views.js';
import type { Management } from './management.js';

export function remoteManagement(api: AdminApiClient): Management {
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
