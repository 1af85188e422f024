import { CHUNK_BYTES, CONTROL_SID, encodeChunkFrame, peekSessionClose, peekSid } from '../protocol/mux-frame.js';

/** The socket a FairSocket writes to: a WebSocket's `send` with its written-out callback. */
export interface FrameSink {
  send(frame: Uint8Array, cb?: (err?: Error) => void): void;
  /** Bytes handed to `send` and not yet written out. */
  readonly bufferedAmount: number;
}

export interface FairSocketOptions {
  /** Largest message body sent in one frame; longer ones go as chunks (default CHUNK_BYTES). */
  chunkBytes?: number;
  /**
   * Bytes this writes ahead of the socket (sent, written-out callback not yet run) before it
   * waits (default 4 chunks). What a small session's frame may wait behind, on top of what
   * the operating system buffers.
   */
  aheadBytes?: number;
}

/** A frame waiting for its turn: `body` from `offset` is what is left of it. */
interface Waiting {
  frame: Uint8Array;
  /** Where the message body starts in `frame` (after the sid). */
  bodyStart: number;
  /** Next byte of the body to send; while 0 and the frame is small, it goes whole. */
  offset: number;
  cb: ((err?: Error) => void) | undefined;
}

/**
 * The outbound side of a multiplexed socket (protocol/mux-frame.ts), made fair between its
 * sessions: a large message (a document's initial sync, megabytes) must not hold back the
 * small ones of the other sessions on the same socket for as long as it takes to send.
 *
 * - A message body longer than `chunkBytes` goes as `chunk` frames of that size (the receiver
 *   puts them together, MuxSessions), so it can be interleaved at all.
 * - Each session has a queue; the queues take turns, one frame or chunk each (round robin),
 *   and only `aheadBytes` are written ahead of the socket. So a small frame of another session
 *   waits behind at most a few chunks, not behind the rest of the large message.
 * - A session's frames keep their order, and its `session-close` goes behind them: the
 *   control session's other frames (hello, ping, opens) are small and go at once.
 * - `bufferedAmount` is the socket's plus what waits here, so whoever accounts for the
 *   socket's unsent bytes (the relay's SendBuffer: slow consumers, the unsent budget) sees
 *   exactly what it saw before; the written-out callback of a frame runs once its last chunk
 *   was written out.
 * - While nothing waits, a small frame goes straight to the socket (no allocation), not counted
 *   ahead: `aheadBytes` bounds what this writes for frames that waited.
 *
 * - Flow control (`enableFlow`, when the receiver credits chunks): at most a window of chunk
 *   bytes is in flight uncredited; a session whose next frame is a chunk skips its turn while
 *   the window is used up, and small frames of the others still go.
 *
 * Dropping: `clear()` forgets everything waiting (the socket is closing; callbacks are not run,
 * like a WebSocket's for bytes it never wrote).
 */
export class FairSocket {
  /** Per sid, frames waiting; the Map's order is the turn order (a sid served goes last). */
  private readonly queues = new Map<number, Waiting[]>();
  private waitingBytes = 0;
  /** Bytes written to the socket whose written-out callback has not run yet. */
  private aheadNow = 0;
  private readonly chunkBytes: number;
  private readonly aheadBytes: number;
  private pumping = false;
  /** Chunk bytes sent and not yet credited by the receiver (flow control, see `enableFlow`). */
  private uncredited = 0;
  /** Chunk bytes that may be uncredited at once; Infinity while flow control is off. */
  private window = Infinity;

  constructor(
    private readonly sink: FrameSink,
    options: FairSocketOptions = {},
  ) {
    this.chunkBytes = options.chunkBytes ?? CHUNK_BYTES;
    this.aheadBytes = options.aheadBytes ?? 4 * this.chunkBytes;
  }

  /** The socket's unsent bytes plus those waiting here for their turn. */
  get bufferedAmount(): number {
    return this.sink.bufferedAmount + this.waitingBytes;
  }

