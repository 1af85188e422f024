import { LimitExceededError } from '@capsync/core';

/** The flag (and metric label) of the cap on leases per identity. */
export const MAX_LEASES_LIMIT = 'max-leases-per-identity';
/** The flag (and metric label) of the cap on leases per client address (identities without a token `sub`). */
export const MAX_ADDRESS_LEASES_LIMIT = 'max-leases-per-address';

/**
 * What one acquire counts against: its identity (see ConnectionIdentity), and the client
 * address it came from when that identity costs nothing to make (an owner key, a connection:
 * anyone can make any number of them), so that one client cannot multiply its quota by
 * opening connections or announcing fresh keys. A token's `sub` is issued by whoever holds
 * the secret, so it has no address (many users may share one behind a NAT); neither has a
 * request a peer relay forwards (the forwarding relay counted its client's address).
 */
export interface LeaseHolder {
  identity: string;
  address?: string | undefined;
}

interface Counted {
  key: string;
  token: number;
  identity: string;
  address: string | undefined;
  /** Monotonic deadline (performance.now()): past it the lease counts no more. */
  expiresAt: number;
}

/** The leases counted against each name (an identity, or an address) and the acquires in flight. */
class Tally {
  readonly leases = new Map<string, Map<string, Counted>>();
  /**
   * No lease of the name runs out before this (a lower bound: renewals and leases forgotten
   * through another tally only make the truth later), so an admission looks for expired
   * leases only when one may be: O(1) per request while a name sits at its cap.
   */
  readonly soonest = new Map<string, number>();
  private readonly inFlight = new Map<string, number>();

  constructor(
    readonly max: number,
    private readonly refusal: (count: number) => LimitExceededError,
  ) {}

  /** Throws the refusal when `name` holds or is acquiring `max` leases (`live` = its unexpired leases). */
  check(name: string, live: number): void {
    const count = live + (this.inFlight.get(name) ?? 0);
    if (count >= this.max) throw this.refusal(count);
  }

  begin(name: string): void {
    this.inFlight.set(name, (this.inFlight.get(name) ?? 0) + 1);
  }

  finish(name: string): void {
    const n = (this.inFlight.get(name) ?? 0) - 1;
    if (n > 0) this.inFlight.set(name, n);
    else this.inFlight.delete(name);
  }

  add(name: string, lease: Counted): void {
    let leases = this.leases.get(name);
    if (!leases) this.leases.set(name, (leases = new Map()));
    leases.set(lease.key, lease);
    this.expiring(name, lease.expiresAt);
  }

  /** A lease of `name` now runs out at `at` (added, or renewed). */
  expiring(name: string, at: number): void {
    this.soonest.set(name, Math.min(this.soonest.get(name) ?? Infinity, at));
  }

  remove(name: string, lease: Counted): void {
    const leases = this.leases.get(name);
    if (leases?.get(lease.key) !== lease) return;
    leases.delete(lease.key);
    if (leases.size > 0) return;
    this.leases.delete(name);
    this.soonest.delete(name);
  }
}

/**
 * Counts the leases held through this relay's lock service, to cap them per identity
 * (`maxLeasesPerIdentity`) and, for identities that are not a token's `sub`, per client
 * address (`maxLeasesPerAddress`). An acquire in flight counts as a lease from when it is
 * admitted, so a burst of concurrent acquires cannot slip past a cap before the first is
 * granted.
 *
 * It mirrors what the service answered, not the backend's state: a lease counts until its
 * release is answered, its renewal is refused, or its deadline passes (so the count needs no
 * expiry event, which a forwarding backend never emits; `expired` events only free memory
 * sooner). A lease stays counted against the address it was acquired from, even when the
 * same identity renews or releases it from another. Per relay: with etcd or a forwarding
 * relay, each relay counts what passed through it (the lock authority of a forwarded mesh
 * also counts every identity's leases it grants; addresses are counted by the relay the
 * client is connected to).
 */
