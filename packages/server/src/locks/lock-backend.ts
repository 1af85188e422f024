import type { EventEmitter } from 'node:events';
import { LeaseLostError, LockTimeoutError, NotOwnerError, StaleTokenError, UnavailableError } from '@capsync/core';

/** A lease the authority granted (or renewed). */
export interface LockGrant {
  key: string;
  /**
   * Fencing token: an integer that strictly increases per key and is never reused, not even
   * across restarts of the relay or of the backend.
   */
  token: number;
  /**
   * Lease length the authority granted, counted from when it received the request
   * (`AcquireRequest.receivedAt`): a lease granted after a wait runs `ttlMs` from the grant, so
   * this is the requested TTL plus the wait. The client counts it from when it sent the
   * request, which is earlier, so its deadline always comes first. (A forwarded backend passes
   * on the authority's: counted from when the authority received the forwarded request, which
   * is later still.)
   */
  ttlMs: number;
}

export interface AcquireRequest {
  key: string;
  /** Wanted lease length. Backends may round it up (etcd leases are whole seconds). */
  ttlMs: number;
  /** How long to wait for a held lock to become free; 0 fails at once when it is held. */
  waitMs: number;
  /**
   * The identity the lease is for (see ConnectionIdentity): only it may renew, release or
   * check the lease, or write under its token. Stored with the lease (and in etcd), so it
   * survives a restart of the relay.
   */
  owner: string;
  /** When the authority received the request (performance.now()); default: when acquire was called. */
  receivedAt?: number;
  /** Aborting it (the requester went away) withdraws a waiting request: it rejects and nothing is granted. */
  signal?: AbortSignal;
}

export interface LockBackendEvents {
  /** A lease ran out without being released (its holder did not renew in time). */
  expired: [key: string, token: number];
}

/**
 * The lock authority behind the relay's lock service. One per relay; every method may be
 * called concurrently, for the same key or different keys.
 *
 * Contract (all backends). `lockBackendConformance` (`@capsync/server/conformance`,
 * lock-backend-conformance.ts) checks it case by case, and every backend (embedded, forwarded,
 * etcd, postgres) runs it in packages/server/test/lock-backend-conformance.test.ts; test/locks checks it
 * further under faults and for linearizability:
 * - `acquire` resolves only once the grant is committed (durable in the backend), with a
 *   token greater than every token ever granted for that key. At most one unexpired lease
 *   per key exists at any time, as the authority sees it.
 * - While the lock is held it waits up to `waitMs` for it to be released or to expire, then
 *   rejects with `LockTimeoutError`. Waiters are served first come, first served.
 * - Every method rejects with `UnavailableError` when it cannot reach the authority (or a
 *   majority of it, or the relay it forwards to) within `opTimeoutMs` of the backend; it then
 *   grants nothing it could not prove. A rejected acquire may still have been granted in the
 *   backend; such a lease runs out by itself.
 * - `renew(key, token, ttlMs, owner)` extends the lease by `ttlMs` from now, only if `token`
 *   is the key's current unexpired lease; else `LeaseLostError`.
 * - `release(key, token, owner)` ends the lease if it is current (the next waiter gets it);
 *   releasing a lease that is no longer current rejects with `LeaseLostError` and changes
 *   nothing.
 * - `check(key, token, owner)` resolves if `token` is the key's current unexpired lease;
 *   otherwise rejects with `StaleTokenError` when a newer token exists, or `LeaseLostError`.
 * - Ownership: renew, release and check of a current unexpired lease acquired by another
 *   `owner` reject with `NotOwnerError` and change nothing. No error message of any method
 *   names another holder's token (nor its owner): knowing a token gives nothing.
 * - A lease that is not renewed ends `ttlMs` after the request that granted or renewed it
 *   reached the authority (never later than that plus the backend's timer slack), and emits
 *   `expired` (where the authority runs: a forwarding backend never emits it).
 * - `close` stops timers and connections; it does not release leases (they run out).
 */
export interface LockBackend extends EventEmitter<LockBackendEvents> {
  readonly kind: 'embedded' | 'etcd' | 'forwarded' | 'postgres';
  acquire(request: AcquireRequest): Promise<LockGrant>;
  renew(key: string, token: number, ttlMs: number, owner: string): Promise<LockGrant>;
  release(key: string, token: number, owner: string): Promise<void>;
  check(key: string, token: number, owner: string): Promise<void>;
  close(): Promise<void>;
}

/** Longest lease a client may ask for (1 hour) and shortest (10 ms). */
export const MAX_TTL_MS = 3_600_000;
export const MIN_TTL_MS = 10;
/** Longest wait a client may ask for (10 minutes). */
export const MAX_WAIT_MS = 600_000;
/** Longest lock key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 512;

// The refusals every backend gives, worded once. None names a token (the asker's included) or
// a holder: knowing a token gives nothing.

/** A token that is not the key's current unexpired lease (renew, release, check). */
export function leaseLost(key: string): LeaseLostError {
  return new LeaseLostError(`no current lease on "${key}" under the token given`);
}

/** A check (a fenced write) under a token older than one granted since. */
export function staleToken(key: string): StaleTokenError {
  return new StaleTokenError(`the token given for "${key}" is stale: a newer lease was granted since`);
}

/** An acquire whose key stayed held for all of its `waitMs`. */
export function lockBusy(key: string, waitedMs = 0): LockTimeoutError {
  return new LockTimeoutError(`lock "${key}" is held; waited ${waitedMs} ms`);
}

/** The refusal of another identity's live lease: it tells nothing about the lease (token, owner). */
export function notOwner(key: string): NotOwnerError {
  return new NotOwnerError(`the lease on "${key}" belongs to another identity`);
}

/**
 * The refusal of a request withdrawn because its requester went away (`AcquireRequest.signal`
 * aborted): nothing was granted for it.
 */
export function withdrawn(): UnavailableError {
  return new UnavailableError('lock request withdrawn: the requester went away');
}

/** What a backend answers once it is closed (the relay is shutting down). */
export function shuttingDown(): UnavailableError {
  return new UnavailableError('lock authority is shutting down');
}
