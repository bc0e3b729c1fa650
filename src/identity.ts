/**
 * The agent principal and the token's shape, shared by the issuer that mints
 * tokens and the relay and hub that verify them (DESIGN §2).
 */
import type { Policy } from './policy/policy.js';

/** An RFC 1123 DNS label, the charset of agent, org, team and cluster names. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const AGENT_USER = /^agent:([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$/;
const TEAM_GROUP = /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$/;

export const TOKEN_LIFETIME_SECONDS = 60;
/** A relay or hub that meets an unknown `kid` refreshes its JWKS at most this often (DESIGN §2). */
export const JWKS_REFRESH_COOLDOWN_MS = 30_000;
/** Tolerated clock difference between issuer, relay and hub. */
export const CLOCK_SKEW_SECONDS = 5;
/** Largest compact JWT accepted, before any parsing. */
export const MAX_TOKEN_BYTES = 8 * 1024;
export const MAX_GROUPS = 32;
export const TOKEN_ALGORITHMS = ['ES256'] as const;

export interface AgentIdentity {
  /** Kubernetes user name, `agent:<name>`. */
  user: string;
  /** Kubernetes groups, `<org>/<team>`. */
  groups: string[];
  /** The token's `jti`. */
  tokenId: string;
  /** The token's `iat`, seconds since the epoch. */
  issuedAt: number;
  /** The token's `exp`, seconds since the epoch. */
  expiresAt: number;
  /** The brakes the token carries (its `krl_policy` claim, DESIGN §13); none without the claim. */
  policy?: Policy;
}

export function isDnsLabel(value: string): boolean {
  return DNS_LABEL.test(value);
}

export function agentUser(name: string): string {
  return `agent:${name}`;
}

export function isAgentUser(value: string): boolean {
  return AGENT_USER.test(value);
}

export function teamGroup(org: string, team: string): string {
  return `${org}/${team}`;
}

export function isTeamGroup(value: string): boolean {
  return TEAM_GROUP.test(value);
}
