/**
 * The relay's request pipeline, composed in one place (DESIGN §3):
 *
 *   audit (outermost: room first, the record on close) → check target →
 *   authenticate → refuse client impersonation → the agent's policy (rate,
 *   then its rules) → the agent's quotas → strip → impersonate → forward
 *
 * The same code serves direct mode and requests that arrive through a
 * tunnel: it never asks which transport a connection came from.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { type AuditedRequest, auditedRequest, auditRecord, decisionForUpstreamStatus, pathOf, receivedRecord } from '../audit/record.js';
import { AuditUnavailableError, type AuditSink } from '../audit/sink.js';
import type { Logger } from '../log.js';
import { authenticate } from '../request-stages/authenticate.js';
import type { AdmissionLimits } from '../request-stages/admission-limits.js';
import { applyPolicy, type PolicyOutcome } from '../request-stages/agent-policy.js';
import { isAuthenticationFailure, isPolicyRefusal, RelayRefusal, refusalHeaders, refuseUpgrade, writeStatus } from '../request-stages/errors.js';
import { dryRunDeleteOptions, isDeleteWithBody } from './dry-run-delete.js';
import type { Forwarder, Forwarding, ForwardHooks } from './forward.js';
import { addImpersonation } from './impersonate.js';
import { cutBeforeAnswer, isLongRunning, type LiveStreams, type StreamCutReason } from './live-streams.js';
import type { RelayMetrics } from './metrics.js';
import { checkRequestTarget } from '../request-stages/request-target.js';
import type { RevocationList } from '../request-stages/revocations.js';
import { refuseClientImpersonation, stripClientHeaders, type UpgradeProtocol, validatedUpgrade } from '../request-stages/strip-headers.js';
import type { TokenVerifier } from '../request-stages/token-verifier.js';
import type { Upstream } from './upstream.js';
import { continueIfExpected, discardRefusedBody } from '../request-body.js';
import { type ApiRequest, type ApiResponse, cutAnswer, responseClosed } from '../http-messages.js';
import { finalWatchStatus, isJsonWatchResponse, WatchTermination } from './watch-termination.js';

export interface PipelineDeps {
  cluster: string;
  mode: 'direct' | 'tunnel';
  verifier: TokenVerifier;
  revocations: RevocationList;
  upstream: Upstream;
  forwarder: Forwarder;
  audit: AuditSink;
  metrics: RelayMetrics;
  streams: LiveStreams;
  /** The agent's rate bucket and quotas: this process's, or the primary's of a relay with workers. */
  limits: AdmissionLimits;
  log: Logger;
}

/** Per-request state, filled in as the request moves through the stages. */
interface RequestContext extends AuditedRequest {
  /** Gives back the agent's slots (requests in flight, long-running streams). */
  releaseSlots?: () => void;
  /** A JSON watch's answer, which a cut ends with a final ERROR event. */
  watchTermination?: WatchTermination;
  /** The request on its way upstream, which a cut before its answer closes. */
  forwarding?: Forwarding;
  /** Refused by a cut before the API server answered: what the upstream does after that is no longer the client's. */
  cutBeforeAnswer?: boolean;
  /** Refused because the audit trail could not take it: counted, not recorded. */
  unrecorded?: boolean;
  finished: boolean;
}

