/**
 * The etcd lock backend: the `LockBackend` that turns acquire / renew / release / check into
 * etcd keys, leases and watches. How each etcd call is bounded and retried when members fail
 * is etcd-fault-handling.ts's job (`EtcdCalls`); which calls to make, and when, is this file's
 * and its parts' (see the class comment).
 */
import { EventEmitter } from 'node:events';
import { CapsyncError } from '@capsync/core';
import type { Logger } from '../logger.js';
import { notOwner, shuttingDown, staleToken, withdrawn, type AcquireRequest, type LockBackend, type LockBackendEvents, type LockGrant } from './lock-backend.js';
import { EtcdCalls } from './etcd-fault-handling.js';
import { EtcdLockKeys, etcdTtlSeconds, lost } from './etcd-lock-keys.js';
import { LeaseKeeper } from './etcd-lease-keeper.js';
import { AcquireQueues, type KeyState } from './etcd-acquire-queue.js';

export { etcdTtlSeconds, MIN_ETCD_TTL_S } from './etcd-lock-keys.js';

export interface EtcdLockBackendOptions {
  /** etcd client URLs (`http://host:2379`); give all members so a majority stays reachable. */
  endpoints: string[];
  /** Namespace of the lock keys in etcd. Default `capsync/locks/`. */
  prefix?: string;
  /**
   * Budget of one operation against etcd (every retry included): past it the operation
   * rejects with `UnavailableError`. Default 2000 ms.
   */
  opTimeoutMs?: number;
  logger?: Logger;
}

/**
 * The lock authority on an etcd cluster: several relays share it, and a relay that dies
 * leaves nothing behind that outlives its etcd leases.
 *
 * - A lock is the key `prefix + key`, created by a transaction only if it does not exist and
 *   attached to an etcd lease of its own. Its fencing token is the key's create revision: etcd
 *   revisions only grow, so tokens strictly increase per key, across relays and restarts.
 *   The highest token ever granted for a key is also kept under `prefix + "\0last/" + key`
 *   (no lease; it outlives the lock key), so `check` can tell a stale token from a lost one
 *   after the lock key is gone. Lock keys cannot collide with it: lock service keys contain
 *   no control characters.
 * - The relay keeps its own deadline per lease, `ttlMs` after the grant (or renewal) started,
 *   on the monotonic clock, and keeps the etcd lease (TTL: `etcdTtlSeconds`) alive every
 *   third of its TTL until then. At the deadline it emits `expired`, stops the keepalives and
 *   revokes the etcd lease. A lease carries only the key its grant created, so revoking it
 *   deletes that key if (and only if) it is still this grant's: the compare-and-delete in one
 *   round, and safe to repeat. A relay that dies stops the keepalives: etcd then ends the
 *   lease by itself within its TTL. The etcd lease's clock starts after the local one and it
 *   is at least as long (renewals extend both), so etcd does not drop a key before the
 *   relay's deadline.
 * - `check` of a lease granted by another relay trusts etcd: it is current while etcd has its
 *   key (its relay deletes it at its deadline, or etcd at the end of the TTL).
 * - The lock key's value is the identity that acquired the lease (`AcquireRequest.owner`):
 *   every relay compares it on release and check (a transaction comparing the value, or the
 *   value read with the key), and the holding relay on renew, so a lease is its owner's on
 *   every relay of the mesh.
 * - Waiters: this relay serves its own waiters for a key first come, first served (only the
 *   head of the queue tries to take the key, and it watches the key for its deletion).
 *   Between relays there is no queue: whichever relay's transaction lands first wins.
 * - The pieces: the keys and transactions in etcd-lock-keys.ts, keeping held leases alive in
 *   etcd-lease-keeper.ts, waiters and watches in etcd-acquire-queue.ts, deadline-bounded etcd
 *   calls in etcd-fault-handling.ts; this class answers the LockBackend calls with them.
 * - Every etcd call is bounded: an operation that cannot complete within `opTimeoutMs`
 *   (retries on other members included) rejects with `UnavailableError`. Reads are
 *   linearizable (they go through the etcd leader and a quorum), so a relay cut off from
 *   the majority answers `unavailable`, never from a stale view, and never grants.
 */
export class EtcdLockBackend extends EventEmitter<LockBackendEvents> implements LockBackend {
  readonly kind = 'etcd' as const;
  readonly prefix: string;
  readonly opTimeoutMs: number;
  /** The etcd3 client, behind calls bounded by a deadline (see EtcdCalls). */
  private readonly etcd: EtcdCalls;
  private readonly keys: EtcdLockKeys;
  private readonly keeper: LeaseKeeper<KeyState>;
  private readonly queues: AcquireQueues;
  private readonly logger: Logger | undefined;
  private closed = false;

  constructor(options: EtcdLockBackendOptions) {
    super();
    const { endpoints } = options;
    if (endpoints.length === 0) throw new CapsyncError('internal', 'etcd lock backend: no endpoints given');
    for (const e of endpoints) {
      if (!/^https?:\/\/[^/]+/.test(e)) throw new CapsyncError('internal', `etcd lock backend: "${e}" is not an http(s) URL`);
    }
    this.prefix = options.prefix ?? 'capsync/locks/';
    if (this.prefix.length === 0) throw new CapsyncError('internal', 'etcd lock backend: empty key prefix');
    this.opTimeoutMs = options.opTimeoutMs ?? 2_000;
    if (!(this.opTimeoutMs > 0)) throw new CapsyncError('internal', 'etcd lock backend: opTimeoutMs must be positive');
    this.logger = options.logger;
    this.etcd = new EtcdCalls({ endpoints, opTimeoutMs: this.opTimeoutMs, logger: this.logger });
    this.keys = new EtcdLockKeys(this.etcd, this.prefix, this.opTimeoutMs);
    this.keeper = new LeaseKeeper<KeyState>({
      etcd: this.etcd,
      keys: this.keys,
      opTimeoutMs: this.opTimeoutMs,
      logger: this.logger,
      expired: (key, token) => this.emit('expired', key, token),
      freed: (key, st) => this.queues.pump(key, st),
    });
    this.queues = new AcquireQueues({ keys: this.keys, keeper: this.keeper, logger: this.logger });
  }

