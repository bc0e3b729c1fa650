/**
 * Many byte streams over one WebSocket (DESIGN §4): lean frames on binary
 * messages (frames.ts), yamux-like, with per-stream credit so a stalled
 * consumer holds back only its own stream, and a bound on what the session
 * holds for its WebSocket (flow-control.ts), so no buffer grows without
 * bound whatever the peer announces.
 *
 * A frame for a stream that was never opened is a protocol error that ends
 * the session, as HTTP/2 treats frames on idle streams (RFC 9113 §5.1);
 * frames for a stream already closed are dropped (a RST may cross them).
 * Each stream is a MuxStream (mux-stream.ts), which an HTTP server takes as
 * a connection (`server.emit('connection', stream)`) and an agent returns
 * from `createConnection`: plain requests, watches and 101 upgrades then
 * work unchanged on both ends. Keepalive and reconnecting belong to the
 * tunnel, not to this module; a budget for the frames that carry no stream
 * data (control-limits.ts) is the session's owner's choice.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { type ControlBudget, CONTROL_FLOOD_CLOSE_CODE, ControlFloodError, describeBudget, TokenBucket } from './control-limits.js';
import { DEFAULT_STALL_TIMEOUT_MS, SendBuffer } from './flow-control.js';
import { FrameType, HEADER_BYTES, MAX_FRAME_PAYLOAD, MuxProtocolError, frame } from './frames.js';
import { MuxStream, type StreamMetadata } from './mux-stream.js';

export { FrameType, INITIAL_WINDOW, MAX_FRAME_PAYLOAD, MAX_MESSAGE_BYTES, MAX_WINDOW, MuxProtocolError } from './frames.js';
export { MuxStream, type StreamMetadata } from './mux-stream.js';
export { MAX_SEND_BUFFER_BYTES } from './flow-control.js';

/** Streams open at once on one session; the opener refuses more itself, the acceptor resets them. */
export const MAX_STREAMS = 16_384;
/** How long a peer disconnected for a flood has to read the close frame before its connection is cut. */
const FLOOD_CLOSE_GRACE_MS = 1_000;

/** A session ended by its own side because the peer stopped reading (flow-control.ts). */
export class MuxStalledError extends Error {}

/** What a log line says of a session's 'error': why the tunnel ended, `peer` being the other end. */
export function sessionErrorSummary(err: Error, peer: 'relay' | 'hub'): string {
  if (err instanceof ControlFloodError) return `tunnel closed: the ${peer} sent too many frames without stream data`;
  if (err instanceof MuxStalledError) return `tunnel closed: the ${peer} stopped reading`;
  return 'tunnel protocol error';
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
  transport?: Pick<Duplex, 'cork' | 'uncork' | 'pause'>;
  /** How long the peer may read nothing while the session holds bytes for it before the session is cut (default 30 s). */
  stallTimeoutMs?: number;
  /** Frames without stream data the peer may send (control-limits.ts); default: no limit. */
  controlBudget?: ControlBudget;
}

