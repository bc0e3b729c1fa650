/**
 * Audit records POSTed to an HTTP(S) endpoint as a JSON array, in batches
 * (up to `batchSize` records, or whatever has waited `batchWaitMs`), one
 * batch in flight at a time so records arrive in order. A batch that fails
 * for a reason that may pass (no answer, 408, 429, 5xx, 401/403 while a
 * credential is fixed) is sent again after an exponential backoff with full
 * jitter, for as long as it takes: meanwhile records queue up and the sink's
 * `block`/`fail` policy applies. A batch the receiver refuses for its
 * content (other 4xx) is reported as dropped; a 413 first splits the batch.
 * Log collectors take a JSON array as one event per element (Fluent Bit's
 * and Vector's HTTP inputs, Logstash's http input).
 */
import { readFileSync } from 'node:fs';
import { ReconnectBackoff } from '../backoff.js';
import { fetchWithCa, type FetchLike } from '../https-fetch.js';
import type { Logger } from '../log.js';
import type { Destination, DestinationEvents } from './sink.js';

export interface WebhookOptions {
  url: string;
  /** Trust for an https URL (PEM); default: the system roots. */
  ca?: string | Buffer | undefined;
  /** Sent as `Authorization: Bearer <contents>`, re-read for every batch (it may rotate). */
  tokenFile?: string | undefined;
  /** Sent as `Authorization: Bearer <token>` (the relay's connector key, for the issuer). */
  token?: string | undefined;
  batchSize?: number | undefined;
  batchWaitMs?: number | undefined;
  /** Retry timing (tests shorten it). */
  backoff?: ReconnectBackoff | undefined;
}

const DEFAULT_BATCH_SIZE = 500;
const DEFAULT_BATCH_WAIT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 10_000;
const RETRYABLE_CLIENT_ERRORS = new Set([401, 403, 408, 429]);

export class WebhookDestination implements Destination {
  readonly name: string;
  readonly broken = undefined;
  private readonly queue: string[] = [];
  private inFlight: string[] = [];
  private readonly fetch: FetchLike;
  private readonly backoff: ReconnectBackoff;
  private timer: NodeJS.Timeout | undefined;
  private posting = false;
  private closing = false;
  private lastFailure: string | undefined;
  /** The URL for logs, without userinfo or query, which may carry credentials. */
  private readonly endpoint: string;

  constructor(
    private readonly options: WebhookOptions,
    private readonly events: DestinationEvents,
    private readonly log: Logger,
    /** How the sink, its metrics and its log lines name it. */
    name = 'webhook',
  ) {
    this.name = name;
    this.fetch = fetchWithCa({ ca: options.ca, timeoutMs: REQUEST_TIMEOUT_MS });
    this.backoff = options.backoff ?? new ReconnectBackoff({ initialMs: 500, maxMs: 30_000 });
    const url = new URL(options.url);
    this.endpoint = `${url.origin}${url.pathname}`;
  }

  get pending(): number {
    return this.queue.length + this.inFlight.length;
  }

  send(line: string): void {
    this.queue.push(line);
    if (this.inFlight.length > 0) return;
    if (this.queue.length >= this.batchSize) this.schedule(0);
    else this.timer ??= this.schedule(this.options.batchWaitMs ?? DEFAULT_BATCH_WAIT_MS);
  }

  commit(line: string): Promise<void> {
    this.send(line);
    return Promise.resolve();
  }

  async close(deadlineMs: number): Promise<void> {
    this.closing = true;
    const deadline = Date.now() + deadlineMs;
    // Now, not after a backoff that may outlast the deadline.
    if (!this.posting && this.pending > 0) this.schedule(0);
    while (this.pending > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    if (this.timer) clearTimeout(this.timer);
    const left = this.pending;
    this.queue.length = 0;
    this.inFlight = [];
    if (left > 0) this.events.dropped(left, 'undelivered-at-shutdown', `the ${this.name} did not take them within ${deadlineMs} ms${this.lastFailure ? ` (last failure: ${this.lastFailure})` : ''}`);
  }

  private get batchSize(): number {
    return this.options.batchSize ?? DEFAULT_BATCH_SIZE;
  }

  private schedule(delayMs: number): NodeJS.Timeout {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.deliver();
    }, delayMs);
    return this.timer;
  }

  /** Sends the batch in flight (or takes the next one), then decides what comes next. */
  private async deliver(): Promise<void> {
    if (this.posting) return;
    if (this.inFlight.length === 0) this.inFlight = this.queue.splice(0, this.batchSize);
    const batch = this.inFlight;
    if (batch.length === 0) return;
    this.posting = true;
    const outcome = await this.post(batch).finally(() => (this.posting = false));
    if (this.inFlight !== batch) return; // closed meanwhile
    if (outcome === 'delivered' || outcome === 'rejected') {
      if (outcome === 'delivered') this.events.delivered(batch.length);
      if (this.lastFailure && outcome === 'delivered') this.log.info(`audit ${this.name} delivering again`, { url: this.endpoint });
      this.lastFailure = undefined;
      this.inFlight = [];
      this.backoff.reset();
      if (this.queue.length >= this.batchSize || (this.closing && this.queue.length > 0)) this.schedule(0);
      else if (this.queue.length > 0) this.schedule(this.options.batchWaitMs ?? DEFAULT_BATCH_WAIT_MS);
      return;
    }
    if (outcome === 'too-large') {
      this.queue.unshift(...batch.slice(batch.length >> 1));
      this.inFlight = batch.slice(0, batch.length >> 1);
      this.schedule(0);
      return;
    }
    this.schedule(this.closing ? 100 : this.backoff.nextDelayMs());
  }

  private async post(batch: string[]): Promise<'delivered' | 'rejected' | 'too-large' | 'retry'> {
    let status: number;
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (this.options.tokenFile) headers.authorization = `Bearer ${readFileSync(this.options.tokenFile, 'utf8').trim()}`;
      else if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
      const response = await this.fetch(this.options.url, { method: 'POST', headers, body: `[${batch.join(',')}]` });
      status = response.status;
    } catch (err) {
      return this.failed(batch, (err as Error).message);
    }
    if (status >= 200 && status < 300) return 'delivered';
    if (status === 413 && batch.length > 1) return 'too-large';
    if (status >= 400 && status < 500 && !RETRYABLE_CLIENT_ERRORS.has(status)) {
      this.events.dropped(batch.length, 'rejected', `the ${this.name} answered ${status} to a batch of ${batch.length}`);
      return 'rejected';
    }
    return this.failed(batch, `the ${this.name} answered ${status}`);
  }

  private failed(batch: string[], why: string): 'retry' {
    if (why !== this.lastFailure) this.log.warn(`audit ${this.name} failed; retrying with backoff`, { url: this.endpoint, records: batch.length, pending: this.pending, error: why });
    this.lastFailure = why;
    return 'retry';
  }
}
