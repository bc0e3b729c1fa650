/**
 * The http-proxy server both the relay (to the API server) and the hub (into
 * a tunnel) forward agents' requests with.
 *
 * http-proxy's own upgrade check only knows `websocket` (and GET), while
 * kubectl's SPDY exec is a POST: that pass is removed, and
 * `validatedUpgrade` (strip-headers.ts) is the check instead. `toProxy`
 * keeps http-proxy from re-parsing (and re-escaping) the request target.
 */
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { listHeaderValues } from './authenticate.js';

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
  // A client that hangs up mid-response (a watch) must end the upstream request too: http-proxy only
  // aborts upstream for requests whose body was still arriving (Node emits 'aborted' only then).
  proxy.on('proxyReq', (proxyReq: ClientRequest, _req: IncomingMessage, res: ServerResponse) => {
    const abortIfUnfinished = () => !res.writableFinished && proxyReq.destroy();
    if (res.closed) abortIfUnfinished();
    else res.once('close', abortIfUnfinished);
  });
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