  /** Sends one mux frame (its sid first): now, or when its session's turn comes. */
  send(frame: Uint8Array, cb?: (err?: Error) => void): void {
    const { sid, bodyStart } = peekSid(frame);
    // A session-close goes behind its session's frames; other control frames at once.
    const queueSid = sid === CONTROL_SID ? peekSessionClose(frame, bodyStart) : sid;
    if (queueSid === null) return this.sink.send(frame, cb);
    const queue = this.queues.get(queueSid);
    const small = frame.byteLength - bodyStart <= this.chunkBytes;
    // Straight through, untracked: no closure per frame on the common path (the relay's fan-out
    // to a multiplexed socket). Only what waited is counted ahead; that is what turns are for.
    if (!queue && small && this.aheadNow < this.aheadBytes) return this.sink.send(frame, cb);
    const waiting: Waiting = { frame, bodyStart, offset: 0, cb };
    this.waitingBytes += frame.byteLength;
    // Behind a waiting frame of its session no head changed: whatever stopped the pump (the
    // socket ahead, the window) still holds. Pumping would scan every session for nothing (the
    // peer's pings on sessions held by the window: a scan each).
    if (queue) return void queue.push(waiting);
    this.queues.set(queueSid, [waiting]);
    this.pump();
  }

  /**
   * Flow control of chunks: from now on at most `windowBytes` of chunk pieces are sent and not
   * yet credited (`credit`). The receiver's hello said it credits what it takes
   * (MUX_FLOW_CAPABILITY). Without it, the chunks of a large message are only held back by
   * `aheadBytes`, which counts what the socket has not handed to the operating system: its
   * buffers (megabytes on loopback) then fill with chunks ahead of every small frame.
   */
  enableFlow(windowBytes: number): void {
    this.window = windowBytes;
  }

  /**
   * The receiver took `bytes` more of the chunks (its `chunk-credit`). More than was sent
   * counts as all of it: a receiver can only make its own flow control looser.
   */
  credit(bytes: number): void {
    const wasFull = this.uncredited >= this.window;
    this.uncredited = Math.max(0, this.uncredited - bytes);
    // Only a credit that frees the window lets a frame go; any other (0 bytes, flow off, the
    // window not used up) would cost a scan of every session, once per credit the peer sends.
    if (wasFull && this.uncredited < this.window) this.pump();
  }

  /** Forgets every waiting frame (the socket is closing). */
  clear(): void {
    this.queues.clear();
    this.waitingBytes = 0;
  }

  private pump(): void {
    // A written-out callback may run inside `send` (a socket that calls back at once): the
    // loop below then carries on; a nested one would serve turns out of order.
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.aheadNow < this.aheadBytes) {
        const next = this.nextTurn();
        if (!next) return;
        const [sid, queue] = next;
        const waiting = queue[0]!;
        // The queue stays in the Map meanwhile, so a frame sent from a callback joins it.
        this.sendPart(waiting);
        if (waiting.offset === -1) queue.shift();
        // Served: to the back of the turn order, or out of it when empty.
        this.queues.delete(sid);
        if (queue.length > 0) this.queues.set(sid, queue);
      }
    } finally {
      this.pumping = false;
    }
  }

  /** The first session in turn order whose next frame may go: a chunk waits while the window is used up. */
  private nextTurn(): [number, Waiting[]] | null {
    const windowFull = this.uncredited >= this.window;
    for (const entry of this.queues) {
      if (!windowFull || !this.chunked(entry[1][0]!)) return entry;
    }
    return null;
  }

  private chunked(w: Waiting): boolean {
    return w.offset !== 0 || w.frame.byteLength - w.bodyStart > this.chunkBytes;
  }

  /** Sends the frame whole, or its next chunk; marks it done with offset -1 once all of it went. */
  private sendPart(w: Waiting): void {
    const bodyLength = w.frame.byteLength - w.bodyStart;
    if (w.offset === 0 && bodyLength <= this.chunkBytes) {
      this.waitingBytes -= w.frame.byteLength;
      w.offset = -1;
      return this.write(w.frame, w.cb);
    }
    const body = w.frame.subarray(w.bodyStart);
    const piece = body.subarray(w.offset, w.offset + this.chunkBytes);
    const final = w.offset + piece.byteLength >= bodyLength;
    // The sid is counted with the first piece, so waitingBytes ends at exactly 0.
    this.waitingBytes -= piece.byteLength + (w.offset === 0 ? w.bodyStart : 0);
    if (this.window !== Infinity) this.uncredited += piece.byteLength;
    w.offset = final ? -1 : w.offset + piece.byteLength;
    this.write(encodeChunkFrame(w.frame.subarray(0, w.bodyStart), piece, final), final ? w.cb : undefined);
  }

  private write(frame: Uint8Array, cb: ((err?: Error) => void) | undefined): void {
    const bytes = frame.byteLength;
    this.aheadNow += bytes;
    this.sink.send(frame, (err) => {
      this.aheadNow -= bytes;
      cb?.(err);
      this.pump();
    });
  }
}
