/**
 * The attack corpus (issue 7): requests an attacker with a valid agent token,
 * or with none, would try. Each case names the rule of DESIGN.md it guards
 * and what must happen: the status the client gets, and either nothing at
 * all upstream or exactly the token's identity. `corpus.test.ts` runs every
 * case against the relay in both modes.
 */
import { createHmac } from 'node:crypto';
import type { RecordedRequest } from '../fixtures/fake-apiserver.js';
import { expect } from 'vitest';

export type Mode = 'direct' | 'tunnel';

export interface AttackContext {
  mode: Mode;
  /** A valid token of agent:deployer (groups acme/platform, acme/sre) for cluster prod-eu. */
  token: string;
  /** A token signed with the issuer's current key: valid claims unless overridden (undefined removes one). */
  sign(claims?: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  /** Any header and payload, signed with the issuer's current key as they are (jose would refuse some headers). */
  signRaw(header: Record<string, unknown>, payload: Record<string, unknown>): Promise<string>;
  /** The issuer's current public key, as a JWK and as SPKI PEM (for algorithm confusion). */
  publicJwk: Record<string, unknown>;
  publicPem: string;
  kid: string;
  /** Valid claims signed by a key the issuer never published; `embedJwk` puts that key's public JWK in the header. */
  attackerToken(header?: Record<string, unknown> & { embedJwk?: boolean }): Promise<string>;
  /** Tokens the issuer minted for other clusters: prod-us (same org) and globex-prod (another org). */
  tokenForOtherCluster: string;
  tokenForOtherOrg: string;
  /** A token of agent:revokee, minted before the agent was revoked. */
  revokedAgentToken: string;
  /** host:port the client connects to, and the path of the cluster's URL ('' in direct mode, /clusters/prod-eu in tunnel mode). */
  host: string;
  base: string;
}

export interface AttackRequest {
  /** A GET of this path and query, relative to the cluster's URL (the runner adds /clusters/prod-eu in tunnel mode); for `raw`, the target the API server must see. */
  target: string;
  /** Extra header lines, exactly as written. The runner adds Host, the bearer token (unless `authorization` says otherwise) and Connection: close. */
  headers?: [string, string][];
  /** Replaces the Authorization line; null sends none. */
  authorization?: string | null;
  /** The whole request, written as it is (Host, token and framing included). */
  raw?: string;
}

export interface Expectation {
  status: number | Record<Mode, number>;
  /** 'nothing': no request reaches the API server. 'agent': exactly one, carrying exactly the token's identity. */
  upstream: 'nothing' | 'agent';
  /** For 'agent': the groups forwarded (default: acme/platform and acme/sre). */
  groups?: string[];
  /** Further checks of what arrived upstream. */
  check?: (seen: RecordedRequest) => void;
  /** The relay's audit record of the request must satisfy this (the source address, for one). */
  audit?: (record: Record<string, unknown>) => void;
}

export interface AttackCase {
  name: string;
  /** The rule guarded, as DESIGN.md words it. */
  rule: string;
  /** Only in these modes (default both): the hub's routing exists only in tunnel mode. */
  modes?: Mode[];
  request(ctx: AttackContext): AttackRequest | Promise<AttackRequest>;
  expect: Expectation;
}

const PODS = '/api/v1/namespaces/default/pods';
const SECRETS = '/api/v1/namespaces/default/secrets';

const RULE = {
  algorithms: '§2 verification: algorithm allow-list (ES256)',
  kid: '§2 verification: header kid names a key of the issuer JWKS',
  time: '§2 verification: exp/nbf with at most 5 s clock skew',
  lifetime: '§2 verification: exp - iat over 60 s + skew is refused even if validly signed',
  issuer: '§2 verification: iss must match',
  audience: '§2 verification: aud must be this cluster',
  tenants: '§2 tenants: a token is only good for the cluster in its aud',
  sizes: '§2 verification: token ≤ 8 KiB, groups ≤ 32, each <org>/<team>',
  principal: '§2 principal: sub is agent:<name>',
  claims: '§2 JWT: nothing but the listed claims is trusted',
  revocation: "§2 revocation: a revoked agent's tokens are refused",
  bearer: '§3.2 authenticate: exactly one bearer token, Authorization or the WebSocket subprotocol',
  query: '§3.2 authenticate: tokens in the query string are refused',
  impersonate: '§3.3 every Impersonate-* from the client, in any letter case, is refused or dropped',
  strip: '§3.3 hop-by-hop, Connection-named, Proxy-*, X-Remote-*, Forwarded/X-Forwarded-* are dropped',
  audit: '§5 audit: sourceIp is the connection, never a header',
  framing: '§3.4 one request is one request: ambiguous framing is refused, never forwarded',
  headerLimits: '§3 header limits: over-long and malformed headers are refused',
  upgrades: '§3.5 upgrades: SPDY/3.1 and websocket only',
  targets: '§3.4 forward paths unchanged: origin-form only, refused rather than rewritten',
} as const;

const bearer = (token: string) => `Bearer ${token}`;
const nowSeconds = () => Math.floor(Date.now() / 1000);
const refused = (status: number | Record<Mode, number>): Expectation => ({ status, upstream: 'nothing' });
const forwarded = (extra: Omit<Expectation, 'status' | 'upstream'> = {}): Expectation => ({ status: 200, upstream: 'agent', ...extra });
const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
function hmacJwt(header: object, payload: object, secret: string): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}
/** A valid token's header swapped for another: the signature no longer matches, or the algorithm is not allowed. */
function withHeader(token: string, header: object): string {
  const [, payload, signature] = token.split('.');
  return `${b64url(header)}.${payload}.${signature}`;
}
function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}
/** 2 000 × ~10 bytes: inside the size limit, past Node's default count of 2 000 headers it would silently drop. */
const manyHeaders = (count: number): [string, string][] => Array.from({ length: count }, (_, i) => [`x-h${i}`, 'a']);

