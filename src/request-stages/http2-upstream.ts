/**
 * Long-running plain requests to an API server that speaks HTTP/2 (issue 21). client-go
 * carries every request and watch of a client on one TLS connection when
 * the server offers `h2` by ALPN, as kube-apiserver does; over HTTP/1.1
 * each open watch holds a connection (and ~50 KiB of TLS state) of its own.
 * The Forwarder (relay/forward.ts) sends here the long-running requests
 * that are not upgrades (watch, log, proxy); what this module does beyond
 * kubernetes-proxy.ts:
 *
 * - a small pool of sessions: a request takes the first session with a
 *   free stream, and a new session opens only when every one holds as many
 *   streams as its peer's SETTINGS_MAX_CONCURRENT_STREAMS allows
 *   (kube-apiserver: 1000, --http2-max-streams-per-connection);
 * - whether the API server speaks h2 at all is learnt from the first
 *   connection's ALPN (`h2`, or `http/1.1` or nothing: an https.Server),
 *   and learnt again after a connection fails; meanwhile `fallback` says so;
 * - a session that goes away (GOAWAY, error, close) takes no new stream; a
 *   request it refused unprocessed (REFUSED_STREAM, which a GOAWAY gives
 *   every stream above its last id) is sent once more on another session,
 *   as Go's transport retries it (x/net/http2 canRetryError), when nothing
 *   of its body has been read yet;
 * - a session that has read nothing for 30 s is pinged, and dropped without
 *   an answer within 15 s: client-go's HTTP/2 ReadIdleTimeout and
 *   PingTimeout (kubernetes#87615), since a dead connection would hold
 *   every request sent on it.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type IncomingHttpStatusHeader, type OutgoingHttpHeaders } from 'node:http2';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import tls, { type SecureContext } from 'node:tls';
import { answerComplete, type ApiRequest, type ApiResponse, resetStream, responseClosed } from '../http-messages.js';
import { forwardAnswer } from './kubernetes-proxy.js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** client-go's HTTP/2 health check (k8s.io/apimachinery/pkg/util/net: HTTP2_READ_IDLE_TIMEOUT_SECONDS, HTTP2_PING_TIMEOUT_SECONDS). */
const READ_IDLE_TIMEOUT_MS = 30_000;
const PING_TIMEOUT_MS = 15_000;
/** RFC 9113 §6.5.2 recommends no fewer than 100: what a session is assumed to take before its peer's SETTINGS arrive. */
const ASSUMED_MAX_STREAMS = 100;
/**
 * Flow-control windows for answers. Node's default (64 KiB for the whole
 * connection) would let one watch whose client reads slowly stall every
 * other stream of the session; each stream's own window bounds what one
 * stream buffers. Go's transport uses 1 GiB and 4 MiB.
 */
const STREAM_WINDOW_BYTES = 1024 * 1024;
const SESSION_WINDOW_BYTES = 256 * 1024 * 1024;

/** Connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2), dropped as Go's transport drops them (x/net/http2 encodeHeaders). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

export interface Http2Origin {
  hostname: string;
  port: number;
  /** Sent as `:authority`, in place of the header set's Host (the client's). */
  authority: string;
  secureContext: SecureContext;
  rejectUnauthorized: boolean;
}

/** The API server's answer: its status and headers, and its body as it streams. */
export interface UpstreamAnswer {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

export interface Http2Hooks {
  /** The final answer arrived (its body not yet read). */
  onResponse(answer: UpstreamAnswer): void;
  /** The API server could not be reached or broke off (not called when the client left first). */
  onError(err: Error): void;
}

export interface Http2Forwarding {
  abort(): void;
}

interface PooledSession {
  session: ClientHttp2Session;
  streams: number;
}

export class Http2Upstream {
  private readonly sessions: PooledSession[] = [];
  private opening: Promise<PooledSession | undefined> | undefined;
  /** What the last connection's ALPN said; undefined until one connected, and again after one failed. */
  private alpn: 'h2' | 'other' | undefined;
  private closed = false;

  constructor(private readonly origin: Http2Origin) {}

  /** False once the API server picked another protocol than h2; true or unknown otherwise. */
  get mayUseHttp2(): boolean {
    return this.alpn !== 'other';
  }

  get openSessions(): number {
    return this.sessions.length;
  }

