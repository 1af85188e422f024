/**
 * The etcd lock backend: the `LockBackend` state machine that turns acquire / renew /
 * release / check into etcd keys, leases and watches, and keeps this relay's holders alive
 * and its waiters queued. How each etcd call is bounded and retried when members fail is
 * etcd-fault-handling.ts's job (`EtcdCalls`); this file decides what to ask etcd, and when.
 */
import { EventEmitter } from 'node:events';
import { CapsyncError, LeaseLostError, LockTimeoutError, StaleTokenError, UnavailableError } from '@capsync/core';
import type { IKeyValue, ITxnResponse, Watcher } from 'etcd3';
import type { Logger } from '../logger.js';
import { notOwner, shuttingDown, withdrawn, type AcquireRequest, type LockBackend, type LockBackendEvents, type LockGrant } from './lock-backend.js';
import { EtcdCalls } from './etcd-fault-handling.js';

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
 * etcd leases are whole seconds. Two is the floor: etcd itself raises shorter TTLs to its
 * minimum (1.5 election timeouts, rounded up: 2 s with the default 1 s election timeout), and
 * a 1 s lease would leave keepalives (sent every third of the TTL) about 300 ms to get through
 * before etcd deleted the key under a live holder.
 */
export const MIN_ETCD_TTL_S = 2;

/** etcd lease TTL (seconds) for a lease of `ttlMs`: never shorter than the lease itself. */
export function etcdTtlSeconds(ttlMs: number): number {
  return Math.max(Math.ceil(ttlMs / 1000), MIN_ETCD_TTL_S);
}

interface Holder {
  token: number;
  owner: string;
  /** The etcd lease the key is attached to. */
  leaseId: string;
  leaseTtlS: number;
  /** Local deadline, monotonic (performance.now()). */
  expiresAt: number;
  expiryTimer: NodeJS.Timeout | undefined;
  keepAliveTimer: NodeJS.Timeout | undefined;
}

interface Waiter {
  request: AcquireRequest;
  resolve(grant: LockGrant): void;
  reject(err: unknown): void;
  timer: NodeJS.Timeout | undefined;
  /** `waitMs` has passed: one more attempt decides between a grant and LockTimeoutError. */
  timedOut: boolean;
  onAbort: () => void;
}

interface KeyState {
  /** The lease this relay holds on the key (etcd has the key, attached to `leaseId`). */
  holder: Holder | null;
  /** This relay's requests for the key, first come first served. */
  waiters: Waiter[];
  /** A grant attempt for the head waiter is in flight. */
  attempting: boolean;
  /** The key was deleted while an attempt was in flight: try again when it returns. */
  kicked: boolean;
  /**
   * Highest token this relay granted for the key. One that is not its live holder's has
   * ended here (released or expired), and this relay no longer keeps it alive: no need to
   * ask etcd that it is not current.
   */
  lastLocal: number;
  /** Watches the key for deletion while waiters wait. */
  watcher: { watcher: Watcher; onDelete: () => void; onError: (err: Error) => void } | null;
}

