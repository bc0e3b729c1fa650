/** What the issuer keeps (DESIGN §9), whichever engine holds it. */
import type { GrantStore } from './grant-sql.js';

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

export class AlreadyExistsError extends Error {}

export interface IssuerStore extends GrantStore {
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
  /** Agents revoked at or after `since`, as Kubernetes user names. */
  revocationsSince(since: Date): Promise<Revocation[]>;
  /** A store-wide setting (the pepper's check value), or undefined. */
  setting(name: string): Promise<string | undefined>;
  /** Sets a setting unless it exists; returns the value now stored (the first writer wins). */
  initSetting(name: string, value: string): Promise<string>;
  close(): Promise<void>;
}