  /** Ask again on the next request (a connection of the fallback failed: the API server may have changed). */
  recheck(): void {
    if (this.alpn === 'other') this.alpn = undefined;
  }

  /**
   * Forwards a plain request: `path` and `headers` as they go upstream (the
   * header set with its Host), `body` in place of the client's. `fallback`
   * takes it over when the API server turns out not to speak h2.
   */
  forward(req: ApiRequest, res: ApiResponse, request: { path: string; headers: OutgoingHttpHeaders; body?: Buffer | undefined }, hooks: Http2Hooks, fallback: () => Http2Forwarding): Http2Forwarding {
    const streamedBody = request.body === undefined && hasBody(request.headers);
    const headers = http2Headers(req.method ?? 'GET', request.path, this.origin.authority, request.headers);
    let stream: ClientHttp2Stream | undefined;
    let handedOver: Http2Forwarding | undefined;
    let answered = false;
    let abandoned = false;

    const cancel = () => {
      abandoned = true;
      handedOver?.abort();
      // CANCEL, as Go's transport resets a stream its caller gave up: the API server ends the watch.
      if (stream) resetStream(stream, NGHTTP2_CANCEL);
    };
    res.once('close', () => {
      if (!answerComplete(res)) cancel();
    });

    /** On the first session with room other than `except`, once there is one (or by `fallback`). */
    const startWhenFree = (except: PooledSession | undefined, retried: boolean) =>
      void this.session(except).then(
        (next) => {
          if (abandoned) {
            if (next) this.release(next);
          } else if (next) start(next, retried);
          else handedOver = fallback();
        },
        (err: Error) => {
          if (!abandoned && !responseClosed(res)) hooks.onError(err);
        },
      );

    /** On `pooled`, whose stream slot this request holds; once more elsewhere if that session refused it unprocessed. */
    const start = (pooled: PooledSession, retried: boolean) => {
      try {
        stream = pooled.session.request(headers, { endStream: !streamedBody && request.body === undefined });
      } catch (err) {
        // The session went away since it was chosen: nothing was sent.
        this.release(pooled);
        return retried ? hooks.onError(err as Error) : startWhenFree(pooled, true);
      }
      const current = stream;
      current.once('close', () => this.release(pooled));
      current.on('error', (err: Error) => {
        if (abandoned || responseClosed(res)) return; // the client left: nobody waits for this answer
        if (!answered && !retried && current.rstCode === NGHTTP2_REFUSED_STREAM && !streamedBody) return startWhenFree(pooled, true);
        hooks.onError(err);
      });
      // Node passes the headers as received too (not in @types/node 20): repeated ones stay apart, in their order.
      const onResponse = (responseHeaders: IncomingHttpHeaders & IncomingHttpStatusHeader, _flags: number, rawHeaders: string[]) => {
        answered = true;
        const statusCode = Number(responseHeaders[':status']);
        hooks.onResponse({ statusCode, headers: responseHeaders, body: current });
        if (responseClosed(res)) {
          resetStream(current, NGHTTP2_CANCEL);
          return;
        }
        forwardAnswer(res, statusCode, undefined, rawHeaders, current);
      };
      current.on('response', onResponse as (headers: IncomingHttpHeaders & IncomingHttpStatusHeader, flags: number) => void);
      if (request.body) current.end(request.body);
      else if (streamedBody) req.pipe(current);
    };

    // A session may have to be connected first: the body waits for its stream (the byte count's listener would let it flow).
    if (streamedBody) req.pause();
    const pooled = this.take();
    if (pooled) start(pooled, false);
    else startWhenFree(undefined, false);
    return { abort: cancel };
  }

  close(): void {
    this.closed = true;
    for (const { session } of this.sessions.splice(0)) session.destroy();
  }

  /** A pooled session with a free stream, other than `except`, its slot taken for the caller. */
  private take(except?: PooledSession): PooledSession | undefined {
    const pooled = this.sessions.find((candidate) => candidate !== except && candidate.streams < maxStreams(candidate.session));
    if (!pooled) return undefined;
    // An idle session keeps the process alive no more than the agent's free sockets do.
    if (pooled.streams++ === 0) pooled.session.ref();
    return pooled;
  }

