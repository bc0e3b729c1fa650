/**
 * A request body is read only once the request is admitted. The listeners
 * take `Expect: 100-continue` over from Node (which otherwise answers 100 at
 * once, before anyone has looked at the credential: http-listener.ts), so a
 * client that waits for it sends nothing until continueIfExpected is called
 * for an admitted request; a refused one gets its final status instead,
 * which RFC 9110 §10.1.1 allows. A refusal reads at most a small part of a
 * body that is already on its way and then closes the connection, rather
 * than draining an upload of any size to keep the connection alive.
 */
import { type ApiRequest, type ApiResponse, endRequestWithAnswer, isHttp2, responseClosed } from './http-messages.js';

/**
 * How much of a refused request's body is read and dropped: a small body
 * whole (the connection then stays usable), a larger one up to here, so
 * that a client still sending meets the answer rather than a stalled socket.
 */
export const REFUSED_BODY_READ_LIMIT = 64 * 1024;

/** Node's own test for the expectation (_http_server.js continueExpression). */
const CONTINUE_EXPECTATION = /(?:^|\W)100-continue(?:$|\W)/i;

/** HTTP/1.0 has no 100 Continue; HTTP/2 has it as HTTP/1.1 does (RFC 9113 §8.1). */
function expectsContinue(req: ApiRequest): boolean {
  return (req.httpVersion === '1.1' || isHttp2(req)) && CONTINUE_EXPECTATION.test(req.headers.expect ?? '');
}

/** For an admitted request: the 100 Continue its client waits for before it sends the body. */
export function continueIfExpected(req: ApiRequest, res: ApiResponse): void {
  if (expectsContinue(req) && !res.headersSent && !responseClosed(res)) res.writeContinue();
}

/**
 * Before a refusal is written: a body that fits REFUSED_BODY_READ_LIMIT is
 * read and dropped (what a request without one needs is nothing); any other
 * (longer, of unknown length, or held back for a 100 Continue that never
 * came) is read no further than the limit, and the answer says
 * `Connection: close`, after which Node closes the connection (RFC 9112
 * §9.6: a server that answers before the whole body arrived closes, since
 * what follows on the connection is not the next request). Over HTTP/2
 * only the request's stream ends, after the answer (http-messages.ts).
 */
export function discardRefusedBody(req: ApiRequest, res: ApiResponse): void {
  const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  // An HTTP/2 body of unknown length comes in DATA frames, with no Transfer-Encoding to say so.
  const unknownLength = isHttp2(req) ? declared === undefined && !req.stream.endAfterHeaders : req.headers['transfer-encoding'] !== undefined;
  const smallAndComing = !unknownLength && !expectsContinue(req) && (declared === undefined || declared <= REFUSED_BODY_READ_LIMIT);
  if (req.complete || smallAndComing) {
    req.resume();
    return;
  }
  endRequestWithAnswer(req, res);
  let read = 0;
  const readUpToLimit = (chunk: Buffer) => {
    read += chunk.length;
    if (read < REFUSED_BODY_READ_LIMIT) return;
    req.off('data', readUpToLimit);
    // Paused, the request holds what still arrives until its buffer is full; then Node stops reading the socket.
    req.pause();
  };
  req.on('data', readUpToLimit);
}
