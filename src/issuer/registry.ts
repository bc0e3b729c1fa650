/**
 * Agents, clusters and admins: creation with a key shown once, lookup by
 * key, and revocation; the relay connections hub replicas record. Input is validated here, so the CLI and the admin API
 * share one set of rules and sentences. The Registry does no authorization:
 * it is the operator's view of the store; src/control puts the caller's org
 * check in front of it (DESIGN §10, STYLE 12).
 */
import { isDnsLabel } from '../identity.js';
import { generateKey, hashKey, hashesEqual, keyKindOf } from './secrets.js';
import type { AuditStore } from './store/audit-sql.js';
import type { GrantStore } from './store/grant-sql.js';
import type { PolicyStore } from './store/policy-sql.js';
import type { ConsoleSessionStore } from './store/console-session-sql.js';
import { type Admin, type Agent, AlreadyExistsError, type Cluster, type IssuerStore, type ListFilter, type RelayConnection } from './store.js';

import { ConflictError, ForbiddenError, InvalidInputError, NotFoundError } from './errors.js';

export { ConflictError, ForbiddenError, InvalidInputError, NotFoundError };

export class Registry {
  /** Grants hold no secret: the store's own methods are their registry (src/control/grants.ts checks input and caller). */
  readonly grants: GrantStore;
  /** Central audit records and sessions hold no secret either (src/control/sessions.ts checks input and caller). */
  readonly audit: AuditStore;
  /** Agent and team policies and token cuts hold no secret either (src/control/policies.ts checks input and caller). */
  readonly policies: PolicyStore;
  /** The web console's sign-in sessions, keyed by digests only (src/console/session-store.ts). */
  readonly consoleSessions: ConsoleSessionStore;

  constructor(
    private readonly store: IssuerStore,
    private readonly pepper: Buffer,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.grants = store;
    this.audit = store;
    this.policies = store;
    this.consoleSessions = store;
  }

  /** Returns the agent's API key; only its HMAC is stored. */
  async createAgent(name: string, org: string, teams: string[]): Promise<string> {
    requireLabel('agent name', name);
    requireLabel('org', org);
    if (teams.length === 0) throw new InvalidInputError('an agent needs at least one team: add --team TEAM');
    for (const team of teams) requireLabel('team', team);
    const key = generateKey('agent');
    this.unlessReserved('agent', await this.store.findAgent(name), name);
    await this.store.createAgent({ name, org, teams: [...new Set(teams)] }, hashKey(this.pepper, key));
    return key;
  }

  /** A new API key for an active agent; the old one stops working at once (its hash is gone). */
  async rotateAgentKey(name: string): Promise<string> {
    const key = generateKey('agent');
    if (await this.store.replaceAgentKey(name, hashKey(this.pepper, key))) return key;
    const agent = await this.store.findAgent(name);
    if (agent?.revokedAt) throw new ConflictError(`agent "${name}" was revoked at ${agent.revokedAt.toISOString()}; a revoked agent gets no new key`);
    throw new NotFoundError(`no agent named "${name}"; see kube-relay agent list`);
  }

  /** Returns the cluster's connector key; only its HMAC is stored. */
  async createCluster(name: string, org: string): Promise<string> {
    requireLabel('cluster name', name);
    requireLabel('org', org);
    const key = generateKey('cluster');
    this.unlessReserved('cluster', await this.store.findCluster(name), name);
    await this.store.createCluster({ name, org }, hashKey(this.pepper, key));
    return key;
  }

  /** A new connector key for an active cluster; the hub closes tunnels that were opened with the old one. */
  async rotateClusterKey(name: string): Promise<string> {
    const key = generateKey('cluster');
    if (await this.store.replaceClusterKey(name, hashKey(this.pepper, key))) return key;
    const cluster = await this.store.findCluster(name);
    if (cluster?.revokedAt) throw new ConflictError(`cluster "${name}" was revoked at ${cluster.revokedAt.toISOString()}; a revoked cluster gets no new key`);
    throw new NotFoundError(`no cluster named "${name}"; see kube-relay cluster list`);
  }

  /** Returns the admin's key; only its HMAC is stored. `org` undefined: an all-orgs admin. */
  async createAdmin(name: string, org: string | undefined): Promise<string> {
    requireLabel('admin name', name);
    if (org !== undefined) requireLabel('org', org);
    const key = generateKey('admin');
    this.unlessReserved('admin', await this.store.findAdmin(name), name);
    await this.store.createAdmin({ name, org }, hashKey(this.pepper, key));
    return key;
  }

  /** A new key for an active admin; the old one is refused at once. */
  async rotateAdminKey(name: string): Promise<string> {
    const key = generateKey('admin');
    if (await this.store.replaceAdminKey(name, hashKey(this.pepper, key))) return key;
    const admin = await this.store.findAdmin(name);
    if (admin?.revokedAt) throw new ConflictError(`admin "${name}" was revoked at ${admin.revokedAt.toISOString()}; a revoked admin gets no new key`);
    throw new NotFoundError(`no admin named "${name}"; see kube-relay admin list`);
  }

  async revokeAdmin(name: string): Promise<void> {
    if (!(await this.store.revokeAdmin(name, this.now()))) throw new NotFoundError(`no admin named "${name}"; see kube-relay admin list`);
  }

