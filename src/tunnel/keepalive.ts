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
