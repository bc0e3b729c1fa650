/**
 * The console's Sessions and Audit pages (DESIGN §12, §14) over HTTP on the issuer's real HTTPS
 * listener, signed in with an admin key as a browser would be (the session cookie and the sign-in
 * form's CSRF token): the list shows sessions with their commands and open or ended state and
 * refreshes in place; filters narrow it and a value the parser cannot read is the API's sentence
 * beside its field (422, no list); a session's page lists its commands and its requests in order
 * with refusals marked; the audit search filters and pages; an org admin sees only its org.
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
import { auditRecord, ingestInto } from '../helpers/audit-records.js';
import { ConsoleClient, type ConsolePage, decodeEntities } from '../helpers/console-client.js';

const PROD = { name: 'prod', org: 'acme' };
const STAGING = { name: 'staging', org: 'acme' };
const LAB = { name: 'lab', org: 'globex' };
/** Two hours ago: the sessions that begin then have ended. */
const T0 = Math.floor((Date.now() - 2 * 3_600_000) / 1000) * 1000;
const MINUTE = 60_000;

const deployerRecords = [
  auditRecord('deployer', 'prod', T0, { kubectlSession: 'k1', kubectlCommand: 'kubectl get', verb: 'list' }),
  auditRecord('deployer', 'prod', T0 + MINUTE, { kubectlSession: 'k2', kubectlCommand: 'kubectl delete', verb: 'delete', name: 'web-0', decision: 'denied-by-cluster', status: 403 }),
  auditRecord('deployer', 'prod', T0 + 2 * MINUTE, { verb: 'exec', subresource: 'exec', name: 'web-0', container: 'app', command: ['sh', '-c', 'date'], status: 101 }),
  auditRecord('deployer', 'prod', T0 + 3 * MINUTE, { kubectlSession: 'k3', kubectlCommand: 'kubectl delete', verb: 'delete', resource: 'secrets', name: 'db-password', decision: 'denied-by-policy', status: 403, reason: 'policy-deny', policyRule: 'delete:secrets' }),
];
/** An ended session of seven requests on staging, enough to page the audit search. */
const stagingRecords = Array.from({ length: 7 }, (_, i) => auditRecord('auditor', 'staging', T0 + 30 * MINUTE + i * 1000, { verb: 'get', name: `web-${i}` }));
/** A session still open: its last request a minute ago. */
const openRecords = [auditRecord('auditor', 'staging', Date.now() - MINUTE, { kubectlSession: 'k9', kubectlCommand: 'kubectl logs', verb: 'get', subresource: 'log', name: 'web-1' })];
const globexRecords = [auditRecord('tester', 'lab', T0 + 40 * MINUTE, { kubectlSession: 'g1', kubectlCommand: 'kubectl apply', verb: 'create' })];

let issuer: RunningIssuer;
let ca: Buffer;
const keys: Record<string, string> = {};
/** The signed-in browsers of acme's, globex's and the all-orgs admin. */
const admins: Partial<Record<'acme' | 'globex' | 'root', ConsoleClient>> = {};

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-console-sessions-'));
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  for (const [name, org] of [['deployer', 'acme'], ['auditor', 'acme'], ['tester', 'globex']] as const) await ops.createAgent(registry, OPERATOR, { name, org, teams: ['t'] });
  for (const cluster of [PROD, STAGING, LAB]) await ops.createCluster(registry, OPERATOR, cluster);
  keys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  keys.globex = (await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' })).adminKey;
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  await store.close();
  await ingestInto(dataDir, [
    { cluster: PROD, records: deployerRecords },
    { cluster: STAGING, records: [...stagingRecords, ...openRecords] },
    { cluster: LAB, records: globexRecords },
  ]);
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, log: createLogger('error') });
  ca = readFileSync(issuer.caFile!);
  admins.acme = await ConsoleClient.signedIn(issuer.url, ca, keys.acme);
  admins.globex = await ConsoleClient.signedIn(issuer.url, ca, keys.globex);
  admins.root = await ConsoleClient.signedIn(issuer.url, ca, keys.root);
});
afterAll(async () => {
  await issuer?.close();
});

/** A console page as acme's admin unless `org` says otherwise; `live`: as htmx asks for a refreshing part. */
function page(pathAndQuery: string, org: 'acme' | 'globex' | 'root' = 'acme', live = false): Promise<ConsolePage> {
  return admins[org]!.get(pathAndQuery, live ? { 'hx-request': 'true' } : {});
}

function all(html: string, pattern: RegExp): string[] {
  return [...html.matchAll(pattern)].map((match) => match[1]!);
}

