/**
 * The web console (issue 20, DESIGN §14) in a real browser: Debian's
 * Chromium doing what a person does, filling fields by their label and
 * clicking buttons by their name, on an issuer with its hub in this process
 * and real tunnel relays dialling it. Every test also asserts that no page
 * logged an error, threw, or broke the Content-Security-Policy.
 *
 * The flows: sign in (a wrong key says only that it is not a valid admin
 * key); add a cluster and see its connector key once; connect a relay with
 * that key and watch the list and the cluster's page turn connected, then
 * "not connected since", without a reload; an org admin cannot see another
 * org's cluster, in the list or by URL; forged and tampered form posts do
 * nothing; revoking a cluster needs its name typed.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, screenshot, signIn as signInAs, submit, type Tab, tabPerTest } from './browser.js';
import { type ConsoleStack, startConsoleStack } from './stack.js';

let browser: Browser;
let stack: ConsoleStack;
let tab: Tab;

beforeAll(async () => {
  browser = await launchChromium();
  stack = await startConsoleStack({
    idleTimeoutMs: 30 * 60_000,
    clusters: [
      { name: 'acme-prod', org: 'acme' },
      { name: 'other-prod', org: 'other' },
      { name: 'doomed', org: 'acme' },
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  await stack?.close();
});

tabPerTest(() => browser, (opened) => (tab = opened));

const at = (pathname: string) => `${stack.url}${pathname}`;

async function signIn(page: Page, key: string): Promise<void> {
  const response = await signInAs(page, stack.url, key);
  expect(response.status()).toBe(200);
  expect(new URL(page.url()).pathname).toBe('/ui/clusters');
}

/** Everything of the page a person or a script could read: its HTML, its text, and the current value of every field. */
async function everythingOn(page: Page): Promise<string> {
  const values = await page.evaluate(() => [...document.querySelectorAll('input, textarea')].map((field) => (field as HTMLInputElement).value).join('\n'));
  return `${await page.content()}\n${await page.locator('body').innerText()}\n${values}`;
}