  /** The admin an admin key belongs to, revoked or not; undefined for unknown keys and keys of other kinds. */
  async adminForKey(adminKey: string): Promise<Admin | undefined> {
    if (keyKindOf(adminKey) !== 'admin') return undefined;
    const hash = hashKey(this.pepper, adminKey);
    const admin = await this.store.findAdminByKeyHash(hash);
    if (!admin || !hashesEqual(admin.keyHash, hash)) return undefined;
    const { keyHash: _hash, ...rest } = admin;
    return rest;
  }

  /** What a console session keeps of the admin key it was opened with: the key's HMAC, as the admins table keeps it. */
  adminKeyDigest(adminKey: string): string {
    return hashKey(this.pepper, adminKey);
  }

  /** The admin whose current key has `digest`, revoked or not: a rotated or revoked key ends the console sessions opened with it. */
  async adminForKeyDigest(digest: string): Promise<Admin | undefined> {
    const admin = await this.store.findAdminByKeyHash(digest);
    if (!admin || !hashesEqual(admin.keyHash, digest)) return undefined;
    const { keyHash: _hash, ...rest } = admin;
    return rest;
  }

  /** The console's session rows are keyed by this HMAC of the cookie's session id, never by the id. */
  consoleSessionDigest(sessionId: string): string {
    return hashKey(this.pepper, `console-session:${sessionId}`);
  }

  /** The secret the console signs its cookie with: derived from the pepper, so every replica of one store shares it. */
  consoleCookieSecret(): string {
    return hashKey(this.pepper, 'console-cookie-signing');
  }

  findAdmin(name: string): Promise<Admin | undefined> {
    return this.store.findAdmin(name);
  }

  listAdmins(filter?: ListFilter): Promise<Admin[]> {
    return this.store.listAdmins(filter);
  }

  /**
   * Names are never reused: tokens, audit records and RBAC bindings name an
   * agent or cluster, and a new one under an old name would inherit them.
   */
  private unlessReserved(kind: 'agent' | 'cluster' | 'admin', existing: { revokedAt?: Date } | undefined, name: string): void {
    if (!existing) return;
    if (existing.revokedAt) {
      throw new AlreadyExistsError(
        `${kind} "${name}" was revoked at ${existing.revokedAt.toISOString()}; names of revoked ${kind}s stay reserved, because audit records and RBAC bindings name them: choose another name`,
      );
    }
    throw new AlreadyExistsError(`${kind} "${name}" already exists; kube-relay ${kind} rotate-key gives it a new key`);
  }

  /** The agent an API key belongs to, revoked or not; undefined for unknown keys. */
  async agentForKey(apiKey: string): Promise<Agent | undefined> {
    if (keyKindOf(apiKey) !== 'agent') return undefined;
    const hash = hashKey(this.pepper, apiKey);
    const agent = await this.store.findAgentByKeyHash(hash);
    return agent && hashesEqual(agent.apiKeyHash, hash) ? agent : undefined;
  }

  /** The cluster a connector key belongs to, revoked or not; undefined for unknown keys. */
  async clusterForKey(connectorKey: string): Promise<Cluster | undefined> {
    if (keyKindOf(connectorKey) !== 'cluster') return undefined;
    const hash = hashKey(this.pepper, connectorKey);
    const cluster = await this.store.findClusterByKeyHash(hash);
    return cluster && hashesEqual(cluster.connectorKeyHash, hash) ? cluster : undefined;
  }

  findCluster(name: string): Promise<Cluster | undefined> {
    return this.store.findCluster(name);
  }

  findAgent(name: string): Promise<Agent | undefined> {
    return this.store.findAgent(name);
  }

  listAgents(filter?: ListFilter): Promise<Agent[]> {
    return this.store.listAgents(filter);
  }

  listClusters(filter?: ListFilter): Promise<Cluster[]> {
    return this.store.listClusters(filter);
  }

  async revokeAgent(name: string): Promise<void> {
    if (!(await this.store.revokeAgent(name, this.now()))) throw new NotFoundError(`no agent named "${name}"; see kube-relay agent list`);
  }

  async revokeCluster(name: string): Promise<void> {
    if (!(await this.store.revokeCluster(name, this.now()))) throw new NotFoundError(`no cluster named "${name}"; see kube-relay cluster list`);
  }

  revocationsSince(since: Date) {
    return this.store.revocationsSince(since);
  }

  // Relay connections, for cluster status: written by the hub replica that holds them, read by any.

  saveRelayConnections(connections: readonly RelayConnection[]): Promise<void> {
    return this.store.saveRelayConnections(connections);
  }

  touchRelayConnections(ids: readonly string[], at: Date): Promise<void> {
    return this.store.touchRelayConnections(ids, at);
  }

  purgeRelayConnections(before: Date): Promise<number> {
    return this.store.purgeRelayConnections(before);
  }

  liveRelayConnections(cluster: string, now: Date = this.now()): Promise<RelayConnection[]> {
    return this.store.liveRelayConnections(cluster, now);
  }

  relayConnectionsEndedAt(cluster: string): Promise<Date | undefined> {
    return this.store.relayConnectionsEndedAt(cluster);
  }
}

function requireLabel(what: string, value: string): void {
  if (!isDnsLabel(value)) {
    throw new InvalidInputError(
      `${what} "${value.length > 63 ? `${value.slice(0, 63)}…` : value}" is not a DNS label: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
}
