/**
 * Where a management command acts (DESIGN §10): on the local store as the
 * operator (the default: `--data`, or `--store-url`), or through the admin
 * API of a remote issuer given `--issuer URL` and an admin key. Both paths
 * end in the same control operation (src/control/operations.ts), the remote
 * one on the issuer's side of its admin API, and both hand back the same
 * views (src/control/views.ts), so a command prints the same either way.
 * The two paths (local-management.ts, remote-management.ts) are loaded when
 * a command runs: a relay or an issuer process never holds the other
 * commands' modules in its heap (issue 21).
 */
import type { AdminApiClient } from '../admin-api/client.js';
import type { ClusterStatus } from '../control/cluster-status.js';
import type * as ops from '../control/operations.js';
import type * as grants from '../control/grants.js';
import type { GrantRequest } from '../control/grants.js';
import type { AuditQuery, Paging, SessionDetail, SessionQuery } from '../control/sessions.js';
import type { PolicySubjectRequest } from '../control/policies.js';
import type { AdminView, AgentView, AuditRecordView, ClusterView, GrantView, PolicyView } from '../control/views.js';
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
  const client = await remoteClient(values, io.env);
  if (client) return use((await import('./remote-management.js')).remoteManagement(client));
  const { localManagement } = await import('./local-management.js');
  return withRegistry(values, io, (registry) => use(localManagement(registry)));
}

/** The admin API client of `--issuer` and the admin key, or undefined for the local store; misuse is a UsageError. */
async function remoteClient(values: Values, env: NodeJS.ProcessEnv): Promise<AdminApiClient | undefined> {
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
  const { AdminApiClient } = await import('../admin-api/client.js');
  return new AdminApiClient({ issuer, adminKey: key, ca: readFileFlag(values, 'issuer-ca-file'), trustFlag: '--issuer-ca-file' });
}