export const ATTACKS: AttackCase[] = [
  // ---- Tokens -------------------------------------------------------------------------------
  { rule: RULE.algorithms, name: 'alg "none", no signature', request: (c) => ({ target: PODS, authorization: bearer(`${b64url({ alg: 'none', kid: c.kid })}.${b64url(claimsOf(c.token))}.`) }), expect: refused(401) },
  { rule: RULE.algorithms, name: 'alg "none" keeping a valid signature', request: (c) => ({ target: PODS, authorization: bearer(withHeader(c.token, { alg: 'none', kid: c.kid })) }), expect: refused(401) },
  { rule: RULE.algorithms, name: 'alg "NONE" in capitals', request: (c) => ({ target: PODS, authorization: bearer(withHeader(c.token, { alg: 'NONE', kid: c.kid })) }), expect: refused(401) },
  { rule: RULE.algorithms, name: 'HS256 signed with the public JWK as the HMAC secret (algorithm confusion)', request: (c) => ({ target: PODS, authorization: bearer(hmacJwt({ alg: 'HS256', kid: c.kid, typ: 'JWT' }, claimsOf(c.token), JSON.stringify(c.publicJwk))) }), expect: refused(401) },
  { rule: RULE.algorithms, name: 'HS256 signed with the public key PEM as the HMAC secret', request: (c) => ({ target: PODS, authorization: bearer(hmacJwt({ alg: 'HS256', kid: c.kid, typ: 'JWT' }, claimsOf(c.token), c.publicPem)) }), expect: refused(401) },
  { rule: RULE.algorithms, name: 'RS256 header on an ES256 signature', request: (c) => ({ target: PODS, authorization: bearer(withHeader(c.token, { alg: 'RS256', kid: c.kid })) }), expect: refused(401) },
  { rule: RULE.algorithms, name: 'ES384 header on an ES256 signature', request: (c) => ({ target: PODS, authorization: bearer(withHeader(c.token, { alg: 'ES384', kid: c.kid })) }), expect: refused(401) },
  { rule: RULE.algorithms, name: 'a "crit" header parameter the verifier does not understand', request: async (c) => ({ target: PODS, authorization: bearer(await c.signRaw({ alg: 'ES256', kid: c.kid, crit: ['exp-policy'], 'exp-policy': 'lenient' }, claimsOf(await c.sign()))) }), expect: refused(401) },
  { rule: RULE.kid, name: 'kid of no published key', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({}, { kid: 'retired-key-1' })) }), expect: refused(401) },
  { rule: RULE.kid, name: 'no kid at all', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({}, { kid: undefined })) }), expect: refused(401) },
  { rule: RULE.kid, name: 'kid with path characters', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({}, { kid: '../../tls/ca.key' })) }), expect: refused(401) },
  { rule: RULE.kid, name: "the issuer's kid on a signature by another key", request: async (c) => ({ target: PODS, authorization: bearer(await c.attackerToken({ kid: c.kid })) }), expect: refused(401) },
  { rule: RULE.kid, name: 'the signing key embedded in the header (jwk), unknown kid', request: async (c) => ({ target: PODS, authorization: bearer(await c.attackerToken({ kid: 'attacker', embedJwk: true })) }), expect: refused(401) },
  { rule: RULE.kid, name: 'a jku header pointing at a key set of the attacker', request: async (c) => ({ target: PODS, authorization: bearer(await c.attackerToken({ kid: 'attacker', jku: 'https://127.0.0.1:1/jwks.json' })) }), expect: refused(401) },
  { rule: RULE.time, name: 'expired 1 s beyond the allowed skew', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ iat: nowSeconds() - 66, nbf: nowSeconds() - 66, exp: nowSeconds() - 6 })) }), expect: refused(401) },
  { rule: RULE.time, name: 'expired a day ago', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ iat: nowSeconds() - 86_460, nbf: nowSeconds() - 86_460, exp: nowSeconds() - 86_400 })) }), expect: refused(401) },
  { rule: RULE.time, name: 'expired within the skew (positive control)', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ iat: nowSeconds() - 62, nbf: nowSeconds() - 62, exp: nowSeconds() - 2 })) }), expect: forwarded() },
  { rule: RULE.time, name: 'nbf 30 s in the future', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ nbf: nowSeconds() + 30, exp: nowSeconds() + 60 })) }), expect: refused(401) },
  { rule: RULE.time, name: 'iat 30 s in the future', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ iat: nowSeconds() + 30, exp: nowSeconds() + 60 })) }), expect: refused(401) },
  { rule: RULE.time, name: 'exp as a string', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ exp: String(nowSeconds() + 60) })) }), expect: refused(401) },
  { rule: RULE.lifetime, name: 'lifetime of an hour', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ exp: nowSeconds() + 3_600 })) }), expect: refused(401) },
  { rule: RULE.lifetime, name: 'lifetime of 66 s (60 + skew + 1)', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ exp: nowSeconds() + 66 })) }), expect: refused(401) },
  { rule: RULE.lifetime, name: 'no exp at all', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ exp: undefined })) }), expect: refused(401) },
  { rule: RULE.issuer, name: 'another issuer', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ iss: 'https://issuer.attacker.example' })) }), expect: refused(401) },
  { rule: RULE.issuer, name: 'the issuer URL with a trailing slash', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ iss: `${String(claimsOf(c.token).iss)}/` })) }), expect: refused(401) },
  { rule: RULE.audience, name: 'aud of another cluster, validly signed', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ aud: 'prod-us' })) }), expect: refused(401) },
  { rule: RULE.audience, name: 'aud as an array holding this cluster and another', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ aud: ['prod-eu', 'prod-us'] })) }), expect: refused(401) },
  { rule: RULE.audience, name: 'aud as an array of this cluster alone', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ aud: ['prod-eu'] })) }), expect: refused(401) },
  { rule: RULE.audience, name: 'aud missing', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ aud: undefined })) }), expect: refused(401) },
  { rule: RULE.tenants, name: 'a token the issuer minted for another cluster of the same org', request: (c) => ({ target: PODS, authorization: bearer(c.tokenForOtherCluster) }), expect: refused(401) },
  { rule: RULE.tenants, name: "a token the issuer minted for another org's cluster", request: (c) => ({ target: PODS, authorization: bearer(c.tokenForOtherOrg) }), expect: refused(401) },
  { rule: RULE.tenants, name: "this cluster's token sent to another cluster's URL", modes: ['tunnel'], request: (c) => ({ raw: `GET /clusters/prod-us${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(401) },
  { rule: RULE.sizes, name: 'a validly signed token over 8 KiB', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ note: 'x'.repeat(9 * 1024) })) }), expect: refused(401) },
  { rule: RULE.sizes, name: '33 groups', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ groups: Array.from({ length: 33 }, (_, i) => `acme/team-${i}`) })) }), expect: refused(401) },
  { rule: RULE.sizes, name: '32 groups (the limit, positive control)', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ groups: Array.from({ length: 32 }, (_, i) => `acme/team-${i}`) })) }), expect: forwarded({ groups: Array.from({ length: 32 }, (_, i) => `acme/team-${i}`) }) },
  { rule: RULE.sizes, name: 'a group that is not <org>/<team> (system:masters)', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ groups: ['acme/sre', 'system:masters'] })) }), expect: refused(401) },
  { rule: RULE.sizes, name: 'a group whose team is longer than a DNS label (64 characters)', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ groups: [`acme/${'t'.repeat(64)}`] })) }), expect: refused(401) },
  { rule: RULE.sizes, name: 'groups of two orgs (an agent belongs to one)', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ groups: ['acme/sre', 'globex/admins'] })) }), expect: refused(401) },
  { rule: RULE.sizes, name: 'a group with a third segment', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ groups: ['acme/sre/admins'] })) }), expect: refused(401) },
  { rule: RULE.sizes, name: 'groups as a string instead of an array', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ groups: 'acme/sre' })) }), expect: refused(401) },
  { rule: RULE.principal, name: 'sub system:admin', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ sub: 'system:admin' })) }), expect: refused(401) },
  { rule: RULE.principal, name: 'sub a ServiceAccount', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ sub: 'system:serviceaccount:kube-system:default' })) }), expect: refused(401) },
  { rule: RULE.principal, name: 'sub agent: with an upper-case name', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ sub: 'agent:Deployer' })) }), expect: refused(401) },
  { rule: RULE.principal, name: 'no sub', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ sub: undefined })) }), expect: refused(401) },
  { rule: RULE.claims, name: 'extra claims (impersonate, extra, uid) are ignored, never forwarded', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ impersonate: 'system:admin', extra: { scopes: ['*'] }, uid: '0', act: { sub: 'system:admin' } })) }), expect: forwarded() },
  { rule: RULE.claims, name: 'no jti', request: async (c) => ({ target: PODS, authorization: bearer(await c.sign({ jti: undefined })) }), expect: refused(401) },
  { rule: RULE.revocation, name: "a revoked agent's token minted before the revocation (revoking is how an agent is removed)", request: (c) => ({ target: PODS, authorization: bearer(c.revokedAgentToken) }), expect: refused(401) },

  // ---- Credentials --------------------------------------------------------------------------
  { rule: RULE.bearer, name: 'no credential at all', request: () => ({ target: PODS, authorization: null }), expect: refused(401) },
  { rule: RULE.bearer, name: 'Basic credentials', request: () => ({ target: PODS, authorization: `Basic ${Buffer.from('admin:admin').toString('base64')}` }), expect: refused(401) },
  { rule: RULE.bearer, name: 'an empty bearer token', request: () => ({ target: PODS, authorization: 'Bearer ' }), expect: refused(401) },
  { rule: RULE.bearer, name: 'two tokens in one Authorization header', request: (c) => ({ target: PODS, authorization: `Bearer ${c.token} ${c.tokenForOtherCluster}` }), expect: refused(401) },
  { rule: RULE.bearer, name: 'two Authorization headers with the same token', request: (c) => ({ target: PODS, headers: [['Authorization', bearer(c.token)]] }), expect: refused(401) },
  { rule: RULE.bearer, name: 'two Authorization headers in different letter case', request: (c) => ({ target: PODS, headers: [['AUTHORIZATION', bearer(c.revokedAgentToken)]] }), expect: refused(401) },
  { rule: RULE.bearer, name: 'Authorization plus a bearer subprotocol with another token', request: (c) => ({ target: PODS, headers: [['Sec-WebSocket-Protocol', `base64url.bearer.authorization.k8s.io.${b64url(c.tokenForOtherCluster)}, v5.channel.k8s.io`]] }), expect: refused(401) },
  { rule: RULE.bearer, name: 'a WebSocket exec upgrade with Authorization and a bearer subprotocol carrying another token', request: (c) => ({ target: '/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true', headers: [['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Version', '13'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Protocol', `v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.${b64url(c.tokenForOtherCluster)}`]] }), expect: refused(401) },
  { rule: RULE.bearer, name: 'two bearer subprotocols', request: (c) => ({ target: PODS, authorization: null, headers: [['Sec-WebSocket-Protocol', `base64url.bearer.authorization.k8s.io.${b64url(c.token)}, base64url.bearer.authorization.k8s.io.${b64url(c.revokedAgentToken)}`]] }), expect: refused(401) },
  { rule: RULE.bearer, name: 'the bearer subprotocol alone is accepted and never forwarded', request: (c) => ({ target: PODS, authorization: null, headers: [['Sec-WebSocket-Protocol', `base64url.bearer.authorization.k8s.io.${b64url(c.token)}, v5.channel.k8s.io`]] }), expect: forwarded({ check: (seen) => expectNoHeaderValueContaining(seen, 'base64url.bearer') }) },
  { rule: RULE.query, name: 'a token in ?access_token=', request: (c) => ({ target: `${PODS}?access_token=${c.token}`, authorization: null }), expect: refused(401) },
  { rule: RULE.query, name: 'a token in ?token= beside a valid Authorization', request: (c) => ({ target: `${PODS}?token=${c.token}` }), expect: refused(401) },

  // ---- Identity headers ---------------------------------------------------------------------
  ...['Impersonate-User', 'impersonate-user', 'IMPERSONATE-USER', 'iMpErSoNaTe-UsEr'].map(
    (name): AttackCase => ({ rule: RULE.impersonate, name: `${name}: system:admin`, request: () => ({ target: SECRETS, headers: [[name, 'system:admin']] }), expect: refused(403) }),
  ),
  ...['Impersonate-Group', 'IMPERSONATE-GROUP', 'Impersonate-Uid', 'Impersonate-Extra-scopes'].map(
    (name): AttackCase => ({ rule: RULE.impersonate, name: `${name} (kubectl --as-group, --as-uid, extras)`, request: () => ({ target: SECRETS, headers: [[name, 'system:masters']] }), expect: refused(403) }),
  ),
  { rule: RULE.impersonate, name: "Impersonate-Extra- naming the relay's own token-id key", request: () => ({ target: SECRETS, headers: [['Impersonate-Extra-kube-relay.dev%2ftoken-id', 'forged']] }), expect: refused(403) },
  { rule: RULE.impersonate, name: 'Impersonate-Extra- with a percent-encoded name', request: () => ({ target: SECRETS, headers: [['Impersonate-Extra-%73cop%65s', 'admin']] }), expect: refused(403) },
  { rule: RULE.impersonate, name: 'Impersonate-User hidden behind Connection: Impersonate-User', request: () => ({ target: SECRETS, headers: [['Connection', 'Impersonate-User'], ['Impersonate-User', 'system:admin']] }), expect: refused(403) },
  { rule: RULE.impersonate, name: 'Impersonate_User with an underscore (proxies that map _ to - would make it one)', request: () => ({ target: SECRETS, headers: [['Impersonate_User', 'system:admin']] }), expect: refused(403) },
  { rule: RULE.strip, name: 'Connection: Authorization, Impersonate-User names nothing harmful', request: () => ({ target: PODS, headers: [['Connection', 'Authorization, Impersonate-User, Impersonate-Group']] }), expect: forwarded() },
  { rule: RULE.strip, name: 'X-Remote-User, X-Remote-Group and X-Remote-Extra- (front-proxy headers)', request: () => ({ target: PODS, headers: [['X-Remote-User', 'system:admin'], ['X-Remote-Group', 'system:masters'], ['X-Remote-Extra-Scopes', '*']] }), expect: forwarded() },
  { rule: RULE.strip, name: 'X_Remote_User with underscores', request: () => ({ target: PODS, headers: [['X_Remote_User', 'system:admin']] }), expect: forwarded({ check: (seen) => expectNoHeaderValueContaining(seen, 'system:admin') }) },
  { rule: RULE.strip, name: 'Proxy-Authorization and Proxy-Connection', request: (c) => ({ target: PODS, headers: [['Proxy-Authorization', bearer(c.token)], ['Proxy-Connection', 'keep-alive']] }), expect: forwarded() },
  { rule: RULE.strip, name: 'a header named __proto__ is an ordinary header: forwarded as sent, the identity unchanged', request: () => ({ target: PODS, headers: [['__proto__', 'polluted'], ['Accept', 'application/json']] }), expect: forwarded({ check: (seen) => expect(seen.rawHeaders).toEqual(expect.arrayContaining(['__proto__', 'polluted'])) }) },
  { rule: RULE.strip, name: 'a header named in Connection is dropped', request: () => ({ target: PODS, headers: [['Connection', 'X-Secret-Hop'], ['X-Secret-Hop', 'value']] }), expect: forwarded({ check: (seen) => expectNoHeaderValueContaining(seen, 'value') }) },
  { rule: RULE.audit, name: 'Forwarded and X-Forwarded-For spoofing the source address', request: () => ({ target: '/api/v1/namespaces/audit-spoof/pods', headers: [['Forwarded', 'for=203.0.113.7'], ['X-Forwarded-For', '203.0.113.7'], ['X-Real-IP', '203.0.113.7'], ['X-Forwarded-Host', 'evil.example']] }), expect: forwarded({ check: (seen) => expectNoHeaderValueContaining(seen, '203.0.113.7'), audit: (record) => expectSourceIsLoopback(record) }) },

  // ---- Framing and header limits ------------------------------------------------------------
  { rule: RULE.framing, name: 'Content-Length together with Transfer-Encoding', request: (c) => ({ raw: `POST ${c.base}${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET ${SECRETS} HTTP/1.1\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.framing, name: 'two different Content-Lengths', request: (c) => ({ raw: `POST ${c.base}${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nContent-Length: 2\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{}`, target: PODS }), expect: refused(400) },
  { rule: RULE.framing, name: 'Transfer-Encoding: chunked, identity', request: (c) => ({ raw: `POST ${c.base}${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.impersonate, name: 'Impersonate-User in the trailer of a chunked body never reaches the API server', request: (c) => ({ raw: `POST ${c.base}/api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nTrailer: Impersonate-User\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\nImpersonate-User: system:admin\r\nX-Remote-User: system:admin\r\n\r\n`, target: '/api/v1/namespaces/default/configmaps' }), expect: forwarded({ check: (seen) => expectNoTrailers(seen) }) },
  { rule: RULE.framing, name: 'a bare LF inside a header value', request: (c) => ({ raw: `GET ${c.base}${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nX-Note: a\nImpersonate-User: system:admin\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.framing, name: 'an obs-folded header continuing onto Impersonate-User', request: (c) => ({ raw: `GET ${c.base}${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nX-Note: a\r\n Impersonate-User: system:admin\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.framing, name: 'a space before the colon of Impersonate-User', request: (c) => ({ raw: `GET ${c.base}${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nImpersonate-User : system:admin\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.framing, name: 'two Host headers', request: () => ({ target: PODS, headers: [['Host', 'kubernetes.default.svc']] }), expect: refused(400) },
  { rule: RULE.framing, name: 'no Host header', request: (c) => ({ raw: `GET ${c.base}${PODS} HTTP/1.1\r\nAuthorization: ${bearer(c.token)}\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.framing, name: 'the HTTP/2 connection preface (prior knowledge)', request: () => ({ raw: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', target: PODS }), expect: refused(400) },
  { rule: RULE.headerLimits, name: 'one header of 40 KiB', request: () => ({ target: PODS, headers: [['X-Padding', 'a'.repeat(40 * 1024)]] }), expect: refused(431) },
  { rule: RULE.headerLimits, name: "2 001 headers with Impersonate-User last (past Node's header count)", request: () => ({ target: SECRETS, headers: [...manyHeaders(2_000), ['Impersonate-User', 'system:admin']] }), expect: refused(431) },
  { rule: RULE.headerLimits, name: '2 001 headers with the Authorization header last', request: (c) => ({ target: PODS, authorization: null, headers: [...manyHeaders(2_000), ['Authorization', bearer(c.token)]] }), expect: refused(431) },
  { rule: RULE.upgrades, name: 'Upgrade: h2c', request: () => ({ target: PODS, headers: [['Connection', 'Upgrade, HTTP2-Settings'], ['Upgrade', 'h2c'], ['HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA']] }), expect: refused(400) },
  { rule: RULE.upgrades, name: 'an unknown upgrade protocol', request: () => ({ target: '/api/v1/namespaces/default/pods/web/exec?command=sh', headers: [['Connection', 'Upgrade'], ['Upgrade', 'tcp']] }), expect: refused(400) },
  { rule: RULE.upgrades, name: 'websocket and h2c offered together', request: () => ({ target: '/api/v1/namespaces/default/pods/web/exec?command=sh', headers: [['Connection', 'Upgrade'], ['Upgrade', 'websocket, h2c'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Version', '13']] }), expect: refused(400) },
  { rule: RULE.upgrades, name: 'Upgrade without Connection: Upgrade is a plain request, the Upgrade header dropped', request: () => ({ target: PODS, headers: [['Upgrade', 'h2c']] }), expect: forwarded({ check: (seen) => expectNoHeader(seen, 'upgrade') }) },

  // ---- Request targets ----------------------------------------------------------------------
  { rule: RULE.targets, name: 'absolute-form target naming another host', request: (c) => ({ raw: `GET https://kubernetes.default.svc${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.targets, name: 'absolute-form target naming the relay itself', request: (c) => ({ raw: `GET https://${c.host}${c.base}${PODS} HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.targets, name: 'CONNECT (authority-form)', request: (c) => ({ raw: `CONNECT kubernetes.default.svc:443 HTTP/1.1\r\nHost: kubernetes.default.svc:443\r\nAuthorization: ${bearer(c.token)}\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.targets, name: 'OPTIONS * (asterisk-form)', request: (c) => ({ raw: `OPTIONS * HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nConnection: close\r\n\r\n`, target: PODS }), expect: refused(400) },
  { rule: RULE.targets, name: '/api/../ dot segments', request: () => ({ target: '/api/v1/namespaces/default/pods/../secrets' }), expect: refused(400) },
  { rule: RULE.targets, name: 'percent-encoded dot segments', request: () => ({ target: '/api/v1/namespaces/default/pods/%2e%2e/secrets' }), expect: refused(400) },
  { rule: RULE.targets, name: 'an encoded slash', request: () => ({ target: '/api/v1/namespaces/default%2Fsecrets' }), expect: refused(400) },
  { rule: RULE.targets, name: 'a double slash', request: () => ({ target: '//api/v1/namespaces/default/secrets' }), expect: refused(400) },
  { rule: RULE.targets, name: 'a backslash', request: () => ({ target: '/api/v1/namespaces/default/pods\\..\\secrets' }), expect: refused(400) },
  { rule: RULE.targets, name: 'an encoded NUL', request: () => ({ target: '/api/v1/namespaces/default/pods%00/secrets' }), expect: refused(400) },
  { rule: RULE.targets, name: 'dot segments inside the query reach the API server unchanged', request: () => ({ target: `${PODS}?labelSelector=app%3Dweb&x=/../../secrets` }), expect: forwarded() },
  { rule: RULE.targets, name: 'a path holding "http:/" reaches the API server unchanged (http-proxy would make it "http://")', request: () => ({ target: '/api/v1/namespaces/default/services/http:web:80/proxy/http:/x' }), expect: forwarded() },
  { rule: RULE.targets, name: 'a double slash after the cluster prefix', modes: ['tunnel'], request: (c) => ({ raw: `GET ${c.base}//api/v1/namespaces/default/secrets HTTP/1.1\r\nHost: ${c.host}\r\nAuthorization: ${bearer(c.token)}\r\nConnection: close\r\n\r\n`, target: SECRETS }), expect: refused(400) },
  { rule: RULE.targets, name: 'a path with ; and encoded characters reaches the API server unchanged', request: () => ({ target: '/api/v1/namespaces/default/configmaps/a;b%20c' }), expect: forwarded() },
];

function expectNoHeaderValueContaining(seen: RecordedRequest, text: string): void {
  const offending = seen.rawHeaders.filter((value, i) => i % 2 === 1 && value.includes(text));
  if (offending.length > 0) throw new Error(`the API server received a header carrying ${JSON.stringify(text)}: ${offending.join(' | ')}`);
}

function expectNoTrailers(seen: RecordedRequest): void {
  if (seen.rawTrailers.length > 0) throw new Error(`the API server received trailers: ${seen.rawTrailers.join(' | ')}`);
}

function expectNoHeader(seen: RecordedRequest, name: string): void {
  if (seen.rawHeaders.some((header, i) => i % 2 === 0 && header.toLowerCase() === name)) throw new Error(`the API server received a ${name} header`);
}

function expectSourceIsLoopback(record: Record<string, unknown>): void {
  if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(String(record.sourceIp))) throw new Error(`audit sourceIp is ${String(record.sourceIp)}, not the connection's loopback address`);
}