  private release(pooled: PooledSession): void {
    if (--pooled.streams === 0) pooled.session.unref();
  }

  /** As take(), connecting a session when none has room; undefined when the API server does not speak h2. */
  private async session(except?: PooledSession): Promise<PooledSession | undefined> {
    for (;;) {
      const free = this.take(except);
      if (free) return free;
      if (this.alpn === 'other') return undefined;
      this.opening ??= this.open().finally(() => (this.opening = undefined));
      // Requests that waited with this one may fill the new session first: take() looks again.
      if (!(await this.opening)) return undefined;
    }
  }

  /** Connects a session and pools it once the peer's SETTINGS are in; undefined when the API server chose HTTP/1.1. */
  private open(): Promise<PooledSession | undefined> {
    const { hostname, port, secureContext, rejectUnauthorized } = this.origin;
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('the forwarder is closed'));
      // The same context as the HTTP/1.1 agent's (forward.ts): one CA and client certificate for every connection.
      const socket = tls.connect({ host: hostname, port, ...(isIP(hostname) ? {} : { servername: hostname }), secureContext, rejectUnauthorized, ALPNProtocols: ['h2', 'http/1.1'] });
      socket.setNoDelay(true); // as Node's http client sets it: frames go out as written, not held for an ACK (Nagle)
      const failed = (err: Error) => {
        this.alpn = undefined;
        socket.destroy();
        reject(err);
      };
      socket.once('error', failed);
      socket.once('secureConnect', () => {
        socket.off('error', failed);
        if (socket.alpnProtocol !== 'h2') {
          this.alpn = 'other';
          socket.destroy();
          resolve(undefined);
          return;
        }
        this.alpn = 'h2';
        const session = http2.connect(`https://${hostname}:${port}`, {
          createConnection: () => socket,
          settings: { enablePush: false, initialWindowSize: STREAM_WINDOW_BYTES },
        });
        const pooled: PooledSession = { session, streams: 0 };
        const notConnected = (err?: Error) => failed(err ?? new Error('the API server closed the HTTP/2 connection before its settings'));
        session.once('error', notConnected);
        session.once('close', notConnected);
        session.once('remoteSettings', () => {
          session.off('error', notConnected);
          session.off('close', notConnected);
          if (this.closed) {
            setImmediate(() => session.destroy()); // not from within its own SETTINGS frame (see resetStream)
            return reject(new Error('the forwarder is closed'));
          }
          session.setLocalWindowSize(SESSION_WINDOW_BYTES);
          this.pool(pooled);
          resolve(pooled);
        });
      });
    });
  }

  private pool(pooled: PooledSession): void {
    const { session } = pooled;
    this.sessions.push(pooled);
    session.unref();
    const drop = () => {
      const at = this.sessions.indexOf(pooled);
      if (at !== -1) this.sessions.splice(at, 1);
    };
    // A GOAWAY lets the streams it covers finish; only new ones must go elsewhere.
    session.once('goaway', drop);
    session.once('close', drop);
    session.on('error', drop);
    session.setTimeout(READ_IDLE_TIMEOUT_MS, () => {
      const unanswered = setTimeout(() => session.destroy(new Error(`the API server did not answer an HTTP/2 ping within ${PING_TIMEOUT_MS / 1000} s`)), PING_TIMEOUT_MS);
      unanswered.unref();
      session.ping((err) => {
        clearTimeout(unanswered);
        if (err && !session.destroyed) session.destroy(err);
      });
    });
  }
}

function maxStreams(session: ClientHttp2Session): number {
  return session.remoteSettings.maxConcurrentStreams ?? ASSUMED_MAX_STREAMS;
}

function hasBody(headers: OutgoingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || Number(headers['content-length'] ?? 0) > 0;
}

/** The header set as HTTP/2 carries it: pseudo-headers first, `host` as `:authority`, nothing connection-specific. */
function http2Headers(method: string, path: string, authority: string, headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = Object.create(null);
  out[':method'] = method;
  out[':scheme'] = 'https';
  out[':authority'] = authority;
  out[':path'] = path;
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined || CONNECTION_SPECIFIC.has(name)) continue;
    if (name === 'te' && String(value).trim().toLowerCase() !== 'trailers') continue;
    out[name] = typeof value === 'number' ? String(value) : value;
  }
  return out;
}
