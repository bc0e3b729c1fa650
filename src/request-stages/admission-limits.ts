/**
 * Stage 3b in one step: a token from the agent's rate bucket (its policy's
 * `rate`, agent-policy.ts), then its slots in the per-agent quotas
 * (agent-quotas.ts). One step, because a relay with several workers keeps
 * both in its primary process and asks it once per request
 * (relay/workers/limits-client.ts); a relay of one process keeps them here.
 */
import type { AgentIdentity } from '../identity.js';
import { PolicyRateLimiter } from './agent-policy.js';
import { admitWithinQuotas, type AgentQuotas } from './agent-quotas.js';

/**
 * What a request holds once admitted: `none` for one its policy refuses, which still spends a
 * token from the bucket (the rate is checked before the policy's rules, as it always was).
 */
export type Slots = 'none' | 'request' | 'long-running';

export interface AdmissionLimits {
  /** Resolves with the release of the request's slots (once, however often it is called), or rejects with the 429 RelayRefusal. */
  take(identity: AgentIdentity, slots: Slots): Promise<() => void>;
}

/** The release of a request that took no slots. */
export const nothingToRelease = () => undefined;

/** The limits of one process: every relay of one process, and the primary of a relay with workers. */
export class InProcessLimits implements AdmissionLimits {
  constructor(
    private readonly quotas: AgentQuotas,
    private readonly rate: PolicyRateLimiter = new PolicyRateLimiter(),
  ) {}

  async take(identity: AgentIdentity, slots: Slots): Promise<() => void> {
    return this.takeNow(identity, slots);
  }

  /** take(), answered in this turn; throws the RelayRefusal. */
  takeNow(identity: AgentIdentity, slots: Slots): () => void {
    this.rate.take(identity);
    if (slots === 'none') return nothingToRelease;
    return admitWithinQuotas(this.quotas, identity, slots === 'long-running');
  }
}
