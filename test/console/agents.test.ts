/**
 * The console's Agents pages (issue 20) over HTTPS on a real issuer, signed in with an admin key
 * as a browser would be (session cookie, CSRF token from the page): creating an agent shows its
 * API key once and the key gets tokens; refusals carry the Registry's and the policy parsers'
 * sentences beside their fields and change nothing; a policy set by the form is what the admin
 * API reads; rotate and revoke; another org's agent is not found, by URL too; each change is an
 * admin audit record made `via: "console"`, holding no key.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
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
import { ConsoleClient, decodeEntities, fieldError } from '../helpers/console-client.js';
import { request } from '../helpers/http.js';

let issuer: RunningIssuer;
let ca: string;
let auditFile: string;
const adminKeys: Record<'acme' | 'root', string> = { acme: '', root: '' };
/** Every key the console showed, which no audit record may hold. */
const shownKeys: string[] = [];

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-console-agents-'));
  auditFile = `${dataDir}/audit.jsonl`;
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  await ops.createCluster(registry, OPERATOR, { name: 'prod', org: 'acme' });
  await ops.createAgent(registry, OPERATOR, { name: 'g-bot', org: 'globex', teams: ['sre'] });
  adminKeys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  adminKeys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  await store.close();
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: auditFile }, log: createLogger('error') });
  ca = readFileSync(issuer.caFile!, 'utf8');
});
afterAll(async () => {
  await issuer?.close();
});

function heading(html: string): string | undefined {
  const text = /<h1>([^<]*)<\/h1>/.exec(html)?.[1];
  return text === undefined ? undefined : decodeEntities(text);
}

function errorsBesideFields(html: string): string[] {
  return [...html.matchAll(/<small id="field-([a-zA-Z]+)-error"/g)].map((match) => match[1]!);
}

function inputValue(html: string, id: string): string | undefined {
  const tag = new RegExp(`<input[^>]*id="${id}"[^>]*>`).exec(html)?.[0];
  const value = tag && /value="([^"]*)"/.exec(tag)?.[1];
  return value === undefined || value === null ? undefined : decodeEntities(value);
}

function preText(html: string, id: string): string | undefined {
  const text = new RegExp(`<pre id="${id}"[^>]*>([^<]*)</pre>`).exec(html)?.[1];
  return text === undefined ? undefined : decodeEntities(text);
}

