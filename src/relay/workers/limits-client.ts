/**
 * A worker's admission limits: asked of the primary (shared-limits.ts),
 * one round trip per request for rate and quotas together. What one turn
 * of the event loop asks goes as one message, with the releases since the
 * last one; releases alone wait RELEASE_DELAY_MS for company, as each
 * message costs a write(2) here and a wake-up of the primary (a tenth of a
 * worker's CPU per request in the bench when each went on its own).
 */
import type { AgentIdentity } from '../../identity.js';
import { type AdmissionLimits, nothingToRelease, type Slots } from '../../request-stages/admission-limits.js';
import { RelayRefusal } from '../../request-stages/errors.js';
import { KIND, type Take, type Took, type WorkerMessage } from './protocol.js';

interface Waiting {
  identity: AgentIdentity;
  slots: Slots;
  resolve(release: () => void): void;
  reject(err: Error): void;
}

/** How late a slot may come back: a released slot is free for the next request a little later, never too early. */
export const RELEASE_DELAY_MS = 5;

export class PrimaryLimits implements AdmissionLimits {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private takes: Take[] = [];
  private releases: number[] = [];
  private flushing: NodeJS.Immediate | undefined;
  private releasing: NodeJS.Timeout | undefined;

  constructor(private readonly send: (message: WorkerMessage) => void) {}

  take(identity: AgentIdentity, slots: Slots): Promise<() => void> {
    const id = this.nextId++;
    const { rate, maxStreams } = identity.policy ?? {};
    this.takes.push({ id, user: identity.user, slots, ...(rate ? { rate } : {}), ...(maxStreams !== undefined ? { maxStreams } : {}) });
    this.scheduleFlush();
    return new Promise((resolve, reject) => this.waiting.set(id, { identity, slots, resolve, reject }));
  }

  /** The primary's answers. */
  answered(answers: Took[]): void {
    for (const { id, refused } of answers) {
      const waiting = this.waiting.get(id);
      if (!waiting) continue;
      this.waiting.delete(id);
      if (refused) {
        waiting.reject(new RelayRefusal(refused.reason, refused.message, waiting.identity, refused.details));
        continue;
      }
      if (waiting.slots === 'none') {
        waiting.resolve(nothingToRelease);
        continue;
      }
      let released = false;
      waiting.resolve(() => {
        if (released) return;
        released = true;
        this.releases.push(id);
        this.releasing ??= setTimeout(() => this.flush(), RELEASE_DELAY_MS);
      });
    }
  }

  private scheduleFlush(): void {
    // After this turn's I/O callbacks: the requests that arrived together ask together.
    this.flushing ??= setImmediate(() => this.flush());
  }

  private flush(): void {
    if (this.flushing) clearImmediate(this.flushing);
    if (this.releasing) clearTimeout(this.releasing);
    this.flushing = undefined;
    this.releasing = undefined;
    const message: WorkerMessage = { [KIND]: 'limits', takes: this.takes, releases: this.releases };
    this.takes = [];
    this.releases = [];
    this.send(message);
  }
}
