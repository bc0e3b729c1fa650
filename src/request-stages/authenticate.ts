/**
 * Stage 1, authenticate (DESIGN §3.2): exactly one bearer token, from
 * `Authorization` or, for WebSocket clients that cannot set headers, from the
 * `base64url.bearer.authorization.k8s.io.<token>` subprotocol (the same
 * convention kube-apiserver accepts). Two different credentials, a token in
 * the query string, or none at all: refused with 401. Fail closed.
 */
import type { AgentIdentity } from '../identity.js';
import { RelayRefusal } from './errors.js';
import type { RevocationList } from './revocations.js';
import type { TokenVerifier } from './token-verifier.js';

export const BEARER_SUBPROTOCOL_PREFIX = 'base64url.bearer.authorization.k8s.io.';
/** Query parameters that carry tokens in some clients; never accepted (they end up in logs). */
export const TOKEN_QUERY_PARAMETERS = ['access_token', 'token', 'id_token'];

export function headerValues(rawHeaders: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === name) values.push(rawHeaders[i + 1]!);
  }
  return values;
}

/** Comma-separated list header values, trimmed, across repeated header lines. */
export function listHeaderValues(rawHeaders: readonly string[], name: string): string[] {
  return headerValues(rawHeaders, name)
    .flatMap((value) => value.split(','))
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** The client's bearer token, or a refusal saying why there is no single one. */
export function extractBearerToken(rawHeaders: readonly string[], target: string): string {
  const queryStart = target.indexOf('?');
  if (queryStart !== -1) {
    const query = new URLSearchParams(target.slice(queryStart + 1));
    if (TOKEN_QUERY_PARAMETERS.some((name) => query.has(name))) {
      throw new RelayRefusal('token-in-query', 'tokens are not accepted in the query string; send an Authorization header');
    }
  }
  const authorization = headerValues(rawHeaders, 'authorization');
  if (authorization.length > 1) throw new RelayRefusal('duplicate-credentials', 'send exactly one Authorization header');
  let fromHeader: string | undefined;
  if (authorization.length === 1) {
    const match = /^Bearer +([^\s]+) *$/i.exec(authorization[0]!);
    if (!match) throw new RelayRefusal('malformed-token', 'Authorization must be "Bearer <token>"');
    fromHeader = match[1]!;
  }
  const subprotocolTokens = listHeaderValues(rawHeaders, 'sec-websocket-protocol')
    .filter((protocol) => protocol.startsWith(BEARER_SUBPROTOCOL_PREFIX))
    .map((protocol) => Buffer.from(protocol.slice(BEARER_SUBPROTOCOL_PREFIX.length), 'base64url').toString('utf8'));
  if (subprotocolTokens.length > 1) throw new RelayRefusal('duplicate-credentials', 'send exactly one bearer subprotocol');
  const fromSubprotocol = subprotocolTokens[0];
  if (fromHeader !== undefined && fromSubprotocol !== undefined && fromHeader !== fromSubprotocol) {
    throw new RelayRefusal('duplicate-credentials', 'the Authorization header and the bearer subprotocol carry different tokens');
  }
  const token = fromHeader ?? fromSubprotocol;
  if (token === undefined || token === '') throw new RelayRefusal('missing-token', 'send an agent token as "Authorization: Bearer <token>"');
  return token;
}

export async function authenticate(
  rawHeaders: readonly string[],
  target: string,
  verifier: TokenVerifier,
  revocations: RevocationList,
): Promise<AgentIdentity> {
  const identity = await verifier.verify(extractBearerToken(rawHeaders, target));
  if (revocations.isRevoked(identity)) throw new RelayRefusal('agent-revoked', 'the agent has been revoked', identity);
  return identity;
}
