/**
 * What every listener carrying Kubernetes API traffic (the relay's, and the
 * issuer's, which holds the hub) enforces before a request reaches a
 * handler: bounded headers, in size and in number; a deadline for the
 * headers and for the whole request (slow-loris); origin-form targets only;
 * no `100 Continue` until a handler has admitted the request (request-body.ts);
 * and a Kubernetes `Status` body for every refusal, including the ones
 * Node's HTTP parser makes, so kubectl prints a sentence instead of
 * "the server rejected our request for an unknown reason".
 *
 * The HTTPS listeners (createApiListener) offer HTTP/2 by ALPN beside
 * HTTP/1.1 (issue 21): client-go then carries every request and watch of a
 * client on one connection, as it does to kube-apiserver. The same limits
 * hold for an h2 stream: its headers are checked here as HTTP/1.1's parser
 * checks them (nghttp2's own caps sit above ours, so a request past ours
 * still gets its Status), its body has the request deadline, and a session
 * without streams is closed as an idle HTTP/1.1 connection is. Upgrades
 * are HTTP/1.1 requests on both (RFC 8441's extended CONNECT is not offered,
 * as kube-apiserver does not offer it).
 */
import { type IncomingMessage, type Server, Server as HttpServer, type ServerOptions } from 'node:http';
import http2, { type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import { type ConnectionLimits, connectionLimitsWith, limitConnections } from './connection-limits.js';
import { type ApiRequest, type ApiResponse, endRequestWithAnswer, isHttp2, requestRawHeaders, resetStream } from './http-messages.js';
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

/** Node's http.Server default, which an HTTP/2 server's HTTP/1.1 side does not take over. */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** An HTTP/2 session with no stream open is closed after this: kube-apiserver's IdleTimeout. */
const HTTP2_IDLE_TIMEOUT_MS = 90_000;
/** Streams one HTTP/2 connection may carry at once: kube-apiserver's --http2-max-streams-per-connection default. */
const HTTP2_MAX_STREAMS = 1000;
/**
 * nghttp2's hard caps on a header block, which reset the stream without a
 * Status: four times ours, so that what is past ours reaches malformed().
 * Every header costs 32 bytes besides its name and value (RFC 9113 §6.5.2),
 * which bounds their number too.
 */
const HTTP2_HEADER_LIST_CAP_BYTES = 4 * MAX_HEADER_BYTES;
/**
 * Receive windows, as kube-apiserver sets them (k8s.io/apiserver secure_serving.go): 256 KiB a stream
 * (most API bodies in one go), and that times the streams for the connection, so that no upload, nor
 * a body the relay has not read yet, holds back the others. Node's default is 64 KiB for both.
 */
const HTTP2_STREAM_WINDOW_BYTES = 256 * 1024;
const HTTP2_SESSION_WINDOW_BYTES = HTTP2_STREAM_WINDOW_BYTES * HTTP2_MAX_STREAMS;

export interface ListenerLimits {
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  tlsHandshakeTimeoutMs?: number;
  /** Concurrent client connections (default: from the open-file limit, see connection-limits.ts). */
  connections?: Partial<ConnectionLimits>;
}

/** Options for http.createServer (a tunnel-mode relay's server); createApiListener applies the same limits. */
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
  } as ServerOptions;
}

/**
 * An HTTPS listener for Kubernetes API traffic: HTTP/2 and HTTP/1.1 by
 * ALPN (`h2`, `http/1.1`), with the limits of listenerOptions on both.
 */
