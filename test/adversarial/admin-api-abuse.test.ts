/**
 * Attacks on the admin API (issue 16, "Bad input and security"): guessing admin keys is braked
 * (429 with Retry-After, then even a good key from that address waits); an agent's API key or a
 * relay's connector key presented as an admin key is 401 on every route; an org admin reaching
 * into another org by name is 404 exactly as for a name that does not exist, on every route.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';

let issuer: RunningIssuer;
let ca: string;
let agentKey: string;
let connectorKey: string;
let acmeAdmin: string;
let rootAdmin: string;
const logLines: string[] = [];

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-admin-abuse-'));
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  agentKey = (await ops.createAgent(registry, OPERATOR, { name: 'a-agent', org: 'acme', teams: ['sre'] })).apiKey;
  connectorKey = (await ops.createCluster(registry, OPERATOR, { name: 'a-prod', org: 'acme' })).connectorKey;
  await ops.createAgent(registry, OPERATOR, { name: 'g-agent', org: 'globex', teams: ['ops'] });
  await ops.createCluster(registry, OPERATOR, { name: 'g-prod', org: 'globex' });
  acmeAdmin = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  rootAdmin = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  await store.close();
  issuer = await startIssuer({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    keyRotationIntervalMs: 86_400_000,
    audit: { file: `${dataDir}/hub-audit.jsonl` },
    log: createLogger('info', {}, (line) => logLines.push(line)),
  });
  ca = readFileSync(issuer.caFile!, 'utf8');
});

afterAll(async () => {
  await issuer?.close();
});

/** One admin API request from a chosen loopback address (each attack its own, so their brakes stay apart). */
function call(method: string, pathname: string, key: string | undefined, localAddress: string, body?: unknown): Promise<{ status: number; retryAfter?: string; text: string; body: { error?: string; message?: string } }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(`${issuer.url}${pathname}`, {
      method,
      ca,
      agent: false,
      localAddress,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(payload ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ...(res.headers['retry-after'] ? { retryAfter: String(res.headers['retry-after']) } : {}), text, body: JSON.parse(text) }));
    });
    req.end(payload);
  });
}

const ROUTES: [string, string, unknown?][] = [
  ['GET', '/v1/agents/NAME'],
  ['DELETE', '/v1/agents/NAME'],
  ['POST', '/v1/agents/NAME/keys'],
  ['POST', '/v1/agents/NAME/tokens', { cluster: 'g-prod' }],
  ['GET', '/v1/clusters/CLUSTER'],
  ['DELETE', '/v1/clusters/CLUSTER'],
  ['POST', '/v1/clusters/CLUSTER/keys'],
];

describe('admin API attacks', () => {
  it('guessing admin keys from one address gets 429 with Retry-After, and then a good key from there waits too', async () => {
    const statuses: number[] = [];
    let braked: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 40 && !braked; i++) {
      const res = await call('GET', '/v1/agents', `krl_admin_${randomBytes(32).toString('base64url')}`, '127.0.0.5');
      statuses.push(res.status);
      if (res.status === 429) braked = res;
    }
    expect(braked, `statuses ${statuses.join(',')}`).toBeDefined();
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(20);
    expect(Number(braked!.retryAfter)).toBeGreaterThan(0);
    expect(braked!.body.error).toBe('too-many-failures');
    expect((await call('GET', '/v1/agents', rootAdmin, '127.0.0.5')).status).toBe(429);
    // Another address is not held back by this one's guesses.
    expect((await call('GET', '/v1/agents', rootAdmin, '127.0.0.1')).status).toBe(200);
    expect(logLines.join('\n')).toContain('admin requests with wrong admin keys are being slowed down');
  });

  it.each([
    ['an agent API key', () => agentKey],
    ['a connector key', () => connectorKey],
  ])('%s used as an admin key is 401 on the admin API, never accepted, never echoed', async (_case, key) => {
    for (const [method, template, body] of [['GET', '/v1/agents'], ['POST', '/v1/agents', { name: 'x', teams: ['sre'] }], ['GET', '/v1/clusters'], ...ROUTES] as [string, string, unknown?][]) {
      const pathname = template.replace('NAME', 'a-agent').replace('CLUSTER', 'a-prod');
      const res = await call(method, pathname, key(), '127.0.0.6', body);
      expect(res.status, `${method} ${pathname}`).toBe(401);
      expect(res.body.error).toBe('invalid-admin-key');
      expect(res.text).not.toContain(key());
    }
    expect(logLines.join('\n')).not.toContain(key());
  });

  it("an org admin reaching into another org is 404 on every route, exactly as for a name that does not exist", async () => {
    for (const [method, template, body] of ROUTES) {
      const across = await call(method, template.replace('NAME', 'g-agent').replace('CLUSTER', 'g-prod'), acmeAdmin, '127.0.0.7', body);
      const missing = await call(method, template.replace('NAME', 'no-agent').replace('CLUSTER', 'no-prod'), acmeAdmin, '127.0.0.7', body);
      expect(across.status, `${method} ${template}`).toBe(404);
      expect(missing.status).toBe(404);
      expect(across.body.error).toBe(missing.body.error);
      // The same sentence but for the name asked about: nothing says the other org's object exists.
      expect(across.body.message!.replace(/"g-(agent|prod)"/, '"X"')).toBe(missing.body.message!.replace(/"no-(agent|prod)"/, '"X"'));
    }
    // A token for another org's cluster through the admin's own agent: 404 too.
    const token = await call('POST', '/v1/agents/a-agent/tokens', acmeAdmin, '127.0.0.7', { cluster: 'g-prod' });
    expect(token.status).toBe(404);
    // Another org's objects are untouched.
    const root = await call('GET', '/v1/agents/g-agent', rootAdmin, '127.0.0.7');
    expect(root.status).toBe(200);
    expect((root.body as { revokedAt?: string }).revokedAt).toBeUndefined();
    expect(((await call('GET', '/v1/clusters/g-prod', rootAdmin, '127.0.0.7')).body as { revokedAt?: string }).revokedAt).toBeUndefined();
  });

  it('the agent token endpoint refuses an admin key', async () => {
    const res = await new Promise<number>((resolve, reject) => {
      const req = https.request(`${issuer.url}/v1/token`, { method: 'POST', ca, agent: false, localAddress: '127.0.0.8', headers: { authorization: `Bearer ${acmeAdmin}`, 'content-type': 'application/json' } });
      req.on('error', reject);
      req.on('response', (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      });
      req.end('{"cluster":"a-prod"}');
    });
    expect(res).toBe(401);
  });
});
