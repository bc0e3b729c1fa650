/**
 * The primary's side of admission for a relay with workers: the one set of
 * per-agent quotas and rate buckets every worker's requests are counted in,
 * so that the caps hold for the relay as a whole, exactly, as they do for
 * a relay of one process. Each slot is recorded under the worker holding
 * it, so that a worker that dies gives back everything it held.
 */
import type { AgentIdentity } from '../../identity.js';
import { InProcessLimits } from '../../request-stages/admission-limits.js';
import { PolicyRateLimiter } from '../../request-stages/agent-policy.js';
import type { AgentQuotas } from '../../request-stages/agent-quotas.js';
import { RelayRefusal } from '../../request-stages/errors.js';
import type { Take, Took } from './protocol.js';

export class SharedLimits {
  private readonly limits: InProcessLimits;
  /** Per worker, the release of each request it holds slots for. */
  private readonly held = new Map<number, Map<number, () => void>>();

  constructor(quotas: AgentQuotas, now: () => number = Date.now) {
    this.limits = new InProcessLimits(quotas, new PolicyRateLimiter(now));
  }

  take(worker: number, take: Take): Took {
    const identity: AgentIdentity = { user: take.user, groups: [], tokenId: '', issuedAt: 0, expiresAt: 0, policy: { rate: take.rate, maxStreams: take.maxStreams } };
    let release: () => void;
    try {
      release = this.limits.takeNow(identity, take.slots);
    } catch (err) {
      if (!(err instanceof RelayRefusal)) throw err;
      return { id: take.id, refused: { reason: err.reason, message: err.clientMessage, details: err.details } };
    }
    if (take.slots !== 'none') {
      let requests = this.held.get(worker);
      if (!requests) this.held.set(worker, (requests = new Map()));
      requests.set(take.id, release);
    }
    return { id: take.id };
  }

  /** Gives back one request's slots; a second release of the same request does nothing. */
  release(worker: number, id: number): void {
    const requests = this.held.get(worker);
    const release = requests?.get(id);
    if (!release) return;
    requests!.delete(id);
    release();
  }

  /** Gives back every slot `worker` held (it has exited); how many requests held some. */
  releaseAll(worker: number): number {
    const requests = this.held.get(worker);
    this.held.delete(worker);
    if (!requests) return 0;
    for (const release of requests.values()) release();
    return requests.size;
  }

  /** Requests holding slots, of one worker or of all. */
  holding(worker?: number): number {
    if (worker !== undefined) return this.held.get(worker)?.size ?? 0;
    let total = 0;
    for (const requests of this.held.values()) total += requests.size;
    return total;
  }
}
