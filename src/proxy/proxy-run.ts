/**
 * The proxy's side of "one run is one session" (DESIGN §12, the issuer's
 * side in src/sessions/proxy-run-routes.ts): it opens the run's session when
 * it starts, says it is alive every PROXY_HEARTBEAT_MS, and ends it when it
 * stops. The heartbeat is also how a revoked agent or a rotated key is
 * noticed while no request is made: the issuer's refusal is passed on at
 * once, so the proxy stops forwarding and says why.
 */
import type { TokenRequest } from '../client/token.js';
import { fetchWithCa, type FetchLike } from '../https-fetch.js';
import type { Logger } from '../log.js';
import { PROXY_HEARTBEAT_MS } from '../sessions/proxy-run-routes.js';

export class ProxyRun {
  private readonly timer: NodeJS.Timeout;

  private constructor(
    readonly id: string,
    private readonly url: (path: string) => URL,
    private readonly call: (url: URL, method: string, body?: object) => Promise<Response>,
    onRefused: (reason: string) => void,
    log: Logger,
    heartbeatMs: number,
  ) {
    let failure: string | undefined;
    this.timer = setInterval(async () => {
      try {
        const res = await this.call(this.url(`v1/proxy-sessions/${encodeURIComponent(id)}/heartbeat`), 'POST');
        if (res.status === 401 || res.status === 403) return onRefused(await reasonOf(res));
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        if (failure) log.info('the issuer hears the proxy again');
        failure = undefined;
      } catch (err) {
        const why = (err as Error).message;
        if (why !== failure) log.warn('the issuer could not be told the proxy is running; the session may show as ended', { error: why });
        failure = why;
      }
    }, heartbeatMs);
    this.timer.unref();
  }

  /** Opens the run's session; undefined (said at warn) when the issuer keeps none, so the proxy works on without one. */
  static async open(request: TokenRequest, log: Logger, onRefused: (reason: string) => void, heartbeatMs = PROXY_HEARTBEAT_MS): Promise<ProxyRun | undefined> {
    const fetch: FetchLike = fetchWithCa({ ca: request.issuerCa });
    const base = request.issuer.endsWith('/') ? request.issuer : `${request.issuer}/`;
    const url = (path: string) => new URL(path, base);
    const call = (target: URL, method: string, body?: object) =>
      fetch(target, { method, headers: { authorization: `Bearer ${request.apiKey}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    try {
      const res = await call(url('v1/proxy-sessions'), 'POST', { cluster: request.cluster });
      const body = (await res.json().catch(() => ({}))) as { id?: unknown; message?: unknown };
      if (res.status !== 201 || typeof body.id !== 'string') throw new Error(typeof body.message === 'string' ? body.message : `HTTP ${res.status}`);
      return new ProxyRun(body.id, url, call, onRefused, log, heartbeatMs);
    } catch (err) {
      log.warn('the issuer opened no session for this proxy run; its requests are grouped as any other', { error: (err as Error).message });
      return undefined;
    }
  }

  /** Ends the run's session (Ctrl-C, SIGTERM). */
  async end(): Promise<void> {
    clearInterval(this.timer);
    await this.call(this.url(`v1/proxy-sessions/${encodeURIComponent(this.id)}`), 'DELETE').catch(() => undefined);
  }
}

async function reasonOf(res: Response): Promise<string> {
  const body = (await res.json().catch(() => ({}))) as { message?: unknown };
  return typeof body.message === 'string' ? body.message : `the issuer answered ${res.status}`;
}