  /** Creates the backend; etcd being unreachable now is logged, not fatal (calls answer unavailable). */
  static async connect(options: EtcdLockBackendOptions): Promise<EtcdLockBackend> {
    const backend = new EtcdLockBackend(options);
    void backend.probe();
    return backend;
  }

  acquire(request: AcquireRequest): Promise<LockGrant> {
    if (this.closed) return Promise.reject(shuttingDown());
    if (request.signal?.aborted) return Promise.reject(withdrawn());
    return this.queues.acquire(request);
  }

  async renew(key: string, token: number, ttlMs: number, owner: string): Promise<LockGrant> {
    if (this.closed) throw shuttingDown();
    const started = performance.now();
    const deadline = started + this.opTimeoutMs;
    const st = this.queues.get(key);
    const holder = st?.holder;
    // Only the relay that holds a lease keeps it alive, so only it can extend it.
    if (!st || !holder || holder.token !== token || started >= holder.expiresAt) throw lost(key);
    if (holder.owner !== owner) throw notOwner(key);
    const wantTtlS = etcdTtlSeconds(ttlMs);
    if (wantTtlS > holder.leaseTtlS) {
      // The etcd lease must outlast the new deadline even if no keepalive gets through: move
      // the key to a longer etcd lease (a put keeps its create revision, so the token).
      await this.keeper.moveToLongerLease(key, st, holder, wantTtlS, deadline);
    } else {
      // A keepalive alone is answered by the etcd leader without a quorum (a leader that was
      // just cut off still answers until it steps down); the linearizable read alongside it
      // makes the answer the majority's, and confirms the key is still this grant's.
      const [ttl, kv] = await Promise.all([
        this.etcd.keepAlive(holder.leaseId, deadline, `renewing "${key}"`),
        this.keys.readLock(key, deadline, `renewing "${key}"`),
      ]);
      if (ttl <= 0 || !kv || Number(kv.create_revision) !== token) {
        // etcd no longer has the lease (it ran out there) or the key: the lease is over.
        if (st.holder === holder) this.keeper.expire(key, st, holder, 'gone from etcd');
        throw lost(key);
      }
    }
    // The lease may have run out (or been released) while etcd was answering.
    if (st.holder !== holder || performance.now() >= holder.expiresAt) throw lost(key);
    holder.expiresAt = started + ttlMs;
    this.keeper.armExpiry(key, st, holder);
    return { key, token, ttlMs };
  }

  async release(key: string, token: number, owner: string): Promise<void> {
    if (this.closed) throw shuttingDown();
    const deadline = performance.now() + this.opTimeoutMs;
    const st = this.queues.get(key);
    const holder = st?.holder;
    if (st && holder && holder.token === token) {
      if (performance.now() >= holder.expiresAt) throw lost(key);
      if (holder.owner !== owner) throw notOwner(key);
      // Ended here whatever etcd answers: if the revoke does not get through, the etcd lease
      // is no longer kept alive and runs out by itself.
      this.keeper.endLocally(st, holder);
      try {
        // The lease carries exactly this key (its grant created it), so revoking it deletes
        // the key if it is still this grant's, in one round, and a retry after an unanswered
        // attempt is harmless.
        const revoked = await this.etcd.revoke(holder.leaseId, deadline, `releasing "${key}"`);
        if (!revoked) throw lost(key);
      } finally {
        this.queues.pump(key, st);
      }
      return;
    }
    if (st && token <= st.lastLocal) throw lost(key);
    // Not a lease of this relay (another relay's, or this relay's before a restart): end it in
    // etcd if it is still current there and its owner's (the key's value is the owner).
    await this.keys.deleteOwned(key, token, owner, deadline);
  }

  async check(key: string, token: number, owner: string): Promise<void> {
    if (this.closed) throw shuttingDown();
    const lock = await this.keys.read(key, performance.now() + this.opTimeoutMs);
    if (lock.current === token) {
      // The key's value is the identity that acquired it, whichever relay granted it.
      if (lock.owner !== owner) throw notOwner(key);
      const st = this.queues.get(key);
      // A lease of this relay is live until its local deadline: etcd may keep the key a little
      // longer (until the revoke lands, or its TTL if etcd is out of reach then).
      if (st?.holder?.token === token) {
        if (performance.now() < st.holder.expiresAt) return;
        throw lost(key);
      }
      if (st && token <= st.lastLocal) throw lost(key);
      // Another relay's lease (or this relay's before a restart) lives as long as etcd has its key.
      return;
    }
    if (lock.newest > token) throw staleToken(key);
    throw lost(key);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.keeper.close();
    this.queues.close();
    this.etcd.close();
  }

  /** Logs whether etcd answers a quorum read now (startup diagnostics only). */
  private async probe(): Promise<void> {
    try {
      await this.keys.probe();
      this.logger?.info({ endpoints: this.etcd.endpointCount }, 'etcd lock authority reachable');
    } catch (err) {
      if (!this.closed) this.logger?.warn({ err }, 'etcd lock authority unreachable for now; lock requests answer unavailable until it is back');
    }
  }
}
