/**
 * A budget for the frames that cost a tunnel's receiver work without
 * carrying stream data (issue 14: 5.9 M tiny messages from one relay in 15 s
 * slowed every other tenant's requests through the hub to seconds).
 *
 * Charged, one token each: CONTROL messages (parsed as JSON), GOAWAY,
 * WebSocket pings (each one costs a pong) and pongs nobody asked for, and
 * frames that do nothing (a WINDOW of zero, an empty DATA). Not charged:
 * DATA with bytes; WINDOW, FIN and RST of open streams, bounded by each
 * stream's life and by the bytes sent on it; and frames for a stream
 * already closed, which cross a RST legitimately as often as requests end
 * and cost one map lookup to drop.
 *
 * A relay sends far fewer: its readiness when it changes (polled once a
 * second), a ping every 30 s, a pong per hub ping, one GOAWAY. The budget
 * allows a burst and a steady rate many times that; a peer that spends it is
 * disconnected with CONTROL_FLOOD_CLOSE_CODE, and nothing it sent after is
 * looked at.
 */

export interface ControlBudget {
  /** Frames accepted at once. */
  burst: number;
  /** Frames accepted per second after the burst. */
  perSecond: number;
}

/**
 * What the hub allows each relay's tunnel. The burst stays under ws's own
 * limit of 60 pongs waiting to be written (`maxPendingAutoPongs`), so a ping
 * flood meets this limit, with its close code and log line, first.
 */
export const RELAY_CONTROL_BUDGET: ControlBudget = { burst: 50, perSecond: 10 };
/**
 * What a change of a relay's readiness costs on top of its frame: the hub
 * logs it and routes differently. A relay flipping its readiness as fast as
 * the budget lets it gets two changes logged a second, about what a relay
 * whose API server flaps (readiness is polled once a second) gets.
 */
export const READINESS_CHANGE_COST = 5;
/** WebSocket close code "policy violation" (RFC 6455 §7.4.1): the relay's log shows it and the reason, and it redials with backoff. */
export const CONTROL_FLOOD_CLOSE_CODE = 1008;

export class ControlFloodError extends Error {}

/** A token bucket: `burst` tokens, refilled continuously at `perSecond`. */
export class TokenBucket {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly budget: ControlBudget,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(budget.burst >= 1 && budget.perSecond > 0)) throw new RangeError(`a control budget needs a burst of at least 1 and a positive rate, not ${JSON.stringify(budget)}`);
    this.tokens = budget.burst;
    this.refilledAt = now();
  }

  /** Takes `cost` tokens if there are that many. */
  take(cost = 1): boolean {
    const now = this.now();
    this.tokens = Math.min(this.budget.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.budget.perSecond);
    this.refilledAt = now;
    if (this.tokens < cost) return false;
    this.tokens -= cost;
    return true;
  }
}

export function describeBudget(budget: ControlBudget): string {
  return `a burst of ${budget.burst}, then ${budget.perSecond} a second`;
}