export function createApiListener(tls: { cert: string; key: string }, limits: ListenerLimits = {}): Http2SecureServer {
  const options = listenerOptions(limits);
  const server = http2.createSecureServer({
    cert: tls.cert,
    key: tls.key,
    allowHTTP1: true,
    handshakeTimeout: limits.tlsHandshakeTimeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
    maxHeaderListPairs: HTTP2_HEADER_LIST_CAP_BYTES / 32,
    settings: { maxConcurrentStreams: HTTP2_MAX_STREAMS, maxHeaderListSize: HTTP2_HEADER_LIST_CAP_BYTES, initialWindowSize: HTTP2_STREAM_WINDOW_BYTES, enablePush: false },
  });
  // Its HTTP/1.1 side reads these from the server, where an http.Server has them from its options.
  Object.assign(server, {
    maxHeaderSize: options.maxHeaderSize,
    headersTimeout: options.headersTimeout,
    requestTimeout: options.requestTimeout,
    connectionsCheckingInterval: options.connectionsCheckingInterval,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    // Node 24 sets it true on an HTTP/2 server (Node 20 leaves it unset), and would refuse a Host-less
    // HTTP/1.1 request with a bare 400 before malformed() could answer with a Status.
    requireHostHeader: options.requireHostHeader,
  });
  const sessions = new Map<ServerHttp2Session, { open: number }>();
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    // As http.Server does (its noDelay option, default true) and an HTTP/2 server does not: without it, an
    // answer's head and body leave in two small writes and the second waits for the client's delayed ACK
    // (Nagle's algorithm), some 40 ms per HTTP/1.1 request.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('session', (session: ServerHttp2Session) => {
    session.setLocalWindowSize(HTTP2_SESSION_WINDOW_BYTES);
    const streams = { open: 0 };
    sessions.set(session, streams);
    session.once('close', () => sessions.delete(session));
    closeWhenIdle(session, streams, options.headersTimeout!);
  });
  connectionsOf.set(server, { sessions, sockets });
  return server;
}

const connectionsOf = new WeakMap<Http2SecureServer, { sessions: Map<ServerHttp2Session, { open: number }>; sockets: Set<Socket> }>();

/** How long sessions and connections left after a drain may take to send what they have queued before they are cut. */
const CLOSE_FLUSH_MS = 1_000;

/**
 * A session that opens no stream within the headers timeout, or has none
 * open for HTTP2_IDLE_TIMEOUT_MS, is sent away (GOAWAY), as HTTP/1.1
 * closes a connection that sends no request, or an idle keep-alive one.
 */
function closeWhenIdle(session: ServerHttp2Session, streams: { open: number }, firstStreamMs: number): void {
  let timer: NodeJS.Timeout | undefined;
  const wait = (ms: number) => {
    timer = setTimeout(() => session.close(), ms);
    timer.unref();
  };
  wait(firstStreamMs);
  session.on('stream', (stream) => {
    if (streams.open++ === 0) clearTimeout(timer);
    stream.once('close', () => {
      if (--streams.open === 0 && !session.closed) wait(HTTP2_IDLE_TIMEOUT_MS);
    });
  });
  session.once('close', () => clearTimeout(timer));
}

/**
 * Stops an API listener: no new connections, idle ones closed (HTTP/2
 * sessions sent away, their streams under way finishing), then, once
 * `drain` has settled, every connection still carrying a request cut.
 * An HTTP/2 session whose streams are all done closes by itself once it
 * has written its last frames (nghttp2 writes them after the answer has
 * ended, where HTTP/1.1 has handed them to the kernel): it is cut only if
 * it has not after CLOSE_FLUSH_MS.
 */
export async function closeApiListener(server: Server | Http2SecureServer, drain: () => Promise<void> = async () => undefined): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const h2 = connectionsOf.get(server as Http2SecureServer);
  // An Http2SecureServer tracks its HTTP/1.1 connections as an http.Server does: closeIdleConnections is its
  // own (not in @types/node 20), closeAllConnections http.Server's.
  (server as Server).closeIdleConnections();
  for (const session of h2?.sessions.keys() ?? []) session.close();
  await drain();
  HttpServer.prototype.closeAllConnections.call(server);
  if (h2) {
    for (const [session, streams] of h2.sessions) if (streams.open > 0) session.destroy();
    const late = setTimeout(() => h2.sockets.forEach((socket) => socket.destroy()), CLOSE_FLUSH_MS);
    late.unref();
    await closed;
    clearTimeout(late);
    return;
  }
  await closed;
}

