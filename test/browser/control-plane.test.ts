/**
 * The console's control-plane flow (issue 20, "Tests") in a real browser,
 * in order, as a person does it, on an issuer with its hub in this process
 * and a real tunnel relay that reconciles the cluster's grants into RBAC
 * and sends its audit records to the issuer:
 *
 * 1. add a cluster on the Clusters page and start its relay with the
 *    connector key the page showed; the cluster turns connected;
 * 2. create an agent (org acme, team sre) on the Agents page: its API key is
 *    shown once with a ready-to-paste kubeconfig command; give it a
 *    read-only policy on its page;
 * 3. grant it view in namespace default on the Grants page: the grant is
 *    pending, then applied without a reload once the relay has written its
 *    RoleBinding kube-relay-<grant id>;
 * 4. run the page's kubeconfig command, then real kubectl (get pods, get
 *    configmaps) through the hub as the agent: the Sessions page, open
 *    before, shows its session appear by itself, and the session's page its
 *    two kubectl invocations and its requests in order;
 * 5. revoke the agent from its page (its name typed): the session's page
 *    and the list, left open, turn ended at its revocation without a
 *    reload; kubectl as the agent fails, and nothing reopens the session;
 * 6. the Audit page finds the agent's records, every one allowed, each
 *    with all its fields under its "All fields".
 *
 * Each step is its own test on a fresh browser context (signed in again),
 * using what the steps before it read from the pages. Every test also
 * asserts that no page logged an error, threw, or broke the
 * Content-Security-Policy, and that no page shown has two elements with one
 * id (a label `for` that id would name only the first).
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { RunningRelay } from '../../src/relay/server.js';
import { BIN } from '../helpers/cli.js';
import { kubectlBinary, type KubectlResult, runKubectl } from '../helpers/kubectl.js';
import { launchChromium, screenshot, signIn as signInAs, submit, type Tab, tabPerTest } from './browser.js';
import { type ConsoleStack, startConsoleStack } from './stack.js';

const CLUSTER = 'ops-eu';
const AGENT = 'sre-bot';

let browser: Browser;
let stack: ConsoleStack;
let tab: Tab;
/** The person's working directory: the pasted command writes the agent's key, the issuer's CA and the kubeconfig here. */
let workDir: string;

beforeAll(async () => {
  browser = await launchChromium();
  stack = await startConsoleStack({ idleTimeoutMs: 30 * 60_000 });
  workDir = mkdtempSync(path.join(tmpdir(), 'kube-relay-control-plane-'));
  // `kube-relay` on the PATH of the pasted commands: the built CLI, as npm install -g would put it.
  mkdirSync(path.join(workDir, 'bin'));
  writeFileSync(path.join(workDir, 'bin', 'kube-relay'), `#!/bin/sh\nexec '${process.execPath}' '${BIN}' "$@"\n`);
  chmodSync(path.join(workDir, 'bin', 'kube-relay'), 0o755);
});

afterAll(async () => {
  await browser?.close();
  await stack?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

tabPerTest(() => browser, (opened) => (tab = opened));

const at = (pathname: string) => `${stack.url}${pathname}`;

async function signIn(page: Page): Promise<void> {
  const response = await signInAs(page, stack.url, stack.rootKey);
  expect(response.status()).toBe(200);
  expect(new URL(page.url()).pathname).toBe('/ui/clusters');
}

/** Ids used by more than one element of the page. */
function duplicateIds(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const seen = new Map<string, number>();
    for (const element of document.querySelectorAll('[id]')) seen.set(element.id, (seen.get(element.id) ?? 0) + 1);
    return [...seen].filter(([, count]) => count > 1).map(([id]) => id);
  });
}

/** The page checked for ids used twice, then its screenshots, wide and narrow. */
async function look(page: Page, name: string): Promise<void> {
  expect(await duplicateIds(page), `ids used twice on ${page.url()}`).toEqual([]);
  await screenshot(page, name);
}

/** A mark in the page's document: had the page been reloaded or left, it would be gone. */
async function markNotReloaded(page: Page): Promise<void> {
  await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
}

