/**
 * Stage 4, forward (DESIGN §3.4-3.5): plain requests stream both ways with
 * no buffering and no total timeout; upgrades (`websocket`, `SPDY/3.1`)
 * are forwarded as HTTP/1.1 and a refused handshake goes back as the API
 * server answered it, so kubectl can fall back from WebSocket to SPDY. The
 * forwarder itself, shared with the hub, is request-stages/kubernetes-proxy.ts.
 *
 * Long-running plain requests (watch, log, proxy) to an https API server go
 * over HTTP/2 when it offers h2 (request-stages/http2-upstream.ts): many of
 * them share one connection, as client-go sends them, where over HTTP/1.1
 * each would hold a connection and its TLS state for as long as it runs.
 * The others take the HTTP/1.1 keep-alive agent, which Node serves for less:
 * in the bench a short request cost the relay 20-25 % more CPU over HTTP/2
 * (Node's http2 client builds an AsyncResource and its bound functions per
 * request, and sends its frames from the next turn of the event loop), and
 * a connection it holds for a few milliseconds costs little. Upgrades
 * always take the agent, as kubectl sends them over HTTP/1.1 too.
 */
import { Agent as HttpAgent, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { ApiRequest, ApiResponse } from '../http-messages.js';
import { Http2Upstream, type UpstreamAnswer } from '../request-stages/http2-upstream.js';
import { type ProxyTarget, proxyRequest, proxyUpgrade, targetHost } from '../request-stages/kubernetes-proxy.js';
import type { Upstream } from './upstream.js';

/** How long a client may keep an upgraded connection half-open after the upstream closed it. */
const UPGRADE_CLOSE_GRACE_MS = 10_000;

export interface ForwardHooks {
  /** The upstream answered: a plain response, with its headers and body stream, or a refused upgrade (status only). */
  onResponse(status: number, upstream?: UpstreamAnswer): void;
  /** Body bytes (plain) or stream bytes (upgraded) from the client and from the upstream. */
  onBytes(direction: 'in' | 'out', count: number): void;
  /** The upgrade went through (101); `release` closes both sides. */
  onUpgraded(protocolHeaders: IncomingMessage['headers'], release: () => void): void;
  /** The upstream could not be reached or broke off. */
  onError(err: Error): void;
}

/** A request on its way upstream. */
export interface Forwarding {
  /** Closes the upstream request (or keeps it from starting), whatever it has answered so far. */
  abort(): void;
}

export class Forwarder {
  private readonly agent: HttpAgent;
  private readonly target: ProxyTarget;
  /** Long-running plain requests to an https API server, while it speaks h2. */
  private readonly http2: Http2Upstream | undefined;

  constructor(upstream: Upstream) {
    const server = upstream.server;
    // One TLS context for every upstream connection, HTTP/2 sessions included. Given ca/cert/key instead,
    // tls.connect builds one per connection (an OpenSSL SSL_CTX, the CA parsed again): some 18 KiB of native
    // memory more for each open watch, freed at its close into glibc's malloc, which keeps it (issue 14;
    // bench/watch-rounds.ts).
    const secureContext = server.protocol === 'https:' ? upstreamSecureContext(upstream) : undefined;
    this.agent = secureContext
      ? new HttpsAgent({ keepAlive: true, maxFreeSockets: 64, rejectUnauthorized: upstream.tls.rejectUnauthorized, secureContext })
      : new HttpAgent({ keepAlive: true, maxFreeSockets: 64 });
    this.target = {
      protocol: server.protocol === 'https:' ? 'https:' : 'http:',
      hostname: server.hostname.replace(/^\[|\]$/g, ''),
      port: Number(server.port || (server.protocol === 'https:' ? 443 : 80)),
      agent: this.agent,
      pathPrefix: server.pathname.replace(/\/+$/, ''),
      host: 'target',
    };
    this.http2 = secureContext
      ? new Http2Upstream({ hostname: this.target.hostname, port: this.target.port, authority: targetHost(this.target), secureContext, rejectUnauthorized: upstream.tls.rejectUnauthorized })
      : undefined;
  }

  /**
   * `body`: sent in place of the client's, which has been read (a dry-run delete's options);
   * `longRunning`: a watch, log or proxy request (isLongRunning), which goes over HTTP/2 when the API server offers it.
   */
  forwardRequest(req: ApiRequest, res: ApiResponse, headers: OutgoingHttpHeaders, hooks: ForwardHooks, options: { body?: Buffer | undefined; longRunning: boolean }): Forwarding {
    const { body } = options;
    req.on('data', (chunk: Buffer) => hooks.onBytes('in', chunk.length));
    const onResponse = (answer: UpstreamAnswer) => {
      hooks.onResponse(answer.statusCode, answer);
      answer.body.on('data', (chunk: Buffer) => hooks.onBytes('out', chunk.length));
    };
    const viaHttp1 = () =>
      abortable(
        proxyRequest(this.target, req, res, {
          headers,
          ...(body ? { body } : {}),
          onResponse: (upstream) => onResponse({ statusCode: upstream.statusCode ?? 502, headers: upstream.headers, body: upstream }),
          onError: (err) => {
            this.http2?.recheck();
            hooks.onError(err);
          },
        }),
      );
    if (!options.longRunning || !this.http2?.mayUseHttp2) return viaHttp1();
    const path = (this.target.pathPrefix ?? '') + (req.url ?? '/');
    return this.http2.forward(req, res, { path, headers, body }, { onResponse, onError: (err) => hooks.onError(err) }, viaHttp1);
  }

  forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, headers: OutgoingHttpHeaders, hooks: ForwardHooks): Forwarding {
    if (head.length > 0) hooks.onBytes('in', head.length);
    const proxyReq = proxyUpgrade(this.target, req, socket, head, {
      headers,
      onResponse: (refused) => hooks.onResponse(refused.statusCode ?? 502),
      onUpgrade(upstream, upstreamSocket) {
        hooks.onResponse(101);
        socket.on('data', (chunk: Buffer) => hooks.onBytes('in', chunk.length));
        upstreamSocket.on('data', (chunk: Buffer) => hooks.onBytes('out', chunk.length));
        upstreamSocket.on('close', () => closeAfterFlush(socket));
        hooks.onUpgraded(upstream.headers, () => {
          socket.destroy();
          upstreamSocket.destroy();
        });
      },
      onError: (err) => hooks.onError(err),
    });
    return abortable(proxyReq);
  }

  /** HTTP/2 sessions open to the API server now. */
  get upstreamHttp2Sessions(): number {
    return this.http2?.openSessions ?? 0;
  }

  close(): void {
    this.agent.destroy();
    this.http2?.close();
  }
}

/** Destroyed before its answer (or 101) arrives, the upstream request can never deliver one: the client gets no late session. */
function abortable(proxyReq: ClientRequest | undefined): Forwarding {
  return { abort: () => proxyReq?.destroy() };
}

function upstreamSecureContext(upstream: Upstream): SecureContext {
  const { ca, cert, key } = upstream.tls;
  return createSecureContext({ ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) });
}

/**
 * The upstream side of an upgraded connection is gone: the client still gets
 * every byte queued for it (a destroy would drop them, and the end of an exec
 * session with them), then a clean end; a client that never closes its side
 * is cut after a grace period.
 */
function closeAfterFlush(socket: Duplex): void {
  if (socket.destroyed) return;
  socket.end();
  socket.resume(); // nothing reads what the client still sends: drain it, so its end (and close) can arrive
  const cut = setTimeout(() => socket.destroy(), UPGRADE_CLOSE_GRACE_MS).unref();
  socket.once('close', () => clearTimeout(cut));
}
