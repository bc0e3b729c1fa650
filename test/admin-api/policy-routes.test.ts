/**
 * `/v1/agents/{name}/policy` and `/v1/teams/{org}/{team}/policy` (issue 19 item 1) on the
 * issuer's real HTTPS listener: PUT replaces the whole policy, GET reads it (an empty one for a
 * subject without, and for an agent what its tokens carry), DELETE removes it; bodies are checked
 * field by field (422 naming the field, unknown fields refused); another org's agent is 404 and
 * another org's team 403; `now` cuts tokens, seen in /v1/revocations; each change is one admin
 * audit record that holds no key.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';

let issuer: RunningIssuer;
let fetch: ReturnType<typeof fetchWithCa>;
let auditFile: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-policy-routes-'));
  auditFile = `${dataDir}/audit.jsonl`;
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  await ops.createAgent(registry, OPERATOR, { name: 'deployer', org: 'acme', teams: ['sre', 'dev'] });
  await ops.createAgent(registry, OPERATOR, { name: 'reviewer', org: 'acme', teams: ['dev'] });
  await ops.createAgent(registry, OPERATOR, { name: 'g-bot', org: 'globex', teams: ['sre'] });
  keys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  await store.close();
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: auditFile }, log: createLogger('error') });
  fetch = fetchWithCa({ ca: readFileSync(issuer.caFile!) });
});
afterAll(async () => {
  await issuer?.close();
});

async function call(method: string, pathname: string, key: string | undefined, body?: unknown) {
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${issuer.url}${pathname}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) as Record<string, unknown> };
}

const EMPTY = { readOnly: false, dryRun: false, deny: [], rate: null, maxStreams: null };
const TIME = expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/);

describe('an agent\'s and a team\'s policy', () => {
  it('GET of a subject without a policy is 200 with an empty one, and for an agent what its tokens carry', async () => {
    expect(await call('GET', '/v1/agents/deployer/policy', keys.acme)).toMatchObject({
      status: 200,
      body: { subject: { kind: 'agent', name: 'deployer' }, org: 'acme', policy: EMPTY, updatedAt: null, updatedBy: null, effective: EMPTY },
    });
    const team = await call('GET', '/v1/teams/acme/dev/policy', keys.acme);
    expect(team.body).toEqual({ subject: { kind: 'team', name: 'acme/dev' }, org: 'acme', policy: EMPTY, updatedAt: null, updatedBy: null });
  });

  it('PUT replaces the whole policy and answers it; the agent\'s effective policy holds its teams\'', async () => {
    const team = await call('PUT', '/v1/teams/acme/sre/policy', keys.acme, { readOnly: true, rate: { perSecond: 5 } });
    expect(team.status, team.text).toBe(200);
    expect(team.body).toEqual({ subject: { kind: 'team', name: 'acme/sre' }, org: 'acme', policy: { ...EMPTY, readOnly: true, rate: { perSecond: 5, burst: 5 } }, updatedAt: TIME, updatedBy: 'admin:acme-admin' });
    await call('PUT', '/v1/agents/deployer/policy', keys.acme, { dryRun: true, deny: ['delete:pods@kube-system'], maxStreams: 9 });
    const agent = await call('PUT', '/v1/agents/deployer/policy', keys.acme, { deny: ['delete:pods@kube-system', 'create:pods/exec'], rate: { perSecond: 10, burst: 2 }, maxStreams: 4 });
    expect(agent.body).toMatchObject({
      policy: { ...EMPTY, deny: ['delete:pods@kube-system', 'create:pods/exec'], rate: { perSecond: 10, burst: 2 }, maxStreams: 4 },
      effective: { readOnly: true, dryRun: false, deny: ['delete:pods@kube-system', 'create:pods/exec'], rate: { perSecond: 5, burst: 2 }, maxStreams: 4 },
    });
    expect(agent.body).not.toHaveProperty('tokensCut');
    expect((await call('GET', '/v1/agents/deployer/policy', keys.root)).body).toEqual(agent.body);
  });

  it('DELETE removes it and answers what applies now; with ?now=true the tokens are cut too', async () => {
    const cleared = await call('DELETE', '/v1/agents/deployer/policy', keys.acme);
    expect(cleared.status).toBe(200);
    expect(cleared.body).toMatchObject({ policy: EMPTY, updatedAt: null, effective: { ...EMPTY, readOnly: true, rate: { perSecond: 5, burst: 5 } } });
    const team = await call('DELETE', '/v1/teams/acme/sre/policy?now=true', keys.acme);
    expect(team.body).toMatchObject({ policy: EMPTY, tokensCut: { at: TIME, agents: ['deployer'] } });
    expect((await call('DELETE', '/v1/teams/acme/sre/policy?now=yes', keys.acme)).body.message).toBe('query parameter "now" must be true or false, given once');
    expect((await call('DELETE', '/v1/teams/acme/sre/policy?force=true', keys.acme)).body.message).toBe('unknown query parameter "force": DELETE /v1/teams/{org}/{team}/policy takes now');
  });

  it('PUT with now cuts the tokens of the agents it applies to: the revocation feed names them', async () => {
    const put = await call('PUT', '/v1/teams/acme/dev/policy', keys.acme, { readOnly: true, now: true });
    expect(put.body.tokensCut).toEqual({ at: TIME, agents: ['deployer', 'reviewer'] });
    const feed = await fetch(`${issuer.url}/v1/revocations`);
    const items = ((await feed.json()) as { items: { user: string; revokedAt: string }[] }).items;
    expect(items.filter((i) => i.revokedAt === (put.body.tokensCut as { at: string }).at).map((i) => i.user)).toEqual(['agent:deployer', 'agent:reviewer']);
    expect(items.map((i) => i.user)).not.toContain('agent:g-bot');
    // An empty policy is a clear.
    expect((await call('PUT', '/v1/teams/acme/dev/policy', keys.acme, {})).body).toMatchObject({ policy: EMPTY, updatedAt: null });
  });
});

describe('refusals', () => {
  it.each([
    [{ deny: ['remove:pods'] }, /^field "deny": verb "remove" in a deny rule is not a Kubernetes verb/],
    [{ deny: ['pods'] }, /^field "deny": deny rule "pods" must read VERB\[,VERB…\]:RESOURCE/],
    [{ deny: 'delete:pods' }, /^field "deny" must be a list of strings/],
    [{ rate: { perSecond: 0 } }, /^field "rate": rate "0" must be requests a second/],
    [{ rate: { perSecond: 5, burst: 0.5 } }, /^field "rate": burst "0.5" must be a whole number/],
    [{ rate: { perSecond: '5/s' } }, /^field "rate": a rate is \{"perSecond": N, "burst": M\}/],
    [{ rate: { perSecond: 5, per: 'minute' } }, /^field "rate": unknown field "per": a rate takes perSecond and burst$/],
    [{ rate: 5 }, /^field "rate" must be a JSON object, not 5$/],
    [{ maxStreams: 1.5 }, /^field "maxStreams": max-streams must be a whole number/],
    [{ maxStreams: '3' }, /^field "maxStreams" must be a number, not "3"$/],
    [{ readOnly: 'yes' }, /^field "readOnly" must be true or false/],
    [{ readOnly: true, cluster: 'prod' }, /^unknown field "cluster": PUT \/v1\/agents\/\{name\}\/policy takes readOnly, dryRun, deny, rate, maxStreams, now$/],
  ])('PUT %j: 422 naming the field, nothing stored', async (body, message) => {
    const res = await call('PUT', '/v1/agents/reviewer/policy', keys.acme, body);
    expect(res.status, res.text).toBe(422);
    expect(res.body).toEqual({ error: 'invalid', message: expect.stringMatching(message) });
    expect((await call('GET', '/v1/agents/reviewer/policy', keys.acme)).body.policy).toEqual(EMPTY);
  });

  it.each([
    ['GET', '/v1/agents/g-bot/policy', 404, 'no agent named "g-bot"; see kube-relay agent list'],
    ['PUT', '/v1/agents/g-bot/policy', 404, 'no agent named "g-bot"; see kube-relay agent list'],
    ['DELETE', '/v1/agents/g-bot/policy', 404, 'no agent named "g-bot"; see kube-relay agent list'],
    ['PUT', '/v1/agents/nobody/policy', 404, 'no agent named "nobody"; see kube-relay agent list'],
    ['GET', '/v1/teams/globex/sre/policy', 403, 'team "globex/sre" is of org "globex": admin "acme-admin" of org "acme" manages the policies of its own org\'s agents and teams only'],
    ['PUT', '/v1/teams/globex/sre/policy', 403, 'team "globex/sre" is of org "globex": admin "acme-admin" of org "acme" manages the policies of its own org\'s agents and teams only'],
    ['PUT', '/v1/teams/Acme/sre/policy', 422, 'team "Acme/sre" is not ORG/TEAM (two DNS labels, as an agent\'s groups are)'],
  ])("%s %s by another org's admin: %d", async (method, pathname, status, message) => {
    const res = await call(method, pathname, keys.acme, method === 'PUT' ? { readOnly: true } : undefined);
    expect(res.status, res.text).toBe(status);
    expect(res.body.message).toBe(message);
  });

  it('needs an admin key', async () => {
    expect((await call('GET', '/v1/agents/deployer/policy', undefined)).status).toBe(401);
  });
});

describe('the admin audit records', () => {
  it('one per change, set-policy or clear-policy, with the agent or team as object, never a key', async () => {
    const deadline = Date.now() + 5000;
    let records: Record<string, unknown>[] = [];
    while (records.length < 7 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      records = readFileSync(auditFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>).filter((r) => r.kind === 'admin');
    }
    const summary = records.map((r) => `${r.admin} ${r.action} ${(r.object as { kind: string }).kind}/${(r.object as { name: string }).name}`);
    expect(summary).toEqual([
      'acme-admin set-policy team/acme/sre',
      'acme-admin set-policy agent/deployer',
      'acme-admin set-policy agent/deployer',
      'acme-admin clear-policy agent/deployer',
      'acme-admin clear-policy team/acme/sre',
      'acme-admin set-policy team/acme/dev',
      'acme-admin clear-policy team/acme/dev',
    ]);
    expect(records[0]).toEqual({ time: TIME, kind: 'admin', admin: 'acme-admin', adminOrg: 'acme', action: 'set-policy', object: { kind: 'team', name: 'acme/sre', org: 'acme' }, sourceIp: '127.0.0.1' });
    const trail = readFileSync(auditFile, 'utf8');
    for (const key of Object.values(keys)) expect(trail).not.toContain(key);
    expect(trail).not.toContain('krl_admin_');
  });
});
