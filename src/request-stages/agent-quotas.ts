/**
 * Stage 3b, admission: how much one agent may hold through this relay (or
 * the hub) at once, counted per agent from admission to the end of the
 * response, so that one agent cannot spend the capacity every agent shares.
 * Two caps: every request in flight, and the long-running ones among them.
 *
 * kube-apiserver caps requests in flight for the whole server
 * (--max-requests-inflight 400 and --max-mutating-requests-inflight 200 by
 * default, or priority and fairness) but leaves long-running requests out,
 * and counts nothing that has not reached it: an agent holding thousands of
 * stalled uploads, or watches, holds as many connections here and upstream.
 */
import type { AgentIdentity } from '../identity.js';
import { RelayRefusal } from './errors.js';

/** Far above what kubectl needs (a handful), room for an agent running controllers (a watch per informer). */
export const DEFAULT_MAX_STREAMS_PER_AGENT = 1_000;
/**
 * Every request in flight, long-running ones included: an agent holding its
 * whole long-running quota still has 1 000 ordinary requests, more than
 * kube-apiserver serves at once for all clients by default (400 + 200), so
 * the cap never binds a client the API server would have served. Each costs
 * the relay two sockets (client and upstream).
 */
export const DEFAULT_MAX_REQUESTS_PER_AGENT = 2_000;

/** Slots per agent, each taken at admission and given back exactly once. */
export class AgentQuota {
  private readonly held = new Map<string, number>();

  constructor(readonly perAgent: number) {}

  /** Takes a slot for `user` (of `limit`, when its policy sets one): its release (idempotent), or undefined when the agent has none left. */
  take(user: string, limit = this.perAgent): (() => void) | undefined {
    const held = this.held.get(user) ?? 0;
    if (held >= limit) return undefined;
    this.held.set(user, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const remaining = (this.held.get(user) ?? 1) - 1;
      if (remaining === 0) this.held.delete(user);
      else this.held.set(user, remaining);
    };
  }
}

export interface AgentQuotas {
  /** Every request in flight (--max-requests-per-agent). */
  requests: AgentQuota;
  /** Watches, logs -f, exec, attach, port-forward and proxy (--max-streams-per-agent). */
  longRunning: AgentQuota;
}

/** The quotas of --max-requests-per-agent and --max-streams-per-agent, defaults where not given. */
export function agentQuotas(caps: { maxRequestsPerAgent?: number | undefined; maxStreamsPerAgent?: number | undefined }): AgentQuotas {
  return {
    requests: new AgentQuota(caps.maxRequestsPerAgent ?? DEFAULT_MAX_REQUESTS_PER_AGENT),
    longRunning: new AgentQuota(caps.maxStreamsPerAgent ?? DEFAULT_MAX_STREAMS_PER_AGENT),
  };
}

/**
 * Takes one request's slots, or refuses it with 429 (kube-apiserver's answer
 * when its own in-flight limit is reached) naming the cap. The release gives
 * every slot back, once, however often it is called.
 */
export function admitWithinQuotas(quotas: AgentQuotas, identity: AgentIdentity, longRunning: boolean): () => void {
  const releaseRequest = quotas.requests.take(identity.user);
  if (!releaseRequest) {
    throw new RelayRefusal('too-many-requests', `the agent already has ${quotas.requests.perAgent} requests in flight through kube-relay; wait for some to finish and retry`, identity);
  }
  if (!longRunning) return releaseRequest;
  // An agent's policy may set its own cap (max-streams, DESIGN §13).
  const streamLimit = identity.policy?.maxStreams ?? quotas.longRunning.perAgent;
  const releaseStream = quotas.longRunning.take(identity.user, streamLimit);
  if (!releaseStream) {
    releaseRequest();
    throw new RelayRefusal(
      'too-many-streams',
      `the agent already holds ${streamLimit} long-running requests (watches, logs -f, exec, attach, port-forward) through this relay; end some and retry`,
      identity,
    );
  }
  return () => {
    releaseStream();
    releaseRequest();
  };
}