export interface ApiHandlers {
  /** A plain request: HTTP/1.1, or an HTTP/2 stream through Node's compatibility objects. */
  request(req: ApiRequest, res: ApiResponse): void;
  /** Always HTTP/1.1. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

/** Serves `handlers` on `server` behind the checks above. */
export function serveKubernetesApi(server: Server | Http2SecureServer, handlers: ApiHandlers, options: { limits?: ListenerLimits | undefined; metrics?: Registry; log?: Logger } = {}): void {
  limitConnections(server, connectionLimitsWith(options.limits?.connections), options.metrics, options.log);
  // Node keeps the first maxHeadersCount headers and silently drops the rest: one more than allowed
  // is kept so that a request past the limit is seen, and refused, rather than trimmed.
  (server as Server).maxHeadersCount = MAX_HEADERS + 1;
  const requestTimeoutMs = listenerOptions(options.limits).requestTimeout!;
  const requests = new Counter({
    name: 'kube_relay_listener_requests_total',
    help: 'Requests the API listener received (upgrades included), by protocol: h2 or http/1.1.',
    labelNames: ['protocol'],
    registers: options.metrics ? [options.metrics] : [],
  });
  const onRequest = (req: ApiRequest, res: ApiResponse) => {
    requests.inc({ protocol: isHttp2(req) ? 'h2' : 'http/1.1' });
    const problem = malformed(req);
    if (!problem) {
      if (isHttp2(req)) limitRequestTime(req, res, requestTimeoutMs);
      return handlers.request(req, res);
    }
    discardRefusedBody(req, res);
    endRequestWithAnswer(req, res);
    writeStatus(res, problem.code, problem.message);
  };
  server.on('request', onRequest);
  // With a listener here Node leaves `Expect: 100-continue` to the handler, which answers it once the
  // request is admitted; without one it would send 100 at once, inviting any body before the token is seen.
  server.on('checkContinue', onRequest);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    requests.inc({ protocol: 'http/1.1' });
    const problem = malformed(req);
    if (!problem) return handlers.upgrade(req, socket, head);
    writeStatusToSocket(socket, problem.code, problem.message);
  });
  server.on('connect', (req: ApiRequest, socketOrResponse: Duplex | ApiResponse) => {
    const message = 'CONNECT is not supported: kube-relay forwards Kubernetes API requests, it is not a forward proxy';
    // An HTTP/2 CONNECT is a stream, answered as any request.
    if (isHttp2(req)) writeStatus(socketOrResponse as ApiResponse, 400, message);
    else writeStatusToSocket(socketOrResponse as Duplex, 400, message);
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

function malformed(req: ApiRequest): { code: number; message: string } | undefined {
  const rawHeaders = requestRawHeaders(req);
  if (rawHeaders.length / 2 > MAX_HEADERS) return { code: 431, message: `the request has more than ${MAX_HEADERS} headers` };
  // HTTP/1.1's parser refuses these itself (clientError, HPE_HEADER_OVERFLOW).
  if (isHttp2(req) && headerBytes(rawHeaders) > MAX_HEADER_BYTES) return { code: 431, message: `the request headers exceed ${MAX_HEADER_BYTES / 1024} KiB` };
  const hosts = headerValues(rawHeaders, 'host');
  if (isHttp2(req)) {
    if (hosts.length !== 1) return { code: 400, message: 'an HTTP/2 request needs an :authority, or exactly one Host header' };
    // RFC 9113 §8.3.1: a Host naming another authority than :authority makes the request malformed.
    const authority = req.headers[':authority'];
    if (authority !== undefined && authority !== hosts[0]) return { code: 400, message: 'the Host header and :authority name different hosts' };
  } else if (hosts.length > 1 || (hosts.length === 0 && req.httpVersion === '1.1')) return { code: 400, message: 'an HTTP/1.1 request needs exactly one Host header' };
  if (!req.url?.startsWith('/')) return { code: 400, message: 'the request target must be an absolute path (origin-form)' };
  return undefined;
}

function headerBytes(rawHeaders: readonly string[]): number {
  let bytes = 0;
  for (const item of rawHeaders) bytes += item.length;
  return bytes;
}

/**
 * An HTTP/2 request's body must arrive within the request deadline, as
 * Node's requestTimeout holds an HTTP/1.1 one: a 408 if nothing was
 * answered yet, and the stream reset (CANCEL) after it, as HTTP/1.1 closes
 * the connection, so that whoever forwards the request abandons it too.
 */
function limitRequestTime(req: ApiRequest & { stream: http2.ServerHttp2Stream }, res: ApiResponse, timeoutMs: number): void {
  if (req.stream.endAfterHeaders) return;
  let ended = false;
  const timer = setTimeout(() => {
    if (ended) return;
    const cut = () => resetStream(req.stream, http2.constants.NGHTTP2_CANCEL);
    if (res.headersSent) return void cut();
    req.stream.once('finish', cut);
    writeStatus(res, 408, 'the request did not arrive in time');
  }, timeoutMs);
  timer.unref();
  req.once('end', () => {
    ended = true;
    clearTimeout(timer);
  });
  res.once('close', () => clearTimeout(timer));
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
