/**
 * Retry timing: exponential backoff with full jitter (each delay uniform in
 * [0, cap]). The defaults are the tunnel's reconnect timing (DESIGN §4):
 * from 5 s to 60 s, reset only after a connection has stayed up for 60 s, so
 * a hub that accepts and then drops connections cannot pull relays into a
 * tight loop.
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  /** A connection that lived at least this long resets the backoff. */
  stableAfterMs?: number;
  random?: () => number;
}

export class ReconnectBackoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly stableAfterMs: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 5_000;
    this.maxMs = options.maxMs ?? 60_000;
    this.stableAfterMs = options.stableAfterMs ?? 60_000;
    this.random = options.random ?? Math.random;
    if (!(this.initialMs > 0 && this.maxMs >= this.initialMs)) throw new Error('backoff needs 0 < initial <= max');
  }

  /** The cap of the next delay: initial × 2^attempt, at most max. */
  get currentCapMs(): number {
    return Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
  }

  /** The delay before the next attempt, drawn uniformly from [0, cap] (full jitter). */
  nextDelayMs(): number {
    const delay = Math.round(this.random() * this.currentCapMs);
    if (this.currentCapMs < this.maxMs) this.attempt++;
    return delay;
  }

  /** Back to the initial delay (an attempt succeeded). */
  reset(): void {
    this.attempt = 0;
  }

  /** Call when a connection ends; it resets the backoff only if it lasted long enough. */
  connectionEnded(livedMs: number): void {
    if (livedMs >= this.stableAfterMs) this.attempt = 0;
  }
}
