/**
 * The admin API endpoints of DESIGN §10 beyond GET /v1/agents, on the issuer's real HTTPS
 * listener (issue 16 item 2): agents and clusters created, read, revoked and given new keys,
 * tokens minted for an agent by its platform, two orgs with an admin each kept apart (another
 * org's object is 404, creating in another org 403), bodies validated (422 naming the field),
 * 409 for a taken name, and every change an audit
 * record of kind "admin" without a key; tokens minted past the per-admin, per-agent budget are 429.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApiRouter } from '../../src/admin-api/router.js';
import type { AuditSink } from '../../src/audit/sink.js';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { AuthFailureBrakes } from '../../src/issuer/failure-limiter.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';

let issuer: RunningIssuer;
let fetch: ReturnType<typeof fetchWithCa>;
let auditFile: string;
const keys: Record<string, string> = {};
const shown: string[] = [];
let logged = '';

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-admin-endpoints-'));
  auditFile = `${dataDir}/audit.jsonl`;
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  await ops.createAgent(registry, OPERATOR, { name: 'g-agent', org: 'globex', teams: ['ops'] });
  await ops.createCluster(registry, OPERATOR, { name: 'g-prod', org: 'globex' });
  keys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  keys.globex = (await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' })).adminKey;
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  await store.close();
  issuer = await startIssuer({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    keyRotationIntervalMs: 86_400_000,
    audit: { file: auditFile },
    log: createLogger('debug', {}, (line) => (logged += line)),
  });
  fetch = fetchWithCa({ ca: readFileSync(issuer.caFile!) });
});
afterAll(async () => {
  await issuer?.close();
});

interface Answer {
  status: number;
  text: string;
  body: Record<string, unknown> & { error?: string; message?: string; items?: { name: string }[] };
}

async function call(method: string, pathname: string, key: string | undefined, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${issuer.url}${pathname}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) };
}

async function adminRecords(): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(auditFile, 'utf8');
    } catch {}
    const records = text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>).filter((r) => r.kind === 'admin');
    if (records.length > 0 || Date.now() > deadline) return records;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('agents', () => {
  it('POST /v1/agents creates an agent in the admin\'s org and shows its key once; GET shows it without', async () => {
    const created = await call('POST', '/v1/agents', keys.acme, { name: 'worker', teams: ['sre', 'dev'] });
    expect(created.status, created.text).toBe(201);
    expect(created.body).toEqual({ name: 'worker', org: 'acme', teams: ['sre', 'dev'], createdAt: expect.any(String), apiKey: expect.stringMatching(/^krl_agent_/) });
    shown.push(created.body.apiKey as string);
    const got = await call('GET', '/v1/agents/worker', keys.acme);
    expect(got.status).toBe(200);
    expect(got.body).toEqual({ name: 'worker', org: 'acme', teams: ['sre', 'dev'], createdAt: created.body.createdAt });
    expect(got.text).not.toContain('krl_agent_');
  });

  it('an all-orgs admin names the org; an org admin creating in another org gets 403', async () => {
    const created = await call('POST', '/v1/agents', keys.root, { name: 'g-worker', org: 'globex', teams: ['ops'] });
    expect(created.status, created.text).toBe(201);
    shown.push(created.body.apiKey as string);
    expect(created.body.org).toBe('globex');
    const across = await call('POST', '/v1/agents', keys.acme, { name: 'sneaky', org: 'globex', teams: ['ops'] });
    expect(across.status).toBe(403);
    expect(across.body).toEqual({ error: 'forbidden', message: 'an admin of org "acme" creates agents in org "acme" only, not in "globex"' });
    const noOrg = await call('POST', '/v1/agents', keys.root, { name: 'orphan', teams: ['ops'] });
    expect(noOrg.status).toBe(422);
    expect(noOrg.body.message).toMatch(/needs an org/);
  });

  it('409 for a name that exists, in the same org or another (without saying whose)', async () => {
    const same = await call('POST', '/v1/agents', keys.acme, { name: 'worker', teams: ['sre'] });
    expect(same.status).toBe(409);
    expect(same.body).toMatchObject({ error: 'already-exists', message: expect.stringContaining('"worker" already exists') });
    const other = await call('POST', '/v1/agents', keys.acme, { name: 'g-agent', teams: ['sre'] });
    expect(other.status).toBe(409);
    expect(other.body.message).toBe('the agent name "g-agent" is taken (agent names are unique across the issuer): choose another name');
  });

  it('an org admin gets 404 for another org\'s agent on every agent endpoint, exactly as for a missing one', async () => {
    const missing = await call('GET', '/v1/agents/nobody', keys.acme);
    expect(missing.status).toBe(404);
    for (const [method, suffix, body] of [['GET', '', undefined], ['DELETE', '', undefined], ['POST', '/keys', undefined], ['POST', '/tokens', { cluster: 'g-prod' }]] as const) {
      const res = await call(method, `/v1/agents/g-agent${suffix}`, keys.acme, body);
      expect(res.status, `${method} ${suffix}`).toBe(404);
      expect(res.body).toEqual({ error: 'not-found', message: 'no agent named "g-agent"; see kube-relay agent list' });
    }
    expect((await call('GET', '/v1/agents/g-agent', keys.globex)).body.revokedAt).toBeUndefined();
  });

  it('POST /v1/agents/{name}/keys gives a new key and the old one is refused at /v1/token at once', async () => {
    const cluster = await call('POST', '/v1/clusters', keys.acme, { name: 'acme-prod' });
    expect(cluster.status, cluster.text).toBe(201);
    shown.push(cluster.body.connectorKey as string);
    const old = shown[0]!;
    const token = (key: string) => fetch(`${issuer.url}/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"cluster":"acme-prod"}' });
    expect((await token(old)).status).toBe(200);
    const rotated = await call('POST', '/v1/agents/worker/keys', keys.acme);
    expect(rotated.status, rotated.text).toBe(200);
    expect(rotated.body).toMatchObject({ name: 'worker', org: 'acme', apiKey: expect.stringMatching(/^krl_agent_/) });
    shown.push(rotated.body.apiKey as string);
    expect((await token(old)).status).toBe(401);
    expect((await token(rotated.body.apiKey as string)).status).toBe(200);
  });

  it('POST /v1/agents/{name}/tokens mints the 60-second token /v1/token would, for the agent\'s org only', async () => {
    const minted = await call('POST', '/v1/agents/worker/tokens', keys.acme, { cluster: 'acme-prod' });
    expect(minted.status, minted.text).toBe(200);
    expect(Object.keys(minted.body).sort()).toEqual(['expiresAt', 'token']);
    const claims = decodeJwt(minted.body.token as string);
    expect(claims).toMatchObject({ iss: issuer.url, sub: 'agent:worker', aud: 'acme-prod', groups: ['acme/sre', 'acme/dev'] });
    expect(claims.exp! - claims.iat!).toBe(60);
    // An org admin cannot name another org's cluster (404); an all-orgs admin mixing orgs is refused (403).
    const otherCluster = await call('POST', '/v1/agents/worker/tokens', keys.acme, { cluster: 'g-prod' });
    expect(otherCluster.status).toBe(404);
    expect(otherCluster.body.message).toBe('no cluster named "g-prod"; see kube-relay cluster list');
    const mixed = await call('POST', '/v1/agents/worker/tokens', keys.root, { cluster: 'g-prod' });
    expect(mixed.status).toBe(403);
    expect(mixed.body.message).toBe('cluster "g-prod" does not belong to org "acme"');
    const badBody = await call('POST', '/v1/agents/worker/tokens', keys.acme, { cluster: 'acme-prod', ttl: 3600 });
    expect(badBody.status).toBe(422);
    expect(badBody.body.message).toMatch(/unknown field "ttl"/);
  });

  it('DELETE /v1/agents/{name} revokes: the agent shows revokedAt and no token is minted for it', async () => {
    const revoked = await call('DELETE', '/v1/agents/worker', keys.acme);
    expect(revoked.status, revoked.text).toBe(200);
    expect(revoked.body.revokedAt).toMatch(/^\d{4}-/);
    const minted = await call('POST', '/v1/agents/worker/tokens', keys.acme, { cluster: 'acme-prod' });
    expect(minted.status).toBe(403);
    expect(minted.body.message).toBe('agent "worker" has been revoked');
  });
});

describe('clusters', () => {
  it('POST, GET, list, new key and DELETE, the connector key shown only when made', async () => {
    const created = await call('POST', '/v1/clusters', keys.globex, { name: 'g-stage' });
    expect(created.status, created.text).toBe(201);
    expect(created.body).toEqual({ name: 'g-stage', org: 'globex', createdAt: expect.any(String), connectorKey: expect.stringMatching(/^krl_/) });
    shown.push(created.body.connectorKey as string);
    const got = await call('GET', '/v1/clusters/g-stage', keys.globex);
    expect(got.body).toEqual({ name: 'g-stage', org: 'globex', createdAt: created.body.createdAt });
    expect((await call('GET', '/v1/clusters', keys.globex)).body.items!.map((c) => c.name)).toEqual(['g-prod', 'g-stage']);
    expect((await call('GET', '/v1/clusters?limit=1', keys.globex)).body.continue).toEqual(expect.any(String));
    expect((await call('GET', '/v1/clusters', keys.acme)).body.items!.map((c) => c.name)).toEqual(['acme-prod']);
    const rotated = await call('POST', '/v1/clusters/g-stage/keys', keys.globex);
    expect(rotated.status, rotated.text).toBe(200);
    expect(rotated.body.connectorKey).not.toBe(created.body.connectorKey);
    shown.push(rotated.body.connectorKey as string);
    const revoked = await call('DELETE', '/v1/clusters/g-stage', keys.globex);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).toMatch(/^\d{4}-/);
  });

  it('an org admin gets 404 for another org\'s cluster, 403 creating in another org, 409 for a taken name', async () => {
    for (const [method, suffix] of [['GET', ''], ['DELETE', ''], ['POST', '/keys']] as const) {
      const res = await call(method, `/v1/clusters/g-prod${suffix}`, keys.acme);
      expect(res.status, `${method} ${suffix}`).toBe(404);
      expect(res.body).toEqual({ error: 'not-found', message: 'no cluster named "g-prod"; see kube-relay cluster list' });
    }
    expect((await call('POST', '/v1/clusters', keys.acme, { name: 'x', org: 'globex' })).status).toBe(403);
    expect((await call('POST', '/v1/clusters', keys.acme, { name: 'g-prod' })).status).toBe(409);
    expect((await call('POST', '/v1/clusters', keys.acme, { name: 'acme-prod' })).status).toBe(409);
    expect((await call('GET', '/v1/clusters/g-prod', keys.globex)).body.revokedAt).toBeUndefined();
  });
});

describe('request validation and authentication', () => {
  it.each([
    ['POST', '/v1/agents', { name: 'a', teams: ['x'], role: 'admin' }, /^unknown field "role": POST \/v1\/agents takes name, org, teams$/],
    ['POST', '/v1/agents', { name: 'Not_A_Label', teams: ['x'] }, /^agent name "Not_A_Label" is not a DNS label/],
    ['POST', '/v1/agents', { name: 'a', teams: [] }, /^field "teams" must be a non-empty list/],
    ['POST', '/v1/agents', { name: 'a', teams: ['UPPER'] }, /^team "UPPER" is not a DNS label/],
    ['POST', '/v1/agents', { name: 'a', teams: [3] }, /^field "teams" must be a list of strings, not \[3\]/],
    ['POST', '/v1/agents', { teams: ['x'] }, /^field "name" is required/],
    ['POST', '/v1/agents', '{"name":', /^the body is not valid JSON/],
    ['POST', '/v1/agents', '["a"]', /must be a JSON object/],
    ['POST', '/v1/clusters', { name: 'c', org: 7 }, /^field "org" must be a string, not 7/],
    ['POST', '/v1/clusters', { name: 'c'.repeat(300) }, /^cluster name "c{63}…" is not a DNS label/],
    ['POST', '/v1/clusters', { name: 'c', teams: ['x'] }, /^unknown field "teams": POST \/v1\/clusters takes name, org$/],
    ['POST', '/v1/clusters/acme-prod/keys', { force: true }, /^unknown field "force"/],
    ['POST', '/v1/agents/worker/tokens', {}, /^field "cluster" is required/],
  ])('%s %s %j: 422 naming the field', async (method, pathname, body, message) => {
    const res = await call(method, pathname, keys.acme, body);
    expect(res.status, res.text).toBe(422);
    expect(res.body).toEqual({ error: 'invalid', message: expect.stringMatching(message) });
  });
});

describe('the admin audit records', () => {
  it('one record of kind "admin" per change (who, what, which object, when), none for reads or refusals, never a key', async () => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    const records = await adminRecords();
    const summary = records.map((r) => `${r.admin} ${r.action} ${(r.object as { kind: string }).kind}/${(r.object as { name: string }).name}`);
    expect(summary).toEqual([
      'acme-admin create agent/worker',
      'root create agent/g-worker',
      'acme-admin create cluster/acme-prod',
      'acme-admin rotate-key agent/worker',
      'acme-admin mint-token agent/worker',
      'acme-admin revoke agent/worker',
      'globex-admin create cluster/g-stage',
      'globex-admin rotate-key cluster/g-stage',
      'globex-admin revoke cluster/g-stage',
    ]);
    expect(records[0]).toEqual({ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), kind: 'admin', admin: 'acme-admin', adminOrg: 'acme', action: 'create', object: { kind: 'agent', name: 'worker', org: 'acme' }, sourceIp: '127.0.0.1' });
    expect(records[1]!.adminOrg).toBeNull();
    expect(records[4]).toMatchObject({ action: 'mint-token', cluster: 'acme-prod', tokenId: expect.any(String) });
    const trail = readFileSync(auditFile, 'utf8');
    expect(shown.length).toBeGreaterThanOrEqual(6);
    for (const key of [...shown, ...Object.values(keys)]) {
      expect(trail).not.toContain(key);
      expect(logged).not.toContain(key);
    }
    expect(trail).not.toMatch(/"token":/);
  });
});

describe('authentication', () => {
  it.each([
    ['POST', '/v1/agents'],
    ['GET', '/v1/agents/g-agent'],
    ['DELETE', '/v1/agents/g-agent'],
    ['POST', '/v1/agents/g-agent/keys'],
    ['POST', '/v1/agents/g-agent/tokens'],
    ['GET', '/v1/clusters'],
    ['POST', '/v1/clusters'],
    ['GET', '/v1/clusters/g-prod'],
    ['DELETE', '/v1/clusters/g-prod'],
    ['POST', '/v1/clusters/g-prod/keys'],
    ['GET', '/v1/clusters/g-prod/status'],
    ['GET', '/v1/grants'],
    ['GET', '/v1/audit'],
  ].map(([method, pathname], i) => [method!, pathname!, i % 2 === 0 ? 'missing-admin-key' : 'invalid-admin-key'] as [string, string, string]))('%s %s: 401 (%s) before anything else', async (method, pathname, error) => {
    // One failure per route, without a key or with a wrong one by turns: 13 stay under the brakes' burst of 20.
    const key = error === 'missing-admin-key' ? undefined : `krl_admin_${'C'.repeat(43)}`;
    const res = await call(method, pathname, key, method === 'POST' ? { name: 'x' } : undefined);
    expect(res.status).toBe(401);
    expect(res.body.error).toBe(error);
  });

});

describe('minting brakes', () => {
  it('an admin minting past its budget for one agent gets 429 too-many-tokens with Retry-After; other agents are not held back; a refused mint writes no record', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-admin-mint-'));
    const store = await openStore({ dataDir });
    const registry = new Registry(store, Buffer.alloc(32, 5));
    await ops.createAgent(registry, OPERATOR, { name: 'w1', org: 'acme', teams: ['sre'] });
    await ops.createAgent(registry, OPERATOR, { name: 'w2', org: 'acme', teams: ['sre'] });
    await ops.createCluster(registry, OPERATOR, { name: 'prod', org: 'acme' });
    const key = (await ops.createAdmin(registry, OPERATOR, { name: 'platform', org: 'acme' })).adminKey;
    const records: unknown[] = [];
    const app = express();
    app.use(
      adminApiRouter({
        registry,
        brakes: new AuthFailureBrakes(),
        log: createLogger('error'),
        mint: async () => ({ token: 't', expiresAt: new Date(), tokenId: 'j' }),
        audit: { admin: (record: unknown) => records.push(record) } as unknown as AuditSink,
        mintBudget: { burst: 3, refillMs: 60_000 },
      }),
    );
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const mint = (agent: string) => globalThis.fetch(`${base}/v1/agents/${agent}/tokens`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"cluster":"prod"}' });
    try {
      for (let i = 0; i < 3; i++) expect((await mint('w1')).status).toBe(200);
      const braked = await mint('w1');
      expect(braked.status).toBe(429);
      expect(Number(braked.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await braked.json()).toEqual({ error: 'too-many-tokens', message: expect.stringMatching(/^admin "platform" minted too many tokens for agent "w1" \(3 at once, then one every 60 s; each lasts 60 s\): retry in \d+ s$/) });
      expect((await mint('w2')).status).toBe(200);
      expect(records).toHaveLength(4);
    } finally {
      await new Promise((resolve) => server.close(() => resolve(undefined)));
      await store.close();
    }
  });
});
