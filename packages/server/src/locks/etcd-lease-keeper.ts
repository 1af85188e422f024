/**
 * Keeping the leases this relay holds in etcd: each has a local deadline on the monotonic
 * clock, `ttlMs` after its grant (or renewal) started, and its etcd lease (TTL:
 * `etcdTtlSeconds`) is kept alive every third of its TTL until then. At the deadline the lease
 * ends here: `expired` is reported, keepalives stop and the etcd lease is revoked, which
 * deletes the lock if (and only if) it is still this grant's (a lease carries only the key its
 * grant created). A relay that dies stops the keepalives: etcd then ends the lease by itself
 * within its TTL. The etcd lease's clock starts after the local one and it is at least as long
 * (renewals extend both), so etcd does not drop a key before the relay's deadline.
 */
import type { Logger } from '../logger.js';
import type { EtcdCalls } from './etcd-fault-handling.js';
import { lost, type EtcdLockKeys } from './etcd-lock-keys.js';

/** A lease this relay holds (etcd has its lock, attached to `leaseId`). */
export interface Holder {
  token: number;
  owner: string;
  /** The etcd lease the lock is attached to. */
  leaseId: string;
  leaseTtlS: number;
  /** Local deadline, monotonic (performance.now()). */
  expiresAt: number;
  expiryTimer: NodeJS.Timeout | undefined;
  keepAliveTimer: NodeJS.Timeout | undefined;
}

/** Where a key's holder is kept (the backend's per-key state). */
export interface HolderSlot {
  holder: Holder | null;
}

export interface LeaseKeeperOptions<S extends HolderSlot> {
  etcd: EtcdCalls;
  keys: EtcdLockKeys;
  opTimeoutMs: number;
  logger: Logger | undefined;
  /** A lease ran out (locally, or in etcd): the backend's `expired` event. */
  expired(key: string, token: number): void;
  /** The key's holder ended here: the next waiter may try. */
  freed(key: string, slot: S): void;
}

export class LeaseKeeper<S extends HolderSlot> {
  private closed = false;

  constructor(private readonly o: LeaseKeeperOptions<S>) {}

  /** `holder` now holds the key: its deadline and keepalives start. */
  hold(key: string, slot: S, holder: Holder): void {
    slot.holder = holder;
    this.armExpiry(key, slot, holder);
    this.armKeepAlive(key, slot, holder);
  }

  /** (Re)arms the holder's deadline timer, at `holder.expiresAt`. */
  armExpiry(key: string, slot: S, holder: Holder): void {
    clearTimeout(holder.expiryTimer);
    holder.expiryTimer = setTimeout(() => this.onDeadline(key, slot, holder), Math.max(0, holder.expiresAt - performance.now()));
  }

  /** Ends a lease that ran out (locally, or in etcd): reports it, then cleans up in etcd. */
  expire(key: string, slot: S, holder: Holder, why: string): void {
    this.endLocally(slot, holder);
    this.o.logger?.debug({ key, token: holder.token, why }, 'lock lease expired');
    this.o.expired(key, holder.token);
    // Revoking the lease deletes the key if it is still this grant's. If etcd cannot be
    // reached, the lease is no longer kept alive and ends there by itself.
    void this.o.keys
      .revoke(holder.leaseId, `ending the expired lease on "${key}"`)
      .catch((err: unknown) => this.o.logger?.warn({ err, key, token: holder.token }, 'could not end an expired lock lease in etcd'))
      .finally(() => this.o.freed(key, slot));
  }

  /** The lease ends here (its timers stop); etcd is the caller's business. */
  endLocally(slot: S, holder: Holder): void {
    this.stopTimers(holder);
    if (slot.holder === holder) slot.holder = null;
  }

  stopTimers(holder: Holder): void {
    clearTimeout(holder.expiryTimer);
    clearTimeout(holder.keepAliveTimer);
    holder.expiryTimer = undefined;
    holder.keepAliveTimer = undefined;
  }

  /** No more keepalives (the backend is closing; its holders' timers are stopped by it). */
  close(): void {
    this.closed = true;
  }

  /**
   * Attaches the held lock to a new etcd lease of `ttlS` seconds (renewals longer than the
   * current lease). When etcd does not confirm in time, the lease is ended here: the key may
   * be on either etcd lease, and this relay can no longer say how long etcd keeps it.
   */
  async moveToLongerLease(key: string, slot: S, holder: Holder, ttlS: number, deadline: number): Promise<void> {
    const { keys } = this.o;
    const oldLease = holder.leaseId;
    const newLease = await keys.grantLease(ttlS, deadline, `renewing "${key}"`);
    let moved: boolean;
    try {
      moved = await keys.moveToLease(key, holder.token, holder.owner, newLease, deadline);
    } catch (err) {
      if (slot.holder === holder) {
        this.endLocally(slot, holder);
        this.o.freed(key, slot);
      }
      for (const lease of [oldLease, newLease]) keys.dropLease(lease, `ending "${key}"`);
      throw err;
    }
    if (!moved || slot.holder !== holder) {
      keys.dropLease(newLease, `dropping an unused lease for "${key}"`);
      if (slot.holder === holder) this.expire(key, slot, holder, 'key gone from etcd');
      throw lost(key);
    }
    holder.leaseId = newLease;
    holder.leaseTtlS = ttlS;
    this.armKeepAlive(key, slot, holder);
    keys.dropLease(oldLease, `dropping the previous lease of "${key}"`);
  }

  private onDeadline(key: string, slot: S, holder: Holder): void {
    if (slot.holder !== holder) return;
    // Timers may fire a little early; never end a lease before its deadline.
    const early = holder.expiresAt - performance.now();
    if (early > 0) {
      holder.expiryTimer = setTimeout(() => this.onDeadline(key, slot, holder), early);
      return;
    }
    this.expire(key, slot, holder, 'not renewed');
  }

  /** Keeps the etcd lease alive every third of its TTL while the local lease lives. */
  private armKeepAlive(key: string, slot: S, holder: Holder): void {
    clearTimeout(holder.keepAliveTimer);
    const everyMs = (holder.leaseTtlS * 1000) / 3;
    holder.keepAliveTimer = setTimeout(() => {
      if (slot.holder !== holder || this.closed) return;
      const leaseId = holder.leaseId;
      this.o.etcd.keepAlive(leaseId, performance.now() + Math.min(this.o.opTimeoutMs, everyMs), `keeping "${key}" alive`).then(
        (ttl) => {
          if (slot.holder !== holder || holder.leaseId !== leaseId) return;
          if (ttl <= 0) this.expire(key, slot, holder, 'etcd lease gone');
          else this.armKeepAlive(key, slot, holder);
        },
        (err: unknown) => {
          // Two more tries before etcd's TTL runs out; the local deadline decides anyway.
          this.o.logger?.warn({ err, key, token: holder.token }, 'etcd lease keepalive failed');
          if (slot.holder === holder) this.armKeepAlive(key, slot, holder);
        },
      );
    }, everyMs);
  }
}
