/**
 * The console's Grants page over the issuer's real HTTPS listener (issue 20), with no browser:
 * signed in with an admin key, a grant added through the form is exactly what GET /v1/grants
 * lists; each refusal (cluster-admin unconfirmed, bad namespace, unknown role, bad expiry, another
 * org's cluster) is the operation's sentence beside its field with the API's status, and adds
 * nothing; the live fragment carries each grant's state as grantView says; removing is recorded;
 * an org admin never sees or removes another org's grant (404); a form without a valid CSRF token
 * is refused 403 and does nothing.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as grants from '../../src/control/grants.js';
import * as ops from '../../src/control/operations.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { ConsoleClient, decodeEntities, fieldError } from '../helpers/console-client.js';
import { request, until } from '../helpers/http.js';

let issuer: RunningIssuer;
let ca: string;
let dataDir: string;
let auditFile: string;
const keys: Record<string, string> = {};
/** Grants made before the issuer started: one of globex's, and one of acme's its relay failed to apply. */
let globexGrant: string;
let failedGrant: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-console-grants-'));
  auditFile = `${dataDir}/audit.jsonl`;
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  await ops.createCluster(registry, OPERATOR, { name: 'prod-eu', org: 'acme' });
  await ops.createCluster(registry, OPERATOR, { name: 'staging', org: 'acme' });
  await ops.createCluster(registry, OPERATOR, { name: 'old', org: 'acme' });
  await ops.revokeCluster(registry, OPERATOR, 'old');
  await ops.createCluster(registry, OPERATOR, { name: 'g-prod', org: 'globex' });
  await ops.createAgent(registry, OPERATOR, { name: 'deployer', org: 'acme', teams: ['sre'] });
  await ops.createAgent(registry, OPERATOR, { name: 'g-agent', org: 'globex', teams: ['ops'] });
  await registry.grants.setGrantableRoles('prod-eu', ['db-reader'], new Date());
  globexGrant = (await grants.createGrant(registry, OPERATOR, { cluster: 'g-prod', agent: 'g-agent', role: 'view' }, { maxDurationMs: undefined })).id;
  failedGrant = (await grants.createGrant(registry, OPERATOR, { cluster: 'staging', group: 'acme/sre', role: 'exec', namespace: 'web' }, { maxDurationMs: undefined })).id;
  await registry.grants.reportGrantStates('staging', [{ id: failedGrant, state: 'failed', reason: 'ClusterRole kube-relay-exec not found' }], new Date());
  keys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  keys.globex = (await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' })).adminKey;
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  await store.close();
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: auditFile }, log: createLogger('error') });
  ca = readFileSync(issuer.caFile!, 'utf8');
});
afterAll(async () => {
  await issuer?.close();
});

