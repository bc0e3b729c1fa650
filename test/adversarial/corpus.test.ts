/**
 * Runs the attack corpus (attacks.ts) against the relay in both modes, with
 * the recording fake API server: for each case, the client's status (with a
 * Kubernetes Status body on every refusal) and what the API server got —
 * nothing, or one request carrying exactly the token's identity.
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
import { expectExactlyAgentIdentity, sendRaw } from '../helpers/raw-http.js';
import { type Stack, startStack } from '../helpers/stack.js';
import { ATTACKS, type AttackContext, type AttackRequest, type Mode } from './attacks.js';

const AGENT_GROUPS = ['acme/platform', 'acme/sre'];

describe.each<Mode>(['direct', 'tunnel'])('the attack corpus, %s mode', (mode) => {
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

  const cases = ATTACKS.filter((attack) => (attack.modes ?? ['direct', 'tunnel']).includes(mode));

  it.each(cases.map((attack) => [`${attack.name} [${attack.rule}]`, attack] as const))('%s', async (_title, attack) => {
    const request = await attack.request(ctx);
    const before = stack.fake.requests.length;
    const answer = await sendRaw({ url: stack.relay.url, ca: stack.caPem }, render(request));
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

  it('holds at least 60 cases in this mode', () => {
    expect(cases.length).toBeGreaterThanOrEqual(60);
  });
});
