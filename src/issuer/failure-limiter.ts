/**
 * Brakes for guessing (issue 14): failed authentications are counted in
 * token buckets, per source address and per presented key prefix, and a
 * caller past its budget is answered 429 with `Retry-After` before its key
 * is even looked at. Successes cost nothing, so a working agent is never
 * slowed by its own traffic. The map of buckets is bounded: past
 * `maxTracked` the least recently failed caller is forgotten, which only
 * ever errs towards letting a request be checked.
 */

export interface FailureBudget {
  /** Failures allowed in a burst. */
  burst: number;
  /** One failure is forgiven every this many milliseconds. */
  refillMs: number;
}

/** ~1 guess per second per address after a burst of 20 (a person mistyping never meets it). */
export const ADDRESS_BUDGET: FailureBudget = { burst: 20, refillMs: 1_000 };
/** The same key prefix tried from many addresses: 10, then one per 10 s. */
export const KEY_PREFIX_BUDGET: FailureBudget = { burst: 10, refillMs: 10_000 };
const MAX_TRACKED = 10_000;

interface Bucket {
  failures: number;
  updatedAt: number;
}

export class FailureLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly budget: FailureBudget,
    private readonly now: () => number = Date.now,
    private readonly maxTracked = MAX_TRACKED,
  ) {}

  /** Milliseconds until `key` may try again, or 0 when it may now. */
  retryAfterMs(key: string): number {
    const bucket = this.current(key);
    if (!bucket || bucket.failures < this.budget.burst) return 0;
    return Math.max(1, Math.ceil((bucket.failures - this.budget.burst + 1) * this.budget.refillMs - (this.now() - bucket.updatedAt)));
  }

  /** Counts a failure; true when this one used up the budget (worth one log line). */
  fail(key: string): boolean {
    const bucket = this.current(key) ?? { failures: 0, updatedAt: this.now() };
    bucket.failures += 1;
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.maxTracked) this.buckets.delete(this.buckets.keys().next().value!);
    return bucket.failures === this.budget.burst;
  }

  /** The bucket with the failures forgiven since it was last touched. */
  private current(key: string): Bucket | undefined {
    const bucket = this.buckets.get(key);
    if (!bucket) return undefined;
    const now = this.now();
    const forgiven = Math.floor((now - bucket.updatedAt) / this.budget.refillMs);
    if (forgiven > 0) {
      bucket.failures = Math.max(0, bucket.failures - forgiven);
      bucket.updatedAt += forgiven * this.budget.refillMs;
    }
    if (bucket.failures === 0) {
      this.buckets.delete(key);
      return undefined;
    }
    return bucket;
  }
}

/** Both brakes for one endpoint: by source address and by the presented key's prefix. */
export class AuthFailureBrakes {
  readonly byAddress: FailureLimiter;
  readonly byKeyPrefix: FailureLimiter;

  constructor(budgets: { address?: FailureBudget; keyPrefix?: FailureBudget } = {}, now: () => number = Date.now) {
    this.byAddress = new FailureLimiter(budgets.address ?? ADDRESS_BUDGET, now);
    this.byKeyPrefix = new FailureLimiter(budgets.keyPrefix ?? KEY_PREFIX_BUDGET, now);
  }

  /** Milliseconds to wait, or 0 when the request may be checked. */
  retryAfterMs(address: string, presentedKey: string | undefined): number {
    return Math.max(this.byAddress.retryAfterMs(address), presentedKey ? this.byKeyPrefix.retryAfterMs(keyPrefix(presentedKey)) : 0);
  }

  /** Counts a failed authentication; true when it used up a budget. */
  fail(address: string, presentedKey: string | undefined): boolean {
    const byAddress = this.byAddress.fail(address);
    const byPrefix = presentedKey ? this.byKeyPrefix.fail(keyPrefix(presentedKey)) : false;
    return byAddress || byPrefix;
  }
}

/** Enough of a key to group guesses at it, too little to be a secret (a key has 43 random characters after its kind). */
function keyPrefix(key: string): string {
  return key.slice(0, key.indexOf('_', 4) + 1 + 6);
}
