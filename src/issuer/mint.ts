/**
 * Minting the 60-second agent token (DESIGN §2): exactly the claims relays
 * trust, nothing else: the agent, its groups, and its policy (DESIGN §13).
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { agentUser, teamGroup, TOKEN_LIFETIME_SECONDS } from '../identity.js';
import { isEmptyPolicy, type Policy, POLICY_CLAIM, policyClaim } from '../policy/policy.js';
import { SIGNING_ALGORITHM, type SigningKeys } from './signing-keys.js';
import type { Agent, Cluster } from './store.js';

export interface MintedToken {
  token: string;
  expiresAt: Date;
  tokenId: string;
}

export async function mintAgentToken(
  keys: SigningKeys,
  issuer: string,
  agent: Agent,
  cluster: string,
  now: Date = new Date(),
  /** The agent's effective policy (DESIGN §13), carried as `krl_policy` when it sets any brake. */
  policy: Policy = {},
): Promise<MintedToken> {
  const { kid, key } = await keys.current();
  const issuedAt = Math.floor(now.getTime() / 1000);
  const expiresAt = issuedAt + TOKEN_LIFETIME_SECONDS;
  const tokenId = randomUUID();
  const claims = { groups: agent.teams.map((team) => teamGroup(agent.org, team)), ...(isEmptyPolicy(policy) ? {} : { [POLICY_CLAIM]: policyClaim(policy) }) };
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid, typ: 'JWT' })
    .setIssuer(issuer)
    .setSubject(agentUser(agent.name))
    .setAudience(cluster)
    .setIssuedAt(issuedAt)
    .setNotBefore(issuedAt)
    .setExpirationTime(expiresAt)
    .setJti(tokenId)
    .sign(key);
  return { token, expiresAt: new Date(expiresAt * 1000), tokenId };
}

export interface TokenRefusal {
  status: 403 | 404;
  code: 'agent-revoked' | 'unknown-cluster' | 'cluster-of-another-org' | 'cluster-revoked';
  message: string;
}

/**
 * Whether `agent` may have a token for `cluster` (`POST /v1/token` and the admin API's
 * `POST /v1/agents/{name}/tokens` apply this one rule): a live agent, a live cluster, one org.
 */
export function tokenRefusal(agent: Agent, clusterName: string, cluster: Cluster | undefined): TokenRefusal | undefined {
  if (agent.revokedAt) return { status: 403, code: 'agent-revoked', message: `agent "${agent.name}" has been revoked` };
  if (!cluster) return { status: 404, code: 'unknown-cluster', message: `no cluster named "${clusterName}"` };
  if (cluster.org !== agent.org) return { status: 403, code: 'cluster-of-another-org', message: `cluster "${clusterName}" does not belong to org "${agent.org}"` };
  if (cluster.revokedAt) return { status: 403, code: 'cluster-revoked', message: `cluster "${clusterName}" has been revoked` };
  return undefined;
}
