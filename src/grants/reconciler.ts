/**
 * Grants into RBAC (DESIGN §11), one pass: the cluster's managed bindings
 * are made to match its grants. Each live grant is one binding named
 * `kube-relay-<id>` (a RoleBinding in its namespace, or a ClusterRoleBinding)
 * labelled managed-by kube-relay, with its cluster and its grant id; a managed binding
 * with no live grant is deleted; a binding without those labels is never
 * changed, even when its name collides (the grant is then reported failed).
 * Drift (a managed binding edited or deleted by hand) is repaired by the
 * next pass. Each grant's outcome is returned for the issuer.
 */
import { KubeApiError, type KubeApi } from '../kube-api/client.js';
import { BUILT_IN_ROLES, bindingName, GRANTABLE_LABEL } from './grant.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'kube-relay';
export const GRANT_LABEL = 'kube-relay.dev/grant';
/** The kube-relay cluster the binding is for: relays of two registered clusters on one Kubernetes cluster leave each other's bindings alone. */
export const CLUSTER_LABEL = 'kube-relay.dev/cluster';

const RBAC = '/apis/rbac.authorization.k8s.io/v1';

/** A grant of this cluster, as the issuer hands it to the relay (src/relay-api). */
export interface ClusterGrant {
  id: string;
  role: string;
  namespace?: string;
  subject: { kind: 'User' | 'Group'; name: string };
  expiresAt?: string;
}

export interface GrantOutcome {
  id: string;
  state: 'applied' | 'failed';
  reason?: string;
}

export interface ReconcileResult {
  outcomes: GrantOutcome[];
  /** The cluster's ClusterRoles labelled grantable. */
  grantableRoles: string[];
  created: string[];
  updated: string[];
  deleted: string[];
}

interface Binding {
  apiVersion: 'rbac.authorization.k8s.io/v1';
  kind: 'RoleBinding' | 'ClusterRoleBinding';
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string };
  roleRef: { apiGroup: string; kind: string; name: string };
  subjects?: { kind: string; apiGroup?: string; name: string; namespace?: string }[];
}

export async function reconcileGrants(api: KubeApi, cluster: string, grants: ClusterGrant[], now: Date): Promise<ReconcileResult> {
  const selector = `labelSelector=${encodeURIComponent(`${MANAGED_BY_LABEL}=${MANAGED_BY},${CLUSTER_LABEL}=${cluster}`)}`;
  const [grantable, clusterBindings, roleBindings] = await Promise.all([
    api.request<{ items: { metadata: { name: string } }[] }>('GET', `${RBAC}/clusterroles?labelSelector=${encodeURIComponent(`${GRANTABLE_LABEL}=true`)}`),
    api.request<{ items: Binding[] }>('GET', `${RBAC}/clusterrolebindings?${selector}`),
    api.request<{ items: Binding[] }>('GET', `${RBAC}/rolebindings?${selector}`),
  ]);
  const grantableRoles = grantable.items.map((role) => role.metadata.name).sort();
  const managed = new Map<string, Binding>();
  for (const binding of [...clusterBindings.items, ...roleBindings.items.map((b) => ({ ...b, kind: 'RoleBinding' as const }))]) {
    managed.set(placeOf({ ...binding, kind: binding.kind ?? 'ClusterRoleBinding' }), { ...binding, kind: binding.kind ?? 'ClusterRoleBinding' });
  }
  const result: ReconcileResult = { outcomes: [], grantableRoles, created: [], updated: [], deleted: [] };
  const wanted = new Set<string>();

  for (const grant of grants) {
    if (grant.expiresAt && Date.parse(grant.expiresAt) <= now.getTime()) continue;
    const clusterRole = Object.hasOwn(BUILT_IN_ROLES, grant.role) ? BUILT_IN_ROLES[grant.role]! : grantableRoles.includes(grant.role) ? grant.role : undefined;
    if (clusterRole === undefined) {
      result.outcomes.push({ id: grant.id, state: 'failed', reason: `the cluster has no ClusterRole "${grant.role}" labelled ${GRANTABLE_LABEL}: "true"` });
      continue;
    }
    const desired = bindingFor(cluster, grant, clusterRole);
    const place = placeOf(desired);
    wanted.add(place);
    try {
      const existing = managed.get(place);
      if (!existing) {
        await create(api, desired);
        result.created.push(place);
      } else if (existing.roleRef.name !== clusterRole || existing.roleRef.kind !== 'ClusterRole') {
        // roleRef cannot be changed in place (kube-apiserver refuses it): replace the binding.
        await api.request('DELETE', pathOf(existing));
        await create(api, desired);
        result.updated.push(place);
      } else if (!sameSubjectsAndLabels(existing, desired)) {
        await api.request('PUT', pathOf(desired), { ...desired, metadata: { ...desired.metadata, resourceVersion: existing.metadata.resourceVersion } });
        result.updated.push(place);
      }
      result.outcomes.push({ id: grant.id, state: 'applied' });
    } catch (err) {
      result.outcomes.push({ id: grant.id, state: 'failed', reason: failureReason(err, desired, clusterRole) });
    }
  }

  for (const [place, binding] of managed) {
    if (wanted.has(place)) continue;
    try {
      await api.request('DELETE', pathOf(binding));
      result.deleted.push(place);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
  }
  return result;
}

function bindingFor(cluster: string, grant: ClusterGrant, clusterRole: string): Binding {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: grant.namespace ? 'RoleBinding' : 'ClusterRoleBinding',
    metadata: { name: bindingName(grant.id), ...(grant.namespace ? { namespace: grant.namespace } : {}), labels: { [MANAGED_BY_LABEL]: MANAGED_BY, [CLUSTER_LABEL]: cluster, [GRANT_LABEL]: grant.id } },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole },
    subjects: [{ kind: grant.subject.kind, apiGroup: 'rbac.authorization.k8s.io', name: grant.subject.name }],
  };
}

