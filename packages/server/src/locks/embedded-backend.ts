import { EventEmitter } from 'node:events';
import { CapsyncError, UnavailableError } from '@capsync/core';
import { leaseLost as lost, lockBusy, notOwner, shuttingDown, staleToken, withdrawn, type AcquireRequest, type LockBackend, type LockBackendEvents, type LockGrant } from './lock-backend.js';
import type { LockStore } from './lock-store.js';

interface Holder {
  token: number;
  owner: string;
  /** Monotonic deadline (performance.now()). */
  expiresAt: number;
  timer: NodeJS.Timeout;
}

interface Waiter {
  request: AcquireRequest;
  resolve(grant: LockGrant): void;
  reject(err: unknown): void;
  timer: NodeJS.Timeout;
  onAbort: () => void;
}

interface KeyState {
  holder: Holder | null;
  /** A grant is being committed: the key is taken, but nobody holds a token yet. */
  granting: boolean;
  waiters: Waiter[];
  /** Highest token ever granted for the key (from the store on startup, then from grants). */
  lastToken: number;
}

/**
 * The default lock authority: this relay alone, with tokens and leases in its own store
 * (SQLite, in the same database as the documents).
 *
 * - A grant is committed to the store before it is answered, so a restart never reuses or
 *   lowers a token and knows every lease it gave out.
 * - On startup, leases from before the restart are held until their wall-clock expiry: their
 *   holders may still be acting on them (and may renew them). They are never extended by the
 *   restart itself, so the leases of a crashed relay run out.
 * - Expiry runs on the monotonic clock, `ttlMs` after the grant (or renewal) started, which is
 *   after the client sent its request: the server's deadline is never before the client's.
 * - Waiters are served first come, first served.
 */
export class EmbeddedLockBackend extends EventEmitter<LockBackendEvents> implements LockBackend {
  readonly kind = 'embedded' as const;
  private readonly keys = new Map<string, KeyState>();
  private closed = false;

  private constructor(private readonly store: LockStore) {
    super();
  }

  /** Loads the persisted tokens and leases and resumes the leases that have not run out. */
  static async open(store: LockStore): Promise<EmbeddedLockBackend> {
    const backend = new EmbeddedLockBackend(store);
    // Only keys with a lease are kept in memory; the store hands out the next token of the others.
    const { leases } = await store.loadLocks();
    const now = Date.now();
    for (const lease of leases) {
      const st = backend.state(lease.key);
      st.lastToken = Math.max(st.lastToken, lease.token);
      const remaining = lease.expiresAt - now;
      if (remaining > 0) backend.hold(lease.key, st, lease.token, lease.owner, performance.now() + remaining);
      else void store.end(lease.key, lease.token).catch(() => {});
    }
    return backend;
  }

  /** Keys held, being granted or waited for (idle keys are forgotten; the store keeps their tokens). */
  get activeKeys(): number {
    return this.keys.size;
  }

