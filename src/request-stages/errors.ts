/**
 * Every refusal the relay makes, as one typed error with a stable reason,
 * mapped to HTTP in one place that also writes the Kubernetes `Status` body
 * (metav1.Status, the shape kubectl prints as "Error from server (...)").
 * Client-facing messages stay generic; detail goes to the log.
 */
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { type ApiResponse, cutAnswer, writeHead } from '../http-messages.js';
import type { AgentIdentity } from '../identity.js';

export type RefusalReason =
  // 401: no usable agent identity
  | 'missing-token'
  | 'malformed-token'
  | 'oversized-token'
  | 'duplicate-credentials'
  | 'token-in-query'
  | 'algorithm-not-allowed'
  | 'unknown-key'
  | 'bad-signature'
  | 'expired'
  | 'not-yet-valid'
  | 'issued-in-future'
  | 'wrong-issuer'
  | 'wrong-audience'
  | 'lifetime-too-long'
  | 'invalid-claims'
  | 'agent-revoked'
  // 403: a client trying to choose its own identity
  | 'impersonation-forbidden'
  // 429: the agent has as many requests in flight, or holds as many long-running streams, as it may
  | 'too-many-requests'
  | 'too-many-streams'
  // 403 (429 for the rate): the agent's policy (DESIGN §13) forbids it, whatever RBAC says
  | 'policy-read-only'
  | 'policy-dry-run'
  | 'policy-deny'
  | 'policy-rate'
  // 400: requests the relay will not forward in any form
  | 'bad-request-target'
  | 'unsupported-upgrade'
  // 503: the relay cannot verify, or cannot audit, right now (fail closed)
  | 'jwks-unavailable'
  | 'audit-unavailable'
  // 504: a long-running request that reached --max-stream-duration before the API server answered it
  | 'max-stream-duration';

const STATUS_OF: Record<RefusalReason, number> = {
  'missing-token': 401,
  'malformed-token': 401,
  'oversized-token': 401,
  'duplicate-credentials': 401,
  'token-in-query': 401,
  'algorithm-not-allowed': 401,
  'unknown-key': 401,
  'bad-signature': 401,
  expired: 401,
  'not-yet-valid': 401,
  'issued-in-future': 401,
  'wrong-issuer': 401,
  'wrong-audience': 401,
  'lifetime-too-long': 401,
  'invalid-claims': 401,
  'agent-revoked': 401,
  'impersonation-forbidden': 403,
  'too-many-requests': 429,
  'too-many-streams': 429,
  'policy-read-only': 403,
  'policy-dry-run': 403,
  'policy-deny': 403,
  'policy-rate': 429,
  'bad-request-target': 400,
  'unsupported-upgrade': 400,
  'jwks-unavailable': 503,
  'audit-unavailable': 503,
  'max-stream-duration': 504,
};

/** metav1.StatusReason for each HTTP code we answer with. */
const K8S_REASON: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  408: 'Timeout',
  429: 'TooManyRequests',
  431: 'BadRequest',
  500: 'InternalError',
  502: 'ServiceUnavailable',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export class RelayRefusal extends Error {
  readonly status: number;

  constructor(
    readonly reason: RefusalReason,
    /** Safe to show the client: never contains token material. */
    readonly clientMessage: string,
    /** Who was refused, when the token was valid but its agent may not pass (revoked): for the audit record. */
    readonly identity?: AgentIdentity,
    /** A policy refusal's rule, for the audit record, and how long a rate-limited client should wait. */
    readonly details: { policyRule?: string; retryAfterSeconds?: number } = {},
  ) {
    super(`${reason}: ${clientMessage}`);
    this.status = STATUS_OF[reason];
  }
}

/** The refusal's extra response headers (Retry-After for a rate limit). */
export function refusalHeaders(err: RelayRefusal): Record<string, string> {
  return err.details.retryAfterSeconds === undefined ? {} : { 'retry-after': String(err.details.retryAfterSeconds) };
}

export function isPolicyRefusal(err: RelayRefusal): boolean {
  return err.reason.startsWith('policy-');
}

export function isAuthenticationFailure(err: RelayRefusal): boolean {
  return err.status === 401;
}

export interface KubernetesStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: string;
  code: number;
}

export function kubernetesStatus(code: number, message: string): KubernetesStatus {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: K8S_REASON[code] ?? 'Unknown', code };
}

function statusBody(code: number, message: string): string {
  return JSON.stringify(kubernetesStatus(code, message));
}

/** Answers a plain request (HTTP/1.1 or HTTP/2) with a Kubernetes Status. */
export function writeStatus(res: ApiResponse, code: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    cutAnswer(res);
    return;
  }
  const body = statusBody(code, message);
  writeHead(res, code, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

/** What the client of a refused upgrade may still send, and how long it may keep the connection, before it is cut. */
const REFUSED_UPGRADE_READ_LIMIT = 64 * 1024;
const REFUSED_UPGRADE_LINGER_MS = 10_000;

/**
 * Answers an upgrade request the relay refuses with a Status, as
 * writeStatusToSocket, and makes sure the connection then closes: the
 * client's end (a FIN, through a tunnel too) is seen only by reading, so what
 * it still sends is read and dropped, up to a small limit, and a client that
 * neither ends nor closes is cut after a grace period. The request's audit
 * record is written when the connection closes.
 */
export function refuseUpgrade(socket: Duplex, code: number, message: string): void {
  writeStatusToSocket(socket, code, message);
  if (socket.destroyed) return;
  let discarded = 0;
  socket.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > REFUSED_UPGRADE_READ_LIMIT) socket.destroy();
  });
  const linger = setTimeout(() => socket.destroy(), REFUSED_UPGRADE_LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
}

/** Answers an upgrade request, before any 101, with a Kubernetes Status and closes the socket. */
export function writeStatusToSocket(socket: Duplex, code: number, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = statusBody(code, message);
  socket.end(
    `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? ''}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
