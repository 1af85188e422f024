/** A session of a multiplexed socket as its socket's input bound sees it. */
export interface QueueingSession {
  /**
   * True while its DocSession queues what it receives instead of handling it: its document is
   * not loaded yet, or paused (recovering, a fenced commit). False once it ended.
   */
  readonly queueing: boolean;
}

/**
 * The input a multiplexed socket's sessions hold queued, bounded per socket.
 *
 * Why: each session's DocSession queues the frames it receives while its document loads, up to
 * one plain connection's bound (2 x `--max-message-bytes`). A socket has up to
 * `--max-sessions-per-socket` sessions, so without a bound of its own one socket could make
 * the relay hold that many queues (64 GB at the defaults) while its documents load. Here the
 * socket's sessions together may queue what one plain connection may: a frame that would pass
 * it is refused, and its session fails (slow-consumer, 4429, as a plain connection whose queue
 * overflows); the socket and its other sessions carry on.
 *
 * What a session received while queueing is counted until the session is seen handling its
 * input again (on its next frame, or when the bound is reached: then every session is looked
 * at once) or it ends (`forget`). The count is an upper bound of what the sessions hold: a
 * session drains its queue as soon as its document is ready.
 */
/**
 * What a queued frame is charged on top of its bytes: about what holding one costs (its
 * Uint8Array and its queue entry). Without it, frames of a byte or two (cheap in a batch of
 * frames: two bytes each on the wire) held ~100x what they were counted for.
 */
export const QUEUED_FRAME_OVERHEAD = 128;

export class SocketInputQueue {
  private readonly held = new Map<number, { session: QueueingSession; bytes: number }>();
  private total = 0;

  constructor(
    /** Bytes the socket's sessions may hold queued together (one plain connection's bound). */
    readonly maxBytes: number,
  ) {}

  /** Bytes counted now (for tests and logs). */
  get bytes(): number {
    return this.total;
  }

  /**
   * Session `sid` received a frame of `bytes`: false when it would be queued past the socket's
   * bound (the caller fails the session and drops the frame).
   */
  admit(sid: number, session: QueueingSession, frameBytes: number): boolean {
    if (!session.queueing) {
      this.forget(sid);
      return true;
    }
    const bytes = frameBytes + QUEUED_FRAME_OVERHEAD;
    if (this.total + bytes > this.maxBytes) {
      this.sweep();
      if (this.total + bytes > this.maxBytes) return false;
    }
    const entry = this.held.get(sid);
    if (entry) entry.bytes += bytes;
    else this.held.set(sid, { session, bytes });
    this.total += bytes;
    return true;
  }

  /** Session `sid` ended, or handles its input: what it held is no longer counted. */
  forget(sid: number): void {
    const entry = this.held.get(sid);
    if (!entry) return;
    this.held.delete(sid);
    this.total -= entry.bytes;
  }

  /** Stops counting the sessions that no longer queue (at most max-sessions-per-socket of them). */
  private sweep(): void {
    for (const [sid, { session }] of this.held) if (!session.queueing) this.forget(sid);
  }
}
