import { CapsyncError, LeaseLostError, type LockOp, type LockReplyMessage } from '@capsync/core';

/** What a lease needs from the lock client that granted it. */
export interface LeaseOwner {
  request(
    op: LockOp,
    key: string,
    token: number,
    ttlMs: number,
    waitMs: number,
    timeoutMs: number,
  ): { reply: Promise<LockReplyMessage>; sentAt: Promise<number> };
  /** Safety margin subtracted from the TTL for the local deadline. */
  margin(ttlMs: number): number;
  /** The client's `lockTimeoutMs`: how long a call waits for the relay by default. */
  readonly timeoutMs: number;
}

/**
 * A granted lock: `key`, its fencing `token`, and a local deadline. `signal` aborts (with a
 * LeaseLostError as its reason) at that deadline unless a renewal was confirmed first, when
 * the lease is released, or when the relay says it is gone. Pass `token` with every write
 * to the protected resource; the resource, not the lease, has the last word.
 */
export class Lease {
  private readonly controller = new AbortController();
  /** Monotonic deadline (performance.now()). */
  private deadline: number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Set when the lease was lost (not released): why. */
  lostBeforeRelease: LeaseLostError | null = null;

  constructor(
    private readonly owner: LeaseOwner,
    readonly key: string,
    readonly token: number,
    readonly ttlMs: number,
    deadline: number,
  ) {
    this.deadline = deadline;
    this.arm();
  }

  /** Aborts when the lease is lost or released; the reason is a LeaseLostError. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The local deadline as wall-clock time (ms since epoch), for display. */
  get expiresAt(): number {
    return Date.now() + (this.deadline - performance.now());
  }

  /** True until the local deadline, a release or a loss. */
  get valid(): boolean {
    return !this.controller.signal.aborted && performance.now() < this.deadline;
  }

  /**
   * Extends the lease by its TTL, counted from when the renewal is sent. Rejects with
   * LeaseLostError (and aborts `signal`) if the relay says the lease is gone or is not this
   * client's (`not-owner`: e.g. a raw lock connection's lease after a reconnect), or with
   * UnavailableError if it cannot be reached in time (the deadline stays where it was).
   */
  async renew(options: { timeoutMs?: number } = {}): Promise<void> {
    this.assertValid();
    // The renewal must be confirmed before the current deadline to be of any use.
    const timeoutMs = options.timeoutMs ?? Math.max(1, this.deadline - performance.now());
    const { reply, sentAt } = this.owner.request('renew', this.key, this.token, this.ttlMs, 0, timeoutMs);
    try {
      const r = await reply;
      const granted = Math.min(this.ttlMs, r.ttlMs || this.ttlMs);
      const next = (await sentAt) + granted - this.owner.margin(granted);
      if (!this.controller.signal.aborted && next > this.deadline) {
        this.deadline = next;
        this.arm();
      }
    } catch (err) {
      if (err instanceof CapsyncError && (err.code === 'lease-lost' || err.code === 'stale-token' || err.code === 'not-owner')) {
        this.lose(new LeaseLostError(`lease on "${this.key}" (token ${this.token}) is gone: ${err.message}`, { cause: err }));
      }
      throw err;
    }
  }

  /**
   * Gives the lock back (the next waiter gets it at once). The signal aborts first: nothing
   * may be done under the lease once release is called. Rejects with LeaseLostError if the
   * relay had already moved on, or UnavailableError if it cannot be reached within
   * `timeoutMs` (default: the client's `lockTimeoutMs`, as every lock call; then the lease runs
   * out by itself).
   */
  async release(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.controller.signal.aborted) return;
    this.finish(new LeaseLostError(`lease on "${this.key}" (token ${this.token}) was released`));
    const { reply } = this.owner.request('release', this.key, this.token, 0, 0, options.timeoutMs ?? this.owner.timeoutMs);
    await reply;
  }

  /**
   * Renews every TTL/3 until the returned function is called or the lease ends. A failed
   * renewal is retried at the next tick; the deadline alone decides when the lease is lost.
   */
  keepRenewed(): () => void {
    const every = Math.max(1, Math.floor(this.ttlMs / 3));
    const interval = setInterval(() => {
      if (!this.valid) return clearInterval(interval);
      this.renew().catch(() => {});
    }, every);
    const stop = () => clearInterval(interval);
    this.signal.addEventListener('abort', stop, { once: true });
    return stop;
  }

  /** The client is closing: the lease is lost to this process. */
  abandon(reason: LeaseLostError): void {
    this.lose(reason);
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    const wait = this.deadline - performance.now();
    this.timer = setTimeout(() => this.onDeadline(), Math.max(0, wait));
  }

  private onDeadline(): void {
    this.timer = null;
    if (this.controller.signal.aborted) return;
    const late = this.deadline - performance.now();
    // Timers can fire a hair early; the deadline itself is exact.
    if (late > 0) return void (this.timer = setTimeout(() => this.onDeadline(), late));
    this.lose(new LeaseLostError(`lease on "${this.key}" (token ${this.token}) ran out: no renewal confirmed by its deadline`));
  }

  private lose(reason: LeaseLostError): void {
    if (this.controller.signal.aborted) return;
    this.lostBeforeRelease = reason;
    this.finish(reason);
  }

  private finish(reason: LeaseLostError): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.deadline = Math.min(this.deadline, performance.now());
    this.controller.abort(reason);
  }

  private assertValid(): void {
    if (this.valid) return;
    throw this.lostBeforeRelease ?? new LeaseLostError(`lease on "${this.key}" (token ${this.token}) is no longer held`);
  }
}