  acquire(received: AcquireRequest): Promise<LockGrant> {
    const request = { ...received, receivedAt: received.receivedAt ?? performance.now() };
    if (this.closed) return Promise.reject(shuttingDown());
    const st = this.state(request.key);
    if (!st.holder && !st.granting && st.waiters.length === 0) return this.grant(st, request);
    if (request.waitMs <= 0) return Promise.reject(lockBusy(request.key));
    if (request.signal?.aborted) return Promise.reject(withdrawn());
    return new Promise<LockGrant>((resolve, reject) => {
      const waiter: Waiter = {
        request,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.dropWaiter(st, waiter);
          reject(lockBusy(request.key, request.waitMs));
        }, request.waitMs),
        onAbort: () => {
          this.dropWaiter(st, waiter);
          reject(withdrawn());
        },
      };
      request.signal?.addEventListener('abort', waiter.onAbort, { once: true });
      st.waiters.push(waiter);
    });
  }

  async renew(key: string, token: number, ttlMs: number, owner: string): Promise<LockGrant> {
    const started = performance.now();
    const st = this.keys.get(key);
    const holder = st?.holder;
    if (!st || !holder || holder.token !== token || started >= holder.expiresAt) throw lost(key);
    if (holder.owner !== owner) throw notOwner(key);
    await this.store.renew(key, token, Date.now() + ttlMs).catch((err: unknown) => {
      throw new UnavailableError(`lock store failed: ${(err as Error).message}`, { cause: err });
    });
    // The lease may have run out while the renewal was being committed.
    if (st.holder !== holder || performance.now() >= holder.expiresAt) throw lost(key);
    holder.expiresAt = started + ttlMs;
    this.armExpiry(key, st, holder);
    return { key, token, ttlMs };
  }

  async release(key: string, token: number, owner: string): Promise<void> {
    const st = this.keys.get(key);
    const holder = st?.holder;
    if (!st || !holder || holder.token !== token || performance.now() >= holder.expiresAt) throw lost(key);
    if (holder.owner !== owner) throw notOwner(key);
    clearTimeout(holder.timer);
    st.holder = null;
    // The next holder's grant overwrites the lease row anyway; a lost delete only leaves a
    // lease that runs out by itself, so the next waiter need not wait for this commit.
    const ended = this.store.end(key, token);
    this.serveNext(key, st);
    await ended.catch((err: unknown) => {
      throw new UnavailableError(`lock store failed: ${(err as Error).message}`, { cause: err });
    });
  }

  async check(key: string, token: number, owner: string): Promise<void> {
    const st = this.keys.get(key);
    const holder = st?.holder;
    if (st && holder && holder.token === token && performance.now() < holder.expiresAt) {
      if (holder.owner !== owner) throw notOwner(key);
      return;
    }
    throw this.notHeld(key, token, st);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const st of this.keys.values()) {
      if (st.holder) clearTimeout(st.holder.timer);
      for (const w of st.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(shuttingDown());
      }
    }
  }

  // ---- internals ----

  private state(key: string): KeyState {
    let st = this.keys.get(key);
    if (!st) this.keys.set(key, (st = { holder: null, granting: false, waiters: [], lastToken: 0 }));
    return st;
  }

  private async grant(st: KeyState, request: AcquireRequest): Promise<LockGrant> {
    const { key, ttlMs, owner } = request;
    st.granting = true;
    const started = performance.now();
    let token: number;
    try {
      token = await this.store.grant(key, owner, Date.now() + ttlMs);
    } catch (err) {
      st.granting = false;
      this.serveNext(key, st);
      throw new UnavailableError(`lock store failed: ${(err as Error).message}`, { cause: err });
    }
    st.granting = false;
    st.lastToken = Math.max(st.lastToken, token);
    if (this.closed || request.signal?.aborted) {
      // Nobody will learn of this grant: end it now rather than let it block the key.
      void this.store.end(key, token).catch(() => {});
      this.serveNext(key, st);
      throw withdrawn();
    }
    this.hold(key, st, token, owner, started + ttlMs);
    // (ttl + whole ms waited, not floor(started + ttl − receivedAt): that float sum can lose a ms.)
    return { key, token, ttlMs: ttlMs + Math.max(0, Math.floor(started - (request.receivedAt ?? started))) };
  }

  private hold(key: string, st: KeyState, token: number, owner: string, expiresAt: number): void {
    const holder: Holder = { token, owner, expiresAt, timer: undefined as unknown as NodeJS.Timeout };
    st.holder = holder;
    this.armExpiry(key, st, holder);
  }

  private armExpiry(key: string, st: KeyState, holder: Holder): void {
    clearTimeout(holder.timer);
    holder.timer = setTimeout(() => this.expire(key, st, holder), Math.max(0, holder.expiresAt - performance.now()));
  }

  private expire(key: string, st: KeyState, holder: Holder): void {
    if (st.holder !== holder) return;
    // Timers may fire a little early; never end a lease before its deadline.
    const early = holder.expiresAt - performance.now();
    if (early > 0) {
      holder.timer = setTimeout(() => this.expire(key, st, holder), early);
      return;
    }
    st.holder = null;
    void this.store.end(key, holder.token).catch(() => {});
    this.emit('expired', key, holder.token);
    this.serveNext(key, st);
  }

  private serveNext(key: string, st: KeyState): void {
    if (st.holder || st.granting || this.closed) return;
    const next = st.waiters.shift();
    if (!next) {
      // Idle: forget the key (the store keeps its last token), or every key ever locked
      // would stay in memory. Old tokens of an idle key are then answered lease-lost.
      this.keys.delete(key);
      return;
    }
    clearTimeout(next.timer);
    next.request.signal?.removeEventListener('abort', next.onAbort);
    this.grant(st, next.request).then(next.resolve, next.reject);
  }

  private dropWaiter(st: KeyState, waiter: Waiter): void {
    const i = st.waiters.indexOf(waiter);
    if (i >= 0) st.waiters.splice(i, 1);
    clearTimeout(waiter.timer);
    waiter.request.signal?.removeEventListener('abort', waiter.onAbort);
  }

  /** Why a fenced write with `token` may not proceed: a newer token exists, or the lease is gone. */
  private notHeld(key: string, token: number, st: KeyState | undefined): CapsyncError {
    if (st && token < st.lastToken) return staleToken(key);
    return lost(key);
  }
}
