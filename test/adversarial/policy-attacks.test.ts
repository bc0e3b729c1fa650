/**
 * Attacks on the agent policy (DESIGN §13), through a relay in each mode and
 * the recording fake API server, with tokens the issuer's own key signs: a
 * read-only agent's methods and upgrades (WebSocket exec is a GET), a
 * dry-run agent's own dryRun values and delete bodies, methods in another
 * letter case, a method-override header, a tampered
 * or unknown-version claim, and the rate's 429. Each refusal is a 403 (429)
 * Status naming the rule, nothing reaches the API server, and the audit
 * record says denied-by-policy with the rule.
 */
import { randomUUID } from 'node:crypto';
import { type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import { SigningKeys } from '../../src/issuer/signing-keys.js';
import { openStore } from '../../src/issuer/store.js';
import { parseDenyRule, POLICY_CLAIM, type Policy, policyClaim } from '../../src/policy/policy.js';
import { request, until } from '../helpers/http.js';
import { sendRaw } from '../helpers/raw-http.js';
import { type Stack, startStack } from '../helpers/stack.js';

describe.each(['direct', 'tunnel'] as const)('policy attacks, %s mode', (mode) => {
  let stack: Stack;
  let sign: (claims: Record<string, unknown>) => Promise<string>;

  beforeAll(async () => {
    stack = await startStack({ mode });
    const store = await openStore({ dataDir: stack.dataDir });
    const signing = new SigningKeys(store, stack.dataDir, 0);
    await signing.refresh();
    const { kid, key } = await signing.current();
    await store.close();
    sign = (claims) => {
      const now = Math.floor(Date.now() / 1000);
      const payload: JWTPayload = { iss: stack.issuer.url, sub: 'agent:deployer', aud: 'prod-eu', iat: now, nbf: now, exp: now + 60, jti: randomUUID(), groups: ['acme/sre'], ...claims };
      return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' }).sign(key);
    };
  });
  afterAll(async () => {
    await stack?.close();
  });

  const withPolicy = (policy: Policy) => sign({ [POLICY_CLAIM]: policyClaim(policy) });
  const seen = (marker: string) => stack.fake.requests.filter((r) => r.url.includes(marker));
  /** The record of the request carrying `marker`: the relay's, or the hub's for what it refused itself. */
  const recordOf = async (marker: string): Promise<AuditRecord> => {
    const find = () => [...stack.auditRecords(), ...(mode === 'tunnel' ? stack.hubAuditRecords() : [])].find((r) => r.query.includes(marker));
    await until(() => find() !== undefined, 5_000, `the audit record of ${marker}`);
    return find()!;
  };
  const call = async (token: string, method: string, target: string, { body, ...headers }: Record<string, string> = {}) =>
    request(`${stack.relay.url}${target}`, { method, ca: stack.caPem, headers: { authorization: `Bearer ${token}`, ...headers, ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) }, ...(body === undefined ? {} : { body }) });

  it('a read-only agent cannot change anything, whatever the method, and is told the rule', async () => {
    const token = await withPolicy({ readOnly: true });
    for (const [method, marker] of [['DELETE', 'ro-delete'], ['POST', 'ro-post'], ['PUT', 'ro-put'], ['PATCH', 'ro-patch']] as const) {
      const answer = await call(token, method, `/api/v1/namespaces/default/configmaps/x?${marker}=1`, { 'content-type': 'application/json' });
      expect(answer.status, method).toBe(403);
      expect(answer.json()).toMatchObject({ kind: 'Status', code: 403, reason: 'Forbidden', message: expect.stringMatching(/^kube-relay policy: the agent is read-only/) });
      expect(seen(marker)).toEqual([]);
      expect(await recordOf(marker)).toMatchObject({ decision: 'denied-by-policy', reason: 'policy-read-only', policyRule: 'read-only', user: 'agent:deployer', status: 403 });
    }
    // Reads go through.
    expect((await call(token, 'GET', '/api/v1/namespaces/default/pods?ro-read=1')).status).toBe(200);
  });

  it("a method-override header does not turn a read-only agent's GET into a change (nobody upstream honours it)", async () => {
    const token = await withPolicy({ readOnly: true });
    expect((await call(token, 'GET', '/api/v1/namespaces/default/pods/web?override=1', { 'x-http-method-override': 'DELETE' })).status).toBe(200);
    expect(seen('override=1').map((r) => r.method)).toEqual(['GET']);
  });

  it("a method in another letter case is not a method: 400 from the listener, nothing forwarded (the API server's methods are case-sensitive too)", async () => {
    const token = await withPolicy({ readOnly: true });
    const url = new URL(stack.relay.url);
    const prefix = url.pathname.replace(/\/$/, '');
    for (const method of ['Delete', 'delete', 'pOST']) {
      const answer = await sendRaw({ url: stack.relay.url, ca: stack.caPem }, `${method} ${prefix}/api/v1/namespaces/default/pods/web?case-${method}=1 HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nContent-Length: 0\r\n\r\n`);
      expect(answer.status, method).toBe(400);
      expect(seen(`case-${method}`)).toEqual([]);
    }
  });

  it('a read-only agent cannot exec over WebSocket, a GET, nor over SPDY', async () => {
    const token = await withPolicy({ readOnly: true });
    const url = new URL(stack.relay.url);
    const prefix = url.pathname.replace(/\/$/, '');
    for (const [method, upgrade, marker] of [['GET', 'websocket', 'ws-exec'], ['POST', 'SPDY/3.1', 'spdy-exec']] as const) {
      const answer = await sendRaw(
        { url: stack.relay.url, ca: stack.caPem },
        `${method} ${prefix}/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true&${marker}=1 HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\n` +
          (upgrade === 'websocket' ? 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n' : 'X-Stream-Protocol-Version: v4.channel.k8s.io\r\n') +
          '\r\n',
      );
      expect(answer.status, upgrade).toBe(403);
      expect(JSON.parse(answer.body)).toMatchObject({ kind: 'Status', code: 403, message: expect.stringMatching(/read-only.*create pods\/exec "web"/) });
      expect(seen(marker)).toEqual([]);
      expect(await recordOf(marker)).toMatchObject({ decision: 'denied-by-policy', policyRule: 'read-only', verb: 'exec' });
    }
  });

  it("a dry-run agent's changes reach the API server with dryRun=All added, its own dryRun values kept beside it", async () => {
    const token = await withPolicy({ dryRun: true });
    expect((await call(token, 'DELETE', '/api/v1/namespaces/default/pods/web?dr-delete=1')).status).toBe(200);
    expect(seen('dr-delete').map((r) => r.url)).toEqual(['/api/v1/namespaces/default/pods/web?dr-delete=1&dryRun=All']);
    await call(token, 'POST', '/api/v1/namespaces/default/configmaps?dr-none=1&dryRun=None', { 'content-type': 'application/json' });
    expect(seen('dr-none').map((r) => r.url)).toEqual(['/api/v1/namespaces/default/configmaps?dr-none=1&dryRun=None&dryRun=All']);
    expect(await recordOf('dr-delete')).toMatchObject({ decision: 'allowed', policyRule: 'dry-run' });
    // Reads are left alone.
    await call(token, 'GET', '/api/v1/namespaces/default/pods?dr-get=1');
    expect(seen('dr-get').map((r) => r.url)).toEqual(['/api/v1/namespaces/default/pods?dr-get=1']);
  });

  it("a dry-run agent's delete with a body (the options the API server reads instead of the query) gets dryRun All in its body too", async () => {
    const token = await withPolicy({ dryRun: true });
    const options = JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background', dryRun: [] });
    const answer = await call(token, 'DELETE', '/api/v1/namespaces/default/pods/web?dr-body=1', { 'content-type': 'application/json', body: options });
    expect(answer.status).toBe(200);
    const [forwarded] = seen('dr-body');
    expect(forwarded!.url).toBe('/api/v1/namespaces/default/pods/web?dr-body=1&dryRun=All');
    expect(JSON.parse(forwarded!.body.toString())).toEqual({ kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background', dryRun: ['All'] });
    expect(forwarded!.headers['content-length']).toBe(String(forwarded!.body.length));
    // A body that is not DeleteOptions JSON is refused, never forwarded as it is.
    for (const [marker, body, type] of [['dr-yaml', 'dryRun: []', 'application/yaml'], ['dr-junk', '{"dryRun":', 'application/json'], ['dr-list', '[]', 'application/json']] as const) {
      const refused = await call(token, 'DELETE', `/api/v1/namespaces/default/pods/web?${marker}=1`, { 'content-type': type, body });
      expect(refused.status, marker).toBe(403);
      expect(refused.json()).toMatchObject({ message: expect.stringMatching(/dry-run mode/) });
      expect(seen(marker)).toEqual([]);
    }
  });

  it('a deny rule refuses exactly what it names', async () => {
    const token = await withPolicy({ deny: [parseDenyRule('delete:pods@kube-system')] });
    const refused = await call(token, 'DELETE', '/api/v1/namespaces/kube-system/pods/coredns?deny-ks=1');
    expect(refused.status).toBe(403);
    expect(refused.json()).toMatchObject({ message: 'kube-relay policy: the agent may not delete pods "coredns" in namespace "kube-system" (deny rule delete:pods@kube-system)' });
    expect(seen('deny-ks')).toEqual([]);
    expect(await recordOf('deny-ks')).toMatchObject({ decision: 'denied-by-policy', policyRule: 'deny:delete:pods@kube-system' });
    expect((await call(token, 'DELETE', '/api/v1/namespaces/default/pods/web?deny-default=1')).status).toBe(200);
    expect(seen('deny-default')).toHaveLength(1);
  });

  it('a claim changed after signing is a bad signature, a claim of a newer version is refused, and no claim is no policy', async () => {
    const token = await withPolicy({ readOnly: true });
    const [header, payload, signature] = token.split('.');
    const lifted = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
    delete lifted[POLICY_CLAIM];
    const tampered = `${header}.${Buffer.from(JSON.stringify(lifted)).toString('base64url')}.${signature}`;
    const answer = await call(tampered, 'DELETE', '/api/v1/namespaces/default/pods/web?tampered=1');
    expect(answer.status).toBe(401);
    expect(seen('tampered')).toEqual([]);
    const newer = await sign({ [POLICY_CLAIM]: { v: 2, ro: 1, somethingNew: true } });
    expect((await call(newer, 'GET', '/api/v1/namespaces/default/pods?newer=1')).status).toBe(401);
    expect(seen('newer')).toEqual([]);
    const none = await sign({});
    expect((await call(none, 'DELETE', '/api/v1/namespaces/default/pods/web?no-claim=1')).status).toBe(200);
  });

  it('a rate-capped agent gets 429 with Retry-After and a Status once its burst is spent', async () => {
    const token = await withPolicy({ rate: { perSecond: 0.2, burst: 2 } });
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 4; i++) {
      const answer = await call(token, 'GET', `/api/v1/namespaces/default/pods?rate-${i}=1`);
      statuses.push(answer.status);
      if (answer.status === 429) limited ??= answer;
    }
    expect(statuses).toEqual([200, 200, 429, 429]);
    expect(Number(limited!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(limited!.json()).toMatchObject({ kind: 'Status', code: 429, reason: 'TooManyRequests', message: expect.stringMatching(/0\.2 requests a second \(burst 2\)/) });
    expect(seen('rate-2')).toEqual([]);
    expect(await recordOf('rate-3')).toMatchObject({ decision: 'denied-by-policy', policyRule: 'rate', status: 429 });
  });
});
