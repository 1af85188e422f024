import { LimitExceededError, ProtocolError } from '../errors.js';
import { MAX_CHUNKED_MESSAGE_BYTES, readChunk } from '../protocol/mux-frame.js';

/**
 * What one held piece of an unfinished message counts against `maxOpenBytes` at least. A piece
 * held costs an object and a buffer of a few hundred bytes besides its own bytes (measured
 * ~400 B in Node), so counting only its bytes let a sender of one-byte pieces (6 bytes each in
 * a batch of frames) make a socket hold ~400 times the bound. An honest sender's pieces are
 * CHUNK_BYTES (64 KiB) except the last (never held): they count as before.
 */
export const HELD_PIECE_BYTES = 1024;

export interface ChunkLimits {
  /** Largest message put together (default MAX_CHUNKED_MESSAGE_BYTES). */
  maxMessageBytes?: number;
  /** Bytes held for all sessions' unfinished messages together (default: no bound but the above). */
  maxOpenBytes?: number;
  /** Names the limit in the LimitExceededError (a relay flag); default 'max-message-bytes'. */
  limit?: string;
}

/**
 * Puts the `chunk` frames of a multiplexed socket's sessions back into their messages (see
 * protocol/mux-frame.ts): per session, the pieces received so far. A session's frames keep
 * their order, so a message of a session between the chunks of another breaks the socket
 * (ProtocolError 'bad-message'); so does a message over `maxMessageBytes`, or pieces held for
 * unfinished messages over `maxOpenBytes` (LimitExceededError): what a sender may make the
 * receiver hold is bounded per socket, as one frame of that size is.
 */
export class ChunkAssembler {
  private readonly open = new Map<number, { pieces: Uint8Array[]; bytes: number }>();
  private openBytes = 0;
  private readonly maxBytes: number;
  private readonly maxOpenBytes: number;
  private readonly limit: string;

  constructor(limits: ChunkLimits = {}) {
    this.maxBytes = limits.maxMessageBytes ?? MAX_CHUNKED_MESSAGE_BYTES;
    this.maxOpenBytes = limits.maxOpenBytes ?? Infinity;
    this.limit = limits.limit ?? 'max-message-bytes';
  }

  /**
   * The whole message once `body` (a session's frame) completes one: itself when it is not a
   * chunk. Null while pieces are missing. Throws ProtocolError('bad-message') as above.
   */
  push(sid: number, body: Uint8Array): Uint8Array | null {
    const chunk = readChunk(body);
    const open = this.open.get(sid);
    if (!chunk) {
      if (open) throw new ProtocolError('bad-message', `session ${sid} sent a message between the chunks of another`);
      return body;
    }
    const pieces = open ?? { pieces: [], bytes: 0 };
    pieces.bytes += chunk.piece.byteLength;
    if (pieces.bytes > this.maxBytes) throw new LimitExceededError(this.limit, `${this.limit}: a chunked message of session ${sid} is over ${this.maxBytes} bytes`);
    if (!chunk.final) {
      const charged = heldCost(chunk.piece);
      if (this.openBytes + charged > this.maxOpenBytes) {
        throw new LimitExceededError(this.limit, `${this.limit}: unfinished chunked messages on this socket are over ${this.maxOpenBytes} bytes`);
      }
      this.openBytes += charged;
      pieces.pieces.push(chunk.piece);
      this.open.set(sid, pieces);
      return null;
    }
    this.forget(sid);
    if (pieces.pieces.length === 0) return chunk.piece;
    const message = new Uint8Array(pieces.bytes);
    let at = 0;
    for (const piece of [...pieces.pieces, chunk.piece]) {
      message.set(piece, at);
      at += piece.byteLength;
    }
    return message;
  }

  /** The session ended: its pieces are dropped. */
  forget(sid: number): void {
    const pieces = this.open.get(sid);
    if (!pieces) return;
    this.open.delete(sid);
    // What was held: the pieces kept (a final piece is counted in `bytes` but never held).
    for (const piece of pieces.pieces) this.openBytes -= heldCost(piece);
  }

  /** The socket closed. */
  clear(): void {
    this.open.clear();
    this.openBytes = 0;
  }
}

/** What a held piece counts against `maxOpenBytes` (see HELD_PIECE_BYTES). */
function heldCost(piece: Uint8Array): number {
  return Math.max(piece.byteLength, HELD_PIECE_BYTES);
}
