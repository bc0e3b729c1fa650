/**
 * The one forwarder of agents' requests: the relay's to the API server, the
 * hub's into a tunnel, `kube-relay proxy`'s to the relay or hub. Written on
 * Node's own http client (it replaced http-proxy, unmaintained since 2020,
 * whose per-request passes, option merging and event fan-out cost more CPU
 * per small request than the rest of the relay; issue 21). What it does:
 *
 * - the upstream sees `pathPrefix` plus the client's request target byte
 *   for byte, with the header set it is given;
 * - bodies stream both ways, with no buffering and no total timeout;
 * - the answer's hop-by-hop headers stay on the upstream's hop: Node frames
 *   the client's answer itself, and keeps or closes the client's
 *   connection as the client asked (RFC 9110 §7.6.1);
 * - a streamed answer (no Content-Length: a watch, logs -f) reaches the
 *   client with its headers at once, as kube-apiserver flushes them;
 * - a client that leaves, or a caller that abandons a request, ends the
 *   upstream request too (a watch must not linger);
 * - upgrades (`websocket`, `SPDY/3.1`) are forwarded as HTTP/1.1; the
 *   upstream's 101 head goes to the client as it was sent, then raw bytes
 *   both ways, each direction ended on its own; a refused handshake goes
 *   back as the upstream answered it, so kubectl can fall back from
 *   WebSocket to SPDY. Callers validate the upgrade (strip-headers.ts).
 */
import http, { type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { answerComplete, type ApiRequest, type ApiResponse, cutAnswer, flushHead, requestRawHeaders, responseClosed, writeHead } from '../http-messages.js';
import { appendHeader } from './strip-headers.js';

/** Where requests go: the upstream's origin and the pool that connects to it. */
export interface ProxyTarget {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number;
  /** A keep-alive pool (the relay, the local proxy) or an agent opening tunnel streams (the hub). */
  agent: http.Agent;
  /** Prepended to the client's request target (an API server URL with a path). */
  pathPrefix?: string;
  /** The Host header upstream: the target's own (`target`, as a client of that server sends it), or the client's. */
  host: 'target' | 'client';
}

export interface ProxyHooks {
  /** The header set sent upstream (default: the client's, as it sent them); with `host: 'target'` its Host is set. */
  headers?: OutgoingHttpHeaders;
  /** Sent in place of the client's body, which has been read (a dry-run delete's options). */
  body?: Buffer;
  /** The upstream answered a plain request, or refused an upgrade (with that answer). */
  onResponse?(upstream: IncomingMessage): void;
  /** The upgrade went through: the client has the 101 head, bytes flow both ways. */
  onUpgrade?(upstream: IncomingMessage, upstreamSocket: Socket): void;
  /** The upstream could not be reached or broke off (not called when the client left first). */
  onError(err: Error): void;
}

/** Hop-by-hop headers of the upstream's answer (RFC 9110 §7.6.1): Node frames the client's answer itself. */
const HOP_BY_HOP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

function requestOptions(target: ProxyTarget, req: ApiRequest, hooks: ProxyHooks): http.RequestOptions {
  const headers = hooks.headers ?? headersAsSent(requestRawHeaders(req));
  if (target.host === 'target') headers.host = targetHost(target);
  return {
    protocol: target.protocol,
    hostname: target.hostname,
    port: target.port,
    agent: target.agent,
    method: req.method,
    path: (target.pathPrefix ?? '') + (req.url ?? '/'),
    headers,
    // The header set carries the Host to send; Node adds one only where it has none (an HTTP/1.0 client's).
    setHost: headers.host === undefined,
  };
}

/**
 * The client's headers, each value as it was sent: req.headers would join
 * repeated headers into one and drop some (a header named __proto__).
 */
function headersAsSent(rawHeaders: readonly string[]): OutgoingHttpHeaders {
  const headers: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i < rawHeaders.length; i += 2) appendHeader(headers, rawHeaders[i]!.toLowerCase(), rawHeaders[i + 1]!);
  return headers;
}

/** The Host a client of the target sends it: its name, and its port unless the scheme's own. */
export function targetHost(target: Pick<ProxyTarget, 'protocol' | 'hostname' | 'port'>): string {
  return target.port === (target.protocol === 'https:' ? 443 : 80) ? target.hostname : `${hostPart(target.hostname)}:${target.port}`;
}

function hostPart(hostname: string): string {
  return hostname.includes(':') ? `[${hostname}]` : hostname;
}

/** The upstream request, or undefined when it cannot be made (onError has been told why). */
function startRequest(target: ProxyTarget, req: ApiRequest, hooks: ProxyHooks): ClientRequest | undefined {
  try {
    return (target.protocol === 'https:' ? https : http).request(requestOptions(target, req, hooks));
  } catch (err) {
    hooks.onError(err as Error);
    return undefined;
  }
}