export class LeaseQuota {
  private readonly identities: Tally;
  private readonly addresses: Tally;
  /** The counted lease of each lock key (a key has one lease at a time). */
  private readonly byKey = new Map<string, Counted>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(max: number, maxPerAddress = Number.MAX_SAFE_INTEGER) {
    this.identities = new Tally(
      max,
      (count) => new LimitExceededError(MAX_LEASES_LIMIT, `${MAX_LEASES_LIMIT} (${max}) reached: this identity holds or is acquiring ${count} leases; release one first`),
    );
    this.addresses = new Tally(
      maxPerAddress,
      (count) =>
        new LimitExceededError(
          MAX_ADDRESS_LEASES_LIMIT,
          `${MAX_ADDRESS_LEASES_LIMIT} (${maxPerAddress}) reached: clients from this address without a token subject hold or are acquiring ${count} leases; release one first`,
        ),
    );
    // Leases that ran out without an event (forwarded) are forgotten at least this often.
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  /**
   * Admits one acquire by `holder`, or throws LimitExceededError (`limit` names the cap) when
   * its identity, or its address, holds (or is acquiring) as many leases as its cap allows.
   * Each admission is settled once: `granted` or `withdrawn`.
   */
  admit(holder: LeaseHolder): void {
    this.identities.check(holder.identity, this.prune(this.identities, holder.identity));
    if (holder.address !== undefined) this.addresses.check(holder.address, this.prune(this.addresses, holder.address));
    this.identities.begin(holder.identity);
    if (holder.address !== undefined) this.addresses.begin(holder.address);
  }

  /** An admitted acquire was granted. */
  granted(holder: LeaseHolder, key: string, token: number, ttlMs: number): void {
    this.withdrawn(holder);
    // A key has one lease at a time: an earlier one still counted (ran out unseen) is over.
    const previous = this.byKey.get(key);
    if (previous) this.forget(previous);
    const lease: Counted = { key, token, identity: holder.identity, address: holder.address, expiresAt: performance.now() + ttlMs };
    this.byKey.set(key, lease);
    this.identities.add(holder.identity, lease);
    if (holder.address !== undefined) this.addresses.add(holder.address, lease);
  }

  /** An admitted acquire ended without a grant. */
  withdrawn(holder: LeaseHolder): void {
    this.identities.finish(holder.identity);
    if (holder.address !== undefined) this.addresses.finish(holder.address);
  }

  renewed(identity: string, key: string, token: number, ttlMs: number): void {
    const lease = this.lease(identity, key, token);
    if (!lease) return;
    lease.expiresAt = performance.now() + ttlMs;
    this.identities.expiring(lease.identity, lease.expiresAt);
    if (lease.address !== undefined) this.addresses.expiring(lease.address, lease.expiresAt);
  }

  /** The lease is over (released, refused a renewal, expired). Unknown leases are ignored. */
  ended(identity: string, key: string, token: number): void {
    const lease = this.lease(identity, key, token);
    if (lease) this.forget(lease);
  }

  /** A lease ended, identity unknown (the backend's `expired` event). */
  expired(key: string, token: number): void {
    const lease = this.byKey.get(key);
    if (lease?.token === token) this.forget(lease);
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private lease(identity: string, key: string, token: number): Counted | undefined {
    const lease = this.byKey.get(key);
    return lease?.identity === identity && lease.token === token ? lease : undefined;
  }

  /** Drops the leases of `name` past their deadline; returns how many it still holds. */
  private prune(tally: Tally, name: string): number {
    const leases = tally.leases.get(name);
    if (!leases) return 0;
    const now = performance.now();
    if ((tally.soonest.get(name) ?? Infinity) > now) return leases.size;
    let soonest = Infinity;
    for (const lease of Array.from(leases.values())) {
      if (lease.expiresAt <= now) this.forget(lease);
      else soonest = Math.min(soonest, lease.expiresAt);
    }
    const left = tally.leases.get(name);
    if (!left) return 0;
    tally.soonest.set(name, soonest);
    return left.size;
  }

  private forget(lease: Counted): void {
    if (this.byKey.get(lease.key) === lease) this.byKey.delete(lease.key);
    this.identities.remove(lease.identity, lease);
    if (lease.address !== undefined) this.addresses.remove(lease.address, lease);
  }

  private sweep(): void {
    const now = performance.now();
    for (const lease of Array.from(this.byKey.values())) if (lease.expiresAt <= now) this.forget(lease);
  }
}
