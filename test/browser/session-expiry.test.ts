/**
 * The console's idle timeout in a real browser (issue 20, "Bad input":
 * expired session → back to sign-in, the action not performed), on an
 * issuer of its own whose console sessions end after 4 s without a page
 * view or a form: longer than the 3 s between refreshes of a page's live
 * part, so a page left open refreshes within its session at least once,
 * and that refresh does not count as activity.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, screenshot, signIn, submit, type Tab, tabPerTest } from './browser.js';
import { type ConsoleStack, startConsoleStack } from './stack.js';

const IDLE_TIMEOUT_MS = 4_000;
const EXPIRED_SENTENCE = 'Your session ended after a while without activity; nothing you sent after that was done. Sign in again.';

let browser: Browser;
let stack: ConsoleStack;
let tab: Tab;

beforeAll(async () => {
  browser = await launchChromium();
  stack = await startConsoleStack({ idleTimeoutMs: IDLE_TIMEOUT_MS, clusters: [{ name: 'keep-me', org: 'acme' }] });
});

afterAll(async () => {
  await browser?.close();
  await stack?.close();
});

tabPerTest(() => browser, (opened) => (tab = opened));

const at = (pathname: string) => `${stack.url}${pathname}`;
const idle = () => new Promise((resolve) => setTimeout(resolve, IDLE_TIMEOUT_MS + 1_500));


describe('an expired console session', () => {
  it('the add-cluster form sent after the idle timeout lands on sign-in saying the session ended, and the cluster is not created', async () => {
    const { page } = tab;
    // The page's timers stand still once it has loaded, as in a tab whose laptop was closed: its
    // live refresh does not run, so the page itself cannot notice the session end first (the next test is that case).
    await page.clock.install();
    expect((await signIn(page, stack.url, stack.rootKey)).status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe('/ui/clusters');
    await page.clock.pauseAt(Date.now() + 100);
    const refreshes: string[] = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === '/ui/clusters/live') refreshes.push(request.url());
    });
    await page.getByLabel('Cluster name').fill('too-late');
    await page.getByLabel('Org').fill('acme');
    await idle();
    expect(refreshes, 'no live refresh while the timers stood still').toEqual([]);

    const response = await submit(page, 'Add cluster');
    expect(response.status()).toBe(200);
    const landed = new URL(page.url());
    expect(landed.pathname).toBe('/ui/sign-in');
    expect(landed.searchParams.get('reason')).toBe('expired');
    await expect(page.getByRole('status').innerText()).resolves.toBe(EXPIRED_SENTENCE);
    expect(await stack.clusterExists('too-late')).toBe(false);
    await screenshot(page, 'sign-in-session-ended');

    // Signing in again opens a new session; what was sent before is still not done.
    await page.getByLabel('Admin key').fill(stack.rootKey);
    await submit(page, 'Sign in');
    expect(new URL(page.url()).pathname).toBe('/ui/clusters');
    await expect(page.locator('tr[data-cluster="too-late"]').count()).resolves.toBe(0);
  });

  it('a page left open goes to sign-in by itself when its session ends, though it keeps refreshing its live part', async () => {
    const { page } = tab;
    // The refresh after the timeout is answered 401 with HX-Redirect (htmx then loads the sign-in page); Chromium logs the 401.
    tab.expect(/Failed to load resource: the server responded with a status of 401/);
    expect((await signIn(page, stack.url, stack.rootKey)).status()).toBe(200);
    const refreshes: number[] = [];
    page.on('response', (response) => {
      if (new URL(response.url()).pathname === '/ui/clusters/live') refreshes.push(response.status());
    });
    await page.waitForURL((url) => url.pathname === '/ui/sign-in', { timeout: 60_000 });
    // Refreshed within the session (200), which did not keep it: the next refresh found it ended (401).
    expect(refreshes.at(-1)).toBe(401);
    expect(refreshes.slice(0, -1)).toEqual(expect.arrayContaining([200]));
    expect(refreshes.slice(0, -1).every((status) => status === 200)).toBe(true);
    expect(new URL(page.url()).searchParams.get('reason')).toBe('expired');
    await expect(page.getByRole('status').innerText()).resolves.toBe(EXPIRED_SENTENCE);
  });

  it('the revoke form sent after the idle timeout lands on sign-in, and the cluster is not revoked', async () => {
    const { page } = tab;
    expect((await signIn(page, stack.url, stack.rootKey)).status()).toBe(200);
    await page.goto(at('/ui/clusters/keep-me/revoke'));
    await page.getByLabel('Type keep-me to confirm').fill('keep-me');
    await idle();
    await submit(page, 'Revoke keep-me');
    expect(new URL(page.url()).pathname).toBe('/ui/sign-in');
    expect(new URL(page.url()).searchParams.get('reason')).toBe('expired');
    await expect(page.getByRole('status').innerText()).resolves.toBe(EXPIRED_SENTENCE);
    const cluster = (await stack.api('GET', '/v1/clusters/keep-me')).json();
    expect(cluster.revokedAt).toBeUndefined();
  });
});
