/**
 * How much of the store central-audit intake may hold at once: batches of
 * one cluster one after another (they would only wait for each other on the
 * cluster's lock, holding a pooled connection meanwhile), and at most a few
 * batches of any clusters together, so tokens, grants and the hub's reads
 * always find a connection, and the SQLite engine's queue a turn, between
 * them.
 */
export class IntakeGate {
  private readonly tails = new Map<string, Promise<unknown>>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly concurrency: number) {}

  /** Runs `work` after the key's earlier work, within the concurrency. */
  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(() => this.withSlot(work));
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  private async withSlot<T>(work: () => Promise<T>): Promise<T> {
    if (this.running < this.concurrency) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // the slot is handed over, still counted
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