async function wasNotReloaded(page: Page): Promise<boolean> {
  return (await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)) === true;
}

/** A command copied from a page, run in `sh` in the working directory with `kube-relay` on its PATH. */
function runPasted(command: string): Promise<KubectlResult> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', command], { cwd: workDir, env: { PATH: `${path.join(workDir, 'bin')}:${process.env.PATH}`, HOME: process.env.HOME }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** kubectl 1.33 (it sends Kubectl-Command and Kubectl-Session) with the kubeconfig the pasted command wrote. */
function kubectl(args: string[]): Promise<KubectlResult> {
  return runKubectl(kubectlBinary('1.33'), ['--kubeconfig', path.join(workDir, `${AGENT}.kubeconfig`), '--cache-dir', path.join(workDir, 'kubectl-cache'), ...args], {}, 60_000);
}

/** What each step read from the pages, for the steps after it. */
const seen: { relay?: RunningRelay; kubeconfigCommand?: string; grantId?: string; sessionId?: string; requests?: number } = {};

describe('the control-plane flow', () => {
  it('1. a cluster added on the Clusters page turns connected once its relay, started with the key the page showed, dials in', async () => {
    const { page } = tab;
    await signIn(page);
    expect(await duplicateIds(page)).toEqual([]);
    await page.getByLabel('Cluster name').fill(CLUSTER);
    await page.getByLabel('Org').fill('acme');
    expect((await submit(page, 'Add cluster')).status()).toBe(201);
    const connectorKey = await page.getByLabel(`Connector key of ${CLUSTER}`).inputValue();
    expect(connectorKey).toMatch(/^krl_cluster_[\w-]{20,}$/);

    // The relay of the cluster: tunnel mode, central audit (it has a connector key) and central grants.
    seen.relay = await stack.startTunnelRelay(CLUSTER, connectorKey, { centralGrants: true });
    expect(seen.relay.centralGrants).toBeDefined();
    await page.getByRole('link', { name: `Go to ${CLUSTER}` }).click();
    await page.waitForURL(at(`/ui/clusters/${CLUSTER}`));
    await page.waitForFunction(() => document.querySelector('#cluster-state')?.textContent?.trim() === 'connected', null, { timeout: 30_000, polling: 200 });
    await page.waitForFunction(() => document.querySelector('#relay-table tbody td[data-label="Ready"]')?.textContent?.trim() === 'ready', null, { timeout: 30_000, polling: 200 });
    await expect(page.locator('#relay-table td[data-label="Mode"]').innerText()).resolves.toBe('tunnel');
    expect(await duplicateIds(page)).toEqual([]);
  });

  it('2. an agent created on the Agents page shows its API key once, with the command that writes its kubeconfig; its page takes a read-only policy', async () => {
    const { page } = tab;
    await signIn(page);
    await page.getByRole('link', { name: 'Agents' }).click();
    await page.waitForURL(at('/ui/agents'));
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe('Agents');
    await page.getByLabel('Agent name').fill(AGENT);
    await page.getByLabel('Teams').fill('sre');
    await page.getByLabel('Org').fill('acme');
    expect((await submit(page, 'Add agent')).status()).toBe(201);
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe(`Agent ${AGENT} created`);
    const apiKey = await page.locator('#api-key').inputValue();
    expect(apiKey).toMatch(/^krl_agent_[\w-]{20,}$/);
    await expect(page.getByLabel(`API key of ${AGENT}`).inputValue()).resolves.toBe(apiKey);
    await expect(page.getByText('This is the only time it is shown.', { exact: false }).isVisible()).resolves.toBe(true);
    const command = await page.locator('#kubeconfig-command').innerText();
    expect(command).toContain(`printf '%s' '${apiKey}' > ${AGENT}.api-key`);
    expect(command).toContain(`kube-relay kubeconfig --issuer ${stack.url} --issuer-ca-file issuer-ca.crt`);
    expect(command).toContain(`--cluster CLUSTER --server ${stack.url}/clusters/CLUSTER --ca-file issuer-ca.crt`);
    expect(command).toContain(`--api-key-file ${AGENT}.api-key > ${AGENT}.kubeconfig`);
    await look(page, 'agent-created');
    seen.kubeconfigCommand = command;

    await page.getByRole('link', { name: `Go to ${AGENT}` }).click();
    await page.waitForURL(at(`/ui/agents/${AGENT}`));
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe(`Agent ${AGENT}`);
    expect(await page.content()).not.toContain(apiKey);
    const facts = page.locator('dl.facts');
    await expect(facts.innerText()).resolves.toContain(`user agent:${AGENT}, groups acme/sre`);
    await expect(facts.locator('.state').innerText()).resolves.toBe('active');
    await expect(page.locator('#agent-policy ~ p.muted').innerText()).resolves.toBe('It has no policy of its own.');

    await page.getByLabel('Read-only', { exact: true }).check();
    expect((await submit(page, 'Save policy')).status()).toBe(200);
    expect(page.url()).toBe(at(`/ui/agents/${AGENT}?done=policy-set`));
    await expect(page.getByRole('status').innerText()).resolves.toMatch(new RegExp(`^The policy of ${AGENT} was saved\\. Tokens minted from now on carry the change`));
    const readOnly = page.locator('table.policy tr', { has: page.locator('th', { hasText: 'Read-only' }) });
    await expect(readOnly.locator('td[data-label="Its own"]').innerText()).resolves.toBe('yes');
    await expect(readOnly.locator('td[data-label="Effective"]').innerText()).resolves.toBe('yes');
    await expect(page.getByLabel('Read-only', { exact: true }).isChecked()).resolves.toBe(true);
    await expect(page.locator('#agent-policy ~ p.muted').innerText()).resolves.toMatch(/^Its own policy was last changed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by admin:root\.$/);
    await look(page, 'agent-policy');

    await page.getByRole('link', { name: 'Agents' }).click();
    await page.waitForURL(at('/ui/agents'));
    const row = page.locator(`tr[data-agent="${AGENT}"]`);
    await expect(row.locator('td[data-label="Org"]').innerText()).resolves.toBe('acme');
    await expect(row.locator('td[data-label="Teams"]').innerText()).resolves.toBe('sre');
    await expect(row.locator('td[data-label="Policy"]').innerText()).resolves.toBe('read-only');
    await expect(row.locator('td[data-label="State"]').innerText()).resolves.toBe('active');
    expect(await page.content()).not.toContain(apiKey);
    await look(page, 'agents');
  });

  it('3. a grant added on the Grants page is pending, then applied without a reload once the relay has written its RoleBinding', async () => {
    expect(seen.relay, 'the relay of step 1').toBeDefined();
    const { page } = tab;
    await signIn(page);
    await page.getByRole('link', { name: 'Grants' }).click();
    await page.waitForURL(at('/ui/grants'));
    await expect(page.getByText('No grants yet: add one below.').isVisible()).resolves.toBe(true);
    const form = page.getByRole('region', { name: 'Add a grant' });
    await form.getByLabel('Cluster', { exact: true }).selectOption({ label: `${CLUSTER} (org acme)` });
    await form.getByLabel('Grant to').selectOption({ label: 'an agent' });
    await form.getByLabel('Agent name or group').fill(AGENT);
    await form.getByLabel('Role', { exact: true }).selectOption('view');
    await form.getByLabel('Namespace').fill('default');

    // The relay's RBAC calls wait until the page has shown the grant pending: on this machine the
    // relay, nudged by the hub at once, could otherwise apply it before the browser loads the page.
    const release = stack.holdRbac();
    let grantId: string;
    try {
      expect((await submit(page, 'Add grant')).status()).toBe(200);
      const url = new URL(page.url());
      expect(url.pathname).toBe('/ui/grants');
      expect(url.searchParams.get('cluster')).toBe(CLUSTER);
      grantId = url.searchParams.get('added') ?? '';
      expect(grantId).not.toBe('');
      await expect(page.getByRole('status').innerText()).resolves.toBe(`Grant ${grantId} added. It is pending until its cluster's relay applies it; its state below changes by itself.`);
      const row = page.locator(`tr[data-grant="${grantId}"]`);
      const cells = Object.fromEntries(await Promise.all(['Cluster', 'Grantee', 'Role', 'Namespace', 'Expires', 'State'].map(async (label) => [label, await row.locator(`td[data-label="${label}"]`).innerText()])));
      expect(cells).toEqual({ Cluster: CLUSTER, Grantee: `agent:${AGENT}`, Role: 'view', Namespace: 'default', Expires: 'never', State: 'pending' });
      await expect(row.locator('td[data-label="Added"]').innerText()).resolves.toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by admin:root$/);
      expect(stack.rbac.get('rolebindings/default', `kube-relay-${grantId}`)).toBeUndefined();
      await markNotReloaded(page);
      await look(page, 'grants-pending');
    } finally {
      release();
    }

    await page.waitForFunction((id) => document.querySelector(`#grant-state-${id}`)?.getAttribute('data-state') === 'applied', grantId, { timeout: 60_000, polling: 200 });
    const state = page.locator(`#grant-state-${grantId}`);
    await expect(state.innerText()).resolves.toBe('applied');
    await expect(state.getAttribute('title')).resolves.toMatch(/^reported \d{4}-\d\d-\d\dT/);
    expect(await wasNotReloaded(page)).toBe(true);
    // What the relay wrote into the cluster: a RoleBinding of the grant, for the agent's user, to ClusterRole view.
    expect(stack.rbac.get('rolebindings/default', `kube-relay-${grantId}`)).toMatchObject({
      kind: 'RoleBinding',
      metadata: { name: `kube-relay-${grantId}`, namespace: 'default', labels: { 'app.kubernetes.io/managed-by': 'kube-relay', 'kube-relay.dev/cluster': CLUSTER, 'kube-relay.dev/grant': grantId } },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
      subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: `agent:${AGENT}` }],
    });
    expect((await stack.api('GET', `/v1/grants/${grantId}`)).json()).toMatchObject({ state: 'applied' });
    await look(page, 'grants-applied');
    seen.grantId = grantId;
  });

  it("4. kubectl through the hub as the agent: the Sessions page, open meanwhile, shows its session by itself; the session's page its commands and requests in order", async () => {
    expect(seen.kubeconfigCommand, 'the kubeconfig command of step 2').toBeDefined();
    expect(seen.grantId, 'the grant of step 3').toBeDefined();
    const list = tab.page;
    await signIn(list);
    await list.getByRole('link', { name: 'Sessions' }).click();
    await list.waitForURL(at('/ui/sessions'));
    await list.getByLabel('Agent').fill(AGENT);
    await submit(list, 'Filter');
    expect(new URL(list.url()).searchParams.get('agent')).toBe(AGENT);
    await expect(list.locator('#session-table').innerText()).resolves.toContain('No sessions match.');
    await markNotReloaded(list);

    // The page's command, its CLUSTER filled in, pasted into a shell.
    const command = seen.kubeconfigCommand!.replace('--cluster CLUSTER ', `--cluster ${CLUSTER} `).replace('/clusters/CLUSTER ', `/clusters/${CLUSTER} `);
    expect(command).not.toMatch(/--cluster CLUSTER|\/clusters\/CLUSTER/);
    const pasted = await runPasted(command);
    expect(pasted.stderr).toBe('');
    expect(pasted.code).toBe(0);
    const kubeconfig = parse(readFileSync(path.join(workDir, `${AGENT}.kubeconfig`), 'utf8')) as { clusters: { cluster: { server: string } }[] };
    expect(kubeconfig.clusters.map((c) => c.cluster.server)).toEqual([`${stack.url}/clusters/${CLUSTER}`]);

    const before = stack.apiServer.requests.length;
    const pods = await kubectl(['get', 'pods', '-n', 'default']);
    expect(pods.stderr).toBe('');
    expect(pods.code).toBe(0);
    expect(pods.stdout).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\n/);
    expect(pods.stdout).toContain('pod-0');
    // The fake API server answers a configmap list with an object kubectl prints as one nameless row.
    const configmaps = await kubectl(['get', 'configmaps', '-n', 'default']);
    expect(configmaps.stderr).toBe('');
    expect(configmaps.code).toBe(0);
    expect(configmaps.stdout).toMatch(/^NAME\s+AGE\n/);
    // Both reached the API server through the relay, as the agent's user with its team's group.
    const reached = stack.apiServer.requests.slice(before).filter((r) => /^\/api\/v1\/namespaces\/default\/(pods|configmaps)\?/.test(r.url));
    expect(reached.map((r) => r.url.split('?')[0])).toEqual(['/api/v1/namespaces/default/pods', '/api/v1/namespaces/default/configmaps']);
    for (const request of reached) {
      expect(request.headers['impersonate-user']).toBe(`agent:${AGENT}`);
      expect(request.headers['impersonate-group']).toBe('acme/sre');
    }

    // The list, never reloaded, shows the session once the relay's records reach the issuer.
    await list.waitForFunction(
      (agent) => {
        const row = document.querySelector('#session-table tr[data-session]');
        return row?.querySelector('td[data-label="Agent"]')?.textContent === agent && /^2: /.test(row.querySelector('td[data-label="Commands"]')?.textContent ?? '');
      },
      AGENT,
      { timeout: 60_000, polling: 250 },
    );
    expect(await wasNotReloaded(list)).toBe(true);
    const rows = list.locator('#session-table tr[data-session]');
    await expect(rows.count()).resolves.toBe(1);
    const row = rows.first();
    const sessionId = (await row.getAttribute('data-session'))!;
    expect(sessionId).toMatch(/^s-/);
    await expect(row.getAttribute('data-open')).resolves.toBe('true');
    await expect(row.locator('td[data-label="Cluster"]').innerText()).resolves.toBe(CLUSTER);
    await expect(row.locator('td[data-label="Ended"]').innerText()).resolves.toBe('open');
    await expect(row.locator('td[data-label="Commands"]').innerText()).resolves.toBe('2: kubectl get, kubectl get');
    await expect(row.locator('td[data-label="Refusals"]').innerText()).resolves.toBe('0');
    const requests = Number(await row.locator('td[data-label="Requests"]').innerText());
    expect(requests).toBeGreaterThanOrEqual(2);
    await look(list, 'sessions');

    await row.getByRole('link', { name: sessionId }).click();
    await list.waitForURL(at(`/ui/sessions/${sessionId}`));
    await expect(list.getByRole('heading', { level: 1 }).innerText()).resolves.toBe(`Session ${sessionId}`);
    const facts = Object.fromEntries(await list.locator('dl.facts dt').evaluateAll((dts) => dts.map((dt) => [dt.textContent, dt.nextElementSibling?.textContent])));
    expect(facts).toMatchObject({ Agent: AGENT, Org: 'acme', Cluster: CLUSTER, Ended: 'open', Requests: String(requests), Refusals: '0' });
    expect(facts.Duration).toMatch(/ so far$/);
    await expect(list.locator('#session-activity').getAttribute('data-open')).resolves.toBe('true');
    // Its commands: the two kubectl invocations, in the order they ran.
    const commands = list.locator('ol.commands li');
    await expect(commands.evaluateAll((items) => items.map((item) => [item.getAttribute('data-kind'), item.querySelector('code')?.textContent]))).resolves.toEqual([
      ['kubectl', 'kubectl get'],
      ['kubectl', 'kubectl get'],
    ]);
    const commandTimes = await commands.locator('time').evaluateAll((times) => times.map((time) => time.getAttribute('datetime')!));
    expect(commandTimes).toEqual([...commandTimes].sort());
    // Its requests, in time order: every one, the pods list before the configmaps list, all allowed.
    const timeline = list.locator('ol.timeline li');
    await expect(timeline.count()).resolves.toBe(requests);
    const entries = await timeline.evaluateAll((items) => items.map((item) => ({ time: item.querySelector('time')?.getAttribute('datetime') ?? '', text: item.textContent ?? '', refused: item.classList.contains('refused') })));
    expect(entries.map((entry) => entry.time)).toEqual(entries.map((entry) => entry.time).sort());
    expect(entries.every((entry) => !entry.refused && /· allowed$/.test(entry.text))).toBe(true);
    const podsAt = entries.findIndex((entry) => /^\S+ \S+ UTC list pods default · status 200 · allowed$/.test(entry.text));
    const configmapsAt = entries.findIndex((entry) => /^\S+ \S+ UTC list configmaps default · status 200 · allowed$/.test(entry.text));
    expect(podsAt).toBeGreaterThanOrEqual(0);
    expect(configmapsAt).toBeGreaterThan(podsAt);
    await look(list, 'session');
    seen.sessionId = sessionId;
    seen.requests = requests;
  });

  it('5. revoking the agent from its page ends its session at its revocation, on the session page and the list left open; kubectl as the agent then fails and the session stays ended', async () => {
    expect(seen.sessionId, 'the session of step 4').toBeDefined();
    const session = tab.page;
    await signIn(session);
    await session.goto(at(`/ui/sessions/${seen.sessionId}`));
    await expect(session.locator('#session-activity').getAttribute('data-open')).resolves.toBe('true');
    const list = await tab.newPage();
    await list.goto(at(`/ui/sessions?agent=${AGENT}`));
    await expect(list.locator(`tr[data-session="${seen.sessionId}"]`).getAttribute('data-open')).resolves.toBe('true');
    for (const page of [session, list]) await markNotReloaded(page);

    const agent = await tab.newPage();
    await agent.goto(at(`/ui/agents/${AGENT}`));
    await agent.getByRole('link', { name: 'Revoke agent…' }).click();
    await agent.waitForURL(at(`/ui/agents/${AGENT}/revoke`));
    await expect(agent.getByRole('heading', { level: 1 }).innerText()).resolves.toBe(`Revoke agent ${AGENT}?`);
    await look(agent, 'agent-revoke-confirm');
    await agent.getByLabel(`Type ${AGENT} to confirm`).fill(AGENT);
    expect((await submit(agent, `Revoke ${AGENT}`)).status()).toBe(200);
    expect(agent.url()).toBe(at(`/ui/agents/${AGENT}?done=revoked`));
    await expect(agent.getByRole('status').innerText()).resolves.toBe(`Agent ${AGENT} was revoked: its API key no longer works, and relays refuse the tokens it holds and end its live streams.`);
    await expect(agent.locator('dl.facts .state').innerText()).resolves.toMatch(/^revoked \d{4}-/);
    const revokedAt = (await stack.api('GET', `/v1/agents/${AGENT}`)).json().revokedAt as string;
    expect(revokedAt).toEqual(expect.any(String));
    await look(agent, 'agent-revoked');

    // The open session's page stops being open by itself, ended at the revocation; so does its row.
    await session.waitForFunction(() => document.querySelector('#session-activity')?.getAttribute('data-open') === 'false', null, { timeout: 30_000, polling: 250 });
    const ended = session.locator('dl.facts dt:text-is("Ended") + dd time');
    await expect(ended.getAttribute('datetime')).resolves.toBe(revokedAt);
    await expect(session.locator('dl.facts dt:text-is("Duration") + dd').innerText()).resolves.not.toMatch(/so far/);
    await list.waitForFunction((id) => document.querySelector(`tr[data-session="${id}"]`)?.getAttribute('data-open') === 'false', seen.sessionId, { timeout: 30_000, polling: 250 });
    await expect(list.locator(`tr[data-session="${seen.sessionId}"] td[data-label="Ended"] time`).getAttribute('datetime')).resolves.toBe(revokedAt);
    for (const page of [session, list]) expect(await wasNotReloaded(page)).toBe(true);

    // kubectl as the agent: its key no longer gets a token, so nothing reaches the cluster.
    const before = stack.apiServer.requests.length;
    const refused = await kubectl(['get', 'pods', '-n', 'default']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(`the issuer refused a token for cluster "${CLUSTER}": agent "${AGENT}" has been revoked`);
    expect(stack.apiServer.requests.slice(before).filter((r) => r.headers['impersonate-user'] === `agent:${AGENT}`)).toEqual([]);

    // Two refreshes of the list later, the session is still ended, with nothing added to it, and no other session began.
    for (let refresh = 0; refresh < 2; refresh++) await list.waitForResponse((response) => new URL(response.url()).pathname === '/ui/sessions/live' && response.status() === 200, { timeout: 30_000 });
    const row = list.locator(`tr[data-session="${seen.sessionId}"]`);
    await expect(row.getAttribute('data-open')).resolves.toBe('false');
    await expect(row.locator('td[data-label="Requests"]').innerText()).resolves.toBe(String(seen.requests));
    await expect(list.locator('#session-table tr[data-session]').count()).resolves.toBe(1);
    expect((await stack.api('GET', `/v1/sessions/${seen.sessionId}`)).json()).toMatchObject({ session: { open: false, endedAt: revokedAt, requests: seen.requests } });
    expect(await wasNotReloaded(list)).toBe(true);
    await look(session, 'session-ended');
    await look(list, 'sessions-ended');
  });

  it("6. the Audit page finds the agent's records, every one allowed, each with all its fields under All fields", async () => {
    expect(seen.sessionId, 'the session of step 4').toBeDefined();
    const { page } = tab;
    await signIn(page);
    await page.getByRole('link', { name: 'Audit' }).click();
    await page.waitForURL(at('/ui/audit'));
    await page.getByLabel('Agent').fill(AGENT);
    await submit(page, 'Search');
    expect(new URL(page.url()).searchParams.get('agent')).toBe(AGENT);
    const rows = page.locator('table.audit tbody tr');
    await expect(rows.count()).resolves.toBe(seen.requests);
    const cells = (label: string) => rows.locator(`td[data-label="${label}"]`).allInnerTexts();
    expect(new Set(await cells('Agent or user'))).toEqual(new Set([AGENT]));
    expect(new Set(await cells('Cluster'))).toEqual(new Set([CLUSTER]));
    expect(new Set(await cells('Decision'))).toEqual(new Set(['allowed']));
    expect(new Set(await cells('Status'))).toEqual(new Set(['200']));
    await expect(page.locator('table.audit tr.refused').count()).resolves.toBe(0);

    // One record's fields, unfolded as a person does: the pods list of the first kubectl.
    const podsList = page.locator('table.audit tbody tr', { has: page.locator('td[data-label="Resource"]', { hasText: /^pods$/ }) }).filter({ has: page.locator('td[data-label="Verb"]', { hasText: /^list$/ }) });
    await expect(podsList.count()).resolves.toBe(1);
    const details = podsList.locator('details');
    await expect(details.evaluate((element) => (element as HTMLDetailsElement).open)).resolves.toBe(false);
    await podsList.getByText('All fields').click();
    await expect(details.evaluate((element) => (element as HTMLDetailsElement).open)).resolves.toBe(true);
    const fields = Object.fromEntries(await details.locator('dl.record dt').evaluateAll((dts) => dts.map((dt) => [dt.textContent, dt.nextElementSibling?.textContent])));
    expect(fields).toMatchObject({
      user: `agent:${AGENT}`,
      verb: 'list',
      resource: 'pods',
      namespace: 'default',
      path: '/api/v1/namespaces/default/pods',
      decision: 'allowed',
      status: '200',
      kubectlCommand: 'kubectl get',
      mode: 'tunnel',
      cluster: CLUSTER,
      org: 'acme',
      session: seen.sessionId,
    });
    expect(fields.requestId).toMatch(/\S/);
    await expect(details.getByRole('link', { name: seen.sessionId! }).getAttribute('href')).resolves.toBe(`/ui/sessions/${seen.sessionId}`);
    // Every other record has its fields folded under it the same way.
    await expect(page.locator('table.audit tbody tr details summary').allInnerTexts()).resolves.toEqual(Array(seen.requests).fill('All fields'));
    await look(page, 'audit');
  });
});
