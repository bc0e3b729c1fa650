/**
 * Many byte streams over one WebSocket (DESIGN §4): lean frames on binary
 * messages, yamux-like, with per-stream credit so a stalled consumer holds
 * back only its own stream and no buffer grows without bound.
 *
 *   frame = type (1 byte) | stream id (4 bytes, big-endian) | payload
 *
 *   OPEN    payload: JSON metadata (e.g. the client's address, for the audit)
 *   DATA    payload: bytes; never more than the credit the receiver granted
 *   WINDOW  payload: 4-byte credit increment, sent as the consumer reads
 *   FIN     no payload: the sender will write no more (half-close)
 *   RST     no payload: abort the stream both ways
 *   GOAWAY  stream id 0: open no new streams; existing ones finish
 *   CONTROL stream id 0, payload: a JSON message for the tunnel's owner
 *           (the hub pushes revocations this way)
 *
 * A frame for a stream that was never opened is a protocol error that ends
 * the session, as HTTP/2 treats frames on idle streams (RFC 9113 §5.1);
 * frames for a stream already closed are dropped (a RST may cross them).
 * Each stream is a Node Duplex with the few socket methods http.Agent and
 * http.Server call, so an HTTP server can take it as a connection
 * (`server.emit('connection', stream)`) and an agent can return it from
 * `createConnection`: plain requests, watches and 101 upgrades then work
 * unchanged on both ends. Keepalive and reconnecting belong to the tunnel,
 * not to this module.
 */
import { EventEmitter } from 'node:events';
import { Duplex, type Writable } from 'node:stream';
import type WebSocket from 'ws';

export const enum FrameType {
  Open = 1,
  Data = 2,
  Window = 3,
  Fin = 4,
  Rst = 5,
  GoAway = 6,
  Control = 7,
}

/** Credit each stream starts with, in each direction. */
export const INITIAL_WINDOW = 256 * 1024;
/** Largest DATA payload; larger writes are split. */
export const MAX_FRAME_PAYLOAD = 64 * 1024;
/** Credit is returned in batches of at least this much while data is still buffered. */
const WINDOW_UPDATE_THRESHOLD = INITIAL_WINDOW / 4;
const HEADER_BYTES = 5;
/** The largest WebSocket message a peer may send (ws `maxPayload`): one full DATA frame. */
export const MAX_MESSAGE_BYTES = HEADER_BYTES + MAX_FRAME_PAYLOAD;
/** Streams open at once on one session; the opener refuses more itself, the acceptor resets them. */
export const MAX_STREAMS = 16_384;

export interface StreamMetadata {
  /** Address of the client on the far side, reported as the stream's `remoteAddress`. */
  remoteAddress?: string;
  remotePort?: number;
}

export class MuxProtocolError extends Error {}

function frame(type: FrameType, streamId: number, payload?: Buffer): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(streamId, 1);
  return payload && payload.length > 0 ? Buffer.concat([header, payload]) : header;
}

export class MuxStream extends Duplex {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** Bytes the peer still lets us send. */
  private sendCredit = INITIAL_WINDOW;
  private waitingForCredit: { chunk: Buffer; callback: (err?: Error | null) => void } | undefined;
  private received = 0;
  private granted = 0;
  private finSent = false;
  private finReceived = false;
  private forgotten = false;