/** The session rows: their id, agent and the whole row's HTML. */
function sessionRows(html: string): { id: string; agent: string; row: string }[] {
  return [...html.matchAll(/<tr data-session="([^"]+)"[^>]*>([\s\S]*?)<\/tr>/g)].map((match) => ({ id: match[1]!, agent: /data-label="Agent">([^<]+)</.exec(match[2]!)![1]!, row: match[0] }));
}

const requestIds = (html: string) => all(html, /data-request="([^"]+)"/g);

async function sessionIdOf(agent: string, org: 'acme' | 'globex' = 'acme'): Promise<string[]> {
  return sessionRows((await page(`/ui/sessions?agent=${agent}`, org)).html).map((row) => row.id);
}

describe('the sessions list', () => {
  it("shows the org's sessions newest first, with their commands and whether each is open or ended, and refreshes in place", async () => {
    const { status, html } = await page('/ui/sessions');
    expect(status, html).toBe(200);
    const rows = sessionRows(html);
    expect(rows.map((row) => row.agent)).toEqual(['auditor', 'auditor', 'deployer']);
    const [open, stagingEnded, deployer] = rows;
    expect(open!.row).toContain('data-open="true"');
    expect(open!.row).toMatch(/data-label="Ended"><span class="state up">open<\/span>/);
    expect(open!.row).toContain('<code>kubectl logs</code>');
    expect(stagingEnded!.row).toContain('data-open="false"');
    expect(stagingEnded!.row).toMatch(/data-label="Ended"><time datetime=/);
    expect(stagingEnded!.row).toMatch(/data-label="Duration">6 s</);
    expect(stagingEnded!.row).toMatch(/data-label="Commands"><span class="muted">none</);
    // Four commands: the first two shown.
    expect(decodeEntities(deployer!.row)).toContain('4: <code>kubectl get</code>, <code>kubectl delete</code>, …');
    expect(deployer!.row).toMatch(/data-label="Duration">3 min</);
    expect(deployer!.row).toMatch(/data-label="Requests">4</);
    expect(deployer!.row).toMatch(/data-label="Refusals" class="refused">2</);
    expect(deployer!.row).toContain(`href="/ui/sessions/${deployer!.id}"`);
    expect(html).toContain('hx-get="/ui/sessions/live" hx-trigger="every 3s" hx-swap="outerHTML"');

    const live = await page('/ui/sessions/live', 'acme', true);
    expect(live.status).toBe(200);
    expect(live.html).toMatch(/^<div id="session-table"/);
    expect(live.html).not.toContain('<html');
    expect(sessionRows(live.html).map((row) => row.id)).toEqual(rows.map((row) => row.id));
  });

  it('narrows by agent and by cluster, keeping the values in the form and in the live address', async () => {
    const byAgent = await page('/ui/sessions?agent=deployer&cluster=&since=&until=');
    expect(byAgent.status, byAgent.html).toBe(200);
    expect(sessionRows(byAgent.html).map((row) => row.agent)).toEqual(['deployer']);
    expect(byAgent.html).toMatch(/<label for="field-agent">Agent<\/label><input type="text" id="field-agent" name="agent" value="deployer"/);
    expect(byAgent.html).toContain('hx-get="/ui/sessions/live?agent=deployer"');
    expect(sessionRows((await page('/ui/sessions/live?agent=deployer', 'acme', true)).html).map((row) => row.agent)).toEqual(['deployer']);

    const byCluster = await page('/ui/sessions?cluster=staging');
    expect(sessionRows(byCluster.html).map((row) => row.agent)).toEqual(['auditor', 'auditor']);
    expect(byCluster.html).toContain('value="staging"');
    expect(sessionRows((await page('/ui/sessions?cluster=prod&since=1h')).html)).toEqual([]);
  });

  it("answers a since it cannot read with 422 and the parser's sentence beside the since field, and no list", async () => {
    const { status, html } = await page('/ui/sessions?since=yesterday-ish&agent=deployer');
    expect(status).toBe(422);
    expect(decodeEntities(html)).toMatch(/id="field-since"[^>]*aria-invalid="true"[\s\S]*<small id="field-since-error" class="error" role="alert">Since: "yesterday-ish" is neither an RFC 3339 time nor a duration such as 1h\.<\/small>/);
    expect(html).toContain('value="yesterday-ish"');
    expect(html).toContain('value="deployer"');
    expect(html).not.toContain('<table');
    expect(html).not.toContain('hx-get');
  });

  it('pages with continue, keeping the filters', async () => {
    const first = await page('/ui/sessions?cluster=staging&limit=1');
    const next = /<a href="([^"]+)">Next page/.exec(first.html)?.[1];
    expect(decodeEntities(next!)).toMatch(/^\/ui\/sessions\?cluster=staging&limit=1&continue=/);
    const second = await page(decodeEntities(next!));
    expect([...sessionRows(first.html), ...sessionRows(second.html)].map((row) => row.agent)).toEqual(['auditor', 'auditor']);
    expect(second.html).not.toContain('Next page');
  });
});