/**
 * Emits 'stream' (MuxStream) for each stream the peer opens, 'goaway' when
 * the peer stops accepting new streams, 'control' (the parsed JSON) for
 * each CONTROL message, 'idle' when the last open stream has
 * gone, 'close' when the WebSocket closes
 * (every stream is destroyed then), and 'error' for protocol violations
 * (MuxProtocolError), a peer that stopped reading (MuxStalledError) and one
 * that spent its control budget (ControlFloodError); the session ends then.
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
  private readonly transport: Pick<Duplex, 'cork' | 'uncork' | 'pause'> | undefined;
  private corked = false;
  /** @internal What the session has handed to the WebSocket and the connection has not written out. */
  readonly sendBuffer: SendBuffer;
  private readonly controlBudget: ControlBudget | undefined;
  private readonly controlTokens: TokenBucket | undefined;
  private controlFramesAccepted = 0;
  /** Pings sent whose pong has not come: those pongs are free. */
  private pingsAwaitingPong = 0;
  /** Set when this side ended the session for the peer's conduct: nothing the peer sends is looked at any more. */
  private abandoned = false;

  constructor(
    private readonly socket: WebSocket,
    options: MuxSessionOptions,
  ) {
    super();
    this.nextId = options.role === 'client' ? 1 : 2;
    this.maxStreams = options.maxStreams ?? MAX_STREAMS;
    this.acceptStreams = options.acceptStreams ?? true;
    this.transport = options.transport;
    this.controlBudget = options.controlBudget;
    this.controlTokens = options.controlBudget && new TokenBucket(options.controlBudget);
    const stallTimeoutMs = options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    this.sendBuffer = new SendBuffer(stallTimeoutMs, (buffered) => {
      this.abandon(new MuxStalledError(`the peer read nothing for ${stallTimeoutMs / 1000} s while ${buffered} bytes waited for it`));
      socket.terminate();
    });
    socket.binaryType = 'nodebuffer';
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.abandoned) return;
      try {
        if (!isBinary) throw new MuxProtocolError('text message on a mux session');
        this.receive(data);
      } catch (err) {
        this.abandon(err as Error);
        socket.terminate();
      }
    });
    // ws has answered the ping already; the next ones are refused once the budget is spent.
    socket.on('ping', () => this.chargeControl());
    socket.on('pong', () => {
      if (this.pingsAwaitingPong > 0) this.pingsAwaitingPong--;
      else this.chargeControl();
    });
    // ws reports a peer's protocol violations (a message over maxPayload, a bad frame) as 'error', then
    // closes: without a listener, an 'error' event would end the process.
    socket.on('error', (err: Error) => this.emit('error', err));
    socket.on('close', () => {
      this.sendBuffer.stop();
      for (const stream of this.streams.values()) stream.destroy(new Error('tunnel closed'));
      this.streams.clear();
      this.emit('close');
    });
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** Bytes handed to the WebSocket that the connection has not written out yet: about MAX_SEND_BUFFER_BYTES at most. */
  get bufferedBytes(): number {
    return this.sendBuffer.bytes;
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

  /** A WebSocket ping (keepalive); its pong does not count against the peer's control budget. */
  ping(): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    this.pingsAwaitingPong++;
    this.socket.ping();
  }

  /**
   * Charges `cost` to the peer's control budget, for a frame without stream
   * data or for what the owner does about one (control-limits.ts). False
   * when the budget is spent: the session is being closed then, with
   * CONTROL_FLOOD_CLOSE_CODE, and the frame must be ignored.
   */
  chargeControl(cost = 1): boolean {
    if (this.abandoned) return false;
    if (!this.controlTokens || this.controlTokens.take(cost)) {
      this.controlFramesAccepted++;
      return true;
    }
    const reason = `too many frames without stream data (${describeBudget(this.controlBudget!)})`;
    this.abandon(new ControlFloodError(`the peer spent its control budget, ${describeBudget(this.controlBudget!)}, after ${this.controlFramesAccepted} frames`));
    this.socket.close(CONTROL_FLOOD_CLOSE_CODE, reason);
    // The close frame has a moment to reach a peer that still reads; the flood is not read meanwhile.
    this.transport?.pause();
    setTimeout(() => this.socket.terminate(), FLOOD_CLOSE_GRACE_MS).unref();
    return false;
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
    const written = this.sendBuffer.added(data.length);
    if (this.transport && !this.corked) {
      this.corked = true;
      this.transport.cork();
      process.nextTick(() => {
        this.corked = false;
        this.transport!.uncork();
      });
    }
    this.socket.send(data, { binary: true }, written);
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
      if (!this.chargeControl()) return;
      this.peerGoingAway = true;
      this.emit('goaway');
      return;
    }
    if (type === FrameType.Control) {
      if (!this.chargeControl()) return;
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
        if (payload.length === 0) this.chargeControl();
        else stream.onData(payload);
        break;
      case FrameType.Window: {
        if (payload.length !== 4) throw new MuxProtocolError('WINDOW frame without a 4-byte increment');
        const increment = payload.readUInt32BE(0);
        if (increment === 0) this.chargeControl();
        else stream.onWindow(increment);
        break;
      }
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

  /** Ends the session for the peer's conduct: one 'error', then nothing it sends is read. */
  private abandon(err: Error): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.sendBuffer.stop();
    this.emit('error', err);
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
