/**
 * Where audit records go (DESIGN §5): stdout, a file of JSON lines rotated
 * by size, an HTTP webhook that takes them in batches, or several of these.
 * Each destination holds what it has not delivered yet; a record for a
 * completed request is never dropped to make room. While a destination is
 * full (it cannot keep up) or broken, new requests wait for room (`block`)
 * or are refused (`fail`), as configured, and the metrics count both, the
 * same choice kube-apiserver offers with --audit-log-mode=blocking and
 * blocking-strict. Records of requests without a verified identity pass a
 * per-address limit first (unauthenticated-records.ts): what it holds
 * back is written as summary records, counted, never silently lost.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { type IssuerAuditOptions, IssuerAuditDestination } from './issuer-destination.js';
import { openStreamDestination } from './stream-destination.js';
import type { AdminAuditRecord, AuditRecord, ReceivedRecord } from './record.js';
import { DEFAULT_UNAUTHENTICATED_RECORD_LIMITS, type UnauthenticatedRecordLimits, UnauthenticatedRecordLimiter } from './unauthenticated-records.js';
import { WebhookDestination, type WebhookOptions } from './webhook-destination.js';

export type WhenFull = 'block' | 'fail';
export const WHEN_FULL: readonly WhenFull[] = ['block', 'fail'];

export interface AuditConfig {
  /** A file of JSON lines; `-` is stdout. Default: stdout, unless a webhook is configured. */
  file?: string | undefined;
  /** Rotate the file past this many bytes (0 = never). */
  fileMaxBytes?: number | undefined;
  /** Rotated files kept (`audit.jsonl.1` …). */
  fileMaxBackups?: number | undefined;
  webhook?: WebhookOptions | undefined;
  /** Central audit (DESIGN §12): a copy of every completed request's record for the issuer (issuer-destination.ts). */
  issuer?: IssuerAuditOptions | undefined;
  /** The issuer's own records (the hub's refusals) into its store, a copy as `issuer` is (src/sessions/store-destination.ts). */
  store?: ((events: DestinationEvents) => Destination) | undefined;
  whenFull?: WhenFull | undefined;
  /** Records each destination holds undelivered before it counts as full. */
  bufferRecords?: number | undefined;
  /** How long closing waits for destinations to deliver what they hold (default 10 s; tests shorten it). */
  closeDeadlineMs?: number | undefined;
  /** Limits on records of requests without a verified identity (defaults in unauthenticated-records.ts; tests shorten the interval). */
  unauthenticatedRecords?: Partial<UnauthenticatedRecordLimits> | undefined;
}

export const DEFAULT_AUDIT_BUFFER_RECORDS = 10_000;

/** One place records are delivered to; `pending` counts the accepted ones not delivered yet. */
export interface Destination {
  readonly name: string;
  readonly pending: number;
  /** Set when the destination can take nothing more (a file that failed to write); it says why. */
  readonly broken: string | undefined;
  /**
   * A copy of the record of truth (the issuer's central audit): never a reason to hold a request
   * back; it bounds what it holds itself and reports what it cannot take as dropped.
   */
  readonly mirror?: boolean;
  send(line: string): void;
  /**
   * Takes `line` and resolves once a kill -9 of this process can no longer
   * lose it: a stream destination once its write(2) has completed; the
   * webhook, which cannot promise that for a remote receiver, once queued.
   */
  commit(line: string): Promise<void>;
  /** Delivers what is pending within `deadlineMs` if it can, and reports the rest as dropped. */
  close(deadlineMs: number): Promise<void>;
}

export interface DestinationEvents {
  delivered(count: number): void;
  /** `reason` is a short code (a metric label), `detail` the sentence for the log. */
  dropped(count: number, reason: 'write-failed' | 'rejected' | 'undelivered-at-shutdown' | 'buffer-full', detail: string): void;
}

/** A request the audit trail cannot take now, under `fail`. */
export class AuditUnavailableError extends Error {}

export interface AuditSink {
  /** Takes the record of a request about to be forwarded; resolves once it is committed (Destination.commit), rejects if it cannot be. */
  received(record: ReceivedRecord): Promise<void>;
  /** Takes a completed request's record; never refuses one (one without a verified identity may go into a summary). */
  write(record: AuditRecord): void;
  /** Takes an admin API change record (never summarised: admins are authenticated and few). */
  admin(record: AdminAuditRecord): void;
  /** Takes a record only if every destination has room (records of refusals that never reached a relay). */
  writeIfRoom(record: AuditRecord): void;
  /** Resolves at once while every destination has room; otherwise waits (`block`) or throws AuditUnavailableError (`fail`). */
  room(): Promise<void>;
  /** Why the audit trail is not taking requests now, or undefined (readiness). */
  readonly unavailable: string | undefined;
  close(): Promise<void>;
}

const CLOSE_DEADLINE_MS = 10_000;
/** At most one log line per this interval about records not taken by a full sink. */
const FULL_LOG_INTERVAL_MS = 10_000;
/** How often a waiting request re-checks for room. */
const ROOM_POLL_MS = 50;

