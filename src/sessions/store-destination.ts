/**
 * The hub's own records into the central audit (DESIGN §12): requests the
 * hub refused before any relay saw them (no or a bad token, a cluster with
 * no relay connected) are stored with the relays' records, so `kube-relay
 * audit` shows them too. A copy, as the relays' central audit is: it never
 * holds a request back, retries while the store cannot be reached, and
 * counts what it cannot hold. Admin records and records of clusters the
 * store does not know (the client named them) stay in the local sinks only.
 */
import { ReconnectBackoff } from '../backoff.js';
import type { Destination, DestinationEvents } from '../audit/sink.js';
import type { IncomingAuditRecord } from '../issuer/store/audit-sql.js';
import type { Logger } from '../log.js';
import { centralRecord } from './central-records.js';

export interface StoreDestinationDeps {
  /** The cluster's org, or undefined when there is no such cluster. */
  orgOf(cluster: string): Promise<string | undefined>;
  ingest(cluster: { name: string; org: string }, records: IncomingAuditRecord[]): Promise<unknown>;
  log: Logger;
  /** Records held while the store cannot be reached (default 10 000). */
  bufferRecords?: number;
  batchWaitMs?: number;
}

const DEFAULT_BUFFER_RECORDS = 10_000;
const BATCH_SIZE = 500;

export class StoreAuditDestination implements Destination {
  readonly name = 'store';
  readonly broken = undefined;
  readonly mirror = true;
  private queue: string[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly backoff = new ReconnectBackoff({ initialMs: 500, maxMs: 30_000 });
  private lastFailure: string | undefined;

  constructor(
    private readonly deps: StoreDestinationDeps,
    private readonly events: DestinationEvents,
  ) {}

  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  send(line: string): void {
    if (this.pending >= (this.deps.bufferRecords ?? DEFAULT_BUFFER_RECORDS)) {
      this.events.dropped(1, 'buffer-full', 'the store could not take the hub’s records fast enough; the local audit sinks have them');
      return;
    }
    this.queue.push(line);
    this.timer ??= setTimeout(() => void this.deliver(), this.deps.batchWaitMs ?? 250);
  }

  /** RequestReceived records stay local, as a relay's do. */
  commit(): Promise<void> {
    return Promise.resolve();
  }

  async close(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.queue.length > 0 && Date.now() < deadline) {
      if (!(await this.deliver())) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (this.queue.length > 0) this.events.dropped(this.queue.length, 'undelivered-at-shutdown', `the store did not take them within ${deadlineMs} ms${this.lastFailure ? ` (last failure: ${this.lastFailure})` : ''}`);
    this.queue = [];
  }

  /** Stores the next batch; false when the store failed (it is tried again after a backoff). */
  private async deliver(): Promise<boolean> {
    this.timer = undefined;
    const lines = this.queue.splice(0, BATCH_SIZE);
    this.inFlight = lines.length;
    try {
      const byCluster = new Map<string, IncomingAuditRecord[]>();
      for (const line of lines) {
        const record = storable(line);
        if (!record) continue;
        const cluster = record.cluster as string;
        const records = byCluster.get(cluster);
        if (records) records.push(record);
        else byCluster.set(cluster, [record]);
      }
      for (const [cluster, records] of byCluster) {
        const org = await this.deps.orgOf(cluster);
        if (org !== undefined) await this.deps.ingest({ name: cluster, org }, records);
      }
      this.events.delivered(lines.length);
      if (this.lastFailure) this.deps.log.info('the hub’s audit records reach the store again');
      this.lastFailure = undefined;
      this.backoff.reset();
      if (this.queue.length > 0) this.timer = setTimeout(() => void this.deliver(), 0);
      return true;
    } catch (err) {
      const why = (err as Error).message;
      if (why !== this.lastFailure) this.deps.log.warn('the hub’s audit records could not be stored; retrying with backoff', { records: lines.length, error: why });
      this.lastFailure = why;
      this.queue.unshift(...lines);
      this.timer = setTimeout(() => void this.deliver(), this.backoff.nextDelayMs());
      return false;
    } finally {
      this.inFlight = 0;
    }
  }
}

/** A completed request's record of a named cluster, or undefined for what stays local. */
function storable(line: string): IncomingAuditRecord | undefined {
  try {
    const parsed = JSON.parse(line) as { kind?: unknown; cluster?: unknown };
    if (parsed.kind === 'admin' || typeof parsed.cluster !== 'string') return undefined;
    return centralRecord(parsed, 0);
  } catch {
    return undefined;
  }
}