/** Forwards a plain request; returns the upstream request (destroy it to abandon the request). */
export function proxyRequest(target: ProxyTarget, req: ApiRequest, res: ApiResponse, hooks: ProxyHooks): ClientRequest | undefined {
  const proxyReq = startRequest(target, req, hooks);
  if (!proxyReq) return undefined;
  const abandonIfUnfinished = () => {
    if (!answerComplete(res)) proxyReq.destroy();
  };
  res.once('close', abandonIfUnfinished);
  proxyReq.on('error', (err) => {
    if (responseClosed(res) && !answerComplete(res)) return; // the client left: nobody waits for this answer
    hooks.onError(err);
  });
  proxyReq.on('response', (upstream) => {
    hooks.onResponse?.(upstream);
    if (responseClosed(res)) {
      upstream.destroy();
      return;
    }
    forwardAnswer(res, upstream.statusCode ?? 502, upstream.statusMessage, upstream.rawHeaders, upstream);
  });
  if (hooks.body) proxyReq.end(hooks.body);
  else req.pipe(proxyReq);
  return proxyReq;
}

/**
 * The upstream's answer to the client (HTTP/1.1 or HTTP/2): its status and
 * end-to-end headers, then its body as it streams. Node holds a head back until the first body
 * byte; a streamed answer (no Content-Length: a watch) gets it at once, as
 * kube-apiserver flushes it. A body already read with the head is written
 * with it (one write): its flow starts on the next tick, before this microtask.
 */
export function forwardAnswer(res: ApiResponse, statusCode: number, statusMessage: string | undefined, rawHeaders: readonly string[], body: Readable): void {
  const headers: string[] = [];
  let streamed = true;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'content-length') streamed = false;
    // Pseudo-headers (`:status`) are HTTP/2's framing, as hop-by-hop headers are HTTP/1.1's.
    if (!HOP_BY_HOP_RESPONSE.has(name) && !name.startsWith(':')) headers.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  writeHead(res, statusCode, headers, statusMessage);
  if (streamed) {
    let bodyStarted = false;
    body.once('data', () => (bodyStarted = true));
    queueMicrotask(() => {
      if (!bodyStarted && !responseClosed(res)) flushHead(res);
    });
  }
  body.on('error', () => cutAnswer(res));
  body.pipe(res);
}

/** Forwards an upgrade request; returns the upstream request (destroy it to abandon the upgrade before its 101). */
export function proxyUpgrade(target: ProxyTarget, req: IncomingMessage, socket: Duplex, head: Buffer, hooks: ProxyHooks): ClientRequest | undefined {
  allowHalfClose(socket);
  const proxyReq = startRequest(target, req, hooks);
  if (!proxyReq) return undefined;
  // Node's server no longer handles errors on a socket it handed over as an upgrade.
  socket.on('error', () => socket.destroy());
  socket.once('close', () => proxyReq.destroy());
  proxyReq.on('error', (err) => {
    if (!socket.destroyed) hooks.onError(err);
  });
  proxyReq.on('response', (upstream) => {
    // A refused handshake: the upstream's answer, as it sent it, and the connection ends with it.
    hooks.onResponse?.(upstream);
    if (socket.destroyed) return upstream.destroy();
    socket.write(responseHead(upstream));
    upstream.pipe(socket);
  });
  proxyReq.on('upgrade', (upstream, upstreamSocket: Socket, upstreamHead: Buffer) => {
    if (socket.destroyed) return upstreamSocket.destroy();
    allowHalfClose(upstreamSocket);
    upstreamSocket.setNoDelay(true);
    socket.write(responseHead(upstream));
    if (upstreamHead.length > 0) socket.write(upstreamHead);
    if (head.length > 0) upstreamSocket.write(head);
    upstreamSocket.on('error', () => upstreamSocket.destroy());
    socket.once('close', () => upstreamSocket.destroy());
    hooks.onUpgrade?.(upstream, upstreamSocket);
    upstreamSocket.pipe(socket);
    socket.pipe(upstreamSocket);
  });
  proxyReq.end();
  return proxyReq;
}

/** The upstream's status line and headers, as it sent them (names in their case, repeats kept). */
function responseHead(upstream: IncomingMessage): string {
  let head = `HTTP/${upstream.httpVersion} ${upstream.statusCode} ${upstream.statusMessage}\r\n`;
  const raw = upstream.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/**
 * An upgraded stream carries each direction to its own end: a client that
 * ended its side (exec stdin EOF, `echo | nc` over port-forward) must still
 * get the upstream's answer. TLS sockets from an https.Server end their
 * writable side as soon as the client's FIN arrives unless told otherwise
 * (http.Server sockets allow half-open; https.Server ones do not).
 */
export function allowHalfClose(socket: Duplex): void {
  socket.allowHalfOpen = true;
}