describe("a session's page", () => {
  it('lists its facts, its commands in order and its requests in order, refusals marked with their reason and rule', async () => {
    const [id] = await sessionIdOf('deployer');
    const { status, html } = await page(`/ui/sessions/${id}`);
    expect(status, html).toBe(200);
    const text = decodeEntities(html);
    expect(text).toContain(`<h1>Session ${id}</h1>`);
    expect(text).toMatch(/<dt>Agent<\/dt><dd>deployer<\/dd><dt>Org<\/dt><dd>acme<\/dd><dt>Cluster<\/dt><dd>prod<\/dd>/);
    expect(text).toMatch(/<dt>Ended<\/dt><dd><time datetime="[^"]+">/);
    expect(text).toMatch(/<dt>Duration<\/dt><dd>3 min<\/dd>/);
    expect(text).toMatch(/<dt>Requests<\/dt><dd>4<\/dd><dt>Refusals<\/dt><dd class="refused">2<\/dd>/);
    expect(all(text, /<li data-kind="[a-z]+">[\s\S]*?<code>([^<]+)<\/code>/g)).toEqual(['kubectl get', 'kubectl delete', 'exec sh -c date', 'kubectl delete']);
    expect(text).toContain('in pod default/web-0, container app, status 101');

    expect(requestIds(html)).toEqual(deployerRecords.map((r) => r.requestId));
    const items = all(text, /(<li (?:class="refused" )?data-request="[\s\S]*?<\/li>)/g);
    expect(items.map((item) => item.startsWith('<li class="refused"'))).toEqual([false, true, false, true]);
    expect(items[1]).toContain('denied-by-cluster');
    expect(items[3]).toContain('<code>secrets</code> <span class="mono">default/db-password</span> · status 403');
    expect(items[3]).toContain('reason policy-deny, policy rule delete:secrets');
    // Ended: nothing refreshes.
    expect(html).toContain('data-open="false"');
    expect(html).not.toContain('hx-get');
  });

  it('refreshes an open session in place, and pages its requests with continue', async () => {
    const [open] = await sessionIdOf('auditor');
    const openPage = await page(`/ui/sessions/${open}`);
    expect(openPage.html).toContain(`hx-get="/ui/sessions/${open}/live" hx-trigger="every 3s" hx-swap="outerHTML"`);
    expect(openPage.html).toContain('<span class="state up">open</span>');
    const live = await page(`/ui/sessions/${open}/live`, 'acme', true);
    expect(live.html).toMatch(/^<div id="session-activity" data-open="true"/);
    expect(requestIds(live.html)).toEqual(openRecords.map((r) => r.requestId));

    const [deployer] = await sessionIdOf('deployer');
    const first = await page(`/ui/sessions/${deployer}?limit=3`);
    const next = decodeEntities(/<a href="([^"]+)">Next page/.exec(first.html)![1]!);
    expect(next).toMatch(new RegExp(`^/ui/sessions/${deployer}\\?limit=3&continue=`));
    const second = await page(next);
    expect([...requestIds(first.html), ...requestIds(second.html)]).toEqual(deployerRecords.map((r) => r.requestId));
  });
});

describe('the audit search', () => {
  it('filters by decision, keeping the choice, and folds every field of each record under it', async () => {
    const { status, html } = await page('/ui/audit?decision=denied-by-policy&agent=&cluster=&verb=&since=&until=&session=&limit=');
    expect(status, html).toBe(200);
    expect(requestIds(html)).toEqual([deployerRecords[3]!.requestId]);
    expect(html).toContain('<option value="denied-by-policy" selected>denied-by-policy</option>');
    const text = decodeEntities(html);
    expect(text).toMatch(/<tr data-request="[^"]+" class="refused">/);
    expect(text).toContain('<details><summary>All fields</summary><dl class="record">');
    expect(text).toContain('<dt>policyRule</dt><dd class="mono">delete:secrets</dd>');
    expect(text).toContain('<dt>org</dt><dd class="mono">acme</dd>');
    expect(text).toMatch(/<dt>session<\/dt><dd class="mono"><a href="\/ui\/sessions\/s-/);
    expect(requestIds((await page('/ui/audit?decision=denied-by-cluster')).html)).toEqual([deployerRecords[1]!.requestId]);
  });

  it('pages with continue, each record once and in time order, the filters kept on every page', async () => {
    const seen: string[] = [];
    let next: string | undefined = '/ui/audit?cluster=staging&limit=3';
    let pages = 0;
    while (next && pages < 10) {
      const { status, html } = await page(next);
      expect(status, html).toBe(200);
      seen.push(...requestIds(html));
      const link = /<a href="([^"]+)">Next page/.exec(html)?.[1];
      next = link === undefined ? undefined : decodeEntities(link);
      if (next) expect(next).toMatch(/^\/ui\/audit\?cluster=staging&limit=3&continue=/);
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual([...stagingRecords, ...openRecords].map((r) => r.requestId));
  });

  it("answers a decision that is not one with 422 and the operation's sentence beside the decision field", async () => {
    const { status, html } = await page('/ui/audit?decision=maybe');
    expect(status).toBe(422);
    expect(decodeEntities(html)).toContain('<small id="field-decision-error" class="error" role="alert">Decision: "maybe" is not one of allowed, denied-by-relay, denied-by-policy, denied-by-cluster, error.</small>');
    expect(html).not.toContain('<table');
  });
});

describe("another org's sessions and records", () => {
  it('are not in an org admin\'s lists, and are "not found" by URL', async () => {
    const [globexSession] = await sessionIdOf('tester', 'globex');
    expect(globexSession).toBeDefined();
    const acmeList = sessionRows((await page('/ui/sessions')).html);
    expect(acmeList.map((row) => row.id)).not.toContain(globexSession);
    expect(sessionRows((await page('/ui/sessions', 'globex')).html).map((row) => row.agent)).toEqual(['tester']);

    const byUrl = await page(`/ui/sessions/${globexSession}`);
    expect(byUrl.status).toBe(404);
    expect(decodeEntities(byUrl.html)).toContain(`No session "${globexSession}"; see kube-relay sessions list.`);
    expect(byUrl.html).not.toContain('tester');
    expect((await page(`/ui/sessions/${globexSession}/live`, 'acme', true)).status).toBe(404);

    const acmeAudit = await page('/ui/audit');
    expect(requestIds(acmeAudit.html)).toEqual([...deployerRecords, ...stagingRecords, ...openRecords].map((r) => r.requestId));
    expect(acmeAudit.html).not.toContain('data-label="Cluster">lab<');
    const bySession = await page(`/ui/audit?session=${globexSession}`);
    expect(bySession.status).toBe(404);
    expect(decodeEntities(bySession.html)).toContain(`<small id="field-session-error" class="error" role="alert">No session "${globexSession}"; see kube-relay sessions list.</small>`);
    const byAgent = await page('/ui/sessions?agent=tester');
    expect(byAgent.status).toBe(404);
    expect(decodeEntities(byAgent.html)).toContain('<small id="field-agent-error" class="error" role="alert">No agent named "tester"; see kube-relay agent list.</small>');
  });
});

describe('an all-orgs admin', () => {
  it('sees every org, or one org with the org field; an org admin is refused another org by name', async () => {
    expect(sessionRows((await page('/ui/sessions', 'root')).html).map((row) => row.agent)).toEqual(['auditor', 'tester', 'auditor', 'deployer']);
    const globex = await page('/ui/sessions?org=globex', 'root');
    expect(globex.html).toMatch(/<input type="text" id="field-org" name="org" value="globex"/);
    expect(sessionRows(globex.html).map((row) => row.agent)).toEqual(['tester']);
    expect(requestIds((await page('/ui/audit?org=globex', 'root')).html)).toEqual(globexRecords.map((r) => r.requestId));
    // An org admin has no org field: the refusal is the page's banner.
    const refused = await page('/ui/audit?org=globex');
    expect(refused.status).toBe(403);
    expect(refused.html).not.toContain('field-org');
    expect(decodeEntities(refused.html)).toContain('<p class="banner error" role="alert">An admin of org "acme" lists org "acme" only, not "globex".</p>');
  });
});

describe('signing in', () => {
  it('is needed for the pages and for their refreshing parts', async () => {
    const stranger = () => new ConsoleClient(issuer.url, ca); // a fresh one each time: no cookie at all
    const res = await stranger().get('/ui/sessions?agent=deployer');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/ui/sign-in?reason=required&next=${encodeURIComponent('/ui/sessions?agent=deployer')}`);
    const live = await stranger().get('/ui/sessions/live', { 'hx-request': 'true' });
    expect(live.status).toBe(401);
    expect(live.headers.get('hx-redirect')).toBe('/ui/sign-in?reason=required');
    expect((await stranger().get('/ui/audit')).status).toBe(303);
  });
});
