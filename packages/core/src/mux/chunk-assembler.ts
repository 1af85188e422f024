import { ProtocolError } from '../errors.js';
import { MAX_CHUNKED_MESSAGE_BYTES, readChunk } from '../protocol/mux-frame.js';

/**
 * Puts the `chunk` frames of a multiplexed socket's sessions back into their messages (see
 * protocol/mux-frame.ts): per session, the pieces received so far. A session's frames keep
 * their order, so a message of a session between the chunks of another breaks the socket, as
 * does a message over `maxBytes`.
 */
export class ChunkAssembler {
  private readonly open = new Map<number, { pieces: Uint8Array[]; bytes: number }>();

  constructor(private readonly maxBytes = MAX_CHUNKED_MESSAGE_BYTES) {}

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
    if (pieces.bytes > this.maxBytes) throw new ProtocolError('bad-message', `a chunked message of session ${sid} is over ${this.maxBytes} bytes`);
    if (!chunk.final) {
      pieces.pieces.push(chunk.piece);
      this.open.set(sid, pieces);
      return null;
    }
    this.open.delete(sid);
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
    this.open.delete(sid);
  }

  /** The socket closed. */
  clear(): void {
    this.open.clear();
  }
}
