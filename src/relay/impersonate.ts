/**
 * Stage 3, impersonate (DESIGN §3.3): onto the stripped header set, add the
 * relay's own credential and the agent's identity, then check once more,
 * just before sending, that exactly one identity is present (Pinniped's
 * impersonator asserts the same). Extra keys carry the token id and request
 * id so the cluster's audit log joins ours.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { AgentIdentity } from '../identity.js';

export const EXTRA_TOKEN_ID = 'kube-relay.dev/token-id';
export const EXTRA_REQUEST_ID = 'kube-relay.dev/request-id';

/** `Impersonate-Extra-<key>`: the key is percent-encoded, as kube-apiserver unescapes it. */
export function extraHeaderName(key: string): string {
  return `impersonate-extra-${encodeURIComponent(key).toLowerCase()}`;
}

export class IdentityInvariantViolation extends Error {}

const TOKEN_ID_HEADER = extraHeaderName(EXTRA_TOKEN_ID);
const REQUEST_ID_HEADER = extraHeaderName(EXTRA_REQUEST_ID);
const IDENTITY_HEADERS = new Set(['impersonate-user', 'impersonate-group', TOKEN_ID_HEADER, REQUEST_ID_HEADER]);

/** Adds the relay's credential and the agent's identity to `stripped` (a header set of this request's own) and returns it. */
export function addImpersonation(
  stripped: OutgoingHttpHeaders,
  identity: AgentIdentity,
  relayAuthorization: string | undefined,
  requestId: string,
): OutgoingHttpHeaders {
  const headers = stripped;
  if (relayAuthorization !== undefined) headers.authorization = relayAuthorization;
  headers['impersonate-user'] = identity.user;
  if (identity.groups.length > 0) headers['impersonate-group'] = [...identity.groups];
  headers[TOKEN_ID_HEADER] = identity.tokenId;
  headers[REQUEST_ID_HEADER] = requestId;
  assertSingleIdentity(headers, identity, relayAuthorization);
  return headers;
}

/** Throws unless the headers carry exactly the relay's credential and the agent's identity. */
export function assertSingleIdentity(headers: OutgoingHttpHeaders, identity: AgentIdentity, relayAuthorization: string | undefined): void {
  for (const name in headers) {
    const value = headers[name];
    const lower = name.toLowerCase();
    if (lower !== name) throw new IdentityInvariantViolation(`header ${name} is not lower-case`);
    if ((lower.startsWith('impersonate-') && !IDENTITY_HEADERS.has(lower)) || lower.startsWith('x-remote-')) {
      throw new IdentityInvariantViolation(`unexpected identity header ${lower}`);
    }
    if (lower === 'authorization' && (Array.isArray(value) || value !== relayAuthorization)) {
      throw new IdentityInvariantViolation('authorization is not the relay credential');
    }
  }
  if (relayAuthorization === undefined && headers.authorization !== undefined) throw new IdentityInvariantViolation('authorization present without a relay credential');
  if (headers['impersonate-user'] !== identity.user) throw new IdentityInvariantViolation('impersonate-user is not the agent');
  const groups = headers['impersonate-group'];
  const groupList = groups === undefined ? [] : Array.isArray(groups) ? groups : [String(groups)];
  if (groupList.length !== identity.groups.length || groupList.some((g, i) => g !== identity.groups[i])) {
    throw new IdentityInvariantViolation('impersonate-group does not match the token');
  }
}
