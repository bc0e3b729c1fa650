/**
 * Long-lived streams outlive the 60-second token (DESIGN §3.6): watches,
 * `logs -f`, exec, attach and port-forward. Each is tracked under its agent
 * from the moment it is admitted, not from its answer (an upstream the agent
 * reaches through pods/proxy can hold an exec's 101 back for as long as it
 * likes), and cut when it reaches the maximum stream duration and when the
 * agent is revoked.
 */
import type { AgentIdentity } from '../identity.js';
import { RelayRefusal } from '../request-stages/errors.js';

/** Why the relay cuts a stream: a watch tells its client (watch-termination.ts). */
export type StreamCutReason = 'agent-revoked' | 'max-stream-duration';

/**
 * The refusal for a stream cut before the API server answered it (an exec
 * whose 101, a watch whose headers, the upstream holds back): the client
 * gets it in place of that answer.
 */
export function cutBeforeAnswer(reason: StreamCutReason, identity: AgentIdentity | undefined): RelayRefusal {
  if (reason === 'agent-revoked') return new RelayRefusal('agent-revoked', 'the agent was revoked: kube-relay ended this request before the API server answered it', identity);
  // 504 Timeout, as kube-apiserver answers a request that outlived its deadline (apierrors.NewTimeoutError).
  return new RelayRefusal('max-stream-duration', 'the request reached the maximum stream duration of kube-relay (--max-stream-duration) before the API server answered it', identity);
}

export class LiveStreams {
  private readonly byUser = new Map<string, Set<(reason: StreamCutReason) => void>>();

  /** `maxDurationMs` 0 means no limit. */
  constructor(private readonly maxDurationMs: number) {}

  /** Tracks a stream; call the returned function when it ends. */
  track(user: string, cut: (reason: StreamCutReason) => void): () => void {
    let streams = this.byUser.get(user);
    if (!streams) this.byUser.set(user, (streams = new Set()));
    const timer = this.maxDurationMs > 0 ? setTimeout(() => cut('max-stream-duration'), this.maxDurationMs) : undefined;
    timer?.unref();
    streams.add(cut);
    return () => {
      if (timer) clearTimeout(timer);
      streams.delete(cut);
      if (streams.size === 0 && this.byUser.get(user) === streams) this.byUser.delete(user);
    };
  }

  /** Cuts every stream of a user; returns how many were open. */
  cutUser(user: string): number {
    const streams = this.byUser.get(user);
    if (!streams) return 0;
    this.byUser.delete(user);
    for (const cut of streams) cut('agent-revoked');
    return streams.size;
  }

  get size(): number {
    let total = 0;
    for (const streams of this.byUser.values()) total += streams.size;
    return total;
  }
}

/** kube-apiserver's long-running check (server.go: verbs watch/proxy; subresources attach, exec, proxy, log, portforward). */
export function isLongRunning(verb: string, subresource: string): boolean {
  return verb === 'watch' || verb === 'proxy' || ['attach', 'exec', 'proxy', 'log', 'portforward'].includes(subresource);
}