async function api(method: string, pathname: string, bearer: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const answer = await request(`${issuer.url}${pathname}`, {
    method,
    ca,
    headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: answer.status, body: answer.json() };
}

let acme: ConsoleClient;
let root: ConsoleClient;
const EMPTY_POLICY = { readOnly: false, dryRun: false, deny: [], rate: null, maxStreams: null };
const POLICY_FORM = { readOnly: '', dryRun: '', deny: '', rate: '', burst: '', maxStreams: '' };

describe('creating an agent', () => {
  beforeAll(async () => {
    acme = await ConsoleClient.signedIn(issuer.url, ca, adminKeys.acme, '/ui/agents');
    root = await ConsoleClient.signedIn(issuer.url, ca, adminKeys.root, '/ui/agents');
  });

  it('shows its API key once with the commands that store it and write its kubeconfig, and the key gets tokens', async () => {
    const created = await acme.post('/ui/agents', { name: 'deployer', teams: 'sre, dev' });
    expect(created.status, created.html).toBe(201);
    expect(heading(created.html)).toBe('Agent deployer created');
    const apiKey = inputValue(created.html, 'api-key')!;
    expect(apiKey).toMatch(/^krl_agent_/);
    shownKeys.push(apiKey);
    const commands = preText(created.html, 'kubeconfig-command')!;
    expect(commands).toContain(`umask 077; printf '%s' '${apiKey}' > deployer.api-key`);
    expect(commands).toContain(`kube-relay kubeconfig --issuer ${issuer.url} --issuer-ca-file issuer-ca.crt`);
    expect(commands).toContain(`--cluster CLUSTER --server ${issuer.url}/clusters/CLUSTER --ca-file issuer-ca.crt`);
    expect(commands).toContain('--api-key-file deployer.api-key > deployer.kubeconfig');
    expect(commands).toContain(readFileSync(issuer.caFile!, 'utf8').replace(/\r\n/g, '\n').trim());

    expect((await api('POST', '/v1/token', apiKey, { cluster: 'prod' })).status).toBe(200);
    const detail = await acme.get('/ui/agents/deployer');
    expect(detail.status).toBe(200);
    expect(detail.html).not.toContain(apiKey);
    const list = await acme.get('/ui/agents');
    expect(list.html).not.toContain(apiKey);
    expect(list.html).toMatch(/<tr data-agent="deployer">.*<td data-label="Teams">sre, dev<\/td><td data-label="Policy" class="muted">none<\/td><td data-label="State"><span class="state up">active<\/span>/s);
  });

  it("an org admin's form has no org field; an all-orgs admin's does, and lists every org", async () => {
    expect((await acme.get('/ui/agents')).html).not.toContain('name="org"');
    const list = await root.get('/ui/agents');
    expect(list.html).toContain('name="org"');
    expect(list.html).toContain('data-agent="g-bot"');
    expect(list.html).toContain('data-agent="deployer"');
    expect((await root.get('/ui/agents?org=globex')).html).not.toContain('data-agent="deployer"');
  });

  it.each([
    [{ name: 'Bad_Name', teams: 'sre' }, 'name', 422, 'Agent name "Bad_Name" is not a DNS label: use 1-63 lower-case letters, digits and \'-\', starting and ending with a letter or digit.'],
    [{ name: 'deployer', teams: 'sre' }, 'name', 409, 'Agent "deployer" already exists; kube-relay agent rotate-key gives it a new key.'],
    [{ name: 'g-bot', teams: 'sre' }, 'name', 409, 'The agent name "g-bot" is taken (agent names are unique across the issuer): choose another name.'],
    [{ name: 'helper', teams: '' }, 'teams', 422, 'An agent needs at least one team: add --team TEAM.'],
    [{ name: 'helper', teams: 'sre Dev' }, 'teams', 422, 'Team "Dev" is not a DNS label: use 1-63 lower-case letters, digits and \'-\', starting and ending with a letter or digit.'],
  ])('refuses %j with the sentence beside the %s field (%d), keeping what was typed', async (fields, field, status, sentence) => {
    const answer = await acme.post('/ui/agents', fields);
    expect(answer.status, answer.html).toBe(status);
    expect(fieldError(answer.html, field)).toBe(sentence);
    expect(errorsBesideFields(answer.html)).toEqual([field]);
    expect(inputValue(answer.html, 'field-name')).toBe(fields.name);
    expect(answer.html).not.toContain('id="api-key"');
  });

  it("an all-orgs admin must name the org: the operation's sentence beside the org field", async () => {
    const answer = await root.post('/ui/agents', { name: 'helper', teams: 'sre', org: '' });
    expect(answer.status).toBe(422);
    expect(fieldError(answer.html, 'org')).toBe('An agent needs an org.');
  });
});

describe("an agent's policy", () => {
  it('set through the form is what GET /v1/agents/{name}/policy returns, and the list sums it up', async () => {
    const saved = await acme.post('/ui/agents/deployer/policy', { ...POLICY_FORM, readOnly: 'on', deny: 'delete:pods@kube-system\r\ncreate:pods/exec\r\n', rate: '5/s', burst: '10', maxStreams: '3' });
    expect(saved.status, saved.html).toBe(303);
    expect(saved.location).toBe('/ui/agents/deployer?done=policy-set');
    const read = await api('GET', '/v1/agents/deployer/policy', adminKeys.acme);
    expect(read.body.policy).toEqual({ readOnly: true, dryRun: false, deny: ['delete:pods@kube-system', 'create:pods/exec'], rate: { perSecond: 5, burst: 10 }, maxStreams: 3 });
    expect(read.body.updatedBy).toBe('admin:acme-admin');

    const detail = await acme.get(saved.location!);
    expect(detail.html).toContain('The policy of deployer was saved.');
    expect(detail.html).toContain('tokens it already holds keep the old policy until they expire');
    expect(detail.html).toMatch(/<input type="checkbox" id="field-readOnly" name="readOnly" value="on" checked/);
    expect(detail.html).toContain('>delete:pods@kube-system\ncreate:pods/exec</textarea>');
    expect((await acme.get('/ui/agents')).html).toContain('read-only, rate 5/s burst 10, max streams 3, deny delete:pods@kube-system create:pods/exec');
  });

  it('with "apply now" the agent\'s tokens are cut: the revocation feed names it', async () => {
    const saved = await acme.post('/ui/agents/deployer/policy', { ...POLICY_FORM, dryRun: 'on', now: 'on' });
    expect(saved.location).toBe('/ui/agents/deployer?done=policy-set&cut=1');
    expect((await api('GET', '/v1/agents/deployer/policy', adminKeys.acme)).body.policy).toEqual({ ...EMPTY_POLICY, dryRun: true });
    const feed = await request(`${issuer.url}/v1/revocations`, { ca });
    expect(feed.json<{ items: { user: string }[] }>().items.map((item) => item.user)).toContain('agent:deployer');
    expect((await acme.get(saved.location!)).html).toContain('Its tokens were cut');
  });

  it.each([
    [{ deny: 'delete:pods\nremove:pods' }, 'deny', 'Verb "remove" in a deny rule is not a Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection or *).'],
    [{ deny: 'pods' }, 'deny', 'Deny rule "pods" must read VERB[,VERB…]:RESOURCE[,…][@NAMESPACE,…], such as delete:pods@kube-system.'],
    [{ rate: 'fast' }, 'rate', 'Rate "fast" must be requests a second, such as 5/s (more than 0, at most 100000).'],
    [{ rate: '5/s', burst: '0.5' }, 'burst', 'Burst "0.5" must be a whole number of requests, at least 1.'],
    [{ burst: '10' }, 'burst', 'A burst needs a rate (N/s): it is the burst of that rate.'],
    [{ maxStreams: 'many' }, 'maxStreams', 'Max-streams must be a whole number of long-running requests (0 for none at all).'],
  ])('refuses %j with the parser\'s sentence beside the %s field, and changes nothing', async (fields, field, sentence) => {
    const before = (await api('GET', '/v1/agents/deployer/policy', adminKeys.acme)).body;
    const answer = await acme.post('/ui/agents/deployer/policy', { ...POLICY_FORM, readOnly: 'on', ...fields });
    expect(answer.status, answer.html).toBe(422);
    expect(fieldError(answer.html, field)).toBe(sentence);
    expect(errorsBesideFields(answer.html)).toEqual([field]);
    if ('deny' in fields) expect(answer.html).toContain(`>${fields.deny}</textarea>`);
    expect((await api('GET', '/v1/agents/deployer/policy', adminKeys.acme)).body).toEqual(before);
  });

  it('"Clear policy" removes it', async () => {
    const cleared = await acme.post('/ui/agents/deployer/policy/clear', {});
    expect(cleared.status).toBe(303);
    expect(cleared.location).toBe('/ui/agents/deployer?done=policy-cleared');
    expect((await api('GET', '/v1/agents/deployer/policy', adminKeys.acme)).body).toMatchObject({ policy: EMPTY_POLICY, updatedAt: null });
    expect((await acme.get(cleared.location!)).html).toContain('deployer has no policy of its own any more');
  });
});

describe('rotating and revoking', () => {
  it('rotating shows the new key once; the old one stops working', async () => {
    const oldKey = shownKeys[0]!;
    const rotated = await acme.post('/ui/agents/deployer/rotate-key', {});
    expect(rotated.status, rotated.html).toBe(200);
    const newKey = inputValue(rotated.html, 'api-key')!;
    expect(newKey).toMatch(/^krl_agent_/);
    expect(newKey).not.toBe(oldKey);
    shownKeys.push(newKey);
    expect(preText(rotated.html, 'store-key-command')).toBe(`umask 077; printf '%s' '${newKey}' > deployer.api-key`);
    expect((await api('POST', '/v1/token', oldKey, { cluster: 'prod' })).status).toBe(401);
    expect((await api('POST', '/v1/token', newKey, { cluster: 'prod' })).status).toBe(200);
  });

  it('revoking needs the agent\'s name typed; then it is revoked and its key gets no token', async () => {
    const page = await acme.get('/ui/agents/deployer/revoke');
    expect(page.status).toBe(200);
    expect(heading(page.html)).toBe('Revoke agent deployer?');
    const wrong = await acme.post('/ui/agents/deployer/revoke', { confirm: 'deploy' });
    expect(wrong.status).toBe(422);
    expect(fieldError(wrong.html, 'confirm')).toBe("Type the agent's name, deployer, to confirm.");
    expect((await api('GET', '/v1/agents/deployer', adminKeys.acme)).body).not.toHaveProperty('revokedAt');

    const revoked = await acme.post('/ui/agents/deployer/revoke', { confirm: 'deployer' });
    expect(revoked.status).toBe(303);
    expect(revoked.location).toBe('/ui/agents/deployer?done=revoked');
    expect((await api('GET', '/v1/agents/deployer', adminKeys.acme)).body).toHaveProperty('revokedAt');
    expect((await api('POST', '/v1/token', shownKeys[1]!, { cluster: 'prod' })).status).toBe(403);
    const detail = await acme.get(revoked.location!);
    expect(detail.html).toContain('Agent deployer was revoked');
    expect(detail.html).toContain('<span class="state revoked">revoked');
    expect(detail.html).not.toContain('Rotate API key');
    expect(detail.html).not.toContain('Edit policy');
  });

  it("a revoked agent's policy form, sent anyway, is refused with the operation's sentence", async () => {
    const answer = await acme.post('/ui/agents/deployer/policy', { ...POLICY_FORM, readOnly: 'on' });
    expect(answer.status).toBe(422);
    expect(decodeEntities(answer.html)).toMatch(/<p class="banner error" role="alert">Agent "deployer" was revoked at [\dT:.-]+Z: it gets no token a policy could apply to\.<\/p>/);
    expect((await api('GET', '/v1/agents/deployer/policy', adminKeys.acme)).body.policy).toEqual(EMPTY_POLICY);
  });
});

describe("another org's agent", () => {
  it.each([
    ['GET', '/ui/agents/g-bot'],
    ['GET', '/ui/agents/g-bot/revoke'],
    ['POST', '/ui/agents/g-bot/rotate-key'],
    ['POST', '/ui/agents/g-bot/revoke'],
    ['POST', '/ui/agents/g-bot/policy'],
    ['POST', '/ui/agents/g-bot/policy/clear'],
    ['GET', '/ui/agents/nobody'],
  ])('%s %s is not found for an org admin, as a missing agent is', async (method, pathname) => {
    const name = pathname.split('/')[3]!;
    const answer = method === 'GET' ? await acme.get(pathname) : await acme.post(pathname, { confirm: name, readOnly: 'on' });
    expect(answer.status, answer.html).toBe(404);
    expect(heading(answer.html)).toBe('Agent not found');
    expect(decodeEntities(answer.html)).toContain(`No agent named "${name}"; see kube-relay agent list.`);
  });

  it('is left as it was, and is not in the org admin\'s list', async () => {
    expect((await api('GET', '/v1/agents/g-bot', adminKeys.root)).body).not.toHaveProperty('revokedAt');
    expect((await api('GET', '/v1/agents/g-bot/policy', adminKeys.root)).body.policy).toEqual(EMPTY_POLICY);
    expect((await acme.get('/ui/agents')).html).not.toContain('g-bot');
  });
});

describe('forms', () => {
  it('without the CSRF token are refused and do nothing', async () => {
    const answer = await acme.post('/ui/agents', { name: 'forged', teams: 'sre' }, { csrf: false });
    expect(answer.status).toBe(403);
    expect((await api('GET', '/v1/agents/forged', adminKeys.acme)).status).toBe(404);
  });

  it('without a session are sent to sign-in and do nothing', async () => {
    const stranger = new ConsoleClient(issuer.url, ca);
    await stranger.get('/ui/sign-in'); // a session not signed in, and its form's token
    const answer = await stranger.post('/ui/agents', { name: 'stranger', teams: 'sre' });
    expect(answer.status).toBe(303);
    expect(answer.location).toBe('/ui/sign-in?reason=required');
    expect((await api('GET', '/v1/agents/stranger', adminKeys.acme)).status).toBe(404);
  });
});

describe('the admin audit records', () => {
  it('one per change made in the console, via "console", never a key', async () => {
    const expected = [
      'acme-admin create agent/deployer',
      'acme-admin set-policy agent/deployer',
      'acme-admin set-policy agent/deployer',
      'acme-admin clear-policy agent/deployer',
      'acme-admin rotate-key agent/deployer',
      'acme-admin revoke agent/deployer',
    ];
    const deadline = Date.now() + 5000;
    let records: Record<string, unknown>[] = [];
    while (records.length < expected.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      records = readFileSync(auditFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>).filter((record) => record.kind === 'admin');
    }
    expect(records.map((r) => `${r.admin} ${r.action} ${(r.object as { kind: string }).kind}/${(r.object as { name: string }).name}`)).toEqual(expected);
    for (const record of records) expect(record).toMatchObject({ kind: 'admin', adminOrg: 'acme', object: { org: 'acme' }, via: 'console', sourceIp: '127.0.0.1' });
    const trail = readFileSync(auditFile, 'utf8');
    for (const key of [...shownKeys, adminKeys.acme, adminKeys.root]) expect(trail).not.toContain(key);
  });
});
