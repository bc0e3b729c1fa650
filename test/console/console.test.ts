/**
 * The web console over HTTP (issue 20, DESIGN §14), on the issuer's real HTTPS listener: every
 * page under a strict CSP with no inline script or style, not framed, not cached; the session
 * cookie HttpOnly, Secure, SameSite=Strict; sign-in with an admin key (a wrong key gets one
 * sentence that says nothing of who exists); the Clusters page adds a cluster with its key shown
 * once and refuses bad input with the Registry's sentence beside the field; an org admin sees
 * only its org; every change is an admin audit record made `via: "console"`.
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
import { ConsoleClient, fieldError, visibleText } from '../helpers/console-client.js';
import { until } from '../helpers/http.js';

let issuer: RunningIssuer;
let ca: Buffer;
let auditFile: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-console-'));
  auditFile = `${dataDir}/audit.jsonl`;
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  keys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  keys.agent = (await ops.createAgent(registry, OPERATOR, { name: 'deployer', org: 'acme', teams: ['sre'] })).apiKey;
  await ops.createCluster(registry, OPERATOR, { name: 'globex-prod', org: 'globex' });
  await store.close();
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: auditFile }, log: createLogger('error') });
  ca = readFileSync(issuer.caFile!);
});
afterAll(async () => {
  await issuer?.close();
});

const client = () => new ConsoleClient(issuer.url, ca);

/** Inline scripts, inline styles and event-handler attributes: none may appear (the CSP would block them anyway). */
function inlineCode(html: string): string[] {
  return [...html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>|\sstyle="|<style[\s>]|\son[a-z]+="/g)].map((match) => match[0]);
}

