/**
 * A client that speaks HTTP/2 to the listeners, as client-go does once the
 * server offers `h2` by ALPN: requests and watches as streams of a session,
 * one session per request unless one is given (several watches on one).
 */
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';

export interface H2Answer {
  status: number;
  /** Without pseudo-headers. */
  headers: IncomingHttpHeaders;
  body: Buffer;
  json<T = Record<string, unknown>>(): T;
}

/** A session to `url`'s origin that must have negotiated h2 (it fails loudly otherwise). */
export function h2Session(url: string, ca: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(new URL(url).origin, { ca });
    session.once('error', reject);
    session.once('connect', () => {
      session.off('error', reject);
      session.on('error', () => undefined);
      const alpn = (session.socket as { alpnProtocol?: string | false }).alpnProtocol;
      if (alpn !== 'h2') {
        session.destroy();
        reject(new Error(`the listener at ${url} did not negotiate h2 (ALPN: ${String(alpn)})`));
        return;
      }
      resolve(session);
    });
  });
}

/** Header pairs (name, value, name, value…, as raw HTTP/1.1 headers) or an object, as HTTP/2 headers: repeats kept apart. */
export function h2Headers(headers: OutgoingHttpHeaders | readonly string[] | undefined): OutgoingHttpHeaders {
  if (!Array.isArray(headers)) return { ...(headers as OutgoingHttpHeaders | undefined) };
  const out: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!.toLowerCase();
    const earlier = out[name];
    const value = headers[i + 1]!;
    out[name] = earlier === undefined ? value : [...(Array.isArray(earlier) ? earlier : [earlier]), value];
  }
  return out;
}

/** One request over HTTP/2: on `session`, or on a session of its own, closed after the answer. */
export async function h2Request(
  url: string,
  options: { method?: string; headers?: OutgoingHttpHeaders | readonly string[]; body?: Buffer | string; ca: string; session?: ClientHttp2Session },
): Promise<H2Answer> {
  // As written: new URL() would resolve dot segments the listener must see (and refuse).
  const path = url.slice(new URL(url).origin.length) || '/';
  const session = options.session ?? (await h2Session(url, options.ca));
  try {
    return await new Promise<H2Answer>((resolve, reject) => {
      const headers = h2Headers(options.headers);
      const stream = session.request({ ...headers, ':method': options.method ?? 'GET', ':path': path }, { endStream: options.body === undefined });
      const chunks: Buffer[] = [];
      let status = 0;
      let responseHeaders: IncomingHttpHeaders = {};
      stream.on('response', (received) => {
        status = Number(received[':status']);
        responseHeaders = Object.fromEntries(Object.entries(received).filter(([name]) => !name.startsWith(':')));
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status, headers: responseHeaders, body, json: () => JSON.parse(body.toString('utf8')) });
      });
      stream.on('error', reject);
      if (options.body !== undefined) stream.end(options.body);
    });
  } finally {
    if (!options.session) session.close();
  }
}

export interface H2Watch {
  /** 'complete': the stream ended cleanly (END_STREAM); 'cut': it was reset, or the session went away, first. */
  ended: Promise<'complete' | 'cut'>;
  status(): number | undefined;
  body(): string;
  lines(): unknown[];
  /** Resets the stream (CANCEL), as client-go does when a watch is stopped. */
  leave(): void;
}

/** A watch as a stream of `session`. */
export function h2Watch(session: ClientHttp2Session, path: string, token: string, headers: OutgoingHttpHeaders = {}): H2Watch {
  let body = '';
  let status: number | undefined;
  const stream = session.request({ ...headers, ':path': path, authorization: `Bearer ${token}` }, { endStream: true });
  stream.on('response', (received) => (status = Number(received[':status'])));
  stream.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
  stream.on('error', () => undefined);
  let ended = false;
  stream.on('end', () => (ended = true));
  const closed = new Promise<'complete' | 'cut'>((resolve) => stream.on('close', () => resolve(ended && stream.rstCode === http2.constants.NGHTTP2_NO_ERROR ? 'complete' : 'cut')));
  return {
    ended: closed,
    status: () => status,
    body: () => body,
    lines: () => body.trimEnd().split('\n').map((line) => JSON.parse(line) as unknown),
    leave: () => stream.close(http2.constants.NGHTTP2_CANCEL),
  };
}
