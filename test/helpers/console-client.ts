/**
 * A person's browser, for HTTP-level tests of the web console: one cookie
 * jar (the console's session cookie), the CSRF token of the last page read,
 * form posts that do not follow redirects (tests assert where they lead);
 * and the HTML helpers those tests read pages with.
 */
import { expect } from 'vitest';
import { fetchWithCa } from '../../src/https-fetch.js';

/** The console's session cookie. */
export const CONSOLE_COOKIE = '__Host-kube-relay-console';

export interface ConsolePage {
  status: number;
  html: string;
  headers: Headers;
  /** Where a redirect leads (303), as the Location header says. */
  location: string | null;
}

export interface PostOptions {
  /** The CSRF token to send instead of the last page's; `false`: send none. A `_csrf` in the fields wins over both. */
  csrf?: string | false;
}

export class ConsoleClient {
  /**
   * The console's session cookie as sent back (`__Host-kube-relay-console=…`), or
   * undefined before the console set one or after it cleared it. Tests may read it,
   * or set it to replay another browser's session.
   */
  cookie: string | undefined;
  /** The `_csrf` value of the last page read. */
  csrf: string | undefined;
  private readonly fetch;

  constructor(
    private readonly baseUrl: string,
    ca: string | Buffer,
  ) {
    this.fetch = fetchWithCa({ ca });
  }

  /**
   * A browser signed in with `key`: the sign-in page gave it a session cookie and a CSRF
   * token, the sign-in form was answered 303 with a new session cookie. The session is
   * regenerated at sign-in, so the token of the sign-in page is dropped; `firstPage`, if
   * given, is read to take the new session's token.
   */
  static async signedIn(baseUrl: string, ca: string | Buffer, key: string, firstPage?: string): Promise<ConsoleClient> {
    const client = new ConsoleClient(baseUrl, ca);
    const form = await client.get('/ui/sign-in');
    expect(form.headers.get('set-cookie') ?? '', 'the console sets its session cookie').toMatch(new RegExp(`${CONSOLE_COOKIE}=[^;]+`));
    expect(client.csrf, 'the sign-in page carries a CSRF token').toBeDefined();
    const answer = await client.post('/ui/sign-in', { key });
    expect(answer.status, answer.html).toBe(303);
    expect(answer.headers.get('set-cookie') ?? '', 'the console sets its session cookie').toMatch(new RegExp(`${CONSOLE_COOKIE}=[^;]+`));
    client.csrf = undefined;
    if (firstPage !== undefined) await client.get(firstPage);
    return client;
  }

  /** Reads a page; `headers` are sent besides the cookie (such as htmx's `hx-request`). */
  async get(pathname: string, headers: Record<string, string> = {}): Promise<ConsolePage> {
    return this.send('GET', pathname, undefined, headers);
  }

  /** Posts `fields` as a form, with the last page's CSRF token unless `options` or `fields` says otherwise. */
  async post(pathname: string, fields: Record<string, string> = {}, options: PostOptions = {}): Promise<ConsolePage> {
    const csrf = options.csrf === undefined ? this.csrf : options.csrf === false ? undefined : options.csrf;
    const body = new URLSearchParams({ ...(csrf === undefined ? {} : { _csrf: csrf }), ...fields }).toString();
    return this.send('POST', pathname, body, { 'content-type': 'application/x-www-form-urlencoded' });
  }

  /** Reads the sign-in page, then signs in with `key`; returns the answer to the sign-in form. */
  async signIn(key: string): Promise<ConsolePage> {
    await this.get('/ui/sign-in');
    return this.post('/ui/sign-in', { key });
  }

  hasSession(): boolean {
    return this.cookie !== undefined;
  }

  private async send(method: string, pathname: string, body: string | undefined, headers: Record<string, string>): Promise<ConsolePage> {
    const res = await this.fetch(`${this.baseUrl}${pathname}`, {
      method,
      headers: { ...headers, ...(this.cookie ? { cookie: this.cookie } : {}) },
      ...(body === undefined ? {} : { body }),
    });
    const setCookie = res.headers.get('set-cookie');
    const pair = setCookie === null ? undefined : new RegExp(`(?:^|,\\s*)(${CONSOLE_COOKIE}=[^;,]*)`).exec(setCookie)?.[1];
    if (pair !== undefined) this.cookie = /=$/.test(pair) || /Expires=Thu, 01 Jan 1970/i.test(setCookie!) ? undefined : pair;
    const html = await res.text();
    const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
    if (token) this.csrf = token;
    return { status: res.status, html, headers: res.headers, location: res.headers.get('location') };
  }
}

/** Text as the page reads: the entities the renderer writes turned back. */
export function decodeEntities(html: string): string {
  return html
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The text of a page without its tags, for asserting what a person reads. */
export function visibleText(html: string): string {
  return decodeEntities(html.replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/g, ' ').replace(/<[^>]+>/g, ' '))
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * The sentence shown beside form field `name` (`<small id="field-NAME-error" …>sentence</small>`),
 * decoded; undefined if the page has no element of that id. An element of that id in any other
 * shape (not a <small>, or holding markup) is an error, not an absence. A field with an id of its
 * own (the Grants page's filters: filter-NAME) is found by `id`.
 */
export function fieldError(html: string, name: string, id = `field-${name}`): string | undefined {
  if (!html.includes(`id="${id}-error"`)) return undefined;
  const text = new RegExp(`<small id="${id}-error"[^>]*>([^<]*)</small>`).exec(html)?.[1];
  if (text === undefined) throw new Error(`the page has id="${id}-error", but not as <small id="${id}-error" …>sentence</small>`);
  return decodeEntities(text);
}
