/**
 * Why a dial to the hub failed, in words an operator can act on, and how
 * often to say so (issue 13). A tunnel relay retries for as long as it runs,
 * so its log has to name the cause at once (a wrong CA, a dead hub, a name
 * that does not resolve) without repeating it at every backoff: each cause
 * is logged at warn the first time it is seen in an outage, then at most
 * once per summary interval with a count, and the tunnel coming back says
 * how long it was down.
 */
import { UNTRUSTED_CERTIFICATE_CODES } from '../https-fetch.js';
import type { Logger } from '../log.js';

export type DialFailureKind = 'tls' | 'connection-refused' | 'dns' | 'handshake-timeout' | 'http-status' | 'tunnel-dropped' | 'network';

export interface DialFailure {
  kind: DialFailureKind;
  /** What went wrong, as the end of a sentence: "connection refused by 127.0.0.1:8443". */
  cause: string;
  /** Detail for the structured log line (error code, HTTP status). */
  fields: Record<string, unknown>;
}

export interface DialTarget {
  /** The hub's host:port, as dialled. */
  address: string;
  /** What the relay trusts for the hub's certificate: "the CA file /etc/ca.crt (--issuer-ca-file)" or "the system roots". */
  trust: string;
  /** Whether that trust is a CA the relay was given (else the system roots). */
  caGiven: boolean;
  handshakeTimeoutMs: number;
}

/** Node's error fields for a failed connect, lookup or TLS handshake. */
type SystemError = Error & { code?: unknown; address?: unknown; port?: unknown; hostname?: unknown };

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA', 'EAI_NONAME']);
/** The only sign ws gives of its handshake timer firing (the error has no code). */
const WS_HANDSHAKE_TIMEOUT_MESSAGE = 'Opening handshake has timed out';
/** Messages from peers and OpenSSL can be long; a log line needs the start. */
const MAX_DETAIL_CHARS = 300;

/** The cause of an 'error' on a WebSocket that never opened. */
export function dialErrorFailure(err: SystemError, target: DialTarget): DialFailure {
  const code = typeof err.code === 'string' ? err.code : undefined;
  const message = bounded(err.message);
  if (err.message === WS_HANDSHAKE_TIMEOUT_MESSAGE) {
    return { kind: 'handshake-timeout', cause: `${target.address} did not complete the WebSocket handshake within ${target.handshakeTimeoutMs / 1000} s`, fields: {} };
  }
  if (code === 'ECONNREFUSED') {
    const address = typeof err.address === 'string' && typeof err.port === 'number' ? `${err.address}:${err.port}` : target.address;
    return { kind: 'connection-refused', cause: `connection refused by ${address}`, fields: { code } };
  }
  if (code && DNS_CODES.has(code)) {
    const name = typeof err.hostname === 'string' ? err.hostname : target.address;
    return { kind: 'dns', cause: `the name ${name} does not resolve (${code})`, fields: { code } };
  }
  if (code && isTlsCode(code)) {
    const hint = !UNTRUSTED_CERTIFICATE_CODES.has(code)
      ? ''
      : target.caGiven
        ? "; is that the CA that signed the hub's certificate?"
        : '; --issuer-ca-file sets the CA the relay trusts for the hub';
    return { kind: 'tls', cause: `TLS with ${target.address} failed (${code}: ${message}) trusting ${target.trust}${hint}`, fields: { code, trust: target.trust } };
  }
  return { kind: 'network', cause: `cannot connect to ${target.address} (${code ? `${code}: ` : ''}${message})`, fields: code ? { code } : {} };
}

function isTlsCode(code: string): boolean {
  return UNTRUSTED_CERTIFICATE_CODES.has(code) || code === 'EPROTO' || /^(CERT_|ERR_TLS_|ERR_SSL_|HOSTNAME_)/.test(code);
}

/** The hub answered the upgrade with an HTTP status instead of 101; `message` is its Status message or body. */
export function httpStatusFailure(status: number, message: string): DialFailure {
  const said = bounded(message.trim());
  return { kind: 'http-status', cause: `the hub answered HTTP ${status}${said ? `: ${said}` : ''}`, fields: { status } };
}

/** WebSocket's code for a connection that ended without a close frame (RFC 6455 §7.4.1). */
const ABNORMAL_CLOSURE = 1006;