async function create(api: KubeApi, binding: Binding): Promise<void> {
  const collection = binding.kind === 'RoleBinding' ? `${RBAC}/namespaces/${binding.metadata.namespace}/rolebindings` : `${RBAC}/clusterrolebindings`;
  await api.request('POST', collection, binding);
}

function pathOf(binding: Binding): string {
  return binding.kind === 'RoleBinding' ? `${RBAC}/namespaces/${binding.metadata.namespace}/rolebindings/${binding.metadata.name}` : `${RBAC}/clusterrolebindings/${binding.metadata.name}`;
}

function placeOf(binding: Pick<Binding, 'kind' | 'metadata'>): string {
  return binding.kind === 'RoleBinding' ? `RoleBinding ${binding.metadata.namespace}/${binding.metadata.name}` : `ClusterRoleBinding ${binding.metadata.name}`;
}

function sameSubjectsAndLabels(existing: Binding, desired: Binding): boolean {
  const subjects = (b: Binding) => JSON.stringify((b.subjects ?? []).map((s) => [s.kind, s.apiGroup ?? '', s.name, s.namespace ?? '']));
  const labels = (b: Binding) => JSON.stringify([MANAGED_BY_LABEL, CLUSTER_LABEL, GRANT_LABEL].map((key) => b.metadata.labels?.[key] ?? ''));
  return subjects(existing) === subjects(desired) && labels(existing) === labels(desired);
}

function failureReason(err: unknown, binding: Binding, clusterRole: string): string {
  if (!(err instanceof KubeApiError)) return (err as Error).message;
  if (err.status === 409 && err.reason === 'AlreadyExists') {
    return `a ${binding.kind} named ${binding.metadata.name}${binding.metadata.namespace ? ` in namespace ${binding.metadata.namespace}` : ''} exists that kube-relay did not create; kube-relay leaves it alone: remove or rename it`;
  }
  if (err.status === 404 && binding.metadata.namespace) return `namespace ${binding.metadata.namespace} does not exist in the cluster`;
  // kube-apiserver's RBAC escalation check: a binder must hold the role's rights or may `bind` it.
  if (err.status === 403 && /bind|escalat/i.test(err.message)) return `the relay may not bind role ${clusterRole}: add it to centralGrants.roles`;
  return `the API server refused the ${binding.kind} (${err.status} ${err.reason}): ${err.message.slice(0, 300)}`;
}
