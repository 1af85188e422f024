import { LimitExceededError } from '@capsync/core';

/** The flag (and metric label) of the cap on leases per identity. */
export const MAX_LEASES_LIMIT = 'max-leases-per-identity';

interface Held {
  token: number;
  /** Monotonic deadline (performance.now()): past it the lease counts no more. */
  expiresAt: number;
}

/**
 * Counts the leases each identity holds through this relay's lock service, to cap them
 * (`maxLeasesPerIdentity`). An acquire in flight counts as a lease from when it is admitted,
 * so a burst of concurrent acquires cannot slip past the cap before the first is granted.
 *
 * It mirrors what the service answered, not the backend's state: a lease counts until its
 * release is answered, its renewal is refused, or its deadline passes (so the count needs no
 * expiry event, which a forwarding backend never emits; `expired` events only free memory
 * sooner). Per relay: with etcd or a forwarding relay, each relay counts what passed through
 * it (the lock authority of a forwarded mesh also counts every identity's leases it grants).
 */
export class LeaseQuota {
  private readonly held = new Map<string, Map<string, Held>>();
  /** Which identity a key's counted lease is of (a key has one lease at a time). */
  private readonly ownerOfKey = new Map<string, string>();
  private readonly inFlight = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(readonly max: number) {
    // Leases that ran out without an event (forwarded) are forgotten at least this often.
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  /**
   * Admits one acquire by `identity`, or throws LimitExceededError when it holds (or is
   * acquiring) `max` leases already. Each admission is settled once: `granted` or `withdrawn`.
   */
  admit(identity: string): void {
    const count = this.prune(identity) + (this.inFlight.get(identity) ?? 0);
    if (count >= this.max) {
      throw new LimitExceededError(
        MAX_LEASES_LIMIT,
        `${MAX_LEASES_LIMIT} (${this.max}) reached: this identity holds or is acquiring ${count} leases; release one first`,
      );
    }
    this.inFlight.set(identity, (this.inFlight.get(identity) ?? 0) + 1);
  }

  /** An admitted acquire was granted. */
  granted(identity: string, key: string, token: number, ttlMs: number): void {
    this.withdrawn(identity);
    let leases = this.held.get(identity);
    if (!leases) this.held.set(identity, (leases = new Map()));
    // A key has one lease at a time: an earlier one still counted (ran out unseen) is over.
    const previous = this.ownerOfKey.get(key);
    if (previous !== undefined && previous !== identity) this.forget(previous, key);
    leases.set(key, { token, expiresAt: performance.now() + ttlMs });
    this.ownerOfKey.set(key, identity);
  }

  /** An admitted acquire ended without a grant. */
  withdrawn(identity: string): void {
    const n = (this.inFlight.get(identity) ?? 0) - 1;
    if (n > 0) this.inFlight.set(identity, n);
    else this.inFlight.delete(identity);
  }

  renewed(identity: string, key: string, token: number, ttlMs: number): void {
    const lease = this.held.get(identity)?.get(key);
    if (lease?.token === token) lease.expiresAt = performance.now() + ttlMs;
  }

  /** The lease is over (released, refused a renewal, expired). Unknown leases are ignored. */
  ended(identity: string, key: string, token: number): void {
    if (this.held.get(identity)?.get(key)?.token === token) this.forget(identity, key);
  }

  /** A lease ended, identity unknown (the backend's `expired` event). */
  expired(key: string, token: number): void {
    const identity = this.ownerOfKey.get(key);
    if (identity !== undefined) this.ended(identity, key, token);
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  /** Drops the identity's leases past their deadline; returns how many it still holds. */
  private prune(identity: string): number {
    const leases = this.held.get(identity);
    if (!leases) return 0;
    const now = performance.now();
    for (const [key, lease] of leases) if (lease.expiresAt <= now) this.forget(identity, key);
    return leases.size;
  }

  private forget(identity: string, key: string): void {
    const leases = this.held.get(identity);
    if (!leases) return;
    leases.delete(key);
    if (this.ownerOfKey.get(key) === identity) this.ownerOfKey.delete(key);
    if (leases.size === 0) this.held.delete(identity);
  }

  private sweep(): void {
    for (const identity of Array.from(this.held.keys())) this.prune(identity);
  }
}
