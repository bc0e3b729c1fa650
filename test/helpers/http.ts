import https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import http2 from 'node:http2';
import type { Readable } from 'node:stream';
import { h2Request, h2Session } from './h2-client.js';

/** What request() speaks: HTTP/1.1 (Node's https client offers no ALPN), or HTTP/2 as client-go speaks it. */
export type ClientProtocol = 'http/1.1' | 'h2';

let protocolOfThisFile: ClientProtocol = 'http/1.1';

/**
 * Every request() of this test file from now on over `protocol`: for a file
 * that runs another file's tests again with an HTTP/2 client (it imports
 * that file after calling this).
 */
export function sendRequestsOver(protocol: ClientProtocol): void {
  protocolOfThisFile = protocol;
}

export function requestProtocol(): ClientProtocol {
  return protocolOfThisFile;
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  json<T = Record<string, unknown>>(): T;
}

/** One HTTPS request to a loopback server, trusting `ca`, on a connection of its own. */
export function request(
  url: string,
  options: { method?: string; headers?: OutgoingHttpHeaders | string[]; body?: Buffer | string; ca: string; protocol?: ClientProtocol },
): Promise<Answer> {
  if ((options.protocol ?? protocolOfThisFile) === 'h2') return h2Request(url, options);
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: options.method ?? 'GET', headers: options.headers, ca: options.ca, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) });
      });
    });
    req.end(options.body);
  });
}

export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A request whose body is written, and whose answer is read, as it goes; over either protocol. */
export interface StreamingRequest {
  write(chunk: string | Buffer): void;
  end(chunk?: string | Buffer): void;
  /** The answer's status, and its body as it streams; rejects when no answer came. */
  response: Promise<{ status: number; body: Readable }>;
  /** 'complete': the answer ended cleanly; 'cut': the connection (HTTP/1.1) or the stream (HTTP/2) broke off first. */
  ended: Promise<'complete' | 'cut'>;
  /** Leaves: the connection closes (HTTP/1.1) or the stream is reset with CANCEL (HTTP/2). */
  destroy(): void;
}

export function streamingRequest(url: string, options: { method?: string; headers?: OutgoingHttpHeaders; ca: string; protocol?: ClientProtocol }): StreamingRequest {
  if ((options.protocol ?? protocolOfThisFile) === 'h2') {
    const path = url.slice(new URL(url).origin.length) || '/';
    const opened = h2Session(url, options.ca).then((session) => {
      // endStream: Node would end a DELETE at its headers, as it does a GET.
      const stream = session.request({ ...options.headers, ':method': options.method ?? 'GET', ':path': path }, { endStream: false });
      stream.on('close', () => session.close());
      return stream;
    });
    const response = opened.then(
      (stream) =>
        new Promise<{ status: number; body: Readable }>((resolve, reject) => {
          stream.once('response', (headers) => resolve({ status: Number(headers[':status']), body: stream }));
          stream.once('error', reject);
          stream.once('close', () => reject(new Error(`the stream closed before an answer (code ${stream.rstCode})`)));
        }),
    );
    const ended = opened.then(
      (stream) =>
        new Promise<'complete' | 'cut'>((resolve) => {
          let complete = false;
          stream.on('error', () => undefined);
          stream.on('end', () => (complete = true));
          stream.on('close', () => resolve(complete && stream.rstCode === http2.constants.NGHTTP2_NO_ERROR ? 'complete' : 'cut'));
        }),
      () => 'cut' as const,
    );
    response.catch(() => undefined);
    return {
      write: (chunk) => void opened.then((stream) => stream.write(chunk)),
      end: (chunk) => void opened.then((stream) => stream.end(chunk)),
      response,
      ended,
      destroy: () => void opened.then((stream) => stream.close(http2.constants.NGHTTP2_CANCEL)),
    };
  }
  const req = https.request(url, { method: options.method ?? 'GET', headers: options.headers, ca: options.ca, agent: false });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  response.catch(() => undefined);
  return {
    write: (chunk) => void req.write(chunk),
    end: (chunk) => void req.end(chunk),
    response: response.then((res) => ({ status: res.statusCode!, body: res })),
    ended: response.then(
      (res) =>
        new Promise<'complete' | 'cut'>((resolve) => {
          res.on('error', () => undefined);
          res.on('close', () => resolve(res.complete ? 'complete' : 'cut'));
        }),
      () => 'cut' as const,
    ),
    destroy: () => req.destroy(),
  };
}
