/** What the issuer keeps (DESIGN §9), whichever engine holds it. */

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

export interface IssuerStore {
  /** Where the store is, for messages (a file, or a URL without its password). */
  readonly location: string;
  createAgent(agent: { name: string; org: string; teams: string[] }, apiKeyHash: string): Promise<void>;
  findAgentByKeyHash(apiKeyHash: string): Promise<(Agent & { apiKeyHash: string }) | undefined>;
  findAgent(name: string): Promise<Agent | undefined>;
  listAgents(): Promise<Agent[]>;
  /** Replaces an active agent's API key hash; false when there is no such active agent. */
  replaceAgentKey(name: string, apiKeyHash: string): Promise<boolean>;
  /** Returns false when no such agent exists. Revoking twice keeps the first time. */
  revokeAgent(name: string, at: Date): Promise<boolean>;
  createCluster(cluster: { name: string; org: string }, connectorKeyHash: string): Promise<void>;
  findCluster(name: string): Promise<Cluster | undefined>;
  findClusterByKeyHash(connectorKeyHash: string): Promise<(Cluster & { connectorKeyHash: string }) | undefined>;
  listClusters(): Promise<Cluster[]>;
  /** Replaces an active cluster's connector key hash; false when there is no such active cluster. */
  replaceClusterKey(name: string, connectorKeyHash: string): Promise<boolean>;
  revokeCluster(name: string, at: Date): Promise<boolean>;
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
