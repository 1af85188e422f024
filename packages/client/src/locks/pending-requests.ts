import { UnavailableError, type CapsyncError } from '@capsync/core';

interface Entry<R> {
  resolve(reply: R): void;
  reject(err: unknown): void;
  timer: ReturnType<typeof setTimeout>;
  /** Sent on the current connection (its reply can only come on that connection). */
  sent: boolean;
}

/**
 * Requests waiting for a reply by id, each with a deadline. A request whose deadline passes
 * rejects with UnavailableError (its outcome at the relay is unknown); `onTimeout` lets the
 * owner clean up one that may still succeed there.
 */
export class PendingRequests<R> {
  private nextId = 1;
  private readonly entries = new Map<number, Entry<R>>();

  constructor(private readonly onTimeout: (id: number) => void = () => {}) {}

  get size(): number {
    return this.entries.size;
  }

  /** Registers a request; `describe` names it in the timeout error. */
  start(timeoutMs: number, describe: () => string): { id: number; reply: Promise<R> } {
    const id = this.nextId++;
    const reply = new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.entries.delete(id)) return;
        this.onTimeout(id);
        reject(new UnavailableError(`no answer from the relay within ${timeoutMs} ms (${describe()})`));
      }, timeoutMs);
      this.entries.set(id, { resolve, reject, timer, sent: false });
    });
    return { id, reply };
  }

  markSent(id: number): void {
    const e = this.entries.get(id);
    if (e) e.sent = true;
  }

  /** Ids not yet sent (to send once a connection opens). */
  unsent(): number[] {
    return Array.from(this.entries.entries(), ([id, e]) => (e.sent ? -1 : id)).filter((id) => id > 0);
  }

  /** Settles a request with its reply; false if it is unknown (timed out, or not ours). */
  settle(id: number, reply: R): boolean {
    const e = this.entries.get(id);
    if (!e) return false;
    this.entries.delete(id);
    clearTimeout(e.timer);
    e.resolve(reply);
    return true;
  }

  /** Rejects one request. */
  fail(id: number, err: unknown): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    clearTimeout(e.timer);
    e.reject(err);
  }

  /**
   * The connection closed: requests sent on it can no longer be answered. They reject at
   * once with UnavailableError (outcome unknown) rather than wait out their deadline, or with
   * `refusal` when the relay said why it closed (a limit: the caller should not just retry).
   */
  connectionLost(why: string, refusal?: CapsyncError): number[] {
    const lost: number[] = [];
    for (const [id, e] of this.entries) {
      if (!e.sent) continue;
      lost.push(id);
      this.fail(id, refusal ?? new UnavailableError(`connection to the relay lost before it answered (${why}); the outcome is unknown`));
    }
    return lost;
  }

  /** Fails every pending request with `err` (made only when one is pending: an error captures a stack). */
  failAll(err: unknown | (() => unknown)): void {
    if (this.entries.size === 0) return;
    const error = typeof err === 'function' ? (err as () => unknown)() : err;
    for (const id of Array.from(this.entries.keys())) this.fail(id, error);
  }
}
