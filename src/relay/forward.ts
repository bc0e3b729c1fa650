/**
 * Stage 4, forward (DESIGN §3.4-3.5), on http-proxy: plain requests stream
 * both ways with no buffering and no total timeout; upgrades (`websocket`,
 * `SPDY/3.1`) are forwarded as HTTP/1.1 and a refused handshake goes back as
 * the API server answered it, so kubectl can fall back from WebSocket to SPDY.
 * The proxy itself, shared with the hub, is request-stages/kubernetes-proxy.ts.
 */
import { Agent as HttpAgent, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { type Duplex, Readable } from 'node:stream';
import type httpProxy from 'http-proxy';
import { allowHalfClose, createKubernetesProxy } from '../request-stages/kubernetes-proxy.js';
import type { Upstream } from './upstream.js';

/** How long a client may keep an upgraded connection half-open after the upstream closed it. */
const UPGRADE_CLOSE_GRACE_MS = 10_000;

export interface ForwardHooks {
  /** The upstream answered: a plain response, with its body stream, or a refused upgrade (status only). */
  onResponse(status: number, upstream?: IncomingMessage): void;
  /** Body bytes (plain) or stream bytes (upgraded) from the client and from the upstream. */
  onBytes(direction: 'in' | 'out', count: number): void;
  /** The upgrade went through (101); `release` closes both sides. */
  onUpgraded(protocolHeaders: IncomingMessage['headers'], release: () => void): void;
  /** The upstream could not be reached or broke off. */
  onError(err: Error): void;
}

interface InFlight {
  hooks: ForwardHooks;
  proxyReq?: ClientRequest;
  /** The client left, or the relay abandoned the request: no upstream request may go on. */
  abandoned: boolean;
}

/** A request on its way upstream. */
export interface Forwarding {
  /** Closes the upstream request (or keeps it from starting), whatever it has answered so far. */
  abort(): void;
}

export class Forwarder {
  private readonly proxy: httpProxy;
  private readonly agent: HttpAgent;
  private readonly pathPrefix: string;
  private readonly inFlight = new WeakMap<IncomingMessage, InFlight>();

  constructor(upstream: Upstream) {
    const server = upstream.server;
    this.pathPrefix = server.pathname.replace(/\/+$/, '');
    const hostname = server.hostname.replace(/^\[|\]$/g, '');
    const target = {
      protocol: server.protocol,
      host: hostname,
      hostname,
      port: server.port || (server.protocol === 'https:' ? '443' : '80'),
    };
    // One TLS context for every upstream connection. Given ca/cert/key instead, tls.connect builds one per
    // connection (an OpenSSL SSL_CTX, the CA parsed again): some 18 KiB of native memory more for each open
    // watch, freed at its close into glibc's malloc, which keeps it (issue 14; bench/watch-rounds.ts).
    this.agent =
      server.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxFreeSockets: 64, rejectUnauthorized: upstream.tls.rejectUnauthorized, secureContext: upstreamSecureContext(upstream) })
        : new HttpAgent({ keepAlive: true, maxFreeSockets: 64 });
    this.proxy = createKubernetesProxy({ target, agent: this.agent, secure: upstream.tls.rejectUnauthorized, changeOrigin: true }, this.pathPrefix);
    this.observeProxy();
  }

  /** `body`: sent in place of the client's, which has been read (a dry-run delete's options). */
  forwardRequest(req: IncomingMessage, res: ServerResponse, headers: OutgoingHttpHeaders, hooks: ForwardHooks, body?: Buffer): Forwarding {
    const state: InFlight = { hooks, abandoned: false };
    this.inFlight.set(req, state);
    req.on('data', (chunk: Buffer) => hooks.onBytes('in', chunk.length));
    // Client went away before the response finished: abort upstream too (a watch must not linger).
    res.on('close', () => {
      if (!res.writableFinished) abandon(state);
    });
    this.proxy.web(withHeaders(req, headers), res, body ? { buffer: Readable.from([body]) } : {}, (err) => hooks.onError(err));
    return { abort: () => abandon(state) };
  }

  forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, headers: OutgoingHttpHeaders, hooks: ForwardHooks): Forwarding {
    allowHalfClose(socket);
    const state: InFlight = { hooks, abandoned: false };
    this.inFlight.set(req, state);
    if (head.length > 0) hooks.onBytes('in', head.length);
    this.proxy.ws(withHeaders(req, headers), socket, head, {}, (err: Error) => hooks.onError(err));
    return { abort: () => abandon(state) };
  }

  /** http-proxy reports upstream requests and responses on the proxy; each is routed to its request's hooks. */
  private observeProxy(): void {
    this.proxy.on('proxyReq', (proxyReq: ClientRequest, req: IncomingMessage) => {
      const state = this.inFlight.get(req);
      if (!state) return;
      state.proxyReq = proxyReq;
      if (state.abandoned) proxyReq.destroy();
    });
    this.proxy.on('proxyRes', (proxyRes: IncomingMessage, req: IncomingMessage) => {
      const hooks = this.inFlight.get(req)?.hooks;
      if (!hooks) return;
      hooks.onResponse(proxyRes.statusCode ?? 502, proxyRes);
      proxyRes.on('data', (chunk: Buffer) => hooks.onBytes('out', chunk.length));
    });
    this.proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage, socket: Duplex) => {
      const state = this.inFlight.get(req);
      if (!state) return;
      const { hooks } = state;
      state.proxyReq = proxyReq;
      // Destroyed before its 101 arrives, the upstream request can never upgrade: the client gets no late session.
      if (state.abandoned) proxyReq.destroy();
      socket.on('close', () => proxyReq.destroy());
      proxyReq.on('response', (response: IncomingMessage) => hooks.onResponse(response.statusCode ?? 502));
      proxyReq.on('upgrade', (response: IncomingMessage, proxySocket: Socket) => {
        hooks.onResponse(101);
        socket.on('data', (chunk: Buffer) => hooks.onBytes('in', chunk.length));
        proxySocket.on('data', (chunk: Buffer) => hooks.onBytes('out', chunk.length));
        proxySocket.on('close', () => closeAfterFlush(socket));
        hooks.onUpgraded(response.headers, () => {
          socket.destroy();
          proxySocket.destroy();
        });
      });
    });
  }

  close(): void {
    this.proxy.close();
    this.agent.destroy();
  }
}

function abandon(state: InFlight): void {
  state.abandoned = true;
  state.proxyReq?.destroy();
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

/**
 * http-proxy copies `req.headers` into the upstream request; hand it the
 * header set built by the pipeline instead of the client's. The pipeline
 * keeps its own read-only copy of what the client sent.
 */
function withHeaders(req: IncomingMessage, headers: OutgoingHttpHeaders): IncomingMessage {
  req.headers = headers as IncomingMessage['headers'];
  return req;
}
