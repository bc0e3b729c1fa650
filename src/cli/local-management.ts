/** A management command on the local store, as the operator (management.ts). */
import { OPERATOR } from '../control/caller.js';
import { clusterStatus } from '../control/cluster-status.js';
import * as ops from '../control/operations.js';
import * as grants from '../control/grants.js';
import * as sessions from '../control/sessions.js';
import * as policies from '../control/policies.js';
import { adminView, agentView, clusterView, grantView, policyView } from '../control/views.js';
import type { Registry } from '../issuer/registry.js';
import type { Management } from './management.js';

/** The operator on the store: every org is in reach. */
export function localManagement(registry: Registry): Management {
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