type Attempt =
  | { granted: true; token: number; leaseId: string; leaseTtlS: number; started: number }
  | { granted: false; revision: number };

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
  private readonly keys = new Map<string, KeyState>();
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
  }

  /** Creates the backend; etcd being unreachable now is logged, not fatal (calls answer unavailable). */
  static async connect(options: EtcdLockBackendOptions): Promise<EtcdLockBackend> {
    const backend = new EtcdLockBackend(options);
    void backend.probe();
    return backend;
  }

  // ---- LockBackend ----

  acquire(request: AcquireRequest): Promise<LockGrant> {
    if (this.closed) return Promise.reject(shuttingDown());
    if (request.signal?.aborted) return Promise.reject(withdrawn());
    const st = this.state(request.key);
    if (request.waitMs <= 0 && (st.holder || st.waiters.length > 0)) {
      return Promise.reject(this.busy(request.key, 0));
    }
    return new Promise<LockGrant>((resolve, reject) => {
      const waiter: Waiter = {
        request,
        resolve,
        reject,
        timer: undefined,
        timedOut: false,
        onAbort: () => {
          this.dropWaiter(st, waiter);
          reject(withdrawn());
          this.pump(request.key, st);
        },
      };
      if (request.waitMs > 0) waiter.timer = setTimeout(() => this.waitOver(request.key, st, waiter), request.waitMs);
      else waiter.timedOut = true;
      request.signal?.addEventListener('abort', waiter.onAbort, { once: true });
      st.waiters.push(waiter);
      this.pump(request.key, st);
    });
  }

  async renew(key: string, token: number, ttlMs: number, owner: string): Promise<LockGrant> {
    if (this.closed) throw shuttingDown();
    const started = performance.now();
    const deadline = started + this.opTimeoutMs;
    const st = this.keys.get(key);
    const holder = st?.holder;
    // Only the relay that holds a lease keeps it alive, so only it can extend it.
    if (!st || !holder || holder.token !== token || started >= holder.expiresAt) throw lost(key);
    if (holder.owner !== owner) throw notOwner(key);
    const wantTtlS = etcdTtlSeconds(ttlMs);
    if (wantTtlS > holder.leaseTtlS) {
      // The etcd lease must outlast the new deadline even if no keepalive gets through: move
      // the key to a longer etcd lease (a put keeps its create revision, so the token).
      await this.moveToLongerLease(key, st, holder, wantTtlS, deadline);
    } else {
      // A keepalive alone is answered by the etcd leader without a quorum (a leader that was
      // just cut off still answers until it steps down); the linearizable read alongside it
      // makes the answer the majority's, and confirms the key is still this grant's.
      const [ttl, kv] = await Promise.all([
        this.etcd.keepAlive(holder.leaseId, deadline, `renewing "${key}"`),
        this.etcd.call(`renewing "${key}"`, deadline, (options) => this.etcd.client.kv.range({ key: this.lockKey(key) }, options)).then((r) => r.kvs[0]),
      ]);
      if (ttl <= 0 || !kv || Number(kv.create_revision) !== token) {
        // etcd no longer has the lease (it ran out there) or the key: the lease is over.
        if (st.holder === holder) this.expire(key, st, holder, 'gone from etcd');
        throw lost(key);
      }
    }
    // The lease may have run out (or been released) while etcd was answering.
    if (st.holder !== holder || performance.now() >= holder.expiresAt) throw lost(key);
    holder.expiresAt = started + ttlMs;
    this.armExpiry(key, st, holder);
    return { key, token, ttlMs };
  }

  async release(key: string, token: number, owner: string): Promise<void> {
    if (this.closed) throw shuttingDown();
    const deadline = performance.now() + this.opTimeoutMs;
    const st = this.keys.get(key);
    const holder = st?.holder;
    if (st && holder && holder.token === token) {
      if (performance.now() >= holder.expiresAt) throw lost(key);
      if (holder.owner !== owner) throw notOwner(key);
      // Ended here whatever etcd answers: if the revoke does not get through, the etcd lease
      // is no longer kept alive and runs out by itself.
      this.endLocally(st, holder);
      try {
        // The lease carries exactly this key (its grant created it), so revoking it deletes
        // the key if it is still this grant's, in one round, and a retry after an unanswered
        // attempt is harmless.
        const revoked = await this.etcd.revoke(holder.leaseId, deadline, `releasing "${key}"`);
        if (!revoked) throw lost(key);
      } finally {
        this.pump(key, st);
      }
      return;
    }
    if (st && token <= st.lastLocal) throw lost(key);
    // Not a lease of this relay (another relay's, or this relay's before a restart): end it in
    // etcd if it is still current there and its owner's (the key's value is the owner).
    const res = await this.etcd.call(`releasing "${key}"`, deadline, (options) =>
      this.etcd.client.kv.txn(
        {
          compare: [
            { key: this.lockKey(key), target: 'Create', result: 'Equal', create_revision: token },
            { key: this.lockKey(key), target: 'Value', result: 'Equal', value: Buffer.from(owner) },
          ],
          success: [{ request_delete_range: { key: this.lockKey(key), prev_kv: true } }],
          failure: [{ request_range: { key: this.lockKey(key) } }],
        },
        options,
      ),
    );
    if (!res.succeeded) {
      const kv = res.responses[0]?.response_range.kvs[0];
      if (kv && Number(kv.create_revision) === token) throw notOwner(key);
      throw lost(key);
    }
    const prevLease = res.responses[0]?.response_delete_range.prev_kvs[0]?.lease;
    if (prevLease && prevLease !== '0') void this.etcd.revoke(prevLease, performance.now() + this.opTimeoutMs, 'revoking a released lease').catch(() => {});
  }

  async check(key: string, token: number, owner: string): Promise<void> {
    if (this.closed) throw shuttingDown();
    const deadline = performance.now() + this.opTimeoutMs;
    // One read-only transaction: both keys at one revision, linearizable (quorum) since
    // neither range is serializable.
    const res = await this.etcd.call(`checking "${key}"`, deadline, (options) =>
      this.etcd.client.kv.txn(
        {
          success: [{ request_range: { key: this.lockKey(key) } }, { request_range: { key: this.lastKey(key) } }],
        },
        options,
      ),
    );
    const lock = res.responses[0]?.response_range.kvs[0];
    const last = res.responses[1]?.response_range.kvs[0];
    const current = lock ? Number(lock.create_revision) : 0;
    if (current === token) {
      // The key's value is the identity that acquired it, whichever relay granted it.
      if (lock!.value.toString() !== owner) throw notOwner(key);
      const st = this.keys.get(key);
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
    const newest = Math.max(current, last ? Number(last.mod_revision) : 0);
    if (newest > token) throw new StaleTokenError(`the token given for "${key}" is stale: a newer lease was granted since`);
    throw lost(key);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const st of this.keys.values()) {
      if (st.holder) this.stopTimers(st.holder);
      for (const w of st.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.request.signal?.removeEventListener('abort', w.onAbort);
        w.reject(shuttingDown());
      }
      this.unwatch(st);
    }
    this.keys.clear();
    this.etcd.close();
  }

  // ---- acquiring ----

  private state(key: string): KeyState {
    let st = this.keys.get(key);
    if (!st) this.keys.set(key, (st = { holder: null, waiters: [], attempting: false, kicked: false, lastLocal: 0, watcher: null }));
    return st;
  }

  /** Forgets a key nothing refers to any more (keys this relay granted are remembered, like the embedded backend's). */
  private gc(key: string, st: KeyState): void {
    if (st.lastLocal > 0 || st.holder || st.waiters.length > 0 || st.attempting || st.watcher) return;
    if (this.keys.get(key) === st) this.keys.delete(key);
  }

  /**
   * Moves the queue of `key` along: the head waiter tries to take the key unless this relay
   * holds it (its release or expiry calls this again) or an attempt is in flight.
   */
  private pump(key: string, st: KeyState): void {
    if (this.closed || st.attempting) return;
    const head = st.waiters[0];
    if (!head) {
      this.unwatch(st);
      this.gc(key, st);
      return;
    }
    if (st.holder) {
      if (head.timedOut) {
        this.dropWaiter(st, head);
        head.reject(this.busy(key, head.request.waitMs));
        this.pump(key, st);
      }
      return;
    }
    st.attempting = true;
    st.kicked = false;
    this.attempt(head.request).then(
      (outcome) => {
        st.attempting = false;
        const waiting = st.waiters[0] === head;
        if (outcome.granted) {
          if (!waiting || this.closed) {
            // Nobody will learn of this grant (withdrawn, or shutting down): end it now.
            void this.etcd.revoke(outcome.leaseId, performance.now() + this.opTimeoutMs, `ending an unclaimed grant of "${key}"`).catch(() => {});
            if (!this.closed) this.pump(key, st);
            return;
          }
          this.dropWaiter(st, head);
          const { token, leaseId, leaseTtlS, started } = outcome;
          st.lastLocal = Math.max(st.lastLocal, token);
          this.hold(key, st, { token, owner: head.request.owner, leaseId, leaseTtlS, expiresAt: started + head.request.ttlMs, expiryTimer: undefined, keepAliveTimer: undefined });
          // Counted from receipt (the LockGrant contract): a waited grant runs from `started`.
          const from = head.request.receivedAt ?? started;
          head.resolve({ key, token, ttlMs: head.request.ttlMs + Math.max(0, Math.floor(started - from)) });
          this.pump(key, st);
          return;
        }
        if (waiting && head.timedOut) {
          this.dropWaiter(st, head);
          head.reject(this.busy(key, head.request.waitMs));
          this.pump(key, st);
          return;
        }
        if (!waiting || st.kicked) {
          this.pump(key, st);
          return;
        }
        // Wait for the holder's key to go: any deletion after the revision we saw it at.
        this.watch(key, st, outcome.revision + 1);
      },
      (err: unknown) => {
        st.attempting = false;
        if (st.waiters[0] === head) {
          this.dropWaiter(st, head);
          head.reject(err);
        }
        this.pump(key, st);
      },
    );
  }

  /**
   * One try at taking the key: grant an etcd lease, then create the key on it if the key does
   * not exist. Rejects with UnavailableError when etcd does not answer within opTimeoutMs.
   */
  private async attempt(request: AcquireRequest): Promise<Attempt> {
    const { key, ttlMs, owner } = request;
    const started = performance.now();
    const deadline = started + this.opTimeoutMs;
    const leaseTtlS = etcdTtlSeconds(ttlMs);
    const granted = await this.etcd.call(`acquiring "${key}"`, deadline, (options) => this.etcd.client.leaseClient.leaseGrant({ TTL: leaseTtlS }, options));
    const leaseId = granted.ID;
    if (request.signal?.aborted || this.closed) {
      // Withdrawn while the lease was being granted: do not take the key for nobody.
      void this.etcd.revoke(leaseId, performance.now() + this.opTimeoutMs, `dropping an unused lease for "${key}"`).catch(() => {});
      throw withdrawn();
    }
    let res: ITxnResponse;
    try {
      res = await this.etcd.call(`acquiring "${key}"`, deadline, (options) =>
        this.etcd.client.kv.txn(
          {
            compare: [{ key: this.lockKey(key), target: 'Create', result: 'Equal', create_revision: 0 }],
            success: [
              { request_put: { key: this.lockKey(key), value: Buffer.from(owner), lease: leaseId } },
              { request_put: { key: this.lastKey(key), value: Buffer.from(owner) } },
            ],
            failure: [{ request_range: { key: this.lockKey(key) } }],
          },
          options,
        ),
      );
    } catch (err) {
      // The put may have committed unseen: revoking the lease deletes the key with it.
      void this.etcd.revoke(leaseId, performance.now() + this.opTimeoutMs, `withdrawing an attempt on "${key}"`).catch(() => {});
      throw err;
    }
    if (res.succeeded) return { granted: true, token: Number(res.header.revision), leaseId, leaseTtlS, started };
    const holder: IKeyValue | undefined = res.responses[0]?.response_range.kvs[0];
    // A retry after an attempt whose answer was lost finds the key on our own lease: ours.
    if (holder && holder.lease === leaseId) return { granted: true, token: Number(holder.create_revision), leaseId, leaseTtlS, started };
    void this.etcd.revoke(leaseId, performance.now() + this.opTimeoutMs, `dropping an unused lease for "${key}"`).catch(() => {});
    return { granted: false, revision: Number(res.header.revision) };
  }

  /** `waitMs` passed: the head waiter gets one last attempt (it may be in flight), others give up. */
  private waitOver(key: string, st: KeyState, waiter: Waiter): void {
    waiter.timedOut = true;
    if (st.waiters[0] === waiter) {
      this.pump(key, st);
      return;
    }
    this.dropWaiter(st, waiter);
    waiter.reject(this.busy(key, waiter.request.waitMs));
  }

  private kick(key: string, st: KeyState): void {
    if (st.attempting) st.kicked = true;
    else this.pump(key, st);
  }

  private watch(key: string, st: KeyState, fromRevision: number): void {
    if (st.watcher || this.closed) return;
    const watcher = this.etcd.client.watch().key(this.lockKey(key)).only('delete').startRevision(String(fromRevision)).watcher();
    const onDelete = () => this.kick(key, st);
    const onError = (err: Error) => {
      // E.g. the revision was compacted: a fresh attempt sees the key anew and watches again.
      this.logger?.warn({ err, key }, 'etcd watch on a lock failed');
      this.unwatch(st);
      this.kick(key, st);
    };
    watcher.on('delete', onDelete);
    watcher.on('error', onError);
    st.watcher = { watcher, onDelete, onError };
  }

  private unwatch(st: KeyState): void {
    const w = st.watcher;
    if (!w) return;
    st.watcher = null;
    w.watcher.off('delete', w.onDelete);
    w.watcher.off('error', w.onError);
    // An 'error' nobody listens to would be thrown; the cancellation itself may never be
    // answered while etcd is unreachable, and nobody waits for it.
    w.watcher.on('error', () => {});
    void w.watcher.cancel().catch(() => {});
  }

  private dropWaiter(st: KeyState, waiter: Waiter): void {
    const i = st.waiters.indexOf(waiter);
    if (i >= 0) st.waiters.splice(i, 1);
    clearTimeout(waiter.timer);
    waiter.request.signal?.removeEventListener('abort', waiter.onAbort);
  }

  private busy(key: string, waitedMs: number): LockTimeoutError {
    // Never the holder's token: it is not the asker's to know.
    return new LockTimeoutError(`lock "${key}" is held; waited ${waitedMs} ms`);
  }

  // ---- holding ----

  private hold(key: string, st: KeyState, holder: Holder): void {
    st.holder = holder;
    this.armExpiry(key, st, holder);
    this.armKeepAlive(key, st, holder);
  }

  private armExpiry(key: string, st: KeyState, holder: Holder): void {
    clearTimeout(holder.expiryTimer);
    holder.expiryTimer = setTimeout(() => this.onDeadline(key, st, holder), Math.max(0, holder.expiresAt - performance.now()));
  }

  private onDeadline(key: string, st: KeyState, holder: Holder): void {
    if (st.holder !== holder) return;
    // Timers may fire a little early; never end a lease before its deadline.
    const early = holder.expiresAt - performance.now();
    if (early > 0) {
      holder.expiryTimer = setTimeout(() => this.onDeadline(key, st, holder), early);
      return;
    }
    this.expire(key, st, holder, 'not renewed');
  }

  /** Ends a lease that ran out (locally, or in etcd): emits `expired`, then cleans up in etcd. */
  private expire(key: string, st: KeyState, holder: Holder, why: string): void {
    this.endLocally(st, holder);
    this.logger?.debug({ key, token: holder.token, why }, 'lock lease expired');
    this.emit('expired', key, holder.token);
    // Revoking the lease deletes the key if it is still this grant's. If etcd cannot be
    // reached, the lease is no longer kept alive and ends there by itself.
    void this.etcd.revoke(holder.leaseId, performance.now() + this.opTimeoutMs, `ending the expired lease on "${key}"`)
      .catch((err: unknown) => this.logger?.warn({ err, key, token: holder.token }, 'could not end an expired lock lease in etcd'))
      .finally(() => this.pump(key, st));
  }

  private endLocally(st: KeyState, holder: Holder): void {
    this.stopTimers(holder);
    if (st.holder === holder) st.holder = null;
  }

  private stopTimers(holder: Holder): void {
    clearTimeout(holder.expiryTimer);
    clearTimeout(holder.keepAliveTimer);
    holder.expiryTimer = undefined;
    holder.keepAliveTimer = undefined;
  }

  /** Keeps the etcd lease alive every third of its TTL while the local lease lives. */
  private armKeepAlive(key: string, st: KeyState, holder: Holder): void {
    clearTimeout(holder.keepAliveTimer);
    const everyMs = (holder.leaseTtlS * 1000) / 3;
    holder.keepAliveTimer = setTimeout(() => {
      if (st.holder !== holder || this.closed) return;
      const leaseId = holder.leaseId;
      this.etcd.keepAlive(leaseId, performance.now() + Math.min(this.opTimeoutMs, everyMs), `keeping "${key}" alive`).then(
        (ttl) => {
          if (st.holder !== holder || holder.leaseId !== leaseId) return;
          if (ttl <= 0) this.expire(key, st, holder, 'etcd lease gone');
          else this.armKeepAlive(key, st, holder);
        },
        (err: unknown) => {
          // Two more tries before etcd's TTL runs out; the local deadline decides anyway.
          this.logger?.warn({ err, key, token: holder.token }, 'etcd lease keepalive failed');
          if (st.holder === holder) this.armKeepAlive(key, st, holder);
        },
      );
    }, everyMs);
  }

  /**
   * Attaches the held key to a new etcd lease of `ttlS` seconds (renewals longer than the
   * current lease). When etcd does not confirm in time, the lease is ended here: the key may
   * be on either etcd lease, and this relay can no longer say how long etcd keeps it.
   */
  private async moveToLongerLease(key: string, st: KeyState, holder: Holder, ttlS: number, deadline: number): Promise<void> {
    const oldLease = holder.leaseId;
    const granted = await this.etcd.call(`renewing "${key}"`, deadline, (options) => this.etcd.client.leaseClient.leaseGrant({ TTL: ttlS }, options));
    const newLease = granted.ID;
    let res: ITxnResponse;
    try {
      res = await this.etcd.call(`renewing "${key}"`, deadline, (options) =>
        this.etcd.client.kv.txn(
          {
            compare: [{ key: this.lockKey(key), target: 'Create', result: 'Equal', create_revision: holder.token }],
            success: [{ request_put: { key: this.lockKey(key), value: Buffer.from(holder.owner), lease: newLease } }],
          },
          options,
        ),
      );
    } catch (err) {
      if (st.holder === holder) {
        this.endLocally(st, holder);
        this.pump(key, st);
      }
      for (const lease of [oldLease, newLease]) void this.etcd.revoke(lease, performance.now() + this.opTimeoutMs, `ending "${key}"`).catch(() => {});
      throw err;
    }
    if (!res.succeeded || st.holder !== holder) {
      void this.etcd.revoke(newLease, performance.now() + this.opTimeoutMs, `dropping an unused lease for "${key}"`).catch(() => {});
      if (st.holder === holder) this.expire(key, st, holder, 'key gone from etcd');
      throw lost(key);
    }
    holder.leaseId = newLease;
    holder.leaseTtlS = ttlS;
    this.armKeepAlive(key, st, holder);
    void this.etcd.revoke(oldLease, performance.now() + this.opTimeoutMs, `dropping the previous lease of "${key}"`).catch(() => {});
  }

  // ---- etcd keys, startup probe ----

  private lockKey(key: string): Buffer {
    return Buffer.from(this.prefix + key);
  }

  private lastKey(key: string): Buffer {
    return Buffer.from(`${this.prefix}\u0000last/${key}`);
  }

  /** Logs whether etcd answers a quorum read now (startup diagnostics only). */
  private async probe(): Promise<void> {
    try {
      await this.etcd.call('probing etcd', performance.now() + this.opTimeoutMs, (options) =>
        this.etcd.client.kv.range({ key: Buffer.from(this.prefix), count_only: true }, options),
      );
      this.logger?.info({ endpoints: this.etcd.endpointCount }, 'etcd lock authority reachable');
    } catch (err) {
      if (!this.closed) this.logger?.warn({ err }, 'etcd lock authority unreachable for now; lock requests answer unavailable until it is back');
    }
  }
}

function lost(key: string): LeaseLostError {
  // The token is not repeated: a refusal tells nothing about any token (the asker's included).
  return new LeaseLostError(`no current lease on "${key}" under the token given`);
}