describe('the web console', () => {
  it('sends signed-out visitors to sign-in, keeping where they were going', async () => {
    const page = await client().get('/ui/clusters');
    expect(page.status).toBe(303);
    expect(page.location).toBe('/ui/sign-in?reason=required&next=%2Fui%2Fclusters');
  });

  it('serves every page under a strict CSP, unframed and uncached, with no inline script or style', async () => {
    const browser = client();
    const signIn = await browser.get('/ui/sign-in');
    expect((await browser.post('/ui/sign-in', { key: keys.root! })).status).toBe(303);
    const clusters = await browser.get('/ui/clusters');
    for (const page of [signIn, clusters]) {
      expect(page.status).toBe(200);
      const csp = page.headers.get('content-security-policy')!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("style-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe');
      expect(page.headers.get('x-frame-options')).toBe('DENY');
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect(inlineCode(page.html)).toEqual([]);
    }
    // Every asset the pages name is served by the issuer itself (air-gapped clusters have no CDN).
    for (const asset of [...clusters.html.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+)"/g)].map((match) => match[1]!)) {
      const served = await browser.get(asset);
      expect(served.status, asset).toBe(200);
      expect(served.html.length, asset).toBeGreaterThan(100);
    }
  });

  it('answers a link from another site (no SameSite=Strict cookie with it) with a page that comes back same-site, making no session', async () => {
    const browser = client();
    await browser.signIn(keys.root!);
    const before = browser.cookie;
    const crossSite = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' };
    const visitor = client();
    const page = await visitor.get('/ui/clusters/prod-eu?tab=x', crossSite);
    expect(page.status).toBe(200);
    expect(page.html).toContain('<meta http-equiv="refresh" content="0"/>');
    expect(page.html).toContain('href="/ui/clusters/prod-eu?tab=x"');
    expect(page.headers.get('set-cookie')).toBeNull();
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    // The same navigation from the console itself (or typed) reaches the page as usual.
    expect((await browser.get('/ui/clusters', { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' })).status).toBe(200);
    expect(browser.cookie).toBe(before);
  });

  it('keeps the session in an HttpOnly, Secure, SameSite=Strict __Host- cookie', async () => {
    const cookie = (await client().get('/ui/sign-in')).headers.get('set-cookie')!;
    expect(cookie).toMatch(/^__Host-kube-relay-console=/);
    expect(cookie).toMatch(/; Path=\//);
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/; SameSite=Strict/);
    expect(cookie).not.toMatch(/Domain=/i);
  });

  it('refuses a wrong key, an agent key and an empty one with the same sentence, naming nobody', async () => {
    const answers = [];
    for (const key of ['krl_admin_thisisnotakeyatall0000000000000000000000000', keys.agent!, '']) {
      const page = await client().signIn(key);
      expect(page.status).toBe(401);
      answers.push(visibleText(page.html).match(/That is not a valid admin key[^.]*\./)?.[0]);
    }
    expect(new Set(answers).size).toBe(1);
    expect(answers[0]).toBeDefined();
  });

  it('adds a cluster: the connector key once, with a helm install filled in; reloading the cluster shows no key', async () => {
    const browser = client();
    await browser.signIn(keys.root!);
    await browser.get('/ui/clusters');
    const added = await browser.post('/ui/clusters', { name: 'prod-eu', org: 'acme' });
    expect(added.status).toBe(201);
    const key = /id="connector-key"[^>]*value="(krl_cluster_[^"]+)"/.exec(added.html)?.[1];
    expect(key).toBeDefined();
    const command = visibleText(/<pre id="helm-command"[^>]*>([\s\S]*?)<\/pre>/.exec(added.html)![1]!);
    expect(command).toContain(`--set clusterName=prod-eu`);
    expect(command).toContain(`--set issuerUrl=${issuer.url} --set hubUrl=${issuer.url}`);
    expect(command).toContain('-----BEGIN CERTIFICATE-----');
    expect(command).toContain(key);
    const again = await browser.get('/ui/clusters/prod-eu');
    expect(again.status).toBe(200);
    expect(again.html).not.toContain(key!);
    expect(visibleText(again.html)).toMatch(/No relay has connected yet/);
    const list = await browser.get('/ui/clusters');
    expect(list.html).toMatch(/data-cluster="prod-eu"/);
    expect(list.html).not.toContain(key!);
  });

  it('refuses a bad name with the Registry\'s sentence beside the name field, as the API says it', async () => {
    const browser = client();
    await browser.signIn(keys.root!);
    await browser.get('/ui/clusters');
    const refused = await browser.post('/ui/clusters', { name: 'Not_A_Label', org: 'acme' });
    expect(refused.status).toBe(422);
    expect(fieldError(refused.html, 'name')).toMatch(/^Cluster name "Not_A_Label" is not a DNS label/);
    expect(refused.html).toMatch(/id="field-name"[^>]*aria-invalid="true"/);
    const taken = await browser.post('/ui/clusters', { name: 'globex-prod', org: 'globex' });
    expect(taken.status).toBe(409);
  });

  it('shows an org admin its org only: another org\'s cluster is not in the list and not found by URL', async () => {
    const browser = client();
    await browser.signIn(keys.acme!);
    const list = await browser.get('/ui/clusters');
    expect(list.html).not.toContain('globex-prod');
    expect(list.html).not.toMatch(/id="field-org"/); // an org admin adds clusters to its own org
    for (const pathname of ['/ui/clusters/globex-prod', '/ui/clusters/globex-prod/revoke', '/ui/clusters/globex-prod/live']) {
      const page = await browser.get(pathname);
      expect(page.status, pathname).toBe(404);
    }
    const revoke = await browser.post('/ui/clusters/globex-prod/revoke', { confirm: 'globex-prod' });
    expect(revoke.status).toBe(404);
    const rotate = await browser.post('/ui/clusters/globex-prod/rotate-key');
    expect(rotate.status).toBe(404);
    expect(rotate.html).not.toMatch(/krl_cluster_/);
  });

  it('revokes a cluster only when its name is typed, and records each change as made in the console', async () => {
    const browser = client();
    await browser.signIn(keys.acme!);
    await browser.get('/ui/clusters');
    expect((await browser.post('/ui/clusters', { name: 'doomed' })).status).toBe(201);
    await browser.get('/ui/clusters/doomed/revoke');
    const wrong = await browser.post('/ui/clusters/doomed/revoke', { confirm: 'dooomed' });
    expect(wrong.status).toBe(422);
    expect(visibleText(wrong.html)).toContain("Type the cluster's name, doomed, to confirm.");
    const revoked = await browser.post('/ui/clusters/doomed/revoke', { confirm: 'doomed' });
    expect(revoked.status).toBe(303);
    expect(visibleText((await browser.get(revoked.location!)).html)).toMatch(/Cluster doomed was revoked/);
    await until(() => readFileSync(auditFile, 'utf8').includes('"action":"revoke","object":{"kind":"cluster","name":"doomed"'), 10_000, 'the revoke record');
    const records = readFileSync(auditFile, 'utf8').split('\n').filter((line) => line.includes('"kind":"admin"')).map((line) => JSON.parse(line) as Record<string, unknown>);
    const doomed = records.filter((record) => (record.object as { name: string }).name === 'doomed');
    expect(doomed.map((record) => record.action)).toEqual(['create', 'revoke']);
    expect(doomed.every((record) => record.via === 'console' && record.admin === 'acme-admin' && record.adminOrg === 'acme')).toBe(true);
    expect(JSON.stringify(doomed)).not.toMatch(/krl_/);
  });
});
