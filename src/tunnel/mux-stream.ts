/**
 * One stream of a tunnel (mux.ts): a Node Duplex with the few socket
 * methods http.Agent and http.Server call, so an HTTP server can take it as
 * a connection and an agent can return it from `createConnection`. It sends
 * DATA only within the credit its peer granted and while its session's
 * send buffer has room (flow-control.ts); until then its write callback
 * waits, which pauses whatever is piped into it.
 */
import { Duplex } from 'node:stream';
import type { SendBuffer, WaitingSender } from './flow-control.js';
import { FrameType, INITIAL_WINDOW, MAX_FRAME_PAYLOAD, MAX_WINDOW, MuxProtocolError, frame } from './frames.js';

export interface StreamMetadata {
  /** Address of the client on the far side, reported as the stream's `remoteAddress`. */
  remoteAddress?: string;
  remotePort?: number;
}

/** What a stream needs of its session. */
export interface StreamSession {
  readonly sendBuffer: SendBuffer;
  send(data: Buffer): void;
  forget(id: number): void;
}

/** Credit is returned in batches of at least this much while data is still buffered. */
const WINDOW_UPDATE_THRESHOLD = INITIAL_WINDOW / 4;

export class MuxStream extends Duplex implements WaitingSender {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** Bytes the peer still lets us send. */
  private sendCredit = INITIAL_WINDOW;
  /** The rest of a write that waits for credit or for room in the session's send buffer. */
  private pendingWrite: { chunk: Buffer; callback: (err?: Error | null) => void } | undefined;
  private received = 0;
  private granted = 0;
  private finSent = false;
  private finReceived = false;
  private forgotten = false;

  constructor(
    readonly id: number,
    private readonly session: StreamSession,
    metadata: StreamMetadata,
  ) {
    // Flow control is the window's job; the stream's own buffer only needs to hold one window.
    super({ allowHalfOpen: true, readableHighWaterMark: INITIAL_WINDOW, writableHighWaterMark: MAX_FRAME_PAYLOAD });
    this.remoteAddress = metadata.remoteAddress;
    this.remotePort = metadata.remotePort;
  }

  // The socket methods http.Agent and http.Server call on a connection: meaningless on a stream.
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setTimeout(_ms: number, callback?: () => void): this {
    if (callback) this.once('timeout', callback);
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.sendWithinCredit(chunk, callback);
  }

  private sendWithinCredit(chunk: Buffer, callback: (err?: Error | null) => void): void {
    const { sendBuffer } = this.session;
    let offset = 0;
    while (offset < chunk.length && this.sendCredit > 0 && !sendBuffer.full) {
      const size = Math.min(chunk.length - offset, this.sendCredit, MAX_FRAME_PAYLOAD);
      this.session.send(frame(FrameType.Data, this.id, chunk.subarray(offset, offset + size)));
      this.sendCredit -= size;
      offset += size;
    }
    if (offset === chunk.length) {
      callback();
      return;
    }
    this.pendingWrite = { chunk: chunk.subarray(offset), callback };
    // Without credit, the peer's WINDOW resumes it; with credit, room in the send buffer does.
    if (this.sendCredit > 0) sendBuffer.waitForRoom(this);
  }

  /** @internal The session's send buffer has room again, or credit arrived. */
  resumeSending(): void {
    const pending = this.pendingWrite;
    if (!pending || this.destroyed) return;
    this.pendingWrite = undefined;
    this.sendWithinCredit(pending.chunk, pending.callback);
  }

  /**
   * Node's HTTP server ends a connection whose client has ended it, also after its own end of the
   * last answer (_http_server socketOnEnd): on a stream already finished, that second end builds an
   * ERR_STREAM_ALREADY_FINISHED nobody reads, a stack trace for every tunnelled request (issue 21).
   */
  override end(chunk?: unknown, encoding?: unknown, callback?: unknown): this {
    if (chunk == null && encoding === undefined && callback === undefined && (this.writableFinished || this.destroyed)) return this;
    return super.end(chunk as never, encoding as never, callback as never);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.finSent = true;
    this.session.send(frame(FrameType.Fin, this.id));
    this.closeIfDone();
    callback();
  }

  override _read(): void {
    this.grantConsumed();
  }

  /**
   * Every byte a consumer takes goes through read() (or is handed straight to
   * 'data' listeners on push, see onData); Node calls _read only once per
   * push, so credit is returned here, after the chunk has left the buffer.
   */
  override read(size?: number): ReturnType<Duplex['read']> {
    const chunk = super.read(size) as ReturnType<Duplex['read']>;
    if (chunk !== null) this.grantConsumed();
    return chunk;
  }

  override _destroy(err: Error | null, callback: (err: Error | null) => void): void {
    if (!this.forgotten) {
      this.forgotten = true;
      if (!(this.finSent && this.finReceived)) this.session.send(frame(FrameType.Rst, this.id));
      this.session.forget(this.id);
    }
    this.session.sendBuffer.stopWaiting(this);
    const pending = this.pendingWrite;
    this.pendingWrite = undefined;
    pending?.callback(err ?? new Error('stream closed'));
    callback(err);
  }

  /**
   * Returns credit for what the consumer has taken out of the read buffer:
   * in batches, and always once the buffer is empty, so a blocked sender is
   * never left waiting on bytes the consumer has already read.
   */
  private grantConsumed(): void {
    const consumed = this.received - this.readableLength;
    const grant = consumed - this.granted;
    if (grant > 0 && !this.finReceived && (grant >= WINDOW_UPDATE_THRESHOLD || this.readableLength === 0)) {
      const payload = Buffer.allocUnsafe(4);
      payload.writeUInt32BE(grant, 0);
      this.session.send(frame(FrameType.Window, this.id, payload));
      this.granted += grant;
    }
  }

  /** @internal */
  onData(payload: Buffer): void {
    if (this.finReceived) throw new MuxProtocolError(`DATA after FIN on stream ${this.id}`);
    if (this.received + payload.length - this.granted > INITIAL_WINDOW) {
      throw new MuxProtocolError(`stream ${this.id} exceeded its window`);
    }
    this.received += payload.length;
    this.push(payload);
    // A flowing consumer with an empty buffer got the chunk straight from push(), without read().
    this.grantConsumed();
  }

  /** @internal */
  onWindow(increment: number): void {
    if (this.sendCredit + increment > MAX_WINDOW) {
      throw new MuxProtocolError(`stream ${this.id}: the peer granted credit beyond the ${MAX_WINDOW}-byte maximum window`);
    }
    this.sendCredit += increment;
    this.resumeSending();
  }

  /** @internal */
  onFin(): void {
    this.finReceived = true;
    this.push(null);
    this.closeIfDone();
  }

  /** @internal */
  onReset(): void {
    this.finSent = this.finReceived = true; // nothing more may be sent: no RST back
    this.destroy(new Error('stream reset by the peer'));
  }

  private closeIfDone(): void {
    if (this.finSent && this.finReceived && !this.forgotten) {
      this.forgotten = true;
      this.session.forget(this.id);
      // Let the readable side deliver its end before the stream closes.
      this.once('end', () => this.destroy());
      if (this.readableEnded) this.destroy();
    }
  }
}
