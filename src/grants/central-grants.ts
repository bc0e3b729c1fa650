/**
 * Central grants in a relay (DESIGN §11): the rights they need, checked
 * before the relay serves (as the impersonation self-check is), and the
 * Lease election and grant sync that run while it does. Only with a
 * connector key: it is how the relay reads its cluster's grants.
 */
import { KubeApi } from '../kube-api/client.js';
import { LeaderElection } from '../kube-api/leader-election.js';
import type { Logger } from '../log.js';
import type { Upstream } from '../relay/upstream.js';
import { GrantSync } from './grant-sync.js';

export interface CentralGrantsConfig {
  cluster: string;
  issuer: string;
  issuerCa?: string | Buffer | undefined;
  connectorKey: string;
  upstream: Upstream;
  /** Where the Lease that picks the one reconciling replica lives (the relay's namespace). */
  leaseNamespace: string;
  log: Logger;
  /** Tests shorten the sync interval and the Lease timings. */
  syncIntervalMs?: number;
  lease?: { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number };
}

interface Permission {
  group: string;
  resource: string;
  verb: string;
  namespace?: string;
}

/** What the reconciler and the election do, each asked of the API server before the relay serves. */
export function requiredGrantPermissions(leaseNamespace: string): Permission[] {
  const rbac = 'rbac.authorization.k8s.io';
  return [
    ...['list', 'create', 'update', 'delete'].flatMap((verb) => [
      { group: rbac, resource: 'clusterrolebindings', verb },
      { group: rbac, resource: 'rolebindings', verb },
    ]),
    { group: rbac, resource: 'clusterroles', verb: 'list' },
    ...['get', 'create', 'update'].map((verb) => ({ group: 'coordination.k8s.io', resource: 'leases', verb, namespace: leaseNamespace })),
  ];
}

/** The first permission central grants need that the relay's identity lacks, as a sentence; undefined when it has them all. */
export async function missingGrantPermission(upstream: Upstream, leaseNamespace: string): Promise<string | undefined> {
  const api = new KubeApi(upstream);
  for (const permission of requiredGrantPermissions(leaseNamespace)) {
    const review = await api.request<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SelfSubjectAccessReview',
      spec: { resourceAttributes: { group: permission.group, resource: permission.resource, verb: permission.verb, ...(permission.namespace ? { namespace: permission.namespace } : {}) } },
    });
    if (review.status?.allowed === true) continue;
    const rule = `{apiGroups: ["${permission.group}"], resources: ["${permission.resource}"], verbs: ["${permission.verb}"]}`;
    return (
      `central grants need the relay's identity to ${permission.verb} ${permission.resource}${permission.namespace ? ` in namespace ${permission.namespace}` : ''}, and it may not. ` +
      `Install the Helm chart with centralGrants.enabled=true, or add the rule ${rule} to ${permission.namespace ? 'a Role' : 'a ClusterRole'} bound to that identity`
    );
  }
  return undefined;
}

export interface RunningCentralGrants {
  sync: GrantSync;
  election: LeaderElection;
  stop(): Promise<void>;
}

export function startCentralGrants(config: CentralGrantsConfig): RunningCentralGrants {
  const api = new KubeApi(config.upstream);
  const election = new LeaderElection(api, { namespace: config.leaseNamespace, name: `kube-relay-grants-${config.cluster}`, log: config.log, ...config.lease });
  const sync = new GrantSync({ cluster: config.cluster, issuer: config.issuer, issuerCa: config.issuerCa, connectorKey: config.connectorKey, api, election, log: config.log, intervalMs: config.syncIntervalMs });
  election.start();
  sync.start();
  return {
    sync,
    election,
    async stop() {
      await sync.stop();
      await election.stop();
    },
  };
}
