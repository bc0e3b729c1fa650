/**
 * Stage 4, forward (DESIGN §3.4-3.5), on http-proxy: plain requests stream
 * both ways with no buffering and no total timeout; upgrades (`websocket`,
 * `SPDY/3.1`) are forwarded as HTTP/1.1 and a refused handshake goes back as
 * the API server answered it, so kubectl can fall back from WebSocket to SPDY.
 *
 * http-proxy's own upgrade check only knows `websocket` (and GET), while
 * kubectl's SPDY exec is a POST: that pass is removed, and the relay's
 * `validatedUpgrade` is the check instead. `toProxy` keeps http-proxy from
 * re-parsing (and re-escaping) the request target.
 */
import { Agent as HttpAgent, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { listHeaderValues } from '../request-stages/authenticate.js';
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

/**
 * An http-proxy server fit for Kubernetes traffic: its upgrade check (GET and
 * `websocket` only) would refuse kubectl's SPDY exec, a POST, so callers
 * validate upgrades themselves; and its deleteLength pass would turn a chunked
 * DELETE body into "Content-Length: 0". Both passes are removed. The
 * upstream sees `pathPrefix` plus the request target byte for byte.
 */
export function createKubernetesProxy(options: httpProxy.ServerOptions, pathPrefix = ''): httpProxy {
  const proxy = httpProxy.createProxyServer({ toProxy: true, xfwd: false, ws: true, ...options });
  const passes = proxy as unknown as { wsPasses: { name: string }[]; webPasses: { name: string }[] };
  passes.wsPasses = passes.wsPasses.filter((pass) => pass.name !== 'checkMethodAndHeader');
  passes.webPasses = passes.webPasses.filter((pass) => pass.name !== 'deleteLength');
  // http-proxy builds the upstream path with its urlJoin, which collapses "//" and turns "http:/" into
  // "http://": another path than the client's (DESIGN §3.4). The request line is written on the first
  // write, after these events, so the exact path set here is the one sent.
  const exactPath = (proxyReq: ClientRequest, req: IncomingMessage) => {
    proxyReq.path = pathPrefix + req.url;
  };
  proxy.on('proxyReq', exactPath);
  proxy.on('proxyReqWs', exactPath);
  // A streamed answer (a watch, logs -f) must reach the client with its headers at once, as kube-apiserver
  // flushes them; Node would hold them back until the first body byte. http-proxy copies the headers
  // synchronously right after this event, so the flush waits for a microtask.
  proxy.on('proxyRes', (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
    // Connection is this hop's business: the client's own request decides. http-proxy would otherwise
    // answer "Connection: keep-alive" (it reads the header set the pipeline rebuilt, which has none), and
    // Node then keeps open a connection the client asked to close.
    const clientCloses = listHeaderValues(req.rawHeaders, 'connection').some((token) => token.toLowerCase() === 'close');
    proxyRes.headers.connection = clientCloses || req.httpVersion === '1.0' ? 'close' : 'keep-alive';
    if (proxyRes.headers['content-length'] !== undefined) return;
    queueMicrotask(() => {
      if (!res.headersSent && !res.destroyed) res.flushHeaders();
    });
  });
  return proxy;
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

  forwardRequest(req: IncomingMessage, res: ServerResponse, headers: OutgoingHttpHeaders, hooks: ForwardHooks): Forwarding {
    const state: InFlight = { hooks, abandoned: false };
    this.inFlight.set(req, state);
    req.on('data', (chunk: Buffer) => hooks.onBytes('in', chunk.length));
    // Client went away before the response finished: abort upstream too (a watch must not linger).
    res.on('close', () => {
      if (!res.writableFinished) abandon(state);
    });
    this.proxy.web(withHeaders(req, headers), res, {}, (err) => hooks.onError(err));
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
 * An upgraded stream carries each direction to its own end: a client that
 * ended its side (exec stdin EOF, `echo | nc` over port-forward) must still
 * get the upstream's answer. TLS sockets from an https.Server end their
 * writable side as soon as the client's FIN arrives unless told otherwise
 * (http.Server sockets allow half-open; https.Server ones do not).
 */
export function allowHalfClose(socket: Duplex): void {
  socket.allowHalfOpen = true;
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
