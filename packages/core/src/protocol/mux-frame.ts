/**
 * Framing of a multiplexed socket (`ws://host/.capsync/mux`): many sessions, each one document
 * (later also the lock protocol or a subdocument), over one WebSocket.
 *
 *   mux frame = [varUint sid][message as on a plain connection (message-types.ts)]
 *
 * sid 0 is the socket's control session: `hello` (once, first), `ping`/`pong`, and
 * `session-open`, `session-opened`, `session-close`. Every other sid is one session, named once
 * in its `session-open` and never reused on the socket. The side that dialled opens odd sids,
 * the side that accepted even ones (as HTTP/2 streams), so both ends of a relay-to-relay socket
 * can open sessions without colliding. Sessions see the messages of a plain connection, with
 * the socket's hello as theirs (see Channel.hello).
 *
 * Why a new endpoint: `.capsync/` names are reserved (doc-name.ts), so a relay without this
 * endpoint closes the upgrade with 4404 `invalid-doc-name`, the signal for a client to fall
 * back to one socket per document. A relay that serves it announces MUX_CAPABILITY in its
 * hellos.
 *
 * Chunks: a message longer than CHUNK_BYTES may be sent as consecutive `chunk` frames of its
 * session, `[sid][100][14][1 if last else 0][piece]`; the pieces in order are the message.
 * The sender interleaves the chunks of a large message with other sessions' frames
 * (FairSocket), so a document's megabytes of initial sync do not hold back the small
 * documents on the socket. A session's frames, chunks included, keep their order. The relay
 * sends chunks; it does not take them from clients (a chunk there is an unknown message).
 *
 * The protocol version stays 1: a plain connection's messages did not change, and
 * bumping it would make every older relay refuse every newer client and peer with 4426.
 */
import * as decoding from 'lib0/decoding';
import { ProtocolError } from '../errors.js';
import { MessageType } from './message-types.js';
import { CapsyncKind } from './messages.js';

/** The WebSocket path of the multiplexed endpoint (a name no document may have). */
export const MUX_PATH = '.capsync/mux';

/** Hello capability of a relay that serves MUX_PATH. */
export const MUX_CAPABILITY = 'mux';

/** The control session of every multiplexed socket. */
export const CONTROL_SID = 0;

/**
 * The largest sid a frame may carry (5 varint bytes). Sids are never reused, so this is also
 * how many sessions one side can open over a socket's life: far past any real use.
 */
export const MAX_SID = 2 ** 32 - 1;

/** One frame of a multiplexed socket: its session and the message bytes (a view, not a copy). */
export interface MuxFrame {
  sid: number;
  body: Uint8Array;
}

/** Frames `body` (one encoded message) for session `sid`: one allocation, one copy. */
export function encodeMuxFrame(sid: number, body: Uint8Array): Uint8Array {
  let prefix = 1;
  for (let rest = sid; rest >= 0x80; rest = Math.floor(rest / 0x80)) prefix++;
  const frame = new Uint8Array(prefix + body.byteLength);
  let rest = sid;
  for (let i = 0; i < prefix - 1; i++, rest = Math.floor(rest / 0x80)) frame[i] = 0x80 | (rest % 0x80);
  frame[prefix - 1] = rest;
  frame.set(body, prefix);
  return frame;
}

/**
 * Splits a received frame into its sid and body. Throws ProtocolError('bad-message') for an
 * empty frame, a truncated or oversized sid varint, or a sid over MAX_SID: the socket's
 * framing is broken, so the caller closes the socket (4400). The body is not decoded here: a
 * malformed message inside a session ends that session only.
 */
export function decodeMuxFrame(frame: Uint8Array): MuxFrame {
  const d = decoding.createDecoder(frame);
  let sid: number;
  try {
    sid = decoding.readVarUint(d);
  } catch (err) {
    throw new ProtocolError('bad-message', 'malformed session id', { cause: err });
  }
  if (sid > MAX_SID) throw new ProtocolError('bad-message', `session id ${sid} is over ${MAX_SID}`);
  return { sid, body: frame.subarray(d.pos) };
}

/** The Dialer's own messages (hello, ping, pong) on a multiplexed socket: its control session. */
export const MUX_CONTROL_FRAMING = {
  wrap: (message: Uint8Array): Uint8Array => encodeMuxFrame(CONTROL_SID, message),
  unwrap: (frame: Uint8Array): Uint8Array | null => (frame[0] === CONTROL_SID ? frame.subarray(1) : null),
};

/** The largest message a side that takes chunks puts together (a client: its relay may send any document). */
export const MAX_CHUNKED_MESSAGE_BYTES = 2 ** 30;

/** Largest message body a FairSocket sends in one frame; longer ones go as chunks. */
export const CHUNK_BYTES = 64 * 1024;

/** The sid of a frame and where its body starts, read without allocating. Throws like decodeMuxFrame. */
export function peekSid(frame: Uint8Array): { sid: number; bodyStart: number } {
  let sid = 0;
  let scale = 1;
  for (let i = 0; i < 5 && i < frame.byteLength; i++) {
    const byte = frame[i]!;
    sid += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      if (sid > MAX_SID) break;
      return { sid, bodyStart: i + 1 };
    }
    scale *= 0x80;
  }
  throw new ProtocolError('bad-message', 'malformed session id');
}

/** If the control-session frame is a `session-close`, the sid it closes; else null. */
export function peekSessionClose(frame: Uint8Array, bodyStart: number): number | null {
  if (frame[bodyStart] !== MessageType.Capsync || frame[bodyStart + 1] !== CapsyncKind.SessionClose) return null;
  return peekSid(frame.subarray(bodyStart + 2)).sid;
}

/** A chunk frame: `sidPrefix` (the sid's bytes) then the chunk header and `piece` (one copy). */
export function encodeChunkFrame(sidPrefix: Uint8Array, piece: Uint8Array, final: boolean): Uint8Array {
  const frame = new Uint8Array(sidPrefix.byteLength + 3 + piece.byteLength);
  frame.set(sidPrefix, 0);
  let at = sidPrefix.byteLength;
  frame[at++] = MessageType.Capsync;
  frame[at++] = CapsyncKind.Chunk;
  frame[at++] = final ? 1 : 0;
  frame.set(piece, at);
  return frame;
}

/** If a session's message body is a chunk: its piece and whether it is the last; else null. */
export function readChunk(body: Uint8Array): { piece: Uint8Array; final: boolean } | null {
  if (body[0] !== MessageType.Capsync || body[1] !== CapsyncKind.Chunk) return null;
  const flag = body[2];
  if (flag !== 0 && flag !== 1) throw new ProtocolError('bad-message', 'malformed chunk');
  return { piece: body.subarray(3), final: flag === 1 };
}
