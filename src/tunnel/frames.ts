/**
 * The tunnel's wire format (DESIGN §4), one frame per WebSocket binary message:
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
 */

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
/**
 * The most credit a sender may hold on one stream. There is no window
 * negotiation: a receiver only ever gives back what its consumer took out of
 * the initial window, so a peer that grants more is broken or hostile, and
 * is disconnected (issue 14: a relay granted itself gigabytes and stopped
 * reading).
 */
export const MAX_WINDOW = INITIAL_WINDOW;
/** Largest DATA payload; larger writes are split. */
export const MAX_FRAME_PAYLOAD = 64 * 1024;
export const HEADER_BYTES = 5;
/** The largest WebSocket message a peer may send (ws `maxPayload`): one full DATA frame. */
export const MAX_MESSAGE_BYTES = HEADER_BYTES + MAX_FRAME_PAYLOAD;

export class MuxProtocolError extends Error {}

export function frame(type: FrameType, streamId: number, payload?: Buffer): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(streamId, 1);
  return payload && payload.length > 0 ? Buffer.concat([header, payload]) : header;
}
