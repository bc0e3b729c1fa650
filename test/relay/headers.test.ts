import { describe, expect, it } from 'vitest';
import type { AgentIdentity } from '../../src/identity.js';
import { BEARER_SUBPROTOCOL_PREFIX, extractBearerToken } from '../../src/request-stages/authenticate.js';
import { RelayRefusal } from '../../src/request-stages/errors.js';
import { addImpersonation, assertSingleIdentity, IdentityInvariantViolation } from '../../src/relay/impersonate.js';
import { checkRequestTarget } from '../../src/request-stages/request-target.js';
import { refuseClientImpersonation, stripClientHeaders, validatedUpgrade } from '../../src/request-stages/strip-headers.js';

const identity: AgentIdentity = { user: 'agent:deployer', groups: ['acme/sre', 'acme/platform'], tokenId: 'jti-1', issuedAt: 1, expiresAt: 61 };

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof RelayRefusal) return err.reason;
    throw err;
  }
  return 'accepted';
}

describe('stage 1: one bearer credential (DESIGN §3.2)', () => {
  it('takes the token from Authorization: Bearer', () => {
    expect(extractBearerToken(['Authorization', 'Bearer abc.def.ghi'], '/api')).toBe('abc.def.ghi');
  });

  it('takes the token from the WebSocket bearer subprotocol', () => {
    const protocol = BEARER_SUBPROTOCOL_PREFIX + Buffer.from('abc.def.ghi').toString('base64url');
    expect(extractBearerToken(['Sec-WebSocket-Protocol', `v5.channel.k8s.io, ${protocol}`], '/api')).toBe('abc.def.ghi');
  });

  it.each([
    ['no credential', [], '/api', 'missing-token'],
    ['two Authorization headers', ['Authorization', 'Bearer a', 'authorization', 'Bearer b'], '/api', 'duplicate-credentials'],
    ['two identical Authorization headers', ['Authorization', 'Bearer a', 'AUTHORIZATION', 'Bearer a'], '/api', 'duplicate-credentials'],
    ['Basic credentials', ['Authorization', 'Basic dXNlcjpwYXNz'], '/api', 'malformed-token'],
    [
      'Authorization plus a bearer subprotocol with another token',
      ['Authorization', 'Bearer a', 'Sec-WebSocket-Protocol', BEARER_SUBPROTOCOL_PREFIX + Buffer.from('b').toString('base64url')],
      '/api',
      'duplicate-credentials',
    ],
    ['a token in the query string', ['Authorization', 'Bearer a'], '/api/v1/pods?access_token=x', 'token-in-query'],
  ])('refuses %s', (_name, headers, target, reason) => {
    expect(reasonOf(() => extractBearerToken(headers as string[], target as string))).toBe(reason);
  });
});