async function api(method: string, pathname: string, key: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const answer = await request(`${issuer.url}${pathname}`, {
    method,
    ca,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: answer.status, body: answer.json() };
}

async function grantIds(key: string): Promise<string[]> {
  return ((await api('GET', '/v1/grants', key)).body.items as { id: string }[]).map((grant) => grant.id);
}

/** The API's sentence as the console shows it: a capital first letter, a full stop at the end. */
function asShown(message: unknown): string {
  const text = String(message);
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}${/[.!?]$/.test(text) ? '' : '.'}`;
}

function stateOf(html: string, id: string): string | undefined {
  const found = new RegExp(`<span id="grant-state-${id}"[^>]*>([^<]*)</span>`).exec(html)?.[1];
  return found === undefined ? undefined : decodeEntities(found);
}

const goodForm = { cluster: 'prod-eu', granteeKind: 'agent', grantee: 'deployer', role: 'edit', namespace: 'web', expires: '8h' };

describe('the console Grants page', () => {
  let acme: ConsoleClient;
  let added: string;

  beforeAll(async () => {
    acme = await ConsoleClient.signedIn(issuer.url, ca, keys.acme!, '/ui/grants');
  });

  it('adds a grant through the form: 303 to the cluster\'s grants naming it, and GET /v1/grants lists the same grant', async () => {
    const posted = await acme.post('/ui/grants', goodForm);
    expect(posted.status, posted.html).toBe(303);
    const location = new URL(posted.location!, issuer.url);
    expect(location.pathname).toBe('/ui/grants');
    expect(location.searchParams.get('cluster')).toBe('prod-eu');
    added = location.searchParams.get('added')!;
    expect(added).toMatch(/^[a-z0-9]{12}$/);

    const listed = (await api('GET', '/v1/grants?cluster=prod-eu', keys.acme!)).body.items as Record<string, string>[];
    const grant = listed.find((item) => item.id === added)!;
    expect(grant).toMatchObject({ id: added, cluster: 'prod-eu', org: 'acme', agent: 'deployer', role: 'edit', namespace: 'web', createdBy: 'admin:acme-admin', state: 'pending' });
    expect(Date.parse(grant.expiresAt!) - Date.parse(grant.createdAt!)).toBe(8 * 3_600_000);

    const page = await acme.get(`${location.pathname}${location.search}`);
    expect(page.status).toBe(200);
    expect(page.html).toContain(`Grant ${added} added.`);
    const row = new RegExp(`<tr data-grant="${added}">.*?</tr>`).exec(page.html)?.[0] ?? '';
    expect(row).toContain('agent:deployer');
    expect(row).toContain('<td data-label="Namespace">web</td>');
    expect(row).toContain(`datetime="${grant.expiresAt}"`);
    expect(row).toContain('by admin:acme-admin');
    expect(stateOf(row, added)).toBe('pending');
    expect(row).toContain(`action="/ui/grants/${added}/remove"`);
  });

  it("lists each grant's state as grantView says it, failed with the relay's reason, and a group grantee as a group", async () => {
    const page = await acme.get('/ui/grants');
    expect(stateOf(page.html, failedGrant)).toBe('failed: ClusterRole kube-relay-exec not found');
    const row = new RegExp(`<tr data-grant="${failedGrant}">.*?</tr>`).exec(page.html)?.[0] ?? '';
    expect(row).toContain('group acme/sre');
    expect(row).toMatch(/class="state bad"/);
    for (const cell of row.match(/<td[^>]*>/g) ?? []) expect(cell).toMatch(/data-label="/);
  });

  it('refreshes the states in place: the live fragment is each listed grant\'s state badge, swapped out of band', async () => {
    const page = await acme.get('/ui/grants?cluster=prod-eu');
    expect(page.html).toContain('hx-get="/ui/grants/live?cluster=prod-eu"');
    expect(page.html).toContain('hx-trigger="every 3s"');
    const before = await acme.get('/ui/grants/live?cluster=prod-eu', { 'hx-request': 'true' });
    expect(before.status).toBe(200);
    expect(before.html).toContain(`<span id="grant-state-${added}"`);
    expect(before.html).toContain('hx-swap-oob="true"');
    expect(stateOf(before.html, added)).toBe('pending');
    expect(before.html).not.toContain(failedGrant);

    const store = await openStore({ dataDir });
    try {
      await new Registry(store, loadOrCreatePepper(dataDir, {})).grants.reportGrantStates('prod-eu', [{ id: added, state: 'applied' }], new Date());
    } finally {
      await store.close();
    }
    const after = await acme.get('/ui/grants/live?cluster=prod-eu', { 'hx-request': 'true' });
    expect(stateOf(after.html, added)).toBe('applied');
  });

  it("offers the caller's active clusters, the built-in roles, and a cluster's own roles once it is the filter", async () => {
    const unfiltered = await acme.get('/ui/grants');
    const clusterSelect = /<select id="field-cluster".*?<\/select>/.exec(unfiltered.html)?.[0] ?? '';
    expect([...clusterSelect.matchAll(/<option value="([^"]*)"/g)].map((m) => m[1])).toEqual(['prod-eu', 'staging']);
    const roleSelect = (html: string) => [...(/<select id="field-role".*?<\/select>/.exec(html)?.[0] ?? '').matchAll(/<option value(?:="([^"]*)")?/g)].map((m) => m[1] ?? ''); // an empty value renders as a bare `value`
    expect(roleSelect(unfiltered.html)).toEqual(['', 'cluster-admin', 'admin', 'edit', 'view', 'logs', 'exec', 'port-forward', 'read-only']);
    expect(unfiltered.html).toContain('appear after choosing that cluster in the cluster filter');
    const filtered = await acme.get('/ui/grants?cluster=prod-eu');
    expect(roleSelect(filtered.html)).toContain('db-reader');
    expect(filtered.html).toMatch(/<option value="prod-eu" selected/);

    const custom = await acme.post('/ui/grants', { cluster: 'prod-eu', granteeKind: 'group', grantee: 'acme/sre', role: 'db-reader', namespace: '', expires: '' });
    expect(custom.status, custom.html).toBe(303);
    const id = new URL(custom.location!, issuer.url).searchParams.get('added')!;
    expect((await api('GET', `/v1/grants/${id}`, keys.acme!)).body).toMatchObject({ group: 'acme/sre', role: 'db-reader' });
    expect((await api('GET', `/v1/grants/${id}`, keys.acme!)).body).not.toHaveProperty('namespace');
    expect((await api('GET', `/v1/grants/${id}`, keys.acme!)).body).not.toHaveProperty('expiresAt');
  });

  it('refuses cluster-admin without the confirmation, with the sentence beside the checkbox, and adds nothing; confirmed, it is added', async () => {
    const before = await grantIds(keys.acme!);
    const refused = await acme.post('/ui/grants', { cluster: 'staging', granteeKind: 'agent', grantee: 'deployer', role: 'cluster-admin' });
    const fromApi = await api('POST', '/v1/grants', keys.acme!, { cluster: 'staging', agent: 'deployer', role: 'cluster-admin' });
    expect(refused.status).toBe(fromApi.status);
    expect(refused.status).toBe(422);
    expect(fieldError(refused.html, 'confirmClusterAdmin')).toBe(asShown(fromApi.body.message));
    expect(fieldError(refused.html, 'role')).toBeUndefined();
    expect(refused.html).toMatch(/<option value="cluster-admin" selected/);
    expect(await grantIds(keys.acme!)).toEqual(before);

    const confirmed = await acme.post('/ui/grants', { cluster: 'staging', granteeKind: 'agent', grantee: 'deployer', role: 'cluster-admin', confirmClusterAdmin: 'on' });
    expect(confirmed.status, confirmed.html).toBe(303);
    expect(await grantIds(keys.acme!)).toHaveLength(before.length + 1);
  });

  it.each([
    ['a namespace that is not a DNS label', { namespace: 'Web_Apps' }, { namespace: 'Web_Apps' }, 'namespace'],
    ['a role the cluster does not offer', { role: 'db-reader', cluster: 'staging' }, { role: 'db-reader', cluster: 'staging' }, 'role'],
    ['an expiry beyond the issuer\'s limit', { expires: '40d' }, { expires: '40d' }, 'expires'],
    ['a group that is not ORG/TEAM', { granteeKind: 'group', grantee: 'sre' }, { group: 'sre' }, 'grantee'],
    ['an agent of another org', { grantee: 'g-agent' }, { agent: 'g-agent' }, 'grantee'],
    ["another org's cluster", { cluster: 'g-prod' }, { cluster: 'g-prod' }, 'cluster'],
  ] as const)('refuses %s with the operation\'s sentence beside its field and the API\'s status, adding nothing', async (_what, form, json, field) => {
    const before = await grantIds(keys.root!);
    const refused = await acme.post('/ui/grants', { ...goodForm, namespace: 'other', ...form });
    const body: Record<string, unknown> = { cluster: goodForm.cluster, agent: goodForm.grantee, role: goodForm.role, namespace: 'other', expires: goodForm.expires, ...json };
    if ('group' in json) delete body.agent;
    const fromApi = await api('POST', '/v1/grants', keys.acme!, body);
    expect(fromApi.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBe(fromApi.status);
    expect(fieldError(refused.html, field)).toBe(asShown(fromApi.body.message));
    expect(await grantIds(keys.root!)).toEqual(before);
  });

  it('refuses an expiry that is not a duration as the API does (422), beside the field, and keeps what was typed', async () => {
    const before = await grantIds(keys.acme!);
    const refused = await acme.post('/ui/grants', { ...goodForm, expires: 'soon' });
    const fromApi = await api('POST', '/v1/grants', keys.acme!, { cluster: 'prod-eu', agent: 'deployer', role: 'edit', expires: 'soon' });
    expect(fromApi.status).toBe(422);
    expect(refused.status).toBe(422);
    expect(fromApi.body.message).toMatch(/must be a duration such as 30m, 8h or 7d, not "soon"$/);
    expect(fieldError(refused.html, 'expires')).toBe('Expires must be a duration such as 30m, 8h or 7d, not "soon".');
    expect(refused.html).toContain('value="soon"');
    expect(refused.html).toContain('value="deployer"');
    expect(await grantIds(keys.acme!)).toEqual(before);
  });

  it('removes a grant: 303 with a notice, gone from the API, recorded as a console change', async () => {
    const removed = await acme.post(`/ui/grants/${added}/remove`, {});
    expect(removed.status, removed.html).toBe(303);
    expect(removed.location).toBe(`/ui/grants?removed=${added}`);
    expect((await acme.get(removed.location!)).html).toContain(`Grant ${added} was removed`);
    expect((await api('GET', `/v1/grants/${added}`, keys.acme!)).status).toBe(404);
    expect((await acme.post(`/ui/grants/${added}/remove`, {})).status).toBe(404);

    const records = () =>
      readFileSync(auditFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((record) => record.kind === 'admin' && (record.object as { name?: string }).name === added);
    await until(() => records().length === 2, 5_000, 'the create and remove records of the grant');
    expect(records()).toEqual([
      expect.objectContaining({ admin: 'acme-admin', adminOrg: 'acme', action: 'create', object: { kind: 'grant', name: added, org: 'acme' }, via: 'console' }),
      expect.objectContaining({ admin: 'acme-admin', adminOrg: 'acme', action: 'remove', object: { kind: 'grant', name: added, org: 'acme' }, via: 'console' }),
    ]);
  });

  it("never shows another org's grant to an org admin, and answers 404 to removing it, which is not done", async () => {
    const page = await acme.get('/ui/grants');
    expect(page.html).not.toContain(globexGrant);
    expect(page.html).not.toContain('g-prod');
    expect((await acme.get('/ui/grants/live', { 'hx-request': 'true' })).html).not.toContain(globexGrant);
    const filtered = await acme.get('/ui/grants?cluster=g-prod');
    expect(filtered.status).toBe(404);
    // Beside the filter's Cluster field, not the add form's.
    expect(fieldError(filtered.html, 'cluster', 'filter-cluster')).toBe('No cluster named "g-prod"; see kube-relay cluster list.');
    expect(fieldError(filtered.html, 'cluster')).toBeUndefined();
    expect(filtered.html).not.toContain(globexGrant);

    const refused = await acme.post(`/ui/grants/${globexGrant}/remove`, {});
    expect(refused.status).toBe(404);
    expect(refused.html).toContain('<h1>Grant not found</h1>');
    expect(decodeEntities(refused.html)).toContain(`No grant "${globexGrant}"; see kube-relay grant list.`);
    expect(await grantIds(keys.globex!)).toContain(globexGrant);

    const root = await ConsoleClient.signedIn(issuer.url, ca, keys.root!, '/ui/grants');
    const everything = await root.get('/ui/grants');
    expect(everything.html).toContain(`data-grant="${globexGrant}"`);
    expect(everything.html).toContain('g-prod (org globex)');
  });

  it('refuses a form without a valid CSRF token (403) and does nothing', async () => {
    const before = await grantIds(keys.acme!);
    for (const csrf of [false, 'not-the-token'] as const) {
      const add = await acme.post('/ui/grants', goodForm, { csrf });
      expect(add.status).toBe(403);
      expect(add.html).toContain('nothing was done');
      const remove = await acme.post(`/ui/grants/${failedGrant}/remove`, {}, { csrf });
      expect(remove.status).toBe(403);
    }
    expect(await grantIds(keys.acme!)).toEqual(before);
  });

  it('sends a visitor without a session to sign in, and does not add the grant', async () => {
    const before = await grantIds(keys.acme!);
    const stranger = new ConsoleClient(issuer.url, ca);
    const page = await stranger.get('/ui/grants');
    expect(page.status).toBe(303);
    expect(page.location).toBe('/ui/sign-in?reason=required&next=%2Fui%2Fgrants');
    const posted = await stranger.post('/ui/grants', goodForm, { csrf: false });
    expect(posted.status).toBe(303);
    expect(posted.location).toBe('/ui/sign-in?reason=required');
    expect(await grantIds(keys.acme!)).toEqual(before);
  });
});
