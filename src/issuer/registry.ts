/**
 * Agents and clusters: creation with a key shown once, lookup by key, and
 * revocation. Input is validated here, so the CLI and any future API share
 * one set of rules and sentences.
 */
import { isDnsLabel } from '../identity.js';
import { generateKey, hashKey, hashesEqual, keyKindOf } from './secrets.js';
import { type Agent, AlreadyExistsError, type Cluster, type IssuerStore } from './store.js';

export class InvalidInputError extends Error {}

export class Registry {
  constructor(
    private readonly store: IssuerStore,
    private readonly pepper: Buffer,
    private readonly now: () => Date = () => new Date(),
  ) {}

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
    if (agent?.revokedAt) throw new InvalidInputError(`agent "${name}" was revoked at ${agent.revokedAt.toISOString()}; a revoked agent gets no new key`);
    throw new InvalidInputError(`no agent named "${name}"; see kube-relay agent list`);
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
    if (cluster?.revokedAt) throw new InvalidInputError(`cluster "${name}" was revoked at ${cluster.revokedAt.toISOString()}; a revoked cluster gets no new key`);
    throw new InvalidInputError(`no cluster named "${name}"; see kube-relay cluster list`);
  }

  /**
   * Names are never reused: tokens, audit records and RBAC bindings name an
   * agent or cluster, and a new one under an old name would inherit them.
   */
  private unlessReserved(kind: 'agent' | 'cluster', existing: { revokedAt?: Date } | undefined, name: string): void {
    if (!existing) return;
    if (existing.revokedAt) {
      throw new AlreadyExistsError(
        `${kind} "${name}" was revoked at ${existing.revokedAt.toISOString()}; names of revoked ${kind}s stay reserved, because audit records and RBAC bindings name them: choose another name`,
      );
    }
    throw new AlreadyExistsError(`${kind} "${name}" already exists${kind === 'agent' ? '; kube-relay agent rotate-key gives it a new key' : '; kube-relay cluster rotate-key gives it a new key'}`);
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

  listAgents(): Promise<Agent[]> {
    return this.store.listAgents();
  }

  listClusters(): Promise<Cluster[]> {
    return this.store.listClusters();
  }

  async revokeAgent(name: string): Promise<void> {
    if (!(await this.store.revokeAgent(name, this.now()))) throw new InvalidInputError(`no agent named "${name}"; see kube-relay agent list`);
  }

  async revokeCluster(name: string): Promise<void> {
    if (!(await this.store.revokeCluster(name, this.now()))) throw new InvalidInputError(`no cluster named "${name}"; see kube-relay cluster list`);
  }

  revocationsSince(since: Date) {
    return this.store.revocationsSince(since);
  }
}

function requireLabel(what: string, value: string): void {
  if (!isDnsLabel(value)) {
    throw new InvalidInputError(
      `${what} "${value}" is not a DNS label: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
}
