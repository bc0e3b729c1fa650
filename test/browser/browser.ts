/**
 * The browser of the browser suite: Debian's Chromium (/usr/bin/chromium, or
 * KUBE_RELAY_CHROMIUM), driven by playwright-core; nothing downloads a
 * browser. A missing binary fails the suite with a sentence saying how to
 * install it: it never skips.
 *
 * Each test gets a fresh context (no cookies) and pages whose console
 * errors, uncaught exceptions and Content-Security-Policy violations are
 * collected: a test asserts there were none (a CSP violation means a page
 * broke the no-inline rule). Screenshots of each page go to
 * test/browser/screenshots/ (gitignored), wide and narrow, for a person to
 * look at.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page, type Response } from 'playwright-core';
import { afterEach, beforeEach, expect } from 'vitest';

export const CHROMIUM = process.env.KUBE_RELAY_CHROMIUM || '/usr/bin/chromium';

/** The machine runs as root, with no internet and no GPU: these are needed, and keep Chromium from calling home. */
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export const WIDE = { width: 1280, height: 800 };
export const NARROW = { width: 390, height: 844 };

export const SCREENSHOT_DIR = fileURLToPath(new URL('./screenshots/', import.meta.url));

/** Throws the sentence that says how to get Chromium when it is not there (the suite fails; it never skips). */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}: install it with apt-get install chromium (as root), or set KUBE_RELAY_CHROMIUM`);
}

export async function launchChromium(): Promise<Browser> {
  requireChromium();
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
}

export interface WatchedPage {
  page: Page;
  /** Console errors, uncaught exceptions and CSP violations seen so far, in the order they came. */
  problems: string[];
}

export interface Tab {
  context: BrowserContext;
  /** The first page of the context. */
  page: Page;
  /** Another page in the same context (same cookies: the same signed-in person), watched as the first. */
  newPage(): Promise<Page>;
  /**
   * Everything that went wrong in this context's pages, except console lines matching `expected`
   * (a test that provokes an error status says which: Chromium logs "Failed to load resource" for it).
   */
  problems(): string[];
  expect(line: RegExp): void;
  close(): Promise<void>;
}

/** A fresh context (no cookies: nobody signed in) with one watched page. */
export async function openTab(browser: Browser): Promise<Tab> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: WIDE });
  context.setDefaultTimeout(30_000);
  context.setDefaultNavigationTimeout(60_000);
  // Runs before any script of a page, outside its CSP: reports each violation as a console error.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || 'inline code'} at ${event.sourceFile}:${event.lineNumber}`);
    });
  });
  const seen: string[] = [];
  const expected: RegExp[] = [];
  const watch = (page: Page) => {
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      const source = message.location().url;
      // Chromium asks for /favicon.ico by itself on a page that declares no icon (the console's come-back page, another site's).
      if (new URL(source || 'about:blank').pathname === '/favicon.ico' && /status of 404/.test(message.text())) return;
      seen.push(`console error on ${page.url()}: ${message.text()}${source ? ` (${source})` : ''}`);
    });
    page.on('pageerror', (error) => seen.push(`uncaught exception on ${page.url()}: ${error.message}`));
    return page;
  };
  const page = watch(await context.newPage());
  return {
    context,
    page,
    newPage: async () => watch(await context.newPage()),
    problems: () => seen.filter((line) => !expected.some((pattern) => pattern.test(line))),
    expect: (line) => expected.push(line),
    close: () => context.close(),
  };
}

/**
 * Each test of the file gets a fresh tab (handed to `use`), closed after it; a test fails on any
 * console error, uncaught exception or CSP violation its pages had.
 */
export function tabPerTest(browser: () => Browser, use: (tab: Tab) => void): void {
  let current: Tab | undefined;
  beforeEach(async () => {
    current = await openTab(browser());
    use(current);
  });
  afterEach(async () => {
    if (!current) return;
    const problems = current.problems();
    await current.close();
    current = undefined;
    expect(problems, 'console errors, exceptions or CSP violations in the pages').toEqual([]);
  });
}

/**
 * Two screenshots of the whole page: `NAME.png` in a 1280×800 window and `NAME-narrow.png` in a
 * 390×844 one (a phone), then the wide window back.
 */
export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.setViewportSize(WIDE);
  await page.screenshot({ path: `${SCREENSHOT_DIR}${name}.png`, fullPage: true });
  await page.setViewportSize(NARROW);
  await page.screenshot({ path: `${SCREENSHOT_DIR}${name}-narrow.png`, fullPage: true });
  await page.setViewportSize(WIDE);
}

/** Clicks the button named `button` and resolves with the answer to the page it loads (after redirects, the last one). */
export async function submit(page: Page, button: string): Promise<Response> {
  const navigation = page.waitForNavigation({ waitUntil: 'load' });
  await page.getByRole('button', { name: button, exact: true }).click();
  const response = await navigation;
  if (!response) throw new Error(`clicking ${button} loaded no page`);
  return response;
}

/** Signs in at the console of the issuer at `issuerUrl` with `key`, as a person does; resolves on the page it lands on. */
export async function signIn(page: Page, issuerUrl: string, key: string): Promise<Response> {
  await page.goto(`${issuerUrl}/ui/sign-in`);
  await page.getByLabel('Admin key').fill(key);
  return submit(page, 'Sign in');
}
