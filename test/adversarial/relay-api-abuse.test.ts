/**
 * Attacks on the issuer's API for relays (issue 17: grants are read and reported with the
 * connector key): no key, an agent key or an admin key is 401 and reveals no grant; one
 * cluster's relay sees only its own cluster's grants and cannot change another cluster's grant
 * states; a revoked cluster's key is refused; malformed and oversized reports are 422 and store
 * nothing; guessing connector keys is braked.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as grants from '../../src/control/grants.js';
import * as ops from '../../src/control/operations.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { type IssuerStore, openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';

let issuer: RunningIssuer;
let store: IssuerStore;
let registry: Registry;
let ca: string;
const keys: Record<string, string> = {};
let acmeGrant: string;
let globexGrant: string;

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-relay-api-abuse-'));
  store = await openStore({ dataDir });
  registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  keys.acme = (await ops.createCluster(registry, OPERATOR, { name: 'a-prod', org: 'acme' })).connectorKey;
  keys.globex = (await ops.createCluster(registry, OPERATOR, { name: 'g-prod', org: 'globex' })).connectorKey;
  keys.revoked = (await ops.createCluster(registry, OPERATOR, { name: 'old', org: 'acme' })).connectorKey;
  await ops.revokeCluster(registry, OPERATOR, 'old');
  keys.agent = (await ops.createAgent(registry, OPERATOR, { name: 'bot', org: 'acme', teams: ['sre'] })).apiKey;
  keys.admin = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  const limits = { maxDurationMs: undefined };
  acmeGrant = (await grants.createGrant(registry, OPERATOR, { cluster: 'a-prod', group: 'acme/sre', role: 'view' }, limits)).id;
  globexGrant = (await grants.createGrant(registry, OPERATOR, { cluster: 'g-prod', group: 'globex/ops', role: 'edit' }, limits)).id;
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, log: createLogger('error') });
  ca = readFileSync(issuer.caFile!, 'utf8');
});
afterAll(async () => {
  await issuer?.close();
  await store?.close();
});

function call(method: string, pathname: string, key: string | undefined, localAddress: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${issuer.url}${pathname}`, {
      method,
      ca,
      agent: false,
      localAddress,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.end(body);
  });
}

describe('relay API attacks', () => {
  it.each([
    ['no key', undefined],
    ['an agent key', 'agent'],
    ['an admin key', 'admin'],
    ['a revoked cluster\'s key', 'revoked'],
  ])('%s is 401 on both routes and reveals no grant', async (_case, key) => {
    for (const [method, route, body] of [['GET', '/v1/relay/grants'], ['POST', '/v1/relay/grants/status', JSON.stringify({ grants: [{ id: acmeGrant, state: 'failed', reason: 'x' }], grantableRoles: [] })]] as const) {
      const res = await call(method, route, key ? keys[key] : undefined, '127.0.0.11', body);
      expect(res.status, `${method} ${route}`).toBe(401);
      expect(res.text).not.toContain(acmeGrant);
      if (key) expect(res.text).not.toContain(keys[key]!);
    }
    expect((await store.findGrant(acmeGrant))!.applied.state).toBe('pending');
  });

  it("a relay reads its own cluster's grants only, and its reports cannot touch another cluster's", async () => {
    const own = await call('GET', '/v1/relay/grants', keys.acme, '127.0.0.12');
    expect(own.status).toBe(200);
    expect((JSON.parse(own.text) as { grants: { id: string }[] }).grants.map((g) => g.id)).toEqual([acmeGrant]);
    const forged = await call('POST', '/v1/relay/grants/status', keys.acme, '127.0.0.12', JSON.stringify({ grants: [{ id: globexGrant, state: 'failed', reason: 'forged' }], grantableRoles: ['cluster-admin-ish'] }));
    expect(forged.status).toBe(204);
    expect((await store.findGrant(globexGrant))!.applied).toEqual({ state: 'pending' });
    expect(await store.grantableRoles('g-prod')).toEqual([]);
  });

  it.each([
    ['not JSON', '{"grants":'],
    ['an unknown field', JSON.stringify({ grants: [], grantableRoles: [], admin: true })],
    ['a state that is not applied or failed', JSON.stringify({ grants: [{ id: 'aaaaaaaaaaaa', state: 'pending' }], grantableRoles: [] })],
    ['an id that is no grant id', JSON.stringify({ grants: [{ id: "x' OR 1=1 --", state: 'applied' }], grantableRoles: [] })],
    ['a role name with a slash', JSON.stringify({ grants: [], grantableRoles: ['../../etc'] })],
    ['a body over 4 MiB', JSON.stringify({ grants: [], grantableRoles: ['a'.repeat(5 * 1024 * 1024)] })],
  ])('a report with %s is refused and stores nothing', async (_case, body) => {
    const res = await call('POST', '/v1/relay/grants/status', keys.acme, '127.0.0.13', body);
    expect([400, 413, 422]).toContain(res.status);
    expect((await store.findGrant(acmeGrant))!.applied.state).toBe('pending');
  });

  it('a reason is stored at most 500 characters long', async () => {
    const res = await call('POST', '/v1/relay/grants/status', keys.acme, '127.0.0.14', JSON.stringify({ grants: [{ id: acmeGrant, state: 'failed', reason: 'r'.repeat(10_000) }], grantableRoles: [] }));
    expect(res.status).toBe(204);
    expect((await store.findGrant(acmeGrant))!.applied.reason).toHaveLength(500);
  });

  it('guessing connector keys from one address is braked with 429', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40 && !statuses.includes(429); i++) {
      statuses.push((await call('GET', '/v1/relay/grants', `krl_cluster_${randomBytes(32).toString('base64url')}`, '127.0.0.15')).status);
    }
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(20);
    expect((await call('GET', '/v1/relay/grants', keys.acme, '127.0.0.15')).status).toBe(429);
  });
});

describe('central audit intake attacks (POST /v1/audit, DESIGN §12)', () => {
  const completed = (cluster: string, requestId: string, extra: Record<string, unknown> = {}) => ({
    time: new Date().toISOString(),
    requestId,
    stage: 'ResponseComplete',
    cluster,
    user: 'agent:bot',
    verb: 'get',
    namespace: 'default',
    name: '',
    status: 200,
    decision: 'allowed',
    durationMs: 5,
    ...extra,
  });

  it.each([
    ['no key', undefined],
    ['an agent key', 'agent'],
    ['an admin key', 'admin'],
    ["a revoked cluster's key", 'revoked'],
  ])('%s is 401 and stores nothing', async (_case, key) => {
    const res = await call('POST', '/v1/audit', key ? keys[key] : undefined, '127.0.0.21', JSON.stringify([completed('a-prod', `unauth-${_case}`)]));
    expect(res.status).toBe(401);
    expect(await store.queryAudit({ cluster: 'a-prod', limit: 100 })).toEqual([]);
  });

  it("a relay cannot write another cluster's records, nor hide them by taking their request ids", async () => {
    const forged = await call('POST', '/v1/audit', keys.acme, '127.0.0.22', JSON.stringify([completed('a-prod', 'r-1'), completed('g-prod', 'g-1')]));
    expect(forged.status).toBe(403);
    expect(JSON.parse(forged.text)).toMatchObject({ error: 'forbidden', message: expect.stringMatching(/cluster "g-prod".*cluster "a-prod" only/) });
    expect(await store.queryAudit({ limit: 100 })).toEqual([]);
    // The same request id from two clusters is two records: one relay cannot pre-empt another's.
    expect((await call('POST', '/v1/audit', keys.acme, '127.0.0.22', JSON.stringify([completed('a-prod', 'shared-id')]))).status).toBe(200);
    expect(JSON.parse((await call('POST', '/v1/audit', keys.globex, '127.0.0.22', JSON.stringify([completed('g-prod', 'shared-id')]))).text)).toEqual({ stored: 1, duplicates: 0 });
    expect((await store.queryAudit({ org: 'globex', limit: 100 })).map((r) => r.cluster)).toEqual(['g-prod']);
  });

  it.each([
    ['not JSON', '[{"time":'],
    ['an object instead of a list', JSON.stringify({ records: [] })],
    ['a RequestReceived record', JSON.stringify([{ ...completed('a-prod', 'rr'), stage: 'RequestReceived' }])],
    ['a decision that is none of the four', JSON.stringify([completed('a-prod', 'bad-decision', { decision: 'maybe' })])],
    ['a time that is no time', JSON.stringify([completed('a-prod', 'bad-time', { time: 'yesterday' })])],
    ['a command that is not a list of strings', JSON.stringify([completed('a-prod', 'bad-command', { command: [{ $ne: 1 }] })])],
    ['a record over 64 KiB', JSON.stringify([completed('a-prod', 'huge', { userAgent: 'u'.repeat(70 * 1024) })])],
  ])('a batch with %s is refused whole and stores nothing', async (_case, body) => {
    const res = await call('POST', '/v1/audit', keys.acme, '127.0.0.23', body);
    expect([400, 422]).toContain(res.status);
    expect(JSON.parse(res.text)).toMatchObject({ error: expect.any(String), message: expect.any(String) });
    expect((await store.queryAudit({ cluster: 'a-prod', limit: 100 })).map((r) => r.id)).toEqual(['shared-id']);
  });

  it('a body over the batch limit is 413, so the relay splits it', async () => {
    const res = await call('POST', '/v1/audit', keys.acme, '127.0.0.24', JSON.stringify(Array.from({ length: 1500 }, (_, i) => completed('a-prod', `big-${i}`, { query: 'q'.repeat(7000) }))));
    expect(res.status).toBe(413);
  });
});