describe('stage 2: strip (DESIGN §3.3)', () => {
  it.each(['Impersonate-User', 'impersonate-user', 'IMPERSONATE-GROUP', 'Impersonate-Uid', 'iMpErSoNaTe-ExTrA-scopes', 'Impersonate-Extra-foo%2Fbar'])(
    'refuses the client impersonation header %s with 403',
    (name) => {
      expect(reasonOf(() => refuseClientImpersonation(['Accept', 'application/json', name, 'system:admin']))).toBe('impersonation-forbidden');
    },
  );

  it('drops headers named in Connection, including identity headers (the hop-by-hop trick)', () => {
    const headers = stripClientHeaders(
      ['Connection', 'keep-alive, Impersonate-User, X-Custom', 'Impersonate-User', 'system:admin', 'X-Custom', 'drop me', 'Accept', 'application/json'],
      undefined,
    );
    expect(headers).toEqual({ accept: 'application/json' });
  });

  it('drops hop-by-hop, Authorization, Proxy-*, X-Remote-*, Forwarded and X-Forwarded-* in any letter case', () => {
    const headers = stripClientHeaders(
      [
        'AUTHORIZATION', 'Bearer client',
        'Proxy-Authorization', 'Basic x',
        'Proxy-Foo', 'bar',
        'x-remote-user', 'admin',
        'X-Remote-Group', 'system:masters',
        'X-Remote-Extra-Scopes', 'all',
        'Forwarded', 'for=1.2.3.4',
        'X-Forwarded-For', '1.2.3.4',
        'x-forwarded-proto', 'https',
        'Keep-Alive', 'timeout=5',
        'TE', 'trailers',
        'Trailer', 'x',
        'Upgrade', 'websocket',
        'User-Agent', 'kubectl/v1.33',
      ],
      undefined,
    );
    expect(headers).toEqual({ 'user-agent': 'kubectl/v1.33' });
  });

  it('keeps a chunked body chunked, and never forwards the client framing of an upgrade', () => {
    expect(stripClientHeaders(['Transfer-Encoding', 'chunked'], undefined)['transfer-encoding']).toBe('chunked');
    expect(stripClientHeaders(['Content-Length', '3'], undefined)['transfer-encoding']).toBeUndefined();
  });

  it('keeps repeated end-to-end headers as separate values', () => {
    const headers = stripClientHeaders(['X-Stream-Protocol-Version', 'v4.channel.k8s.io', 'X-Stream-Protocol-Version', 'v3.channel.k8s.io'], 'SPDY/3.1');
    expect(headers['x-stream-protocol-version']).toEqual(['v4.channel.k8s.io', 'v3.channel.k8s.io']);
    expect(headers.upgrade).toBe('SPDY/3.1');
    expect(headers.connection).toBe('Upgrade');
  });

  it('removes the bearer subprotocol and keeps the others in order', () => {
    const bearer = BEARER_SUBPROTOCOL_PREFIX + Buffer.from('tok').toString('base64url');
    const headers = stripClientHeaders(['Sec-WebSocket-Protocol', `v5.channel.k8s.io, ${bearer}, v4.channel.k8s.io`], 'websocket');
    expect(headers['sec-websocket-protocol']).toBe('v5.channel.k8s.io, v4.channel.k8s.io');
    const onlyBearer = stripClientHeaders(['Sec-WebSocket-Protocol', bearer], 'websocket');
    expect(onlyBearer['sec-websocket-protocol']).toBeUndefined();
  });

  it.each([
    ['websocket', 'websocket'],
    ['WebSocket', 'websocket'],
    ['SPDY/3.1', 'SPDY/3.1'],
  ])('accepts the upgrade %s', (offered, expected) => {
    expect(validatedUpgrade(['Upgrade', offered])).toBe(expected);
  });

  it.each(['h2c', 'SPDY/2', 'websocket, h2c', 'TLS/1.0'])('refuses the upgrade %s', (offered) => {
    expect(reasonOf(() => validatedUpgrade(['Upgrade', offered]))).toBe('unsupported-upgrade');
  });
});

describe('stage 3: impersonate and assert one identity (DESIGN §3.3)', () => {
  it('adds the relay credential, the agent user, one group header per group and the join keys', () => {
    const headers = addImpersonation({ accept: 'application/json' }, identity, 'Bearer relay-sa', 'req-1');
    expect(headers).toEqual({
      accept: 'application/json',
      authorization: 'Bearer relay-sa',
      'impersonate-user': 'agent:deployer',
      'impersonate-group': ['acme/sre', 'acme/platform'],
      'impersonate-extra-kube-relay.dev%2ftoken-id': 'jti-1',
      'impersonate-extra-kube-relay.dev%2frequest-id': 'req-1',
    });
  });

  it('adds no Authorization when the relay authenticates with a client certificate', () => {
    expect(addImpersonation({}, identity, undefined, 'req-1').authorization).toBeUndefined();
  });

  it.each([
    ['a second impersonation header', { 'impersonate-uid': '0' }],
    ['an X-Remote header', { 'x-remote-user': 'admin' }],
    ['a foreign Authorization', { authorization: 'Bearer client' }],
    ['a mixed-case header name that would bypass the lower-case checks', { 'Impersonate-User': 'admin' }],
  ])('the last check before sending throws on %s', (_name, extra) => {
    const headers = { ...addImpersonation({}, identity, 'Bearer relay-sa', 'req-1'), ...extra };
    expect(() => assertSingleIdentity(headers, identity, 'Bearer relay-sa')).toThrow(IdentityInvariantViolation);
  });
});

describe('request targets reach the API server unchanged or not at all (DESIGN §3.4)', () => {
  it.each(['/api/v1/namespaces/default/pods?labelSelector=a%3Db&watch=1', '/apis/', '/api', '/version', '/api/v1/namespaces/a/pods/b/exec?command=sh&command=-c'])(
    'accepts %s',
    (target) => expect(reasonOf(() => checkRequestTarget(target))).toBe('accepted'),
  );

  it.each([
    'http://evil.test/api',
    '*',
    '/api/../secrets',
    '/api/./v1',
    '/api//v1',
    '/api/v1/namespaces/a%2Fb/pods',
    '/api/%2e%2e/x',
    '/api\\v1',
  ])('refuses %s', (target) => expect(reasonOf(() => checkRequestTarget(target))).toBe('bad-request-target'));
});