describe('signing in', () => {
  it('an all-orgs admin signs in with its key and lands on Clusters; a wrong key is refused without saying whether any admin exists', async () => {
    const { page } = tab;
    await page.goto(at('/ui/'));
    expect(new URL(page.url()).pathname).toBe('/ui/sign-in');
    await expect(page.getByRole('status').innerText()).resolves.toBe('Sign in with an admin key to continue.');
    await screenshot(page, 'sign-in');

    // Chromium logs each 401 page it loads: expected here, three times.
    tab.expect(/Failed to load resource: the server responded with a status of 401/);
    const realKey = stack.rootKey;
    const wrongKeys = ['hunter2', `krl_admin_${'x'.repeat(realKey.length - 'krl_admin_'.length)}`, `${realKey.slice(0, -1)}${realKey.endsWith('a') ? 'b' : 'a'}`];
    const refusals: string[] = [];
    for (const wrong of wrongKeys) {
      await page.getByLabel('Admin key').fill(wrong);
      const response = await submit(page, 'Sign in');
      expect(response.status()).toBe(401);
      expect(new URL(page.url()).pathname).toBe('/ui/sign-in');
      const field = page.getByLabel('Admin key');
      await expect(field.getAttribute('aria-invalid')).resolves.toBe('true');
      await expect(field.inputValue()).resolves.toBe('');
      refusals.push(await page.locator('#field-key-error').innerText());
      const text = await page.locator('main').innerText();
      expect(text).not.toMatch(/exist|unknown|no such|no admin|root|acme-admin/i);
      expect(await page.content()).not.toContain(wrong);
    }
    // The same sentence whether the key is nonsense, shaped like a key, or a real key's near miss.
    expect(new Set(refusals)).toEqual(new Set(['That is not a valid admin key. Admin keys start with krl_admin_; kube-relay admin create makes one.']));
    await screenshot(page, 'sign-in-wrong-key');

    await page.getByLabel('Admin key').fill(realKey);
    const response = await submit(page, 'Sign in');
    expect(response.status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe('/ui/clusters');
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe('Clusters');
    await expect(page.locator('header .who span').innerText()).resolves.toBe('root · all orgs');
    await expect(page.getByRole('link', { name: 'Clusters' }).getAttribute('aria-current')).resolves.toBe('page');
    const cookies = await tab.context.cookies();
    expect(cookies).toEqual([expect.objectContaining({ name: '__Host-kube-relay-console', domain: '127.0.0.1', path: '/', httpOnly: true, secure: true, sameSite: 'Strict' })]);
    await screenshot(page, 'clusters');
  });
});

/** The connector key the page showed for edge-eu, for the relay of the next flow. */
let edgeKey: string | undefined;

describe('clusters', () => {
  it('adds a cluster: its connector key is shown once, with a helm install naming the issuer, the cluster and its CA; the cluster page and the list never show it again', async () => {
    const { page } = tab;
    await signIn(page, stack.rootKey);
    await page.getByLabel('Cluster name').fill('edge-eu');
    await page.getByLabel('Org').fill('acme');
    const response = await submit(page, 'Add cluster');
    expect(response.status()).toBe(201);
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe('Cluster edge-eu added');

    const keyField = page.locator('#connector-key');
    expect(await keyField.isVisible()).toBe(true);
    await expect(page.getByLabel('Connector key of edge-eu').inputValue()).resolves.toMatch(/^krl_cluster_[\w-]{20,}$/);
    const key = await keyField.inputValue();
    await expect(page.getByText('This is the only time it is shown.', { exact: false }).isVisible()).resolves.toBe(true);
    const helm = await page.locator('#helm-command').innerText();
    expect(helm).toContain(`printf '%s' '${key}' > edge-eu.connector-key`);
    // (The data directory's CA file has CRLF line ends, which innerText reads as LF; PEM readers take either.)
    expect(helm).toContain(`cat > issuer-ca.crt <<'EOF'\n${stack.caPem.trim().replaceAll('\r\n', '\n')}\nEOF`);
    expect(helm).toContain('helm install kube-relay deploy/helm/kube-relay -n kube-relay --create-namespace');
    expect(helm).toContain('--set clusterName=edge-eu');
    expect(helm).toContain(`--set issuerUrl=${stack.url} --set hubUrl=${stack.url}`);
    expect(helm).toContain('--set-file connectorKey=edge-eu.connector-key');
    expect(helm).toContain('--set-file issuerCa=issuer-ca.crt');
    expect(await stack.clusterExists('edge-eu')).toBe(true);
    await screenshot(page, 'cluster-added');
    edgeKey = key;

    // The page the key was on is not kept: going back to it does not show it again.
    await page.getByRole('link', { name: 'Go to edge-eu' }).click();
    await page.waitForURL(at('/ui/clusters/edge-eu'));
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe('Cluster edge-eu');
    expect(await everythingOn(page)).not.toContain(key);
    await expect(page.locator('#relay-table [data-state]').getAttribute('data-state')).resolves.toBe('disconnected');
    await screenshot(page, 'cluster-never-connected');
    await page.reload();
    expect(await everythingOn(page)).not.toContain(key);

    // Back to the answer of the form: it was not stored (no-store), so Chromium does not show it again
    // (it would have to send the form again, and asks first).
    await expect(page.goBack()).rejects.toThrow('net::ERR_CACHE_MISS');
    await page.waitForURL((url) => url.protocol === 'chrome-error:');
    await page.waitForLoadState('load');
    await expect(page.locator('body').innerText()).resolves.toContain('ERR_CACHE_MISS');
    expect(await everythingOn(page)).not.toContain(key);
    await page.goto(at('/ui/clusters'));
    expect(await everythingOn(page)).not.toContain(key);
    await expect(page.locator('tr[data-cluster="edge-eu"] td[data-label="State"]').innerText()).resolves.toBe('never connected');
  });

  // Uses edge-eu and the key the previous flow read from the page.
  it('a tunnel relay connecting with that key turns the cluster connected on the list and on its page without a reload, and "not connected since" when it stops', async () => {
    expect(edgeKey, 'the connector key from the flow that added edge-eu').toBeDefined();
    const list = tab.page;
    await signIn(list, stack.rootKey);
    const detail = await tab.newPage();
    await detail.goto(at('/ui/clusters/edge-eu'));
    const row = list.locator('tr[data-cluster="edge-eu"]');
    await expect(row.locator('td[data-label="State"]').innerText()).resolves.toBe('never connected');
    await expect(detail.locator('#relay-table [data-state]').getAttribute('data-state')).resolves.toBe('disconnected');
    await expect(detail.locator('#cluster-state').innerText()).resolves.toBe('never connected');
    // A mark in each document: had either page been reloaded, it would be gone.
    for (const page of [list, detail]) await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));

    const relay = await stack.startTunnelRelay('edge-eu', edgeKey!);
    await list.waitForFunction(() => document.querySelector('tr[data-cluster="edge-eu"] td[data-label="State"]')?.textContent?.trim() === 'connected', null, { timeout: 30_000, polling: 200 });
    await expect(row.locator('td[data-label="Relays"]').innerText()).resolves.toMatch(/^tunnel via \S+$/);
    await detail.waitForFunction(() => document.querySelector('#relay-table [data-state]')?.getAttribute('data-state') === 'connected' && /\bready$/.test(document.querySelector('#relay-table tbody td[data-label="Ready"]')?.textContent ?? ''), null, { timeout: 30_000, polling: 200 });
    await expect(detail.locator('#relay-table td[data-label="Mode"]').innerText()).resolves.toBe('tunnel');
    await expect(detail.locator('#relay-table td[data-label="Ready"]').innerText()).resolves.toBe('ready');
    await expect(detail.locator('#relay-table td[data-label="Version"]').innerText()).resolves.toMatch(/^\d+\.\d+\.\d+/);
    // The state among the page's facts is refreshed with the relays: the page does not contradict itself.
    await expect(detail.locator('#cluster-state').innerText()).resolves.toBe('connected');
    for (const page of [list, detail]) expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
    await screenshot(list, 'clusters-connected');
    await screenshot(detail, 'cluster-connected');

    const stoppedAfter = Date.now();
    await relay.close();
    await list.waitForFunction(() => /^not connected since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/.test(document.querySelector('tr[data-cluster="edge-eu"] td[data-label="State"]')?.textContent?.trim() ?? ''), null, { timeout: 30_000, polling: 200 });
    await detail.waitForFunction(() => document.querySelector('#relay-table [data-state]')?.getAttribute('data-state') === 'disconnected', null, { timeout: 30_000, polling: 200 });
    await expect(detail.locator('#relay-table [data-state]').innerText()).resolves.toMatch(/^Not connected since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\.$/);
    await expect(detail.locator('#cluster-state').innerText()).resolves.toMatch(/^not connected since \d{4}-/);
    const since = await detail.locator('#relay-table time').getAttribute('datetime');
    expect(Date.parse(since!)).toBeGreaterThanOrEqual(stoppedAfter - 1_000);
    for (const page of [list, detail]) expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
    await screenshot(list, 'clusters-disconnected');
    await screenshot(detail, 'cluster-disconnected');
  });

  it('revoking a cluster from its page asks for its name: a wrong one gets the sentence beside the field and nothing is done, the right one revokes it', async () => {
    const { page } = tab;
    await signIn(page, stack.rootKey);
    await page.goto(at('/ui/clusters/doomed'));
    await page.getByRole('link', { name: 'Revoke cluster…' }).click();
    await page.waitForURL(at('/ui/clusters/doomed/revoke'));
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe('Revoke cluster doomed?');
    await expect(page.locator('form.confirm strong').innerText()).resolves.toBe('doomed');
    await screenshot(page, 'revoke-confirm');

    tab.expect(/Failed to load resource: the server responded with a status of 422/);
    await page.getByLabel('Type doomed to confirm').fill('doomd');
    const refused = await submit(page, 'Revoke doomed');
    expect(refused.status()).toBe(422);
    const field = page.getByLabel('Type doomed to confirm');
    await expect(field.getAttribute('aria-invalid')).resolves.toBe('true');
    await expect(field.getAttribute('aria-describedby')).resolves.toContain('field-confirm-error');
    // Beside the field: in its own box, right under it.
    await expect(page.locator('.field.invalid:has(#field-confirm) #field-confirm-error').innerText()).resolves.toBe("Type the cluster's name, doomed, to confirm.");
    expect((await stack.api('GET', '/v1/clusters/doomed')).json().revokedAt).toBeUndefined();
    await screenshot(page, 'revoke-confirm-wrong');

    await page.getByLabel('Type doomed to confirm').fill('doomed');
    const done = await submit(page, 'Revoke doomed');
    expect(done.status()).toBe(200);
    expect(page.url()).toBe(at('/ui/clusters/doomed?done=revoked'));
    await expect(page.getByRole('status').innerText()).resolves.toBe('Cluster doomed was revoked: its relays are disconnected and its key no longer works.');
    await expect(page.locator('dl.facts .state').innerText()).resolves.toMatch(/^revoked \d{4}-/);
    await expect(page.getByRole('link', { name: 'Revoke cluster…' }).count()).resolves.toBe(0);
    expect((await stack.api('GET', '/v1/clusters/doomed')).json().revokedAt).toEqual(expect.any(String));
    await screenshot(page, 'cluster-revoked');
    await page.goto(at('/ui/clusters'));
    await expect(page.locator('tr[data-cluster="doomed"] td[data-label="State"]').innerText()).resolves.toMatch(/^revoked \d{4}-/);
  });
});

