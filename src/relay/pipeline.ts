/**
 * The relay's request pipeline, composed in one place (DESIGN §3):
 *
 *   audit (outermost, on close) → check target → authenticate → refuse
 *   client impersonation → strip → impersonate → forward
 *
 * The same code serves direct mode and requests that arrive through a
 * tunnel: it never asks which transport a connection came from.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { type AuditRecord, auditVerb, type Decision, decisionForUpstreamStatus, redactQuery } from '../audit/record.js';
import { parseRequestInfo, type RequestInfo } from '../audit/request-info.js';
import type { AuditSink } from '../audit/sink.js';
import type { AgentIdentity } from '../identity.js';
import type { Logger } from '../log.js';
import { authenticate, headerValues, TOKEN_QUERY_PARAMETERS } from './authenticate.js';
import { isAuthenticationFailure, RelayRefusal, writeStatus, writeStatusToSocket } from './errors.js';
import type { Forwarder, ForwardHooks } from './forward.js';
import { addImpersonation } from './impersonate.js';
import { isLongRunning, type LiveStreams, type StreamQuota } from './live-streams.js';
import type { RelayMetrics } from './metrics.js';
import { checkRequestTarget } from './request-target.js';
import type { RevocationList } from './revocations.js';
import { refuseClientImpersonation, stripClientHeaders, type UpgradeProtocol, validatedUpgrade } from './strip-headers.js';
import type { TokenVerifier } from './token-verifier.js';
import type { Upstream } from './upstream.js';

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
  quota: StreamQuota;
  log: Logger;
}

/** Per-request state, filled in as the request moves through the stages. */
interface RequestContext {
  readonly requestId: string;
  readonly receivedAt: number;
  readonly method: string;
  readonly target: string;
  readonly info: RequestInfo;
  readonly verb: string;
  readonly sourceIp: string | null;
  readonly rawHeaders: readonly string[];
  identity?: AgentIdentity;
  status?: number;
  decision?: Decision;
  reason?: string;
  bytesIn: number;
  bytesOut: number;
  session?: { protocol: string; startedAt: number };
  /** Gives back the agent's long-running stream slot. */
  releaseSlot?: () => void;
  finished: boolean;
}

