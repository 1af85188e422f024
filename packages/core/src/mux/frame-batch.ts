import { MAX_BATCH_BYTES, batchedSize, encodeBatch, unbatchable } from '../protocol/mux-frame.js';
import type { FrameSink } from './fair-socket.js';

/** Frames up to this size are batched; a larger one goes alone (it is its own message's worth). */
export const BATCHED_FRAME_BYTES = 4 * 1024;

/**
 * A batch is sent once it holds this many bytes, even before the task ends (at most
 * MAX_BATCH_BYTES, what a receiver takes). A quarter of that, so the other side starts on the
 * first frames of a long task while the rest are made: a client opening 1,000 documents makes
 * their ~60 KiB of opens in one task of ~35 ms, and sent as one batch at its end the relay sat
 * idle until then, then the client until the relay's first answers.
 */
export const BATCH_BYTES = MAX_BATCH_BYTES / 4;

/**
 * The bottom of a multiplexed socket's outbound side (protocol/mux-frame.ts, "Batches"): the
 * small frames sent within one task leave in one WebSocket message, once the task and its
 * microtasks are done (no timer: nothing waits past the current task), or as soon as
 * BATCH_BYTES are held. Frames keep their order: a frame that may not be batched (a large one,
 * a hello, a pong) sends what is held first. A frame's written-out callback runs when its
 * batch was written out.
 *
 * Off until `enabled` is set, which a socket's owner does once the other side's hello announced
 * MUX_BATCH_CAPABILITY: a side that never said so never gets a batch.
 *
 * Whoever closes the socket calls `flush()` first, so what was sent before the close still goes
 * before it (an error, a session-close).
 */
export class FrameBatch implements FrameSink {
  enabled = false;
  private frames: Uint8Array[] = [];
  private callbacks: ((err?: Error) => void)[] = [];
  private size = 0;
  private scheduled = false;

  constructor(
    private readonly sink: FrameSink,
    /** When to send what the current task batched (tests may run it by hand). */
    // Wrapped: a browser's queueMicrotask throws "Illegal invocation" when called as a method.
    private readonly schedule: (flush: () => void) => void = (flush) => queueMicrotask(flush),
  ) {}

  /** The socket's unsent bytes plus what is held for the current batch. */
  get bufferedAmount(): number {
    return this.sink.bufferedAmount + this.size;
  }

  send(frame: Uint8Array, cb?: (err?: Error) => void): void {
    if (!this.enabled || frame.byteLength > BATCHED_FRAME_BYTES || unbatchable(frame)) {
      this.flush();
      return this.sink.send(frame, cb);
    }
    const size = batchedSize(frame);
    if (this.size + size > BATCH_BYTES) this.flush();
    this.frames.push(frame);
    this.size += size;
    if (cb) this.callbacks.push(cb);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** Sends what is held now: one frame as itself, more as one batch. */
  flush(): void {
    const { frames, callbacks, size } = this;
    if (frames.length === 0) return;
    this.frames = [];
    this.callbacks = [];
    this.size = 0;
    const message = frames.length === 1 ? frames[0]! : encodeBatch(frames, size);
    if (callbacks.length === 0) return this.sink.send(message);
    this.sink.send(message, (err) => {
      for (const cb of callbacks) cb(err);
    });
  }

  /** Forgets what is held (the socket is gone; callbacks are not run, like a WebSocket's for bytes it never wrote). */
  clear(): void {
    this.frames = [];
    this.callbacks = [];
    this.size = 0;
  }
}
