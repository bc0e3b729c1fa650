/**
 * Grant operations (DESIGN §11, STYLE 12), for the local CLI and the admin
 * API alike: each takes the caller and does the org check (another org's
 * cluster, agent or grant is "not found"), then checks the grant itself:
 * one grantee, of the cluster's org; a role the cluster offers (cluster-admin
 * only when confirmed); a namespace that is a DNS label; an expiry within the
 * limit. Nothing is stored unless every check passes.
 */
import { agentUser, isDnsLabel } from '../identity.js';
import { BUILT_IN_ROLES, CLUSTER_ADMIN_ROLE, GRANT_ID, type Grant, grantState, type GranteeKind, newGrantId } from '../grants/grant.js';
import { ForbiddenError, InvalidInputError, NotFoundError, type Registry } from '../issuer/registry.js';
import { AlreadyExistsError } from '../issuer/store.js';
import { actorOf, type Caller, mayManage } from './caller.js';
import { getAgent, getCluster, listedOrg, MAX_PAGE_SIZE, type Page } from './operations.js';

export { DEFAULT_MAX_GRANT_DURATION_MS } from '../grants/grant.js';

export interface GrantRequest {
  cluster: string;
  /** Exactly one of `agent` and `group` (ORG/TEAM). */
  agent?: string | undefined;
  group?: string | undefined;
  role: string;
  namespace?: string | undefined;
  /** From now; absent: the grant does not expire. */
  expiresInMs?: number | undefined;
  /** Required for cluster-admin: every right on the cluster. */
  confirmClusterAdmin?: boolean | undefined;
}

export interface GrantLimits {
  /** The longest expiry allowed; undefined: no limit. */
  maxDurationMs: number | undefined;
  now?: () => Date;
}

export async function createGrant(registry: Registry, caller: Caller, request: GrantRequest, limits: GrantLimits): Promise<Grant> {
  const now = (limits.now ?? (() => new Date()))();
  const cluster = await getCluster(registry, caller, request.cluster);
  if (cluster.revokedAt) throw new InvalidInputError(`cluster "${cluster.name}" was revoked at ${cluster.revokedAt.toISOString()}: a grant on it would never apply`);
  const grantee = await granteeOf(registry, caller, request, cluster.org);
  const role = request.role;
  if (!Object.hasOwn(BUILT_IN_ROLES, role) && !(await registry.grants.grantableRoles(cluster.name)).some((r) => r.name === role)) {
    throw new InvalidInputError(`role "${role.slice(0, 63)}" is not grantable on cluster "${cluster.name}": use one of ${Object.keys(BUILT_IN_ROLES).join(', ')}, or a ClusterRole of that cluster labelled kube-relay.dev/grantable: "true" (kube-relay role list --cluster ${cluster.name})`);
  }
  if (role === CLUSTER_ADMIN_ROLE && request.confirmClusterAdmin !== true) {
    throw new InvalidInputError(`role cluster-admin gives every right on cluster "${cluster.name}", RBAC included: confirm it explicitly (--i-understand-cluster-admin; in the admin API "confirmClusterAdmin": true), or choose a narrower role such as admin or edit`);
  }
  if (request.namespace !== undefined && !isDnsLabel(request.namespace)) throw new InvalidInputError(`namespace "${request.namespace.slice(0, 63)}" is not a Kubernetes namespace name (a DNS label)`);
  const expiresAt = expiry(request.expiresInMs, limits.maxDurationMs, now);
  const same = await registry.grants.findSameGrant({ cluster: cluster.name, grantee, role, namespace: request.namespace });
  if (same) {
    if (grantState(same, now) !== 'expired') throw new AlreadyExistsError(`grant ${same.id} already gives ${describeGrant(same)}: remove it first to change its expiry`);
    // An expired grant stays listed until removed; granting the same again replaces it.
    await registry.grants.deleteGrant(same.id);
  }
  const grant: Omit<Grant, 'applied'> = {
    id: newGrantId(),
    cluster: cluster.name,
    org: cluster.org,
    grantee,
    role,
    ...(request.namespace === undefined ? {} : { namespace: request.namespace }),
    ...(expiresAt ? { expiresAt } : {}),
    createdAt: now,
    createdBy: actorOf(caller),
  };
  await registry.grants.createGrant(grant);
  return (await registry.grants.findGrant(grant.id))!;
}

export interface ClusterRoles {
  cluster: string;
  /** Every cluster's: grant role name → the ClusterRole its binding names. */
  builtIn: { name: string; clusterRole: string }[];
  /** The cluster's ClusterRoles labelled kube-relay.dev/grantable: "true", as its relay last reported them. */
  custom: { name: string; reportedAt: string }[];
}

/** The roles a grant on `clusterName` may name (`kube-relay role list`). */
export async function listRoles(registry: Registry, caller: Caller, clusterName: string): Promise<ClusterRoles> {
  const cluster = await getCluster(registry, caller, clusterName);
  return {
    cluster: cluster.name,
    builtIn: Object.entries(BUILT_IN_ROLES).map(([name, clusterRole]) => ({ name, clusterRole })),
    custom: (await registry.grants.grantableRoles(cluster.name)).map((r) => ({ name: r.name, reportedAt: r.reportedAt.toISOString() })),
  };
}

export interface GrantListRequest {
  cluster?: string | undefined;
  agent?: string | undefined;
  group?: string | undefined;
  org?: string | undefined;
  limit?: number | undefined;
  continue?: string | undefined;
}

