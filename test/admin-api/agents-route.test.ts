/**
 * The first admin API route, GET /v1/agents, on the issuer's HTTPS listener (issue 16 item 2):
 * an org admin lists its org only, an all-orgs admin every org or one by `org`, cursor paging
 * walks the list, and refusals are {error, message} with 401/403/422 (429 past the brakes),
 * never carrying a key.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApiRouter } from '../../src/admin-api/router.js';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { AuthFailureBrakes } from '../../src/issuer/failure-limiter.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { type IssuerStore, openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';

let issuer: RunningIssuer;
let fetch: ReturnType<typeof fetchWithCa>;
const keys: Record<string, string> = {};
let agentKey: string;
let connectorKey: string;
let logged = '';

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-admin-api-'));
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  for (const name of ['a1', 'a2', 'a3', 'a4', 'a5']) await ops.createAgent(registry, OPERATOR, { name, org: 'acme', teams: ['sre'] });
  agentKey = (await ops.createAgent(registry, OPERATOR, { name: 'g1', org: 'globex', teams: ['ops'] })).apiKey;
  await ops.revokeAgent(registry, OPERATOR, 'a5');
  connectorKey = (await ops.createCluster(registry, OPERATOR, { name: 'prod', org: 'acme' })).connectorKey;
  keys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  keys.globex = (await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' })).adminKey;
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  keys.revoked = (await ops.createAdmin(registry, OPERATOR, { name: 'leaver', org: 'acme' })).adminKey;
  await ops.revokeAdmin(registry, OPERATOR, 'leaver');
  await store.close();
  issuer = await startIssuer({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    keyRotationIntervalMs: 86_400_000,
    audit: { file: `${dataDir}/hub-audit.jsonl` },
    log: createLogger('debug', {}, (line) => (logged += line)),
  });
  fetch = fetchWithCa({ ca: readFileSync(issuer.caFile!) });
});
afterAll(async () => {
  await issuer?.close();
});

async function get(pathAndQuery: string, key: string | undefined) {
  const res = await fetch(`${issuer.url}${pathAndQuery}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: JSON.parse(text) as { items?: { name: string; org: string; revokedAt?: string }[]; continue?: string; error?: string; message?: string } };
}

describe('GET /v1/agents', () => {
  it("gives an org admin its org's agents only, with their teams and times", async () => {
    const res = await get('/v1/agents', keys.acme);
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.body.items!.map((a) => a.name)).toEqual(['a1', 'a2', 'a3', 'a4', 'a5']);
    expect(res.body.items![0]).toEqual({ name: 'a1', org: 'acme', teams: ['sre'], createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    expect(res.body.items![4]!.revokedAt).toMatch(/^\d{4}-/);
    expect(res.body.continue).toBeUndefined();
    expect((await get('/v1/agents', keys.globex)).body.items!.map((a) => a.name)).toEqual(['g1']);
  });

  it('gives an all-orgs admin every org, or one with ?org=; an org admin asking for another org gets 403', async () => {
    expect((await get('/v1/agents', keys.root)).body.items!.map((a) => a.name)).toEqual(['a1', 'a2', 'a3', 'a4', 'a5', 'g1']);
    expect((await get('/v1/agents?org=globex', keys.root)).body.items!.map((a) => a.name)).toEqual(['g1']);
    const other = await get('/v1/agents?org=globex', keys.acme);
    expect(other.status).toBe(403);
    expect(other.body).toEqual({ error: 'forbidden', message: 'an admin of org "acme" lists org "acme" only, not "globex"' });
  });

  it('pages with ?limit= and ?continue= until no continue is given', async () => {
    const names: string[] = [];
    let query = '/v1/agents?limit=2';
    for (let pages = 0; pages < 10; pages++) {
      const res = await get(query, keys.root);
      expect(res.status, res.text).toBe(200);
      expect(res.body.items!.length).toBeLessThanOrEqual(2);
      names.push(...res.body.items!.map((a) => a.name));
      if (!res.body.continue) break;
      query = `/v1/agents?limit=2&continue=${encodeURIComponent(res.body.continue)}`;
    }
    expect(names).toEqual(['a1', 'a2', 'a3', 'a4', 'a5', 'g1']);
  });

  it.each([
    ['?limit=0', /limit must be a whole number from 1 to 500/],
    ['?limit=ten', /limit must be a whole number/],
    ['?continue=forged', /continue is not one this issuer gave/],
    ['?sort=name', /unknown query parameter "sort"/],
    ['?limit=1&limit=2', /query parameter "limit" must be given once/],
    ['?org=Not_A_Label', /org "Not_A_Label" is not a DNS label/],
  ])('refuses %s with 422 naming the parameter', async (query, message) => {
    const res = await get(`/v1/agents${query}`, keys.root);
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ error: 'invalid', message: expect.stringMatching(message) });
  });

  it.each([
    ['no key', () => undefined, 'missing-admin-key'],
    ['an unknown admin key', () => 'krl_admin_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB', 'invalid-admin-key'],
    ['an agent API key', () => agentKey, 'invalid-admin-key'],
    ['a connector key', () => connectorKey, 'invalid-admin-key'],
    ['a revoked admin key', () => keys.revoked, 'admin-revoked'],
  ])('refuses %s with 401 and never says the key', async (_case, key, error) => {
    const res = await get('/v1/agents', key());
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ error, message: expect.any(String) });
    const presented = key();
    if (presented) {
      expect(res.text).not.toContain(presented);
      expect(logged).not.toContain(presented);
    }
  });

  it('does not accept an admin key at the agent token endpoint', async () => {
    const res = await fetch(`${issuer.url}/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${keys.root}`, 'content-type': 'application/json' }, body: '{"cluster":"prod"}' });
    expect(res.status).toBe(401);
    expect(await res.text()).not.toContain(keys.root);
  });
});

describe('the admin API brakes', () => {
  let store: IssuerStore;
  let base: string;
  let close: () => Promise<void>;
  let good: string;
  beforeAll(async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-admin-brakes-'));
    store = await openStore({ dataDir });
    const registry = new Registry(store, Buffer.alloc(32, 3));
    good = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
    const app = express();
    app.use(adminApiRouter({ registry, brakes: new AuthFailureBrakes({ address: { burst: 2, refillMs: 60_000 } }), log: createLogger('error') }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => new Promise((resolve) => server.close(() => resolve()));
  });
  afterAll(async () => {
    await close?.();
    await store?.close();
  });

  it('answers 429 with Retry-After once an address has used up its failures, even with a good key', async () => {
    for (let i = 0; i < 2; i++) expect((await globalThis.fetch(`${base}/v1/agents`, { headers: { authorization: `Bearer krl_admin_guess${i}` } })).status).toBe(401);
    const braked = await globalThis.fetch(`${base}/v1/agents`, { headers: { authorization: `Bearer ${good}` } });
    expect(braked.status).toBe(429);
    expect(Number(braked.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await braked.json()).toMatchObject({ error: 'too-many-failures' });
  });
});