/** An open tunnel ended; `why` is what the relay saw first (a socket error, missed pongs), if anything. */
export function tunnelDroppedFailure(closeCode: number, closeReason: string, why?: string): DialFailure {
  const reason = bounded(closeReason);
  const cause =
    why !== undefined
      ? bounded(why)
      : closeCode === ABNORMAL_CLOSURE
        ? `the connection ended without a WebSocket close (${ABNORMAL_CLOSURE})`
        : `the hub closed it (WebSocket close ${closeCode}${reason ? `: ${reason}` : ''})`;
  return { kind: 'tunnel-dropped', cause, fields: { closeCode } };
}

function bounded(text: string): string {
  return text.length > MAX_DETAIL_CHARS ? `${text.slice(0, MAX_DETAIL_CHARS)}…` : text;
}

/** How often the same cause is logged again at warn while it lasts. */
const SUMMARY_INTERVAL_MS = 60_000;
/** Distinct causes remembered within one outage; a cause forgotten is simply logged afresh. */
const MAX_CAUSES_REMEMBERED = 16;

interface CauseSeen {
  firstAt: number;
  /** Attempts that failed with this cause since firstAt. */
  count: number;
  loggedAt: number;
}

interface Outage {
  since: number;
  failedAttempts: number;
  causes: Map<string, CauseSeen>;
}

export interface DialFailureLogOptions {
  now?: () => number;
  summaryIntervalMs?: number;
}

/** The log of one tunnel's outages: a warn per new cause, a summary per interval, one line when it is back. */
export class DialFailureLog {
  private outage: Outage | undefined;
  private readonly now: () => number;
  private readonly summaryIntervalMs: number;

  constructor(
    private readonly log: Logger,
    private readonly hubUrl: string,
    options: DialFailureLogOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.summaryIntervalMs = options.summaryIntervalMs ?? SUMMARY_INTERVAL_MS;
  }

  get down(): boolean {
    return this.outage !== undefined;
  }

  /** A dial failed, or an open tunnel dropped; the next dial is in `retryInMs`. */
  failed(failure: DialFailure, retryInMs: number): void {
    const now = this.now();
    const outage = (this.outage ??= { since: now, failedAttempts: 0, causes: new Map() });
    if (failure.kind !== 'tunnel-dropped') outage.failedAttempts++;
    const fields = { hub: this.hubUrl, reason: failure.kind, ...failure.fields, retryInMs };
    const seen = outage.causes.get(failure.cause);
    if (!seen) {
      if (outage.causes.size >= MAX_CAUSES_REMEMBERED) outage.causes.delete(outage.causes.keys().next().value!);
      outage.causes.set(failure.cause, { firstAt: now, count: 1, loggedAt: now });
      this.log.warn(failure.kind === 'tunnel-dropped' ? `tunnel disconnected: ${failure.cause}` : `cannot reach the hub: ${failure.cause}`, fields);
      return;
    }
    seen.count++;
    if (now - seen.loggedAt < this.summaryIntervalMs) {
      this.log.debug(`cannot reach the hub: ${failure.cause}`, fields);
      return;
    }
    seen.loggedAt = now;
    this.log.warn(`still cannot reach the hub: ${failure.cause} (${seen.count} attempts since ${new Date(seen.firstAt).toISOString()})`, { ...fields, attempts: seen.count });
  }

  /** A tunnel is up: says so, with how long the outage lasted if there was one. */
  connected(fields: Record<string, unknown>): void {
    const outage = this.outage;
    this.outage = undefined;
    if (!outage) {
      this.log.info('tunnel connected', { hub: this.hubUrl, ...fields });
      return;
    }
    const downMs = this.now() - outage.since;
    this.log.info(`tunnel connected after ${formatDuration(downMs)} without one (${outage.failedAttempts} failed dials)`, {
      hub: this.hubUrl,
      ...fields,
      downMs,
      failedDials: outage.failedAttempts,
    });
  }
}

/** "850 ms", "42 s", "3 min 5 s", "2 h 10 min". */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))} ms`;
  const seconds = Math.round(ms / 1_000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min${seconds % 60 ? ` ${seconds % 60} s` : ''}`;
  return `${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
}
