/**
 * Every refusal the relay makes, as one typed error with a stable reason,
 * mapped to HTTP in one place that also writes the Kubernetes `Status` body
 * (metav1.Status, the shape kubectl prints as "Error from server (...)").
 * Client-facing messages stay generic; detail goes to the log.
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
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
  // 429: the agent holds as many long-running streams as it may
  | 'too-many-streams'
  // 400: requests the relay will not forward in any form
  | 'bad-request-target'
  | 'unsupported-upgrade'
  // 503: the relay cannot verify, or cannot audit, right now (fail closed)
  | 'jwks-unavailable'
  | 'audit-unavailable';

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
  'too-many-streams': 429,
  'bad-request-target': 400,
  'unsupported-upgrade': 400,
  'jwks-unavailable': 503,
  'audit-unavailable': 503,
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
  ) {
    super(`${reason}: ${clientMessage}`);
    this.status = STATUS_OF[reason];
  }
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

/** Answers a plain request with a Kubernetes Status. */
export function writeStatus(res: ServerResponse, code: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = statusBody(code, message);
  res.writeHead(code, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
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
