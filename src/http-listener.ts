/**
 * What every listener carrying Kubernetes API traffic (the relay's, and the
 * issuer's, which holds the hub) enforces before a request reaches a
 * handler: bounded headers, in size and in number; a deadline for the
 * headers and for the whole request (slow-loris); origin-form targets only;
 * no `100 Continue` until a handler has admitted the request (request-body.ts);
 * and a Kubernetes `Status` body for every refusal, including the ones
 * Node's HTTP parser makes, so kubectl prints a sentence instead of
 * "the server rejected our request for an unknown reason".
 */
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { type ConnectionLimits, connectionLimitsWith, limitConnections } from './connection-limits.js';
import type { Logger } from './log.js';
import { headerValues } from './request-stages/authenticate.js';
import { writeStatus, writeStatusToSocket } from './request-stages/errors.js';
import { discardRefusedBody } from './request-body.js';

/** Room for an 8 KiB token twice over (header or WebSocket subprotocol) and everything kubectl sends. */
const MAX_HEADER_BYTES = 32 * 1024;
/** kubectl sends about ten headers. */
const MAX_HEADERS = 200;
const HEADERS_TIMEOUT_MS = 30_000;
/**
 * The whole request, body included, must arrive within a minute: kube-apiserver
 * gives a non-long-running request a minute (--request-timeout) anyway.
 * Watches, logs and upgraded streams are long only in their answer, which no
 * timeout here bounds.
 */
const REQUEST_TIMEOUT_MS = 60_000;

/** A TLS handshake must finish within this (Node's default is two minutes, which lets idle sockets pile up). */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface ListenerLimits {
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  tlsHandshakeTimeoutMs?: number;
  /** Concurrent client connections (default: from the open-file limit, see connection-limits.ts). */
  connections?: Partial<ConnectionLimits>;
}

/** Options for http(s).createServer. */
export function listenerOptions(limits: ListenerLimits = {}): ServerOptions {
  const headersTimeout = limits.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  const requestTimeout = Math.max(limits.requestTimeoutMs ?? REQUEST_TIMEOUT_MS, headersTimeout);
  return {
    maxHeaderSize: MAX_HEADER_BYTES,
    headersTimeout,
    requestTimeout,
    // Node checks the deadlines this often (default 30 s, which would double them).
    connectionsCheckingInterval: Math.min(5_000, Math.ceil(headersTimeout / 4)),
    // Checked below, with a Status body.
    requireHostHeader: false,
    // https.Server only. A connection that finishes TLS but never sends a request meets headersTimeout (408).
    handshakeTimeout: limits.tlsHandshakeTimeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
  } as ServerOptions;
}

export interface ApiHandlers {
  request(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

/** Serves `handlers` on `server` behind the checks above. */
export function serveKubernetesApi(server: Server, handlers: ApiHandlers, options: { limits?: ListenerLimits | undefined; metrics?: Registry; log?: Logger } = {}): void {
  limitConnections(server, connectionLimitsWith(options.limits?.connections), options.metrics, options.log);
  // Node keeps the first maxHeadersCount headers and silently drops the rest: one more than allowed
  // is kept so that a request past the limit is seen, and refused, rather than trimmed.
  server.maxHeadersCount = MAX_HEADERS + 1;
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const problem = malformed(req);
    if (!problem) return handlers.request(req, res);
    discardRefusedBody(req, res);
    res.shouldKeepAlive = false;
    writeStatus(res, problem.code, problem.message);
  };
  server.on('request', onRequest);
  // With a listener here Node leaves `Expect: 100-continue` to the handler, which answers it once the
  // request is admitted; without one it would send 100 at once, inviting any body before the token is seen.
  server.on('checkContinue', onRequest);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const problem = malformed(req);
    if (!problem) return handlers.upgrade(req, socket, head);
    writeStatusToSocket(socket, problem.code, problem.message);
  });
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    writeStatusToSocket(socket, 400, 'CONNECT is not supported: kube-relay forwards Kubernetes API requests, it is not a forward proxy');
  });
  server.on('clientError', (err: NodeJS.ErrnoException & { reason?: string }, socket: Duplex) => {
    // As Node's own handler: answer only on a connection that has not been written to yet.
    // A failed TLS handshake (an https.Server re-emits tlsClientError here) has no channel to answer on.
    const tlsFailed = (err.code ?? '').startsWith('ERR_TLS') || (err.code ?? '').startsWith('ERR_SSL') || (socket as Duplex & { encrypted?: boolean; authorized?: boolean; _secureEstablished?: boolean })._secureEstablished === false;
    if (tlsFailed || err.code === 'ECONNRESET' || !socket.writable || (socket as Duplex & { bytesWritten?: number }).bytesWritten) {
      socket.destroy();
      return;
    }
    const { code, message } = clientErrorStatus(err);
    writeStatusToSocket(socket, code, message);
  });
}

function malformed(req: IncomingMessage): { code: number; message: string } | undefined {
  if (req.rawHeaders.length / 2 > MAX_HEADERS) return { code: 431, message: `the request has more than ${MAX_HEADERS} headers` };
  const hosts = headerValues(req.rawHeaders, 'host');
  if (hosts.length > 1 || (hosts.length === 0 && req.httpVersion === '1.1')) return { code: 400, message: 'an HTTP/1.1 request needs exactly one Host header' };
  if (!req.url?.startsWith('/')) return { code: 400, message: 'the request target must be an absolute path (origin-form)' };
  return undefined;
}

function clientErrorStatus(err: NodeJS.ErrnoException & { reason?: string }): { code: number; message: string } {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { code: 431, message: `the request headers exceed ${MAX_HEADER_BYTES / 1024} KiB` };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { code: 408, message: 'the request did not arrive in time' };
    default:
      return { code: 400, message: `malformed HTTP request${err.reason ? `: ${err.reason}` : ''}` };
  }
}
