/**
 * Who may send a request into a tunnel, decided at the hub before anything
 * enters one (DESIGN §4): a token for the URL's cluster, an agent that is
 * not revoked, what its policy allows (DESIGN §13), and room in the agent's quota of requests in flight through
 * the hub, the same cap each relay keeps (request-stages/agent-quotas.ts), so that one agent
 * cannot fill the tunnels every agent of the cluster shares. Refusals carry
 * the status the hub answers with.
 */
import type { EventEmitter } from 'node:events';
import { type ApiRequest, requestRawHeaders } from '../http-messages.js';
import type { JSONWebKeySet } from 'jose';
import type { AgentIdentity } from '../identity.js';
import { StoreUnavailableError } from '../issuer/store.js';
import type { Logger } from '../log.js';
import { parseRequestInfo } from '../audit/request-info.js';
import { applyPolicy, PolicyRateLimiter } from '../request-stages/agent-policy.js';
import { AgentQuota, DEFAULT_MAX_REQUESTS_PER_AGENT } from '../request-stages/agent-quotas.js';
import { extractBearerToken } from '../request-stages/authenticate.js';
import { RelayRefusal, refusalHeaders } from '../request-stages/errors.js';
import type { RevocationList } from '../request-stages/revocations.js';
import { TokenVerifier } from '../request-stages/token-verifier.js';

export class HubRefusal extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly identity?: AgentIdentity,
  ) {
    super(message);
  }
}

export interface Refusal {
  code: number;
  reason: string;
  message: string;
  identity?: AgentIdentity | undefined;
  /** A policy refusal's rule (DESIGN §13), and its headers (Retry-After). */
  policyRule?: string | undefined;
  headers?: Record<string, string>;
}

export function refusal(err: unknown): Refusal {
  if (err instanceof HubRefusal) return { code: err.status, reason: err.reason, message: err.message, identity: err.identity };
  if (err instanceof RelayRefusal) return { code: err.status, reason: err.reason, message: err.clientMessage, identity: err.identity, policyRule: err.details.policyRule, headers: refusalHeaders(err) };
  if (err instanceof StoreUnavailableError) return { code: 503, reason: 'store-unavailable', message: 'the hub cannot read its store right now; retry in a few seconds' };
  return { code: 500, reason: 'internal-error', message: 'the hub failed to handle the request' };
}

export interface AgentAdmissionOptions {
  publicUrl: string;
  jwks: () => JSONWebKeySet;
  revocations: RevocationList;
  log: Logger;
  /** Requests one agent may have in flight through the hub at once (default DEFAULT_MAX_REQUESTS_PER_AGENT). */
  maxRequestsPerAgent?: number | undefined;
}

export class AgentAdmission {
  private readonly verifiers = new Map<string, TokenVerifier>();
  private readonly inFlight: AgentQuota;
  private readonly rateLimiter = new PolicyRateLimiter();

  constructor(private readonly options: AgentAdmissionOptions) {
    this.inFlight = new AgentQuota(options.maxRequestsPerAgent ?? DEFAULT_MAX_REQUESTS_PER_AGENT);
  }

  /** The agent of a request for `cluster`: a valid token with that audience, of an agent not revoked. */
  async identify(req: ApiRequest, cluster: string): Promise<AgentIdentity> {
    let verifier = this.verifiers.get(cluster);
    if (!verifier) {
      verifier = new TokenVerifier({ issuer: this.options.publicUrl, audience: cluster, localKeys: this.options.jwks, log: this.options.log });
      this.verifiers.set(cluster, verifier);
    }
    let identity: AgentIdentity;
    try {
      identity = await verifier.verify(extractBearerToken(requestRawHeaders(req), req.url ?? ''));
    } catch (err) {
      // A valid token for another cluster (of this or another org) is not let near this one. It is an
      // authentication failure (DESIGN §4), answered as the relay answers it: 401. The message names the
      // cluster of the URL, never the token's own aud, which is the client's to choose.
      if (err instanceof RelayRefusal && err.reason === 'wrong-audience') throw new HubRefusal(401, 'wrong-audience', `the token is for another cluster, not "${cluster}"`);
      throw err;
    }
    if (this.options.revocations.isRevoked(identity)) throw new HubRefusal(401, 'agent-revoked', 'the agent has been revoked', identity);
    return identity;
  }

  /**
   * The agent's policy, decided here as the relay decides it, so that what
   * it refuses never enters a tunnel; a dry-run change goes on unchanged,
   * for the relay to add dryRun=All to it.
   */
  applyPolicy(identity: AgentIdentity, method: string, target: string, upgrade: boolean): void {
    this.rateLimiter.take(identity);
    applyPolicy(identity, method, parseRequestInfo(method, target), target, upgrade);
  }

  /**
   * Takes a slot among the agent's requests in flight, held until `closes`
   * (the response, or the upgraded socket) closes, and given back at once if
   * it closed while the request was being admitted; 429 when none is left.
   */
  holdSlot(identity: AgentIdentity, closes: ClosingTracker): void {
    const release = this.inFlight.take(identity.user);
    if (!release) {
      throw new HubRefusal(429, 'too-many-requests', `the agent already has ${this.inFlight.perAgent} requests in flight through this hub; wait for some to finish and retry`, identity);
    }
    closes.onClosed(release);
  }
}

/**
 * Follows whether a request's response (or socket) has closed, from the
 * moment the request arrives, so that a slot taken later is given back
 * exactly once: at that close, or at once if it came first.
 */
export class ClosingTracker {
  private closed = false;
  private readonly pending: (() => void)[] = [];

  constructor(closes: EventEmitter) {
    closes.once('close', () => {
      this.closed = true;
      for (const release of this.pending.splice(0)) release();
    });
  }

  get hasClosed(): boolean {
    return this.closed;
  }

  onClosed(release: () => void): void {
    if (this.closed) release();
    else this.pending.push(release);
  }
}