export async function listGrants(registry: Registry, caller: Caller, request: GrantListRequest = {}): Promise<Page<Grant>> {
  const org = listedOrg(caller, request.org);
  if (request.agent !== undefined && request.group !== undefined) throw new InvalidInputError('list the grants of an agent or of a group, not both at once');
  if (request.cluster !== undefined) await getCluster(registry, caller, request.cluster);
  const grantee = request.agent !== undefined ? { kind: 'agent' as const, name: (await getAgent(registry, caller, request.agent)).name } : request.group !== undefined ? { kind: 'group' as const, name: parseGroup(request.group).group } : undefined;
  if (request.limit !== undefined && (!Number.isInteger(request.limit) || request.limit < 1)) throw new InvalidInputError(`limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
  const limit = request.limit === undefined ? undefined : Math.min(request.limit, MAX_PAGE_SIZE);
  if (request.continue !== undefined && !GRANT_ID.test(request.continue)) throw new InvalidInputError('continue is not one this issuer gave: pass the continue of the previous page unchanged, or leave it out for the first page');
  const items = await registry.grants.listGrants({
    org,
    cluster: request.cluster,
    grantee,
    after: request.continue,
    ...(limit === undefined ? {} : { limit: limit + 1 }),
  });
  if (limit === undefined || items.length <= limit) return { items };
  const shown = items.slice(0, limit);
  return { items: shown, continue: shown[shown.length - 1]!.id };
}

export async function getGrant(registry: Registry, caller: Caller, id: string): Promise<Grant> {
  const grant = GRANT_ID.test(id) ? await registry.grants.findGrant(id) : undefined;
  if (!grant || !mayManage(caller, grant.org)) throw new NotFoundError(`no grant "${id.slice(0, 40)}"; see kube-relay grant list`);
  return grant;
}

/** Removes the grant; its cluster's relay deletes the binding. Returns what was removed. */
export async function removeGrant(registry: Registry, caller: Caller, id: string): Promise<Grant> {
  const grant = await getGrant(registry, caller, id);
  await registry.grants.deleteGrant(grant.id);
  return grant;
}

/** "role view to group acme/sre on cluster prod-eu in namespace web": for messages. */
export function describeGrant(grant: Pick<Grant, 'role' | 'grantee' | 'cluster' | 'namespace'>): string {
  return `role ${grant.role} to ${grant.grantee.kind} ${grant.grantee.name} on cluster ${grant.cluster}${grant.namespace ? ` in namespace ${grant.namespace}` : ''}`;
}

/** The Kubernetes subject of a grantee: user agent:NAME, or the group itself. */
export function subjectOf(grantee: { kind: GranteeKind; name: string }): { kind: 'User' | 'Group'; name: string } {
  return grantee.kind === 'agent' ? { kind: 'User', name: agentUser(grantee.name) } : { kind: 'Group', name: grantee.name };
}

async function granteeOf(registry: Registry, caller: Caller, request: GrantRequest, clusterOrg: string): Promise<{ kind: GranteeKind; name: string }> {
  if (request.agent !== undefined && request.group !== undefined) throw new InvalidInputError('a grant is for one agent or one group (ORG/TEAM), not both');
  if (request.agent !== undefined) {
    const agent = await getAgent(registry, caller, request.agent);
    if (agent.revokedAt) throw new InvalidInputError(`agent "${agent.name}" was revoked at ${agent.revokedAt.toISOString()}: it can use no grant`);
    if (agent.org !== clusterOrg) throw new ForbiddenError(`agent "${agent.name}" is of org "${agent.org}" and cluster "${request.cluster}" of org "${clusterOrg}": a grant joins a cluster and a grantee of one org`);
    return { kind: 'agent', name: agent.name };
  }
  if (request.group !== undefined) {
    const { org, group } = parseGroup(request.group);
    if (org !== clusterOrg) throw new ForbiddenError(`group "${group}" is of org "${org}" and cluster "${request.cluster}" of org "${clusterOrg}": a grant joins a cluster and a grantee of one org`);
    return { kind: 'group', name: group };
  }
  throw new InvalidInputError('a grant needs a grantee: an agent, or a group ORG/TEAM');
}

/** A team's group `ORG/TEAM` (`what` names it in the sentence: a grant's group, a policy's team). */
export function parseGroup(value: string, what = 'group'): { org: string; group: string } {
  const [org, team, ...rest] = value.split('/');
  if (rest.length > 0 || org === undefined || team === undefined || !isDnsLabel(org) || !isDnsLabel(team)) {
    throw new InvalidInputError(`${what} "${value.slice(0, 130)}" is not ORG/TEAM (two DNS labels, as an agent's groups are)`);
  }
  return { org, group: `${org}/${team}` };
}

function expiry(inMs: number | undefined, maxMs: number | undefined, now: Date): Date | undefined {
  if (inMs === undefined) return undefined;
  if (!Number.isFinite(inMs) || inMs <= 0) throw new InvalidInputError('a grant expires after a positive duration (such as 30m, 8h or 7d), not in the past');
  if (maxMs !== undefined && inMs > maxMs) throw new InvalidInputError(`a grant may last at most ${formatDays(maxMs)} on this issuer (--max-grant-duration); ask for less`);
  return new Date(now.getTime() + inMs);
}

function formatDays(ms: number): string {
  return ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : `${Math.round(ms / 1000)}s`;
}