  constructor(
    readonly id: number,
    private readonly session: MuxSession,
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
    let offset = 0;
    while (offset < chunk.length && this.sendCredit > 0) {
      const size = Math.min(chunk.length - offset, this.sendCredit, MAX_FRAME_PAYLOAD);
      this.session.send(frame(FrameType.Data, this.id, chunk.subarray(offset, offset + size)));
      this.sendCredit -= size;
      offset += size;
    }
    if (offset === chunk.length) callback();
    else this.waitingForCredit = { chunk: chunk.subarray(offset), callback };
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
    const waiting = this.waitingForCredit;
    this.waitingForCredit = undefined;
    waiting?.callback(err ?? new Error('stream closed'));
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
    this.sendCredit += increment;
    const waiting = this.waitingForCredit;
    if (waiting && this.sendCredit > 0) {
      this.waitingForCredit = undefined;
      this.sendWithinCredit(waiting.chunk, waiting.callback);
    }
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

export interface MuxSessionOptions {
  /** 'client' opens odd stream ids, 'server' even ones, so both sides may open streams. */
  role: 'client' | 'server';
  /** Refuse (RST) streams beyond this many open at once. */
  maxStreams?: number;
  /** False: the peer may not open streams at all (the hub opens every stream; a relay that tries is broken or hostile). */
  acceptStreams?: boolean;
  /**
   * The connection under the WebSocket. When given, the frames sent in one
   * tick leave in one write (one TLS record batch, one syscall) instead of
   * one each: a small request is about ten frames.
   */
  transport?: Pick<Writable, 'cork' | 'uncork'>;
}

/**
 * Emits 'stream' (MuxStream) for each stream the peer opens, 'goaway' when
 * the peer stops accepting new streams, 'control' (the parsed JSON) for
 * each CONTROL message, 'idle' when the last open stream has
 * gone, 'close' when the WebSocket closes
 * (every stream is destroyed then), and 'error' for protocol violations.
 */
export class MuxSession extends EventEmitter {
  private readonly streams = new Map<number, MuxStream>();
  private nextId: number;
  /** The highest stream id the peer has opened. */
  private highestPeerId = 0;
  private readonly maxStreams: number;
  private readonly acceptStreams: boolean;
  private goingAway = false;
  private peerGoingAway = false;
  private readonly transport: Pick<Writable, 'cork' | 'uncork'> | undefined;
  private corked = false;

  constructor(
    private readonly socket: WebSocket,
    options: MuxSessionOptions,
  ) {
    super();
    this.nextId = options.role === 'client' ? 1 : 2;
    this.maxStreams = options.maxStreams ?? MAX_STREAMS;
    this.acceptStreams = options.acceptStreams ?? true;
    this.transport = options.transport;
    socket.binaryType = 'nodebuffer';
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      try {
        if (!isBinary) throw new MuxProtocolError('text message on a mux session');
        this.receive(data);
      } catch (err) {
        this.emit('error', err);
        socket.terminate();
      }
    });
    // ws reports a peer's protocol violations (a message over maxPayload, a bad frame) as 'error', then
    // closes: without a listener, an 'error' event would end the process.
    socket.on('error', (err: Error) => this.emit('error', err));
    socket.on('close', () => {
      for (const stream of this.streams.values()) stream.destroy(new Error('tunnel closed'));
      this.streams.clear();
      this.emit('close');
    });
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** True when the peer would refuse another stream. */
  get full(): boolean {
    return this.streams.size >= this.maxStreams;
  }

  /** True while the WebSocket is open (not yet closing). */
  get connected(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  /** True once either side said GOAWAY: no new streams from here. */
  get draining(): boolean {
    return this.goingAway || this.peerGoingAway;
  }

  open(metadata: StreamMetadata = {}): MuxStream {
    if (this.draining) throw new Error('the tunnel is going away: no new streams');
    if (!this.connected) throw new Error('the tunnel is not connected');
    const id = this.nextId;
    this.nextId += 2;
    const stream = new MuxStream(id, this, metadata);
    this.streams.set(id, stream);
    this.send(frame(FrameType.Open, id, Buffer.from(JSON.stringify(metadata))));
    return stream;
  }

  /** Ends the session now, with a WebSocket close code the peer can act on; open streams are destroyed. */
  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  /** Sends a JSON message outside any stream; it must fit one frame, as the peer takes no larger message. */
  sendControl(message: object): void {
    const payload = Buffer.from(JSON.stringify(message));
    if (payload.length > MAX_FRAME_PAYLOAD) throw new RangeError(`a CONTROL message of ${payload.length} bytes does not fit one frame`);
    this.send(frame(FrameType.Control, 0, payload));
  }

  /** Tells the peer to open no new streams; existing streams finish normally. */
  goAway(): void {
    if (this.goingAway) return;
    this.goingAway = true;
    this.send(frame(FrameType.GoAway, 0));
  }

  /** @internal */
  send(data: Buffer): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    if (this.transport && !this.corked) {
      this.corked = true;
      this.transport.cork();
      process.nextTick(() => {
        this.corked = false;
        this.transport!.uncork();
      });
    }
    this.socket.send(data, { binary: true });
  }

  /**
   * A graceful end: GOAWAY, then the WebSocket is closed once every stream
   * has finished, or after `timeoutMs` with whatever is still open (a watch)
   * cut.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.goAway();
    if (this.socket.readyState !== this.socket.OPEN) return;
    if (this.streams.size > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.off('idle', done).off('close', done);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        this.on('idle', done).on('close', done);
      });
    }
    this.socket.close(1001, 'going away');
  }

  /** @internal */
  forget(id: number): void {
    this.streams.delete(id);
    if (this.streams.size === 0) this.emit('idle');
  }

  private receive(data: Buffer): void {
    if (data.length < HEADER_BYTES) throw new MuxProtocolError('frame shorter than its header');
    const type = data.readUInt8(0) as FrameType;
    const id = data.readUInt32BE(1);
    const payload = data.subarray(HEADER_BYTES);
    if (type === FrameType.GoAway) {
      this.peerGoingAway = true;
      this.emit('goaway');
      return;
    }
    if (type === FrameType.Control) {
      let message: unknown;
      try {
        message = JSON.parse(payload.toString('utf8'));
      } catch {
        throw new MuxProtocolError('CONTROL payload is not JSON');
      }
      this.emit('control', message);
      return;
    }
    if (type === FrameType.Open) {
      this.accept(id, payload);
      return;
    }
    const stream = this.streams.get(id);
    if (!stream) {
      if (!this.wasOpened(id)) throw new MuxProtocolError(`frame of type ${type as number} for stream ${id}, which was never opened`);
      return; // closed already: a RST crossed this frame
    }
    switch (type) {
      case FrameType.Data:
        stream.onData(payload);
        break;
      case FrameType.Window:
        if (payload.length !== 4) throw new MuxProtocolError('WINDOW frame without a 4-byte increment');
        stream.onWindow(payload.readUInt32BE(0));
        break;
      case FrameType.Fin:
        stream.onFin();
        break;
      case FrameType.Rst:
        stream.onReset();
        break;
      default:
        throw new MuxProtocolError(`unknown frame type ${type as number}`);
    }
  }

  private wasOpened(id: number): boolean {
    if (id === 0) return false;
    return id % 2 === this.nextId % 2 ? id < this.nextId : id <= this.highestPeerId;
  }

  private accept(id: number, payload: Buffer): void {
    if (!this.acceptStreams) throw new MuxProtocolError('the peer may not open streams on this tunnel');
    const peerParity = this.nextId % 2 === 1 ? 0 : 1;
    // Ids only grow (as in HTTP/2): an old id reopened could be confused with a stream just closed.
    if (id % 2 !== peerParity || id <= this.highestPeerId) throw new MuxProtocolError(`bad stream id ${id} in OPEN`);
    this.highestPeerId = id;
    if (this.goingAway || this.streams.size >= this.maxStreams) {
      this.send(frame(FrameType.Rst, id));
      return;
    }
    let metadata: StreamMetadata = {};
    try {
      const parsed = JSON.parse(payload.toString('utf8')) as StreamMetadata;
      metadata = {
        ...(typeof parsed.remoteAddress === 'string' ? { remoteAddress: parsed.remoteAddress } : {}),
        ...(typeof parsed.remotePort === 'number' ? { remotePort: parsed.remotePort } : {}),
      };
    } catch {
      throw new MuxProtocolError('OPEN metadata is not JSON');
    }
    const stream = new MuxStream(id, this, metadata);
    this.streams.set(id, stream);
    this.emit('stream', stream);
  }
}