export async function openAuditSink(config: AuditConfig, metrics: Registry, log: Logger): Promise<AuditSink> {
  const whenFull = config.whenFull ?? 'block';
  const limit = config.bufferRecords ?? DEFAULT_AUDIT_BUFFER_RECORDS;
  const written = new Counter({ name: 'kube_relay_audit_records_total', help: 'Audit records delivered, by destination.', labelNames: ['sink'], registers: [metrics] });
  const dropped = new Counter({
    name: 'kube_relay_audit_records_dropped_total',
    help: 'Audit records not delivered, by destination and reason (never silently: each is also logged).',
    labelNames: ['sink', 'reason'],
    registers: [metrics],
  });
  const summarized = new Counter({
    name: 'kube_relay_audit_records_summarized_total',
    help: 'Records of requests without a verified identity that went into a summary record instead of being written one by one (per-address limit).',
    registers: [metrics],
  });
  const full = new Counter({
    name: 'kube_relay_audit_full_total',
    help: 'Requests that met a full or broken audit destination: held until there was room (blocked) or refused with 503 (refused).',
    labelNames: ['action'],
    registers: [metrics],
  });
  const events = (sink: string): DestinationEvents => ({
    delivered: (count) => written.inc({ sink }, count),
    dropped: (count, reason, detail) => {
      dropped.inc({ sink, reason }, count);
      log.error('audit records were not delivered', { sink, records: count, reason, detail });
    },
  });

  const destinations: Destination[] = [];
  const file = config.file ?? (config.webhook ? undefined : '-');
  if (file !== undefined) destinations.push(await openStreamDestination(file, { maxBytes: config.fileMaxBytes ?? 0, maxBackups: config.fileMaxBackups ?? 0 }, events(file === '-' ? 'stdout' : 'file')));
  if (config.webhook) destinations.push(new WebhookDestination(config.webhook, events('webhook'), log));
  if (config.issuer) destinations.push(new IssuerAuditDestination(config.issuer, events('issuer'), log));
  if (config.store) destinations.push(config.store(events('store')));

  new Gauge({
    name: 'kube_relay_audit_pending_records',
    help: 'Audit records accepted but not yet delivered, by destination.',
    labelNames: ['sink'],
    registers: [metrics],
    collect() {
      for (const destination of destinations) this.set({ sink: destination.name }, destination.pending);
    },
  });

  const unavailable = (): string | undefined => {
    for (const destination of destinations) {
      if (destination.mirror) continue;
      if (destination.broken) return `the audit ${destination.name} is broken: ${destination.broken}`;
      if (destination.pending >= limit) return `the audit ${destination.name} holds ${destination.pending} undelivered records`;
    }
    return undefined;
  };
  const send = (record: object) => {
    const line = JSON.stringify(record);
    for (const destination of destinations) destination.send(line);
  };

  const limiter = new UnauthenticatedRecordLimiter({ ...DEFAULT_UNAUTHENTICATED_RECORD_LIMITS, ...config.unauthenticatedRecords });
  /** False when the record went into the next summary instead. */
  const admitted = (record: AuditRecord): boolean => {
    if (limiter.admit(record)) return true;
    summarized.inc();
    return false;
  };
  const writeSummaries = () => {
    for (const summary of limiter.takeSummaries()) send(summary);
  };
  const summaryTimer = setInterval(writeSummaries, config.unauthenticatedRecords?.summaryIntervalMs ?? DEFAULT_UNAUTHENTICATED_RECORD_LIMITS.summaryIntervalMs);
  summaryTimer.unref();

  let lastFullLog = 0;
  return {
    async received(record) {
      const line = JSON.stringify(record);
      if (destinations.length === 1) return destinations[0]!.commit(line);
      await Promise.all(destinations.map((destination) => destination.commit(line)));
    },
    write(record) {
      if (admitted(record)) send(record);
    },
    admin(record) {
      send(record);
    },
    writeIfRoom(record) {
      if (!admitted(record)) return;
      const reason = unavailable();
      if (reason === undefined) return send(record);
      dropped.inc({ sink: 'all', reason: 'full' });
      if (Date.now() - lastFullLog < FULL_LOG_INTERVAL_MS) return;
      lastFullLog = Date.now();
      log.error('audit records were not taken: the audit trail is full', { reason, counted: 'kube_relay_audit_records_dropped_total{reason="full"}' });
    },
    async room() {
      let reason = unavailable();
      if (reason === undefined) return;
      if (whenFull === 'fail') {
        full.inc({ action: 'refused' });
        throw new AuditUnavailableError(reason);
      }
      full.inc({ action: 'blocked' });
      while (reason !== undefined) {
        await new Promise((resolve) => setTimeout(resolve, ROOM_POLL_MS));
        reason = unavailable();
      }
    },
    get unavailable() {
      return unavailable();
    },
    async close() {
      clearInterval(summaryTimer);
      writeSummaries();
      await Promise.all(destinations.map((destination) => destination.close(config.closeDeadlineMs ?? CLOSE_DEADLINE_MS)));
    },
  };
}