export interface Pipeline {
  handleRequest(req: IncomingMessage, res: ServerResponse): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

export function createPipeline(deps: PipelineDeps): Pipeline {
  const { log, metrics } = deps;

  function newContext(req: IncomingMessage): RequestContext {
    const target = req.url ?? '';
    const method = req.method ?? 'GET';
    const info = parseRequestInfo(method, target.startsWith('/') ? target : '/');
    return {
      requestId: randomUUID(),
      receivedAt: Date.now(),
      method,
      target,
      info,
      verb: auditVerb(info.verb, info.subresource),
      sourceIp: req.socket.remoteAddress ?? null,
      // A snapshot: the forward stage replaces req.headers with the upstream set.
      rawHeaders: [...req.rawHeaders],
      bytesIn: 0,
      bytesOut: 0,
      finished: false,
    };
  }

  /** Stages 1-3: everything that must hold before a byte goes upstream. */
  async function admit(ctx: RequestContext, upgrade: UpgradeProtocol | undefined): Promise<OutgoingHttpHeaders> {
    checkRequestTarget(ctx.target);
    ctx.identity = await authenticate(ctx.rawHeaders, ctx.target, deps.verifier, deps.revocations);
    refuseClientImpersonation(ctx.rawHeaders);
    if (isLongRunning(ctx.info.verb, ctx.info.subresource)) {
      ctx.releaseSlot = deps.quota.take(ctx.identity.user);
      if (!ctx.releaseSlot) {
        throw new RelayRefusal(
          'too-many-streams',
          `the agent already holds ${deps.quota.perAgent} long-running requests (watches, logs -f, exec, attach, port-forward) through this relay; end some and retry`,
          ctx.identity,
        );
      }
    }
    return addImpersonation(stripClientHeaders(ctx.rawHeaders, upgrade), ctx.identity, deps.upstream.authorization(), ctx.requestId);
  }

  /** Maps a failure before forwarding to a status; refusals are expected, anything else is a relay bug. */
  function refusal(ctx: RequestContext, err: unknown): { code: number; message: string } {
    if (err instanceof RelayRefusal) {
      ctx.identity ??= err.identity;
      ctx.status = err.status;
      ctx.decision = err.status >= 500 ? 'error' : 'denied-by-relay';
      ctx.reason = err.reason;
      if (isAuthenticationFailure(err)) metrics.authFailures.inc({ reason: err.reason });
      log.info('request refused', { requestId: ctx.requestId, reason: err.reason, user: ctx.identity?.user, method: ctx.method, path: pathOf(ctx.target) });
      return { code: err.status, message: err.clientMessage };
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
        ctx.status = status;
        ctx.decision = status === 101 ? 'allowed' : decisionForUpstreamStatus(status);
      },
      onBytes(direction, count) {
        if (direction === 'in') ctx.bytesIn += count;
        else ctx.bytesOut += count;
      },
      onUpgraded,
      onError(err) {
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
    ctx.releaseSlot?.();
    const endedAt = Date.now();
    if (ctx.status === undefined) {
      // The client went away before anyone answered (nginx calls this 499).
      ctx.status = 499;
      ctx.decision = 'error';
      ctx.reason ??= 'client-closed-request';
    }
    const record = auditRecord(ctx, endedAt, deps);
    deps.audit.write(record);
    metrics.requests.inc({ cluster: deps.cluster, verb: ctx.verb, code: String(ctx.status), decision: record.decision });
    metrics.duration.observe({ cluster: deps.cluster, verb: ctx.verb }, (endedAt - ctx.receivedAt) / 1000);
    metrics.bytes.inc({ direction: 'in' }, ctx.bytesIn);
    metrics.bytes.inc({ direction: 'out' }, ctx.bytesOut);
  }

  return {
    handleRequest(req, res) {
      const ctx = newContext(req);
      res.on('close', () => finish(ctx));
      admit(ctx, undefined).then(
        (headers) => {
          if (res.destroyed) return; // the client left while we authenticated: nothing goes upstream
          if (isLongRunning(ctx.info.verb, ctx.info.subresource)) trackStream(ctx, () => res.destroy(), res, 'long-running');
          deps.forwarder.forwardRequest(
            req,
            res,
            headers,
            hooksFor(ctx, () => writeStatus(res, 502, 'kube-relay could not reach the Kubernetes API server'), () => undefined),
          );
        },
        (err: unknown) => {
          const { code, message } = refusal(ctx, err);
          // Drain what the client is still sending so it reads our answer instead of a reset.
          req.resume();
          writeStatus(res, code, message);
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
          (headers) => {
            if (socket.destroyed) return;
            deps.forwarder.forwardUpgrade(
              req,
              socket,
              head,
              headers,
              hooksFor(
                ctx,
                () => writeStatusToSocket(socket, 502, 'kube-relay could not reach the Kubernetes API server'),
                (responseHeaders, release) => {
                  const negotiated = responseHeaders['sec-websocket-protocol'] ?? responseHeaders['x-stream-protocol-version'];
                  ctx.session = { protocol: `${upgrade}${negotiated ? `/${String(negotiated)}` : ''}`, startedAt: Date.now() };
                  trackStream(ctx, release, socket, 'upgraded');
                },
              ),
            );
          },
          (err: unknown) => {
            const { code, message } = refusal(ctx, err);
            writeStatusToSocket(socket, code, message);
          },
        );
    },
  };

  function trackStream(ctx: RequestContext, cut: () => void, closes: NodeJS.EventEmitter, kind: string): void {
    const untrack = deps.streams.track(ctx.identity!.user, cut);
    metrics.activeStreams.inc({ kind });
    closes.once('close', () => {
      untrack();
      metrics.activeStreams.dec({ kind });
    });
  }
}

function pathOf(target: string): string {
  const queryStart = target.indexOf('?');
  return queryStart === -1 ? target : target.slice(0, queryStart);
}

function auditRecord(ctx: RequestContext, endedAt: number, deps: PipelineDeps): AuditRecord {
  const queryStart = ctx.target.indexOf('?');
  const query = queryStart === -1 ? '' : ctx.target.slice(queryStart + 1);
  const params = new URLSearchParams(query);
  const firstHeader = (name: string) => headerValues(ctx.rawHeaders, name)[0];
  const record: AuditRecord = {
    time: new Date(endedAt).toISOString(),
    requestId: ctx.requestId,
    cluster: deps.cluster,
    mode: deps.mode,
    user: ctx.identity?.user ?? null,
    groups: ctx.identity?.groups ?? [],
    tokenId: ctx.identity?.tokenId ?? null,
    sourceIp: ctx.sourceIp,
    userAgent: firstHeader('user-agent') ?? null,
    method: ctx.method,
    path: pathOf(ctx.target),
    query: redactQuery(query, TOKEN_QUERY_PARAMETERS),
    verb: ctx.verb,
    namespace: ctx.info.namespace,
    resource: ctx.info.resource,
    subresource: ctx.info.subresource,
    name: ctx.info.name,
    status: ctx.status ?? 0,
    decision: ctx.decision ?? 'error',
    durationMs: endedAt - ctx.receivedAt,
    bytesIn: ctx.bytesIn,
    bytesOut: ctx.bytesOut,
  };
  const kubectlCommand = firstHeader('kubectl-command');
  const kubectlSession = firstHeader('kubectl-session');
  if (kubectlCommand) record.kubectlCommand = kubectlCommand;
  if (kubectlSession) record.kubectlSession = kubectlSession;
  if (ctx.reason) record.reason = ctx.reason;
  if (ctx.session) {
    record.protocol = ctx.session.protocol;
    record.startedAt = new Date(ctx.session.startedAt).toISOString();
    record.endedAt = new Date(endedAt).toISOString();
    if (ctx.info.subresource === 'exec') record.command = params.getAll('command');
    if (params.has('container')) record.container = params.get('container')!;
    if (ctx.info.subresource === 'portforward') record.ports = params.getAll('ports');
  }
  return record;
}