describe('an org admin', () => {
  it("sees only its org's clusters, and another org's cluster by URL is the page of a cluster that does not exist", async () => {
    const { page } = tab;
    await signIn(page, stack.acmeKey);
    await expect(page.locator('header .who span').innerText()).resolves.toBe('acme-admin · org acme');
    await expect(page.locator('tr[data-cluster="acme-prod"]').count()).resolves.toBe(1);
    await expect(page.locator('tr[data-cluster="other-prod"]').count()).resolves.toBe(0);
    expect(await page.locator('main').innerText()).not.toContain('other');
    // Its clusters are of its org: the add form asks no org.
    await expect(page.getByLabel('Org').count()).resolves.toBe(0);
    await screenshot(page, 'clusters-org-admin');

    tab.expect(/Failed to load resource: the server responded with a status of 404/);
    const seen: { status: number; heading: string; message: string }[] = [];
    for (const name of ['other-prod', 'no-such-cluster']) {
      for (const pathname of [`/ui/clusters/${name}`, `/ui/clusters/${name}/revoke`]) {
        const response = await page.goto(at(pathname));
        const message = (await page.getByRole('alert').innerText()).replaceAll(name, 'NAME');
        seen.push({ status: response!.status(), heading: await page.getByRole('heading', { level: 1 }).innerText(), message });
        expect(await page.locator('main').innerText()).not.toMatch(/other(?!-prod)|org other/);
      }
    }
    // Another org's cluster is answered exactly as one that does not exist.
    expect(seen).toEqual(Array(4).fill({ status: 404, heading: 'Cluster not found', message: 'No cluster named "NAME"; see kube-relay cluster list.' }));
    // The live part of a cluster's page, asked for by URL, is refused the same way.
    const live: { status: number; text: string }[] = [];
    for (const name of ['other-prod', 'no-such-cluster']) {
      const answer = await tab.context.request.get(at(`/ui/clusters/${name}/live`), { headers: { 'hx-request': 'true' } });
      live.push({ status: answer.status(), text: (await answer.text()).replaceAll(name, 'NAME') });
    }
    expect(live).toEqual(Array(2).fill({ status: 404, text: 'No cluster named "NAME"; see kube-relay cluster list.' }));
    await page.goto(at('/ui/clusters/other-prod'));
    await screenshot(page, 'cluster-not-found');
    expect((await stack.api('GET', '/v1/clusters/other-prod')).json().revokedAt).toBeUndefined();
  });
});

