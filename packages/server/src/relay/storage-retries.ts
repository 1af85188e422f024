import { Backoff, StorageError } from '@capsync/core';
import type { StorageOutage } from './storage-outage.js';

/** Bounds of the wait between two tries of a write that could not reach storage. */
const RETRY = { baseMs: 50, maxMs: 2_000 };

interface Waiting {
  write: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  err: unknown;
}

/**
 * The writes of one document to storage (appends, client id claims) that failed because storage
 * could not be reached (a `retryable` StorageError: a database down or partitioned away): each
 * is tried again, with backoff, until it commits, in the order they first failed, one at a time
 * (so claims made before an append still commit no later than it, as DocStore orders them). A
 * write that fails otherwise rejects at once, as before. Meanwhile the relay's StorageOutage
 * counts them (/readyz 503).
 *
 * `stop` gives up (the document is unloaded as the relay closes): every waiting write rejects
 * with its error; none was acknowledged, so its sender still has it and sends it again.
 */
export class StorageRetries {
  private readonly queue: Waiting[] = [];
  private readonly backoff = new Backoff(RETRY);
  private running = false;
  private stopped = false;
  private wake: (() => void) | null = null;

  constructor(private readonly outage: StorageOutage) {}

  /** Runs `write`; on a retryable failure, again until it commits (see above). */
  async run<T>(write: () => Promise<T>): Promise<T> {
    // Behind writes already waiting: never overtake them.
    if (this.queue.length === 0 || this.stopped) {
      try {
        return await write();
      } catch (err) {
        if (!(err instanceof StorageError && err.retryable) || this.stopped) throw err;
        return this.enqueue(write, err);
      }
    }
    return this.enqueue(write, null);
  }

  /** Gives up every waiting write, and any later one's retries. */
  stop(): void {
    this.stopped = true;
    for (const w of this.queue.splice(0)) {
      this.outage.waitEnded();
      w.reject(w.err ?? new StorageError('the document was unloaded while storage could not be reached', { retryable: true }));
    }
    this.wake?.();
  }

  private enqueue<T>(write: () => Promise<T>, err: unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ write, resolve: resolve as (value: unknown) => void, reject, err });
      this.outage.waitBegan();
      void this.drain();
    });
  }

  /** Tries the oldest waiting write after a backoff, then the next, until none waits. */
  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const head = this.queue[0]!;
        // A write queued behind others (never tried) goes at once when its turn comes.
        if (head.err !== null) await this.sleep(this.backoff.next());
        if (this.stopped || this.queue[0] !== head) continue;
        if (head.err !== null) this.outage.retrying();
        try {
          const value = await head.write();
          this.backoff.reset();
          if (this.done(head)) head.resolve(value);
        } catch (err) {
          if (this.stopped || this.queue[0] !== head) continue;
          if (err instanceof StorageError && err.retryable) {
            head.err = err;
            continue;
          }
          if (this.done(head)) head.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** Takes `head` off the queue; false when `stop` already did (and settled it). */
  private done(head: Waiting): boolean {
    if (this.queue[0] !== head) return false;
    this.queue.shift();
    this.outage.waitEnded();
    return true;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }
}
