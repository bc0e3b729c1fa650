/**
 * The control plane's objects as the admin API answers them and as
 * `kube-relay … --output json` prints them (DESIGN §10): plain JSON, times
 * as RFC 3339 strings, `revokedAt` only once revoked. The local CLI and the
 * remote CLI print these same shapes, so their output is identical.
 */
import { type Grant, grantState } from '../grants/grant.js';
import type { Admin, Agent, Cluster } from '../issuer/store.js';
import type { StoredAuditRecord } from '../issuer/store/audit-sql.js';
import { formatDenyRule, type Policy } from '../policy/policy.js';
import type { PolicyState } from './policies.js';

export interface AgentView {
  name: string;
  org: string;
  teams: string[];
  createdAt: string;
  revokedAt?: string;
}

export interface ClusterView {
  name: string;
  org: string;
  createdAt: string;
  revokedAt?: string;
}

export interface AdminView {
  name: string;
  /** null: an admin of all orgs. */
  org: string | null;
  createdAt: string;
  revokedAt?: string;
}

export function agentView(agent: Agent): AgentView {
  return { name: agent.name, org: agent.org, teams: agent.teams, createdAt: agent.createdAt.toISOString(), ...revoked(agent.revokedAt) };
}

export function clusterView(cluster: Cluster): ClusterView {
  return { name: cluster.name, org: cluster.org, createdAt: cluster.createdAt.toISOString(), ...revoked(cluster.revokedAt) };
}

export function adminView(admin: Admin): AdminView {
  return { name: admin.name, org: admin.org ?? null, createdAt: admin.createdAt.toISOString(), ...revoked(admin.revokedAt) };
}

function revoked(at: Date | undefined): { revokedAt?: string } {
  return at ? { revokedAt: at.toISOString() } : {};
}

/** A grant with its state in its cluster (`expired` once past `expiresAt`, whatever the relay last said). */
export interface GrantView {
  id: string;
  cluster: string;
  org: string;
  /** Exactly one of agent and group. */
  agent?: string;
  group?: string;
  role: string;
  /** Absent: cluster-wide. */
  namespace?: string;
  expiresAt?: string;
  createdAt: string;
  createdBy: string;
  state: 'pending' | 'applied' | 'failed' | 'expired';
  /** Why the relay could not apply it. */
  reason?: string;
  /** When the relay last reported on it. */
  reportedAt?: string;
}

export function grantView(grant: Grant, now: Date): GrantView {
  return {
    id: grant.id,
    cluster: grant.cluster,
    org: grant.org,
    ...(grant.grantee.kind === 'agent' ? { agent: grant.grantee.name } : { group: grant.grantee.name }),
    role: grant.role,
    ...(grant.namespace ? { namespace: grant.namespace } : {}),
    ...(grant.expiresAt ? { expiresAt: grant.expiresAt.toISOString() } : {}),
    createdAt: grant.createdAt.toISOString(),
    createdBy: grant.createdBy,
    state: grantState(grant, now),
    ...(grant.applied.reason ? { reason: grant.applied.reason } : {}),
    ...(grant.applied.at ? { reportedAt: grant.applied.at.toISOString() } : {}),
  };
}

/**
 * A central audit record (DESIGN §12): the record as the relay wrote it (docs/audit.md), with the
 * cluster it was stored under, its org, and the id of its session (null: a request of no agent).
 */
export type AuditRecordView = Record<string, unknown> & { cluster: string; org: string; session: string | null };

export function auditRecordView(stored: StoredAuditRecord): AuditRecordView {
  return { ...stored.record, cluster: stored.cluster, org: stored.org, session: stored.sessionId ?? null };
}

/** A policy with every field present: false, [] and null where it sets no brake. Deny rules as --deny spells them. */
export interface PolicyFieldsView {
  readOnly: boolean;
  dryRun: boolean;
  deny: string[];
  rate: { perSecond: number; burst: number } | null;
  maxStreams: number | null;
}

/**
 * An agent's or a team's own policy (DESIGN §13); for an agent also `effective`, its own merged with
 * its teams' (what its tokens carry). `updatedAt` and `updatedBy` are null while it has none of its
 * own. `tokensCut` only in the answer of a change made with `now`: whose tokens were cut, and when.
 */
export interface PolicyView {
  subject: { kind: 'agent' | 'team'; name: string };
  org: string;
  policy: PolicyFieldsView;
  updatedAt: string | null;
  updatedBy: string | null;
  effective?: PolicyFieldsView;
  tokensCut?: { at: string; agents: string[] };
}

export function policyFieldsView(policy: Policy): PolicyFieldsView {
  return {
    readOnly: policy.readOnly === true,
    dryRun: policy.dryRun === true,
    deny: (policy.deny ?? []).map(formatDenyRule),
    rate: policy.rate ? { perSecond: policy.rate.perSecond, burst: policy.rate.burst } : null,
    maxStreams: policy.maxStreams ?? null,
  };
}

export function policyView(state: PolicyState): PolicyView {
  return {
    subject: { kind: state.subject.kind, name: state.subject.name },
    org: state.org,
    policy: policyFieldsView(state.policy),
    updatedAt: state.updatedAt?.toISOString() ?? null,
    updatedBy: state.updatedBy ?? null,
    ...(state.effective ? { effective: policyFieldsView(state.effective) } : {}),
    ...(state.tokensCut ? { tokensCut: { at: state.tokensCut.at.toISOString(), agents: state.tokensCut.agents } } : {}),
  };
}
