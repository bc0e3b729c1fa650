/**
 * Reconnect timing for the relay's tunnel (DESIGN §4): exponential backoff
 * from 5 s to 60 s with full jitter (each delay uniform in [0, cap]), reset
 * only after a connection has stayed up for 60 s, so a hub that accepts and
 * then drops connections cannot pull relays into a tight loop.
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

  /** Call when a connection ends; it resets the backoff only if it lasted long enough. */
  connectionEnded(livedMs: number): void {
    if (livedMs >= this.stableAfterMs) this.attempt = 0;
  }
}

/**
 * WebSocket keepalive (DESIGN §4): a ping every interval; when the
 * `maxMissed`-th ping in a row is still unanswered half an interval later,
 * `onDead` runs (terminate and reconnect). With the defaults (30 s, 2) a peer
 * that silently vanished is declared dead 75 s after it vanished: pings at
 * +30 s and +60 s go unanswered, the second one's grace ends at +75 s.
 */
export class Keepalive {
  private outstanding = 0;
  private interval: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;

  constructor(
    private readonly ping: () => void,
    private readonly onDead: () => void,
    private readonly intervalMs = 30_000,
    private readonly maxMissed = 2,
  ) {}

  start(): void {
    this.stop();
    this.interval = setInterval(() => this.tick(), this.intervalMs);
    this.interval.unref();
  }

  /** Call on every pong (or any frame from the peer). */
  alive(): void {
    this.outstanding = 0;
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = undefined;
  }

  stop(): void {
    if (this.interval) clearInterval(this.interval);
    if (this.deadline) clearTimeout(this.deadline);
    this.interval = this.deadline = undefined;
  }

  private tick(): void {
    if (this.deadline) return; // already waiting out the last grace period
    this.outstanding++;
    this.ping();
    if (this.outstanding >= this.maxMissed) {
      this.deadline = setTimeout(() => {
        this.stop();
        this.onDead();
      }, this.intervalMs / 2);
      this.deadline.unref();
    }
  }
}
