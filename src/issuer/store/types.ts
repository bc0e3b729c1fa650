/** What the issuer keeps (DESIGN §9), whichever engine holds it. */
import type { AuditStore } from './audit-sql.js';
import type { GrantStore } from './grant-sql.js';
import type { PolicyStore } from './policy-sql.js';
import type { ConsoleSessionStore } from './console-session-sql.js';

export interface Agent {
  name: string;
  org: string;
  teams: string[];
  createdAt: Date;
  revokedAt?: Date;
}

export interface Cluster {
  name: string;
  org: string;
  createdAt: Date;
  revokedAt?: Date;
}

/** A holder of an admin key (DESIGN §10): of one org, or of all orgs (the operator's, `org` absent). */
export interface Admin {
  name: string;
  /** The org it manages; absent for an all-orgs admin. */
  org?: string;
  createdAt: Date;
  revokedAt?: Date;
}

/** One page of a list: names after `after`, in name order, at most `limit`; only `org`'s when given. */
export interface ListFilter {
  org?: string | undefined;
  after?: string | undefined;
  limit?: number | undefined;
}

/** The public half of a signing key; the private half stays in its issuer replica's data directory. */
export interface PublicSigningKey {
  kid: string;
  /** The data directory that holds the private half (one per issuer replica). */
  signer: string;
  publicJwk: string;
  createdAt: Date;
}

export interface Revocation {
  subject: string;
  revokedAt: Date;
}

/**
 * A relay's connection to one hub replica, as the replica records it for
 * cluster status (DESIGN §10): a tunnel, or a direct-mode relay's control
 * channel. The replica refreshes `lastHeardAt` every `heartbeatMs` while it
 * holds the connection; one not refreshed for three heartbeats belongs to a
 * replica that died without closing it, and counts as ended then.
 */
export interface RelayConnection {
  /** The hub's own id for the connection (a UUID); nothing the relay sends. */
  id: string;
  cluster: string;
  /** The hub replica that holds it (--hub-replica-id). */
  hubReplica: string;
  /** The relay's mode: `tunnel`, or `direct` (known through its control channel). */
  mode: 'tunnel' | 'direct';
  /** As the relay said it in the handshake; absent when it did not. */
  relayVersion?: string | undefined;
  connectedAt: Date;
  lastHeardAt: Date;
  /** How often the holding replica refreshes lastHeardAt. */
  heartbeatMs: number;
  ready: boolean;
  /** Why the relay says it is not ready (bounded by the hub). */
  notReadyReason?: string | undefined;
  disconnectedAt?: Date | undefined;
}

/** How many heartbeats a connection may miss before it counts as gone. */
export const RELAY_CONNECTION_STALE_HEARTBEATS = 3;

export class AlreadyExistsError extends Error {}

export interface IssuerStore extends GrantStore, AuditStore, PolicyStore, ConsoleSessionStore {
  /** Where the store is, for messages (a file, or a URL without its password). */
  readonly location: string;
  createAgent(agent: { name: string; org: string; teams: string[] }, apiKeyHash: string): Promise<void>;
  findAgentByKeyHash(apiKeyHash: string): Promise<(Agent & { apiKeyHash: string }) | undefined>;
  findAgent(name: string): Promise<Agent | undefined>;
  listAgents(filter?: ListFilter): Promise<Agent[]>;
  /** Replaces an active agent's API key hash; false when there is no such active agent. */
  replaceAgentKey(name: string, apiKeyHash: string): Promise<boolean>;
  /** Returns false when no such agent exists. Revoking twice keeps the first time. */
  revokeAgent(name: string, at: Date): Promise<boolean>;
  createCluster(cluster: { name: string; org: string }, connectorKeyHash: string): Promise<void>;
  findCluster(name: string): Promise<Cluster | undefined>;
  findClusterByKeyHash(connectorKeyHash: string): Promise<(Cluster & { connectorKeyHash: string }) | undefined>;
  listClusters(filter?: ListFilter): Promise<Cluster[]>;
  /** Replaces an active cluster's connector key hash; false when there is no such active cluster. */
  replaceClusterKey(name: string, connectorKeyHash: string): Promise<boolean>;
  revokeCluster(name: string, at: Date): Promise<boolean>;
  /** `org` undefined: an all-orgs admin. */
  createAdmin(admin: { name: string; org?: string | undefined }, keyHash: string): Promise<void>;
  findAdmin(name: string): Promise<Admin | undefined>;
  findAdminByKeyHash(keyHash: string): Promise<(Admin & { keyHash: string }) | undefined>;
  /** With `filter.org`, only that org's admins (never the all-orgs ones). */
  listAdmins(filter?: ListFilter): Promise<Admin[]>;
  /** Replaces an active admin's key hash; false when there is no such active admin. */
  replaceAdminKey(name: string, keyHash: string): Promise<boolean>;
  /** Returns false when no such admin exists. Revoking twice keeps the first time. */
  revokeAdmin(name: string, at: Date): Promise<boolean>;
  /** Publishes a signer's new key and deletes all but its newest `keep`, atomically. Returns the key's stored time (after its signer's newest). */
  publishSigningKey(key: PublicSigningKey, keep: number): Promise<Date>;
  /** Keys of the signers seen at or after `since`, newest first. */
  publicSigningKeys(signersSeenSince: Date): Promise<PublicSigningKey[]>;
  /** A signer (an issuer replica) says it is alive. */
  touchSigner(signer: string, at: Date): Promise<void>;
  /** Agents revoked, and agents' tokens cut (policy set --now), at or after `since`, as Kubernetes user names, oldest first. */
  revocationsSince(since: Date): Promise<Revocation[]>;
  /** Writes each connection's whole state, inserted or replacing the row of its id, in one transaction. */
  saveRelayConnections(connections: readonly RelayConnection[]): Promise<void>;
  /** Sets `lastHeardAt` to `at` on those of `ids` still open, in one transaction whatever their number. */
  touchRelayConnections(ids: readonly string[], at: Date): Promise<void>;
  /** The open connections of `cluster` heard from within their last three heartbeats before `now`, oldest first. */
  liveRelayConnections(cluster: string, now: Date): Promise<RelayConnection[]>;
  /** When the last connection of `cluster` ended (closed, or last heard of); undefined when it never had one. */
  relayConnectionsEndedAt(cluster: string): Promise<Date | undefined>;
  /** Deletes connections that ended before `before`, except each cluster's latest; returns how many went. */
  purgeRelayConnections(before: Date): Promise<number>;
  /** A store-wide setting (the pepper's check value), or undefined. */
  setting(name: string): Promise<string | undefined>;
  /** Sets a setting unless it exists; returns the value now stored (the first writer wins). */
  initSetting(name: string, value: string): Promise<string>;
  close(): Promise<void>;
}
