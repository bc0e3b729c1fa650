/**
 * A grant (DESIGN §11): one role for one grantee (an agent, or a team's
 * group `<org>/<team>`) on one cluster, cluster-wide or in one namespace,
 * until an optional expiry. The relay of the cluster makes it a
 * RoleBinding or ClusterRoleBinding named `kube-relay-<id>` and reports
 * back what became of it.
 */
import { randomBytes } from 'node:crypto';

/**
 * The roles every cluster offers: Kubernetes' user-facing ClusterRoles
 * (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#user-facing-roles) and the
 * chart's kube-relay-* roles (deploy/helm/kube-relay/files/cluster-roles.yaml). Grant role
 * name → the ClusterRole the binding names.
 */
export const BUILT_IN_ROLES: Readonly<Record<string, string>> = {
  'cluster-admin': 'cluster-admin',
  admin: 'admin',
  edit: 'edit',
  view: 'view',
  logs: 'kube-relay-logs',
  exec: 'kube-relay-exec',
  'port-forward': 'kube-relay-port-forward',
  'read-only': 'kube-relay-read-only',
};

/** The label that makes a cluster's own ClusterRole grantable under its name. */
/** The longest `expires` a grant may have unless the issuer says otherwise (`--max-grant-duration`). */
export const DEFAULT_MAX_GRANT_DURATION_MS = 30 * 24 * 3_600_000;

export const GRANTABLE_LABEL = 'kube-relay.dev/grantable';

/** The role that needs an explicit confirmation: it is every right on the cluster. */
export const CLUSTER_ADMIN_ROLE = 'cluster-admin';

export type GranteeKind = 'agent' | 'group';

export interface Grant {
  id: string;
  cluster: string;
  /** The org of the cluster and of the grantee. */
  org: string;
  grantee: { kind: GranteeKind; name: string };
  role: string;
  /** Absent: cluster-wide (a ClusterRoleBinding). */
  namespace?: string;
  expiresAt?: Date;
  createdAt: Date;
  /** Who made it: `admin:<name>` or `operator`. */
  createdBy: string;
  /** What the cluster's relay last reported. */
  applied: GrantApplication;
}

export interface GrantApplication {
  state: 'pending' | 'applied' | 'failed';
  /** Why it failed; absent otherwise. */
  reason?: string;
  /** When the relay reported it; absent while pending since creation. */
  at?: Date;
}

/** The state a person reads: expiry first, then the relay's report. */
export function grantState(grant: Grant, now: Date): 'pending' | 'applied' | 'failed' | 'expired' {
  if (grant.expiresAt && grant.expiresAt.getTime() <= now.getTime()) return 'expired';
  return grant.applied.state;
}

/** 12 characters of [a-z0-9] (about 62 bits): a grant id, part of a Kubernetes object name. */
export function newGrantId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = '';
  while (id.length < 12) {
    // Bytes of 252 and above are skipped, so every character is equally likely (252 = 7 × 36).
    for (const byte of randomBytes(16)) if (byte < 252 && id.length < 12) id += alphabet[byte % alphabet.length];
  }
  return id;
}

export const GRANT_ID = /^[a-z0-9]{12}$/;

/** The name of the binding a grant becomes in its cluster. */
export function bindingName(id: string): string {
  return `kube-relay-${id}`;
}
