/**
 * Minting the 60-second agent token (DESIGN §2): exactly the claims relays
 * trust, nothing else.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { agentUser, teamGroup, TOKEN_LIFETIME_SECONDS } from '../identity.js';
import { SIGNING_ALGORITHM, type SigningKeys } from './signing-keys.js';
import type { Agent } from './store.js';

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
): Promise<MintedToken> {
  const { kid, key } = await keys.current();
  const issuedAt = Math.floor(now.getTime() / 1000);
  const expiresAt = issuedAt + TOKEN_LIFETIME_SECONDS;
  const tokenId = randomUUID();
  const token = await new SignJWT({ groups: agent.teams.map((team) => teamGroup(agent.org, team)) })
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
