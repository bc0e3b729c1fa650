/**
 * Central audit from a relay (DESIGN §12): every completed request's record
 * goes to the issuer as well, `POST /v1/audit` with the cluster's connector
 * key, in batches, in order, retried across outages for as long as it
 * takes; the issuer stores each (cluster, requestId) once, so a batch sent
 * again after a lost answer is not stored twice. The relay uses the same
 * HTTPS path to the issuer in both modes (it already fetches its keys
 * there), so the tunnel stays a transport for agent traffic only.
 *
 * It is a copy: the local sinks are the relay's record of truth and their
 * rules (DESIGN §5, block or fail) decide whether a request may go on. This
 * destination never holds a request back; while the issuer cannot be
 * reached it keeps up to `bufferRecords` records, and what comes past that
 * is counted and logged as dropped (reason `buffer-full`), never silently.
 * RequestReceived records stay local: the issuer's sessions are built from
 * completed requests.
 */
import type { ReconnectBackoff } from '../backoff.js';
import type { Logger } from '../log.js';
import type { Destination, DestinationEvents } from './sink.js';
import { WebhookDestination } from './webhook-destination.js';

export interface IssuerAuditOptions {
  /** The issuer's URL (https). */
  issuer: string;
  /** The cluster's connector key. */
  connectorKey: string;
  issuerCa?: string | Buffer | undefined;
  /** Records held while the issuer cannot be reached (default 100 000). */
  bufferRecords?: number | undefined;
  batchWaitMs?: number | undefined;
  backoff?: ReconnectBackoff | undefined;
}

export const DEFAULT_ISSUER_AUDIT_BUFFER_RECORDS = 100_000;
/** At most one log line per this interval about records that did not fit. */
const OVERFLOW_REPORT_MS = 10_000;

export class IssuerAuditDestination implements Destination {
  readonly name = 'issuer';
  readonly broken = undefined;
  readonly mirror = true;
  private readonly delivery: WebhookDestination;
  private readonly limit: number;
  private overflowed = 0;
  private overflowTimer: NodeJS.Timeout | undefined;

  constructor(
    options: IssuerAuditOptions,
    private readonly events: DestinationEvents,
    log: Logger,
  ) {
    this.limit = options.bufferRecords ?? DEFAULT_ISSUER_AUDIT_BUFFER_RECORDS;
    const url = new URL('v1/audit', options.issuer.endsWith('/') ? options.issuer : `${options.issuer}/`).toString();
    this.delivery = new WebhookDestination(
      { url, ca: options.issuerCa, token: options.connectorKey, batchWaitMs: options.batchWaitMs ?? 250, backoff: options.backoff },
      events,
      log,
      'issuer',
    );
  }

  get pending(): number {
    return this.delivery.pending;
  }

  send(line: string): void {
    if (this.delivery.pending < this.limit) return this.delivery.send(line);
    this.overflowed++;
    this.overflowTimer ??= setTimeout(() => this.reportOverflow(), OVERFLOW_REPORT_MS).unref();
  }

  /** RequestReceived records are not sent to the issuer. */
  commit(): Promise<void> {
    return Promise.resolve();
  }

  async close(deadlineMs: number): Promise<void> {
    if (this.overflowTimer) clearTimeout(this.overflowTimer);
    this.reportOverflow();
    await this.delivery.close(deadlineMs);
  }

  private reportOverflow(): void {
    this.overflowTimer = undefined;
    if (this.overflowed === 0) return;
    this.events.dropped(this.overflowed, 'buffer-full', `the issuer could not be reached while ${this.limit} records waited for it; the local audit sinks have them`);
    this.overflowed = 0;
  }
}
