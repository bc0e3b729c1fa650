/**
 * The listeners that carry Kubernetes API traffic speak HTTP/2 beside
 * HTTP/1.1 (issue 21; http-listener.ts). For an h2 stream Node hands the
 * handler an Http2ServerRequest and Http2ServerResponse, for an HTTP/1.1
 * request an IncomingMessage and ServerResponse: alike in most of what the
 * handlers use, apart in what this module covers (Node 20):
 *
 * - an h2 request's rawHeaders hold the pseudo-headers (`:method`,
 *   `:path`, `:scheme`, `:authority`), its Host is `:authority`, and a body
 *   of unknown length carries no Transfer-Encoding;
 * - an h2 response has no `destroyed`, reads as finished (writableFinished)
 *   even when its stream was reset, emits 'finish' only once the whole
 *   stream has closed, takes no status message (Node warns), and sends its
 *   HEADERS frame at writeHead;
 * - a request body an h2 answer does not wait for is stopped with
 *   RST_STREAM(NO_ERROR) after the answer (RFC 9113 §8.1), where HTTP/1.1
 *   closes the connection;
 * - a stream is reset only from a fresh turn of the event loop (resetStream).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import http2, { type Http2ServerRequest, Http2ServerResponse, type Http2Stream } from 'node:http2';

export type ApiRequest = IncomingMessage | Http2ServerRequest;

/**
 * Resets `stream` with `code`, from a turn of the event loop of its own.
 * Node 20 corrupts its heap now and then when a stream is closed
 * reentrantly, from a handler that runs while its session is still
 * processing the frames that emitted it ('request', 'response', 'finish';
 * nodejs/node#64113): seen here as glibc's "corrupted size vs. prev_size"
 * in about one test run in ten until closes were deferred.
 */
export function resetStream(stream: Http2Stream, code: number): void {
  setImmediate(() => {
    if (!stream.closed && !stream.destroyed) stream.close(code);
  });
}
export type ApiResponse = ServerResponse | Http2ServerResponse;

export function isHttp2(req: ApiRequest): req is Http2ServerRequest {
  return req.httpVersionMajor === 2;
}

function isHttp2Response(res: ApiResponse): res is Http2ServerResponse {
  return res instanceof Http2ServerResponse;
}

/**
 * The client's headers as an HTTP/1.1 request carries them, for every
 * stage that reads headers (authenticate, strip, audit) and for the
 * HTTP/1.1 hop into a tunnel: no pseudo-headers, `:authority` as Host
 * (unless a Host came too), and `Transfer-Encoding: chunked` for a body of
 * unknown length, which HTTP/1.1 must frame so.
 */
export function requestRawHeaders(req: ApiRequest): readonly string[] {
  if (!isHttp2(req)) return req.rawHeaders;
  const raw = req.rawHeaders;
  const headers: string[] = [];
  let authority: string | undefined;
  let host = false;
  let length = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name === ':authority') authority = raw[i + 1];
    if (name.startsWith(':')) continue;
    if (name === 'host') host = true;
    if (name === 'content-length') length = true;
    headers.push(name, raw[i + 1]!);
  }
  if (!host && authority !== undefined) headers.unshift('host', authority);
  if (!length && !req.stream.endAfterHeaders) headers.push('transfer-encoding', 'chunked');
  return headers;
}

/** Whether a body follows the request's headers (a length above 0, chunked, or HTTP/2 DATA frames). */
export function requestHasBody(req: ApiRequest): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return isHttp2(req) ? !req.stream.endAfterHeaders : req.headers['transfer-encoding'] !== undefined;
}

/** Nothing more can be written: the client left, or the answer is over. */
export function responseClosed(res: ApiResponse): boolean {
  return isHttp2Response(res) ? res.stream.destroyed : res.destroyed;
}

/** The whole answer was handed over: a close before that is the client leaving (or a cut). */
export function answerComplete(res: ApiResponse): boolean {
  return isHttp2Response(res) ? res.writableEnded && res.stream.rstCode === http2.constants.NGHTTP2_NO_ERROR : res.writableFinished;
}

/** The status and headers; over HTTP/2 without the status message, which it cannot carry. */
export function writeHead(res: ApiResponse, statusCode: number, headers: OutgoingHttpHeaders | string[], statusMessage?: string): void {
  if (isHttp2Response(res)) res.writeHead(statusCode, headers as OutgoingHttpHeaders);
  else if (statusMessage === undefined) res.writeHead(statusCode, headers);
  else res.writeHead(statusCode, statusMessage, headers);
}

/** Sends the head now rather than with the first body byte (an h2 response's went at writeHead). */
export function flushHead(res: ApiResponse): void {
  if (!isHttp2Response(res)) res.flushHeaders();
}

/**
 * The connection is not to be reused after this answer: over HTTP/1.1 it
 * closes (Connection: close); over HTTP/2 only the request's stream is
 * stopped, once the answer is out, with RST_STREAM(NO_ERROR), which tells
 * the client to send no more of its body (RFC 9113 §8.1).
 */
export function endRequestWithAnswer(req: ApiRequest, res: ApiResponse): void {
  if (!isHttp2(req) || !isHttp2Response(res)) {
    (res as ServerResponse).shouldKeepAlive = false;
    return;
  }
  // The stream's own 'finish' (END_STREAM sent): the response's comes only when the whole stream has closed.
  const { stream } = req;
  stream.once('finish', () => resetStream(stream, http2.constants.NGHTTP2_NO_ERROR));
}

/** Writes a body chunk (the two response types' overloads of write() cannot be called through their union). */
export function writeBody(res: ApiResponse, chunk: Buffer | string): boolean {
  return isHttp2Response(res) ? res.write(chunk) : res.write(chunk);
}

/**
 * Cuts an answer under way. Over HTTP/1.1 the connection closes; over
 * HTTP/2 its stream is reset with INTERNAL_ERROR, as Go's server resets a
 * handler that aborts (a destroy() without an error would reset it with
 * NO_ERROR, which a client could take for a clean end).
 */
export function cutAnswer(res: ApiResponse): void {
  if (isHttp2Response(res)) resetStream(res.stream, http2.constants.NGHTTP2_INTERNAL_ERROR);
  else res.destroy();
}