export interface Pipeline {
  /** A plain request, over HTTP/1.1 or HTTP/2. */
  handleRequest(req: ApiRequest, res: ApiResponse): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

export function createPipeline(deps: PipelineDeps): Pipeline {
  const { log, metrics } = deps;

  function newContext(req: ApiRequest): RequestContext {
    // Completed in place rather than spread into a new object: this runs once per request (issue 21).
    const ctx = auditedRequest(req, deps.cluster, deps.mode, req.url ?? '', randomUUID()) as RequestContext;
    ctx.finished = false;
    return ctx;
  }

  /** Stages 1-3, after room in the audit trail: everything that must hold before a byte goes upstream; the headers and target to forward. */
  async function admit(ctx: RequestContext, upgrade: UpgradeProtocol | undefined): Promise<{ headers: OutgoingHttpHeaders; target: string }> {
    await roomInAuditTrail(ctx);
    checkRequestTarget(ctx.target);
    ctx.identity = await authenticate(ctx.rawHeaders, ctx.target, deps.verifier, deps.revocations);
    refuseClientImpersonation(ctx.rawHeaders);
    // The rules are decided before the rate is taken, so that rate and quotas take one step (admission-limits.ts);
    // a request the rules refuse still spends its token, as when the rate came first.
    let outcome: PolicyOutcome | undefined;
    let refused: unknown;
    try {
      outcome = applyPolicy(ctx.identity, ctx.method, ctx.info, ctx.target, upgrade !== undefined);
    } catch (err) {
      refused = err;
    }
    const slots = outcome === undefined ? 'none' : isLongRunning(ctx.info.verb, ctx.info.subresource) ? 'long-running' : 'request';
    ctx.releaseSlots = await deps.limits.take(ctx.identity, slots);
    if (outcome === undefined) throw refused;
    const { target, dryRun } = outcome;
    if (dryRun) {
      ctx.policyRule = 'dry-run';
      metrics.policyDryRuns.inc();
    }
    // The client left while it was authenticated: its close, which gives slots back, has come and gone.
    if (ctx.finished) ctx.releaseSlots();
    await recordReceived(ctx, upgrade !== undefined);
    return { headers: addImpersonation(stripClientHeaders(ctx.rawHeaders, upgrade), ctx.identity, deps.upstream.authorization(), ctx.requestId), target };
  }

  /** Nothing is forwarded that could not be audited (DESIGN §5): wait for room, or refuse, as configured. */
  async function roomInAuditTrail(ctx: RequestContext): Promise<void> {
    try {
      await deps.audit.room();
    } catch (err) {
      if (!(err instanceof AuditUnavailableError)) throw err;
      // A flood of refusals must not grow the buffer that is already full: these are counted, not recorded.
      ctx.unrecorded = true;
      throw new RelayRefusal('audit-unavailable', 'kube-relay cannot write its audit trail right now, so it forwards nothing; retry later');
    }
  }

  /**
   * The RequestReceived record, on its way to disk before anything goes
   * upstream, so a relay killed mid-request loses no record of a request it
   * forwarded (DESIGN §5). Written once the request is authenticated, as
   * kube-apiserver's chain runs authentication outside its audit filter:
   * the record names the agent, and a request refused before this point
   * has only its refusal's record, which is limited per address.
   */
  async function recordReceived(ctx: RequestContext, upgrade: boolean): Promise<void> {
    try {
      await deps.audit.received(receivedRecord(ctx, upgrade));
    } catch (err) {
      log.error('the audit trail failed to take a request', { requestId: ctx.requestId, error: (err as Error).message });
      ctx.unrecorded = true;
      throw new RelayRefusal('audit-unavailable', 'kube-relay cannot write its audit trail right now, so it forwards nothing; retry later');
    }
  }

  /** Maps a failure before forwarding to a status; refusals are expected, anything else is a relay bug. */
  function refusal(ctx: RequestContext, err: unknown): { code: number; message: string; headers?: Record<string, string> } {
    if (err instanceof RelayRefusal) {
      ctx.identity ??= err.identity;
      ctx.status = err.status;
      ctx.decision = err.status >= 500 ? 'error' : isPolicyRefusal(err) ? 'denied-by-policy' : 'denied-by-relay';
      ctx.reason = err.reason;
      ctx.policyRule = err.details.policyRule;
      if (isAuthenticationFailure(err)) metrics.authFailures.inc({ reason: err.reason });
      if (isPolicyRefusal(err)) metrics.policyRefusals.inc({ rule: err.reason.slice('policy-'.length) });
      log.info('request refused', { requestId: ctx.requestId, reason: err.reason, user: ctx.identity?.user, method: ctx.method, path: pathOf(ctx.target) });
      return { code: err.status, message: err.clientMessage, headers: refusalHeaders(err) };
    }
    ctx.status = 500;
    ctx.decision = 'error';
    ctx.reason = 'internal-error';
    log.error('request failed inside the relay', { requestId: ctx.requestId, error: (err as Error).message });
    return { code: 500, message: 'kube-relay failed to handle the request; see the relay log' };
  }

  function hooksFor(ctx: RequestContext, onError: (err: Error) => void, onUpgraded: ForwardHooks['onUpgraded']): ForwardHooks {
    return {
      onResponse(status) {
        if (ctx.cutBeforeAnswer) return;
        ctx.status = status;
        ctx.decision = status === 101 ? 'allowed' : decisionForUpstreamStatus(status);
      },
      onBytes(direction, count) {
        if (direction === 'in') ctx.bytesIn += count;
        else ctx.bytesOut += count;
      },
      onUpgraded,
      onError(err) {
        if (ctx.cutBeforeAnswer) return; // the relay closed the upstream request itself
        if (ctx.status !== undefined) {
          // The answer had started: this is a stream ending abruptly (often the client hanging up), not an outage.
          log.debug('upstream stream ended with an error', { requestId: ctx.requestId, error: err.message });
        } else {
          ctx.status = 502;
          ctx.decision = 'error';
          ctx.reason = 'upstream-unreachable';
          log.warn('upstream request failed', { requestId: ctx.requestId, error: err.message });
        }
        onError(err);
      },
    };
  }

  function finish(ctx: RequestContext): void {
    if (ctx.finished) return;
    ctx.finished = true;
    ctx.releaseSlots?.();
    const endedAt = Date.now();
    if (ctx.status === undefined) {
      // The client went away before anyone answered (nginx calls this 499).
      ctx.status = 499;
      ctx.decision = 'error';
      ctx.reason ??= 'client-closed-request';
    }
    if (!ctx.unrecorded) deps.audit.write(auditRecord(ctx, endedAt));
    metrics.requests.inc({ cluster: deps.cluster, verb: ctx.verb, code: String(ctx.status), decision: ctx.decision ?? 'error' });
    metrics.duration.observe({ cluster: deps.cluster, verb: ctx.verb }, (endedAt - ctx.receivedAt) / 1000);
    metrics.bytes.inc({ direction: 'in' }, ctx.bytesIn);
    metrics.bytes.inc({ direction: 'out' }, ctx.bytesOut);
  }

  return {
    handleRequest(req, res) {
      const ctx = newContext(req);
      res.on('close', () => finish(ctx));
      admit(ctx, undefined).then(
        ({ headers, target }) => {
          if (responseClosed(res)) return; // the client left while we authenticated: nothing goes upstream
          req.url = target;
          const longRunning = isLongRunning(ctx.info.verb, ctx.info.subresource);
          if (longRunning) {
            countActiveStream(res, 'long-running');
            const refuse = (code: number, message: string) => {
              discardRefusedBody(req, res);
              writeStatus(res, code, message);
            };
            trackFromAdmission(ctx, res, cutter(ctx, refuse, (reason) => cutResponse(ctx, res, reason)));
            if (ctx.cutBeforeAnswer) return;
          }
          continueIfExpected(req, res);
          const hooks = hooksFor(ctx, () => writeStatus(res, 502, 'kube-relay could not reach the Kubernetes API server'), () => undefined);
          const forward = (body?: Buffer) => {
            if (responseClosed(res)) return;
            ctx.forwarding = deps.forwarder.forwardRequest(
              req,
              res,
              headers,
              {
                ...hooks,
                onResponse(status, upstream) {
                  hooks.onResponse(status);
                  if (upstream && !ctx.cutBeforeAnswer && isJsonWatchResponse(ctx.info.verb, upstream)) ctx.watchTermination = new WatchTermination(upstream.body, res);
                },
              },
              { body, longRunning },
            );
          };
          if (ctx.policyRule !== 'dry-run' || !isDeleteWithBody(req)) return forward();
          // The API server would take a delete's options from its body and ignore the query's dryRun.
          dryRunDeleteOptions(req, headers, ctx.identity!).then(forward, (err: unknown) => {
            const refused = refusal(ctx, err);
            discardRefusedBody(req, res);
            writeStatus(res, refused.code, refused.message, refused.headers);
          });
        },
        (err: unknown) => {
          const { code, message, headers } = refusal(ctx, err);
          discardRefusedBody(req, res);
          writeStatus(res, code, message, headers);
        },
      );
    },

    handleUpgrade(req, socket, head) {
      const ctx = newContext(req);
      socket.on('close', () => finish(ctx));
      socket.on('error', () => socket.destroy());
      let upgrade: UpgradeProtocol | undefined;
      Promise.resolve()
        .then(() => {
          upgrade = validatedUpgrade(ctx.rawHeaders);
          return admit(ctx, upgrade);
        })
        .then(
          ({ headers }) => {
            if (socket.destroyed) return;
            let endSession: (() => void) | undefined;
            const refuse = (code: number, message: string) => refuseUpgrade(socket, code, message);
            // An upgrade is cuttable before its 101 too: the upstream may hold that back as long as it likes.
            trackFromAdmission(ctx, socket, cutter(ctx, refuse, () => (endSession ? endSession() : socket.destroy())));
            if (ctx.cutBeforeAnswer) return;
            ctx.forwarding = deps.forwarder.forwardUpgrade(
              req,
              socket,
              head,
              headers,
              hooksFor(
                ctx,
                () => refuseUpgrade(socket, 502, 'kube-relay could not reach the Kubernetes API server'),
                (responseHeaders, release) => {
                  const negotiated = responseHeaders['sec-websocket-protocol'] ?? responseHeaders['x-stream-protocol-version'];
                  ctx.session = { protocol: `${upgrade}${negotiated ? `/${String(negotiated)}` : ''}`, startedAt: Date.now() };
                  endSession = release;
                  countActiveStream(socket, 'upgraded');
                },
              ),
            );
          },
          (err: unknown) => {
            const { code, message } = refusal(ctx, err);
            refuseUpgrade(socket, code, message);
          },
        );
    },
  };

  /**
   * How the relay ends a long-running request (its agent revoked, the
   * maximum stream duration reached): one whose answer has not started is
   * refused with a Status and its upstream request closed, so no late 101
   * or watch reaches the client; one whose answer has started is ended by
   * `endAnswer`.
   */
  function cutter(ctx: RequestContext, refuse: (code: number, message: string) => void, endAnswer: (reason: StreamCutReason) => void): (reason: StreamCutReason) => void {
    return (reason) => {
      if (ctx.finished || ctx.cutBeforeAnswer) return;
      if (ctx.status !== undefined) {
        endAnswer(reason);
        return;
      }
      const { code, message } = refusal(ctx, cutBeforeAnswer(reason, ctx.identity));
      ctx.cutBeforeAnswer = true;
      ctx.forwarding?.abort();
      refuse(code, message);
    };
  }

  /** A JSON watch ends with an event saying why; any other long-running answer is cut. */
  function cutResponse(ctx: RequestContext, res: ApiResponse, reason: StreamCutReason): void {
    log.debug('the relay ends a long-running request', { requestId: ctx.requestId, reason, finalWatchEvent: ctx.watchTermination !== undefined });
    if (ctx.watchTermination) ctx.watchTermination.end(finalWatchStatus(reason));
    else cutAnswer(res);
  }

  /** Cuttable from admission until `closes` closes, the stream's duration counted from now. */
  function trackFromAdmission(ctx: RequestContext, closes: NodeJS.EventEmitter, cut: (reason: StreamCutReason) => void): void {
    const untrack = deps.streams.track(ctx.identity!.user, cut);
    closes.once('close', untrack);
    // A revocation applied after authenticate() looked (its check and this one are a few awaits apart) is applied here.
    if (deps.revocations.isRevoked(ctx.identity!)) cut('agent-revoked');
  }

  function countActiveStream(closes: NodeJS.EventEmitter, kind: 'long-running' | 'upgraded'): void {
    metrics.activeStreams.inc({ kind });
    closes.once('close', () => metrics.activeStreams.dec({ kind }));
  }
}