describe('forms sent from elsewhere', () => {
  let attacker: Server;
  let attackerUrl: string;

  beforeAll(async () => {
    // Another site (127.0.0.2 is another host than 127.0.0.1): a page that posts a form to the console as soon as it loads.
    attacker = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      if (req.url === '/link') {
        res.end(`<!doctype html><title>A ticket</title><p>See <a href="${stack.url}/ui/clusters">the console</a>.</p>`);
        return;
      }
      res.end(`<!doctype html><title>Win a prize</title>
<form id="forge" method="post" action="${stack.url}/ui/clusters">
<input name="name" value="forged"><input name="org" value="acme"><input name="_csrf" value="guessed">
</form>
<script>document.getElementById('forge').submit();</script>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.2', resolve));
    attackerUrl = `http://127.0.0.2:${(attacker.address() as AddressInfo).port}/`;
  });

  afterAll(async () => {
    await new Promise((resolve) => attacker?.close(resolve));
  });

  it('a page of another site posting the add-cluster form while the admin is signed in creates nothing (the cookie is SameSite=Strict)', async () => {
    const { page } = tab;
    await signIn(page, stack.rootKey);
    const signedIn = await sessionCookie(page);
    await page.goto(attackerUrl);
    // The post came without the session, so the console answered it as from someone not signed in (to
    // sign-in, doing nothing); that page came back same-site, where the admin's session was still there.
    await page.waitForURL((url) => url.origin === stack.url && url.pathname === '/ui/clusters', { timeout: 30_000 });
    expect(await stack.clusterExists('forged')).toBe(false);
    await expect(page.locator('tr[data-cluster="forged"]').count()).resolves.toBe(0);
    expect(await sessionCookie(page)).toBe(signedIn);
  });

  it('a link from another site opens the console page, still signed in (it comes back same-site for the Strict cookie)', async () => {
    const { page } = tab;
    await signIn(page, stack.rootKey);
    const signedIn = await sessionCookie(page);
    await page.goto(`${attackerUrl}link`);
    await page.getByRole('link', { name: 'the console' }).click();
    await page.waitForURL((url) => url.origin === stack.url && url.pathname === '/ui/clusters', { timeout: 30_000 });
    await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe('Clusters');
    expect(await sessionCookie(page)).toBe(signedIn);
  });

  it("the console's own form with its CSRF token changed or removed is refused (403) and nothing is created", async () => {
    const { page } = tab;
    tab.expect(/Failed to load resource: the server responded with a status of 403/);
    await signIn(page, stack.rootKey);
    const cases: [string, (token: HTMLInputElement) => void][] = [
      ['tampered', (token) => (token.value = `${token.value.slice(0, -2)}xx`)],
      ['tokenless', (token) => token.remove()],
    ];
    for (const [name, spoil] of cases) {
      await page.goto(at('/ui/clusters'));
      await page.getByLabel('Cluster name').fill(name);
      await page.getByLabel('Org').fill('acme');
      await page.locator('form[action="/ui/clusters"] input[name="_csrf"]').evaluate(spoil);
      const response = await submit(page, 'Add cluster');
      expect(response.status()).toBe(403);
      await expect(page.getByRole('heading', { level: 1 }).innerText()).resolves.toBe('Form refused');
      await expect(page.getByRole('alert').innerText()).resolves.toContain('This form was not sent from a page of this console');
      await expect(page.getByRole('alert').innerText()).resolves.toContain('nothing was done');
      expect(await stack.clusterExists(name)).toBe(false);
      if (name === 'tampered') await screenshot(page, 'form-refused');
    }
  });
});

/** The console's session cookie in the page's browser context (HttpOnly: not readable by the page itself). */
async function sessionCookie(page: Page): Promise<string | undefined> {
  return (await page.context().cookies()).find((cookie) => cookie.name === '__Host-kube-relay-console')?.value;
}
