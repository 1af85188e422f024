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
 * documents on the socket. A session's frames, chunks included, keep their order. Both sides
 * send and take chunks; the relay bounds what a client's unfinished ones may hold (ChunkAssembler).
 *
 * Batches: a side whose hello announces MUX_BATCH_CAPABILITY takes a WebSocket message that
 * carries several frames, `[0][100][15]` then each frame as a varUint8Array (its length, then
 * its bytes), in order; it handles them as if each had come alone. Opening 1,000 documents is
 * thousands of small frames each way; one WebSocket message each was most of what both ends
 * spent (a write to the operating system per frame, a frame header, a mask, a message event).
 * A batch never holds a batch, a hello or a pong (the Dialer reads those before the sessions),
 * nor more than MAX_BATCH_BYTES of frames (a larger one breaks the socket, 4400).
 *
 * The protocol version stays 1: a plain connection's messages did not change, and
 * bumping it would make every older relay refuse every newer client and peer with 4426.
 */
import * as decoding from 'lib0/decoding';
import { ProtocolError } from '../errors.js';
import { MessageType } from './message-types.js';
import { CapsyncKind } from './messages.js';
import { varUintSize, writeVarUintAt } from './varint.js';

/** The WebSocket path of the multiplexed endpoint (a name no document may have). */
export const MUX_PATH = '.capsync/mux';

/** Hello capability of a relay that serves MUX_PATH. */
export const MUX_CAPABILITY = 'mux';

/**
 * Hello capability prefix by which a relay announces how many sessions one socket may have open
 * (`--max-sessions-per-socket`): `mux-sessions:2000`. A client keeps below it, so that its
 * documents past the cap wait for a session to end instead of being refused in a row (past
 * `--max-refused-opens-per-socket` the relay closes the whole socket, every document with it).
 */
export const MUX_SESSIONS_PREFIX = 'mux-sessions:';

/** The `mux-sessions:` capability for a cap of `n` sessions. */
export function muxSessionsCapability(n: number): string {
  return MUX_SESSIONS_PREFIX + n;
}

/** The session cap a hello's capabilities announce (MUX_SESSIONS_PREFIX), or Infinity when none does. */
export function muxSessionsOf(capabilities: readonly string[]): number {
  const announced = capabilities.find((c) => c.startsWith(MUX_SESSIONS_PREFIX));
  const n = announced === undefined ? NaN : Number(announced.slice(MUX_SESSIONS_PREFIX.length));
  return Number.isSafeInteger(n) && n > 0 ? n : Infinity;
}

/**
 * Hello capability of a side that credits the chunks it takes (`chunk-credit`): a sender whose
 * peer said so keeps at most FLOW_WINDOW_BYTES of chunks uncredited (see FairSocket).
 */
export const MUX_FLOW_CAPABILITY = 'mux-flow';

/**
 * Chunk bytes a sender keeps in flight without credit: what a small frame of another session
 * may wait behind, besides the chunks being written. 8 chunks: on a 100 ms round trip that is
 * still ~5 MB/s for one large message; 16 let a small document's edits wait up to 75 ms
 * behind a 10 MB sync on loopback (bench:mux, p99), 8 keep that near 15-40 ms.
 */
export const FLOW_WINDOW_BYTES = 8 * 64 * 1024;

/** Hello capability of a side that takes batches of frames (see the header). */
export const MUX_BATCH_CAPABILITY = 'mux-batch';

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
  const prefix = varUintSize(sid);
  const frame = new Uint8Array(prefix + body.byteLength);
  writeVarUintAt(frame, 0, sid);
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

/**
 * Most bytes of frames (with their lengths) one batch holds: what one FrameBatch sends at most.
 * A receiver handles a batch's frames in one go, so a batch as large as a message may be
 * (--max-message-bytes, 16 MiB) was millions of tiny frames handled without a turn for anyone
 * else (seconds of the relay's event loop, and an array of them all). 64 KiB is what Node
 * reads from a socket at once, so a batch holds up the relay no longer than frames sent alone.
 */
export const MAX_BATCH_BYTES = CHUNK_BYTES;

/** The three bytes a batch starts with: the control sid, the capsync type, the batch kind. */
const BATCH_HEAD = [CONTROL_SID, MessageType.Capsync, CapsyncKind.Batch] as const;

/** True for a frame a batch may not hold: a batch, or a control hello or pong (the Dialer's). */
export function unbatchable(frame: Uint8Array): boolean {
  // Sid 0 may be written in more bytes than it needs ([0x80, 0x00]): read it as the decoder does.
  let at = 0;
  while (frame[at] === 0x80) at++;
  if (frame[at] !== CONTROL_SID || frame[at + 1] !== MessageType.Capsync) return false;
  const kind = frame[at + 2];
  return kind === CapsyncKind.Batch || kind === CapsyncKind.Hello || kind === CapsyncKind.Pong;
}

/** Bytes `frame` takes in a batch: its length varint and itself. */
export function batchedSize(frame: Uint8Array): number {
  return varUintSize(frame.byteLength) + frame.byteLength;
}

/** One WebSocket message carrying `frames` in order; `size` is the sum of their batchedSize. */
export function encodeBatch(frames: readonly Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(BATCH_HEAD.length + size);
  out.set(BATCH_HEAD, 0);
  let at: number = BATCH_HEAD.length;
  for (const frame of frames) {
    at = writeVarUintAt(out, at, frame.byteLength);
    out.set(frame, at);
    at += frame.byteLength;
  }
  return out;
}

/**
 * The frames of a received batch, each a copy of its bytes, or null when `message` is not a batch.
 * Copies, not views: a view keeps the whole message alive, and a receiver keeps some frames
 * (a piece of an unfinished chunked message, input queued while a document loads) counted by
 * their own length. One byte worth keeping beside 64 KiB of frames for a closed session,
 * message after message, would hold 64 KiB per counted byte. A batch's frames are small
 * (FrameBatch batches frames up to 4 KiB), so the copies cost little.
 * Throws ProtocolError('bad-message') for a malformed one, or one holding what a batch may not
 * (unbatchable): the socket's framing is broken, so the caller closes the socket (4400).
 */
export function readBatch(message: Uint8Array): Uint8Array[] | null {
  if (message[0] !== BATCH_HEAD[0] || message[1] !== BATCH_HEAD[1] || message[2] !== BATCH_HEAD[2]) return null;
  if (message.byteLength - BATCH_HEAD.length > MAX_BATCH_BYTES) throw new ProtocolError('bad-message', `a batch of frames holds more than ${MAX_BATCH_BYTES} bytes`);
  const frames: Uint8Array[] = [];
  let at = BATCH_HEAD.length;
  while (at < message.byteLength) {
    // Read by hand: lib0's readVarUint8Array does not check a length against the message, and a
    // received message is often a view into a larger buffer (Node's pool).
    let length = 0;
    let scale = 1;
    for (;;) {
      const byte = message[at++];
      if (byte === undefined || scale > 2 ** 28) throw new ProtocolError('bad-message', 'malformed batch of frames');
      length += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
    }
    if (length === 0 || at + length > message.byteLength) throw new ProtocolError('bad-message', 'malformed batch of frames');
    // Not `message.slice`: Node's Buffer.slice is a view, and the relay receives Buffers. The
    // typed array's own slice copies, whatever the subclass (one allocation, no view between).
    const frame = Uint8Array.prototype.slice.call(message, at, at + length);
    if (unbatchable(frame)) throw new ProtocolError('bad-message', 'a batch of frames holds a batch, a hello or a pong');
    frames.push(frame);
    at += length;
  }
  return frames;
}
