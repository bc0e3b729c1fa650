/**
 * A watch the relay ends itself (its agent was revoked, it reached the
 * maximum stream duration: DESIGN §3.6) ends as kube-apiserver ends a watch
 * with an error: a last `{"type":"ERROR","object":<Status>}` event, then a
 * clean end of the response. A client then prints why (kubectl get -w shows
 * the Status) instead of seeing a cut it reports as nothing at all.
 *
 * Only a JSON watch can take such an event: one JSON object per line, and a
 * newline byte never occurs inside one (JSON escapes it in strings, and no
 * UTF-8 sequence holds 0x0A). Protobuf watches and `logs -f` are cut as
 * before. The relay forwards the API server's bytes unchanged, so the event
 * goes in only after a complete line: when the cut comes in the middle of an
 * event, the rest of that line is still forwarded, nothing after it, and then
 * the event. A partial line followed by the event would be worse than a cut:
 * client-go would report a decoding error in place of the reason. A line
 * that does not end within a grace period is cut after all.
 */
import type { Readable } from 'node:stream';
import { type ApiResponse, cutAnswer, responseClosed, writeBody } from '../http-messages.js';
import { type KubernetesStatus, kubernetesStatus } from '../request-stages/errors.js';
import type { UpstreamAnswer } from '../request-stages/http2-upstream.js';
import type { StreamCutReason } from './live-streams.js';

const NEWLINE = 0x0a;
/** How long the relay waits for an event it cut into to end before it cuts the response without a final event. */
const EVENT_COMPLETION_GRACE_MS = 5_000;

/** A streamed JSON answer (no Content-Length) to a watch, as kube-apiserver serves watch events to a JSON client. */
export function isJsonWatchResponse(verb: string, upstream: Omit<UpstreamAnswer, 'body'>): boolean {
  const mediaType = (upstream.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  return verb === 'watch' && upstream.statusCode === 200 && mediaType === 'application/json' && upstream.headers['content-length'] === undefined;
}

/** The Status of the last event, by why the relay ends the watch. */
export function finalWatchStatus(reason: StreamCutReason): KubernetesStatus {
  if (reason === 'agent-revoked') return kubernetesStatus(401, 'the agent was revoked: kube-relay ended this watch');
  // 504 Timeout is kube-apiserver's answer to a request that outlived its deadline (apierrors.NewTimeoutError);
  // 410 Expired would say the resourceVersion is too old, which it is not.
  return kubernetesStatus(504, 'the watch reached the maximum stream duration of kube-relay (--max-stream-duration); watch again to continue');
}

/**
 * Follows what a JSON watch response has forwarded so far, so that it can
 * be ended at an event boundary. Create it when the upstream answer arrives,
 * before any of its body is read.
 */
export class WatchTermination {
  /** Whether the last byte forwarded ended an event (true before the first). */
  private atEventBoundary = true;
  private ending = false;
  private readonly follow = (chunk: Buffer) => {
    if (chunk.length > 0) this.atEventBoundary = chunk[chunk.length - 1] === NEWLINE;
  };

  constructor(
    /** The answer's body (HTTP/1.1 response or HTTP/2 stream), as the forwarder pipes it to `res`. */
    private readonly upstream: Readable,
    private readonly res: ApiResponse,
    private readonly graceMs = EVENT_COMPLETION_GRACE_MS,
  ) {
    // The proxy's pipe writes each chunk to the client as this listener sees it, in the same tick.
    upstream.on('data', this.follow);
    upstream.on('error', () => undefined); // destroyed below, mid-stream; the pipe does not listen
  }

  /** Stops forwarding, finishes the event under way if there is one, writes the final event and ends the response. */
  end(status: KubernetesStatus): void {
    if (this.ending || this.res.writableEnded || responseClosed(this.res)) return;
    this.ending = true;
    this.upstream.off('data', this.follow);
    this.upstream.unpipe(this.res);
    const finalEvent = `${JSON.stringify({ type: 'ERROR', object: status })}\n`;
    if (this.atEventBoundary) {
      this.finish(finalEvent);
      return;
    }
    const finishLine = (chunk: Buffer) => {
      const end = chunk.indexOf(NEWLINE);
      if (end === -1) {
        if (!writeBody(this.res, chunk)) {
          this.upstream.pause();
          this.res.once('drain', () => this.upstream.resume());
        }
        return;
      }
      stopWaiting();
      writeBody(this.res, chunk.subarray(0, end + 1));
      this.finish(finalEvent);
    };
    // The upstream ended or broke inside the event, or the client left: nothing can follow the partial line.
    const giveUp = () => {
      stopWaiting();
      this.cut();
    };
    const timer = setTimeout(giveUp, this.graceMs);
    timer.unref();
    const stopWaiting = () => {
      clearTimeout(timer);
      this.upstream.off('data', finishLine);
      this.upstream.off('close', giveUp);
      this.res.off('close', giveUp);
    };
    this.upstream.on('data', finishLine);
    this.upstream.once('close', giveUp);
    this.res.once('close', giveUp);
    this.upstream.resume();
  }

  private finish(finalEvent: string): void {
    this.upstream.destroy(); // the API server's watch ends too
    this.res.end(finalEvent);
  }

  private cut(): void {
    this.upstream.destroy();
    cutAnswer(this.res);
  }
}
