/**
 * Runs the attack corpus (attacks.ts) against the relay in both modes, with
 * the recording fake API server: for each case, the client's status (with a
 * Kubernetes Status body on every refusal) and what the API server got —
 * nothing, or one request carrying exactly the token's identity. Each mode
 * runs twice: as raw HTTP/1.1 bytes, and over HTTP/2, as client-go sends
 * once the listener offers h2 (issue 21). Over HTTP/2 run the cases that
 * protocol can carry: not the hand-written HTTP/1.1 framing (`raw`), nor
 * connection-specific headers or values with edge whitespace, which HTTP/2
 * forbids (RFC 9113 §8.2: Node's client will not send them, and nghttp2
 * resets a stream that carries them), nor two Authorization headers, which
 * Node's client will not send either.
 */
import { createPublicKey, randomUUID, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import { SigningKeys } from '../../src/issuer/signing-keys.js';
import { openStore } from '../../src/issuer/store.js';
import { EXTRA_REQUEST_ID, extraHeaderName } from '../../src/relay/impersonate.js';
import type { RecordedRequest } from '../fixtures/fake-apiserver.js';
import { until } from '../helpers/http.js';
import { h2Headers, h2Request } from '../helpers/h2-client.js';
import type { ClientProtocol } from '../helpers/http.js';
import { expectExactlyAgentIdentity, type RawAnswer, sendRaw } from '../helpers/raw-http.js';
import { type Stack, startStack } from '../helpers/stack.js';
import { ATTACKS, type AttackContext, type AttackRequest, type Mode } from './attacks.js';

const AGENT_GROUPS = ['acme/platform', 'acme/sre'];

/** Headers HTTP/2 has no place for (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te']);

/** Whether HTTP/2, as Node's client sends it, can carry the case's request at all (it sends Authorization once at most). */
function expressibleInHttp2(request: AttackRequest): boolean {
  if (request.raw !== undefined) return false;
  const names = (request.headers ?? []).map(([name]) => name.toLowerCase());
  const values = [...(request.headers ?? []).map(([, value]) => value), ...(request.authorization ? [request.authorization] : [])];
  const authorizations = names.filter((name) => name === 'authorization').length + (request.authorization === null ? 0 : 1);
  return !names.some((name) => CONNECTION_SPECIFIC.has(name)) && authorizations <= 1 && values.every((value) => value.trim() === value);
}

async function casesHttp2CanCarry(attacks: typeof ATTACKS, mode: Mode): Promise<typeof ATTACKS> {
  const jwt = 'e30.e30.';
  const standIn: AttackContext = {
    mode,
    token: jwt,
    sign: async () => jwt,
    signRaw: async () => jwt,
    publicJwk: {},
    publicPem: '',
    kid: 'kid',
    attackerToken: async () => jwt,
    tokenForOtherCluster: jwt,
    tokenForOtherOrg: jwt,
    revokedAgentToken: jwt,
    host: 'localhost',
    base: '',
  };
  const carried = await Promise.all(attacks.map(async (attack) => expressibleInHttp2(await attack.request(standIn))));
  return attacks.filter((_, i) => carried[i]);
}

describe.each<[Mode, ClientProtocol]>([
  ['direct', 'http/1.1'],
  ['tunnel', 'http/1.1'],
  ['direct', 'h2'],
  ['tunnel', 'h2'],
])('the attack corpus, %s mode, over %s', async (mode, protocol) => {
  let stack: Stack;
  let ctx: AttackContext;

  beforeAll(async () => {
    stack = await startStack({ mode });
    const setup = await stack.registry();
    await setup.registry.createCluster('prod-us', 'acme');
    await setup.registry.createCluster('globex-prod', 'globex');
    const spyKey = await setup.registry.createAgent('spy', 'globex', ['ops']);
    const revokeeKey = await setup.registry.createAgent('revokee', 'acme', ['sre']);
    await setup.close();
    const deployerToken = await stack.token();
    const revokedAgentToken = await stack.token(revokeeKey);
    const revoke = await stack.registry();
    await revoke.registry.revokeAgent('revokee');
    await revoke.close();

    const store = await openStore({ dataDir: stack.dataDir });
    const signing = new SigningKeys(store, stack.dataDir, 0);
    await signing.refresh();
    const current = await signing.current();
    const publicJwk = signing.jwks().keys.find((key) => key.kid === current.kid)! as Record<string, unknown>;
    await store.close();
    const attacker = await generateKeyPair('ES256', { extractable: true });
    const attackerJwk = await exportJWK(attacker.publicKey);
    const issuerUrl = stack.issuer.url;
    const validClaims = () => {
      const now = Math.floor(Date.now() / 1000);
      return { iss: issuerUrl, sub: 'agent:deployer', aud: 'prod-eu', iat: now, nbf: now, exp: now + 60, jti: randomUUID(), groups: AGENT_GROUPS };
    };
    const withoutUndefined = (record: Record<string, unknown>) => Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined));
    const relayUrl = new URL(stack.relay.url);
    ctx = {
      mode,
      token: deployerToken,
      publicJwk,
      publicPem: createPublicKey({ key: publicJwk as JWK, format: 'jwk' } as Parameters<typeof createPublicKey>[0]).export({ type: 'spki', format: 'pem' }).toString(),
      kid: current.kid,
      sign: (claims = {}, header = {}) =>
        new SignJWT(withoutUndefined({ ...validClaims(), ...claims })).setProtectedHeader(withoutUndefined({ alg: 'ES256', typ: 'JWT', kid: current.kid, ...header }) as { alg: string }).sign(current.key),
      async signRaw(header, payload) {
        const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
        // WebCrypto's ECDSA signature is r || s, the JWS form.
        const signature = await webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, current.key, Buffer.from(input));
        return `${input}.${Buffer.from(signature).toString('base64url')}`;
      },
      attackerToken: ({ embedJwk, ...header } = {}) =>
        new SignJWT(validClaims()).setProtectedHeader({ alg: 'ES256', typ: 'JWT', ...(embedJwk ? { jwk: attackerJwk } : {}), ...header }).sign(attacker.privateKey),
      tokenForOtherCluster: await stack.token(stack.agentKey, 'prod-us'),
      tokenForOtherOrg: await stack.token(spyKey, 'globex-prod'),
      revokedAgentToken,
      host: relayUrl.host,
      base: relayUrl.pathname.replace(/\/$/, ''),
    };
    // The relay (and in tunnel mode the hub) must know of the revocation before the corpus runs:
    // a direct-mode relay polls every 10 s, a tunnel-mode relay is told through its tunnel.
    const iat = (JSON.parse(Buffer.from(revokedAgentToken.split('.')[1]!, 'base64url').toString()) as { iat: number }).iat;
    await until(() => stack.relay.revocations.isRevoked({ user: 'agent:revokee', groups: [], tokenId: '', issuedAt: iat, expiresAt: iat + 60 }), 15_000, 'the relay to learn of the revocation');
  }, 30_000);

  afterAll(async () => {
    await stack?.close();
  });

  /** The relay's own calls (readiness probe, self-check) carry no impersonation; anything else upstream is the case's. */
  const casesRequests = (since: number): RecordedRequest[] =>
    stack.fake.requests.slice(since).filter((seen) => !(seen.method === 'GET' && seen.url === '/version' && seen.headers['impersonate-user'] === undefined));

  function render(request: AttackRequest): string {
    if (request.raw !== undefined) return request.raw;
    const lines = [`GET ${ctx.base}${request.target} HTTP/1.1`, `Host: ${ctx.host}`];
    if (request.authorization !== null) lines.push(`Authorization: ${request.authorization ?? `Bearer ${ctx.token}`}`);
    for (const [name, value] of request.headers ?? []) lines.push(`${name}: ${value}`);
    lines.push('Connection: close', '', '');
    return lines.join('\r\n');
  }

  /**
   * The case as HTTP/2 carries it: :authority for the Host the raw runner
   * writes, every header as given, in lower case (a case's own Host goes
   * beside :authority, Node's client dropping :authority only for a Host
   * of its own).
   */
  async function sendH2(request: AttackRequest): Promise<RawAnswer> {
    const headers = h2Headers([':authority', ctx.host, ...(request.authorization === null ? [] : ['authorization', request.authorization ?? `Bearer ${ctx.token}`]), ...(request.headers ?? []).flat()]);
    const answer = await h2Request(`${stack.relay.url.replace(/\/$/, '')}${request.target}`, { ca: stack.caPem, headers });
    return { status: answer.status, headers: Object.fromEntries(Object.entries(answer.headers).map(([name, value]) => [name, String(value)])), body: answer.body.toString('utf8') };
  }

  const inMode = ATTACKS.filter((attack) => (attack.modes ?? ['direct', 'tunnel']).includes(mode));
  // What a case sends does not depend on the keys and tokens (only its values do): a stand-in context tells which HTTP/2 can carry.
  const cases = protocol === 'http/1.1' ? inMode : await casesHttp2CanCarry(inMode, mode);

  it.each(cases.map((attack) => [`${attack.name} [${attack.rule}]`, attack] as const))('%s', async (_title, attack) => {
    const request = await attack.request(ctx);
    const before = stack.fake.requests.length;
    const answer = protocol === 'h2' ? await sendH2(request) : await sendRaw({ url: stack.relay.url, ca: stack.caPem }, render(request));
    const expected = attack.expect;
    const status = typeof expected.status === 'number' ? expected.status : expected.status[mode];
    expect(answer.status, answer.body).toBe(status);
    if (status >= 400) {
      // Every refusal is a Kubernetes Status kubectl can print, whoever made it (relay, hub, HTTP parser).
      expect(answer.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(answer.body)).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: status });
    }
    const seen = casesRequests(before);
    if (expected.upstream === 'nothing') {
      expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([]);
      return;
    }
    expect(seen).toHaveLength(1);
    const upstream = seen[0]!;
    expect(upstream.url).toBe(request.target);
    expectExactlyAgentIdentity(upstream, 'agent:deployer', expected.groups ?? AGENT_GROUPS);
    expected.check?.(upstream);
    if (expected.audit) {
      const requestId = upstream.headers[extraHeaderName(EXTRA_REQUEST_ID)];
      const record: AuditRecord = await stack.awaitRecord(request.target.split('?')[0]!, (r) => r.requestId === requestId);
      expected.audit(record as unknown as Record<string, unknown>);
    }
  });

  // Runs after the cases (vitest keeps declaration order): whatever they sent, no audit trail holds a credential.
  it('leaves no token or key in the audit trails after the whole corpus', () => {
    const trails = [stack.auditFile, ...(mode === 'tunnel' ? [stack.hubAuditFile] : [])].map((file) => readFileSync(file, 'utf8')).join('');
    expect(trails.length).toBeGreaterThan(0);
    expect(trails.match(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]*/g) ?? []).toEqual([]);
    expect(trails.match(/krl_(agent|cluster)_\w+/g) ?? []).toEqual([]);
  });

  it(`holds at least ${protocol === 'h2' ? 45 : 60} cases in this mode`, () => {
    expect(cases.length).toBeGreaterThanOrEqual(protocol === 'h2' ? 45 : 60);
  });
});
