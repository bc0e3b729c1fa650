/**
 * Backpressure between a tunnel's streams and its WebSocket (issue 14).
 *
 * Credit bounds what each stream may have in flight, not what a session
 * holds: a peer that keeps granting credit (or simply has many streams
 * open) and stops reading its socket would have every byte pile up in the
 * WebSocket's send buffer, since ws.send never refuses. Credit says the
 * peer may take the bytes; only the socket says whether it does. So the
 * session counts the bytes it has handed to the WebSocket that the
 * connection has not written out yet. At MAX_SEND_BUFFER_BYTES, streams stop
 * sending DATA and hold their write callback, which pauses whoever writes
 * into them (on the hub, the agent's request body; on a relay, the API
 * server's answer), until the buffer has drained to half. Frames without
 * stream data (WINDOW, FIN, RST, OPEN, CONTROL) are small and never held.
 *
 * A peer that takes nothing at all for the stall timeout while bytes wait
 * is cut off: its streams are stuck whatever happens, and a hostile relay
 * can otherwise keep a hub's buffers and the agents' connections forever
 * (answering pings does not need reading).
 */

/** What one session may hold for its WebSocket before streams wait: a bound per tunnel, whatever the credit. */
export const MAX_SEND_BUFFER_BYTES = 2 * 1024 * 1024;
/** Waiting streams resume below this, so they do not wake for every frame written. */
const RESUME_BELOW_BYTES = MAX_SEND_BUFFER_BYTES / 2;
/** How long a peer may read nothing while the session holds bytes for it. */
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;
/** Checks of progress per stall timeout: a stall is noticed within a quarter of the timeout after it is due. */
const STALL_CHECKS_PER_TIMEOUT = 4;

/** A stream that stopped sending because the buffer was full. */
export interface WaitingSender {
  resumeSending(): void;
}

export class SendBuffer {
  private unflushed = 0;
  private readonly waiting = new Set<WaitingSender>();
  /** Some bytes were written out since the last check. */
  private progressed = false;
  private bufferedAtLastCheck = false;
  private stalledMs = 0;
  private readonly progressCheck: NodeJS.Timeout;

  constructor(
    readonly stallTimeoutMs: number,
    onStalled: (bufferedBytes: number) => void,
  ) {
    if (!(stallTimeoutMs > 0 && Number.isFinite(stallTimeoutMs))) throw new RangeError(`a stall timeout must be a positive number of milliseconds, not ${stallTimeoutMs}`);
    const interval = stallTimeoutMs / STALL_CHECKS_PER_TIMEOUT;
    this.progressCheck = setInterval(() => {
      const buffered = this.unflushed > 0;
      this.stalledMs = buffered && this.bufferedAtLastCheck && !this.progressed ? this.stalledMs + interval : 0;
      this.progressed = false;
      this.bufferedAtLastCheck = buffered;
      if (this.stalledMs >= stallTimeoutMs) {
        this.stop();
        onStalled(this.unflushed);
      }
    }, interval);
    this.progressCheck.unref();
  }

  /** Bytes handed to the WebSocket that the connection has not written out yet. */
  get bytes(): number {
    return this.unflushed;
  }

  /** True while streams must not send DATA. */
  get full(): boolean {
    return this.unflushed >= MAX_SEND_BUFFER_BYTES;
  }

  /** Counts `bytes` handed to the WebSocket; returns the callback to give ws.send, which runs once they are written out. */
  added(bytes: number): () => void {
    this.unflushed += bytes;
    return () => this.flushed(bytes);
  }

  waitForRoom(sender: WaitingSender): void {
    this.waiting.add(sender);
  }

  stopWaiting(sender: WaitingSender): void {
    this.waiting.delete(sender);
  }

  stop(): void {
    clearInterval(this.progressCheck);
    this.waiting.clear();
  }

  private flushed(bytes: number): void {
    this.unflushed -= bytes;
    this.progressed = true;
    if (this.waiting.size > 0 && this.unflushed <= RESUME_BELOW_BYTES) this.resumeWaiting();
  }

  /**
   * Wakes the waiting streams in turn until the buffer is full again; those
   * that got no turn keep their place ahead of those that just sent, so one
   * busy stream cannot starve the others.
   */
  private resumeWaiting(): void {
    const queue = [...this.waiting];
    this.waiting.clear();
    let served = 0;
    while (served < queue.length && !this.full) queue[served++]!.resumeSending();
    if (served === queue.length) return;
    const sentAndWaitingAgain = [...this.waiting];
    this.waiting.clear();
    for (const sender of queue.slice(served)) this.waiting.add(sender);
    for (const sender of sentAndWaitingAgain) this.waiting.add(sender);
  }
}
