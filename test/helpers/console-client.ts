/**
 * A person's browser, for HTTP-level tests of the web console: one cookie
 * jar (the console's session cookie), the CSRF token of the last page read,
 * form posts that do not follow redirects (tests assert where they lead).
 */
import { fetchWithCa } from '../../src/https-fetch.js';

export interface ConsolePage {
  status: number;
  html: string;
  headers: Headers;
  /** Where a redirect leads (303), as the Location header says. */
  location: string | null;
}

export class ConsoleClient {
  private cookie: string | undefined;
  /** The `_csrf` value of the last page read. */
  csrf: string | undefined;
  private readonly fetch;

  constructor(
    private readonly baseUrl: string,
    ca: string | Buffer,
  ) {
    this.fetch = fetchWithCa({ ca });
  }

  async get(pathname: string): Promise<ConsolePage> {
    return this.send('GET', pathname);
  }

  /** Posts `fields` as a form, with the last page's CSRF token unless `fields` says otherwise. */
  async post(pathname: string, fields: Record<string, string> = {}): Promise<ConsolePage> {
    const body = new URLSearchParams({ ...(this.csrf === undefined ? {} : { _csrf: this.csrf }), ...fields }).toString();
    return this.send('POST', pathname, body);
  }

  /** Reads the sign-in page, then signs in with `key`; returns the answer to the sign-in form. */
  async signIn(key: string): Promise<ConsolePage> {
    await this.get('/ui/sign-in');
    return this.post('/ui/sign-in', { key });
  }

  hasSession(): boolean {
    return this.cookie !== undefined;
  }

  private async send(method: string, pathname: string, body?: string): Promise<ConsolePage> {
    const res = await this.fetch(`${this.baseUrl}${pathname}`, {
      method,
      headers: { ...(this.cookie ? { cookie: this.cookie } : {}), ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }) },
      ...(body === undefined ? {} : { body }),
    });
    const setCookie = res.headers.get('set-cookie');
    if (setCookie) {
      const [pair] = setCookie.split(';');
      this.cookie = /=$/.test(pair ?? '') || /Expires=Thu, 01 Jan 1970/i.test(setCookie) ? undefined : pair;
    }
    const html = await res.text();
    const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
    if (token) this.csrf = token;
    return { status: res.status, html, headers: res.headers, location: res.headers.get('location') };
  }
}

/** The text of a page without its tags, for asserting what a person reads. */
export function visibleText(html: string): string {
  return html
    .replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/g, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();
}
