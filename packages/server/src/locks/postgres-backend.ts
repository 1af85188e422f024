/**
 * The PostgreSQL lock backend: the lock authority of a cluster of relays sharing one
 * PostgreSQL database (`--postgres`). The rows and statements are postgres-lock-rows.ts's;
 * this file decides when to run them: waiters, the `expired` event, deadlines.
 */
import { EventEmitter } from 'node:events';
import { CapsyncError } from '@capsync/core';
import pg from 'pg';
import { redactUrl } from '../auth/url-token.js';
import type { Logger } from '../logger.js';
import { migrate } from '../storage/postgres-schema.js';
import { lockBusy, shuttingDown, withdrawn, type AcquireRequest, type LockBackend, type LockBackendEvents, type LockGrant } from './lock-backend.js';
import { PostgresLockRows } from './postgres-lock-rows.js';

export interface PostgresLockBackendOptions {
  /** postgres://user:password@host:port/database: the database of the relays' documents. */
  url: string;
  /**
   * Budget of one operation against the database (waiting for a connection included): past it
   * the operation rejects with `UnavailableError`. Default 2000 ms.
   */
  opTimeoutMs?: number;
  /** Connections of the backend's own pool (apart from the documents' pool). Default 4. */
  poolSize?: number;
  logger?: Logger;
}

/** First and longest pause between two attempts of a waiter whose key is held (see the class comment). */
const FIRST_RETRY_MS = 20;
const MAX_RETRY_MS = 250;
/** Budget of the migration at open (it may wait for another relay's), as the document store's statements. */
const MIGRATE_TIMEOUT_MS = 10_000;

interface Waiter {
  request: AcquireRequest;
  /** When waiting ends (performance.now()): `waitMs` after the request. */
  deadline: number;
  resolve(grant: LockGrant): void;
  reject(err: unknown): void;
  timer: NodeJS.Timeout | undefined;
  onAbort: () => void;
}

/** What this relay knows of one key: its own waiters, and the lease it granted, if any. */
interface KeyState {
  /** This relay's acquires of the key, first come first served; only the head tries. */
  waiters: Waiter[];
  /** The head's attempt loop is running. */
  serving: boolean;
  /** Wakes the loop from its pause before the next attempt (a release or expiry here, a withdrawal). */
  wake: (() => void) | null;
  /** Freed here while an attempt was in flight (nothing to wake): the next attempt goes at once. */
  kicked: boolean;
  /** The lease this relay granted, until it was released here or `expired` was emitted for it. */
  held: { token: number; owner: string; timer: NodeJS.Timeout } | null;
}

/**
 * The lock authority on PostgreSQL: the database is the single authority, so any number of
 * relays sharing it share locks, and a relay keeps nothing that matters in memory.
 *
 * - Tokens come from the key's counter row (`last_token`), raised by the statement that
 *   records the lease: strictly increasing per key, never reused, across relays and restarts.
 * - Leases are measured on the database's clock: a grant or renewal sets `expires_at =
 *   clock_timestamp() + ttl` and every statement compares against `clock_timestamp()`. The
 *   database starts a lease's clock after the relay received the request, so its deadline is
 *   never before the client's. No relay clock decides an expiry; a relay's timers only decide
 *   when to ask the database again. (`clock_timestamp()` is the database host's wall clock: a
 *   step forward of it ends leases early, which the fencing tokens are there for.)
 * - At most one unexpired lease per key: a grant is one `INSERT ... ON CONFLICT DO UPDATE ...
 *   WHERE` the lease is released or expired, serialized on the key's row. Renew, release and
 *   check (the fencing check of `cp.set`) are conditional statements or a read of the same
 *   row, with the owner compared there, so every relay answers alike for every lease.
 * - Waiters: this relay's waiters for a key are served first come, first served: only the
 *   head of the queue tries, by polling. When the key is held it tries again after a pause
 *   that doubles from 20 ms up to 250 ms, never past the holder's expiry as the database
 *   reported it nor past the waiter's `waitMs`; a release or expiry on this relay wakes it at
 *   once. Polling rather than LISTEN/NOTIFY: nothing to lose (a missed notification would
 *   leave a waiter asleep), no extra connection to keep and re-listen on after a database
 *   restart; it costs a cross-relay waiter up to 250 ms after a release elsewhere, and one
 *   statement per pause. Between relays there is no queue: whichever relay's statement lands
 *   first after the key is free wins (as with etcd).
 * - `expired` is emitted by the relay that granted the lease (its lock service counted it),
 *   when the database confirms the lease ran out: at the relay's local deadline it reads the
 *   row; a lease renewed through another relay is waited for again, one released there is
 *   dropped silently (the row keeps the last token released), one that ran out (or was
 *   already replaced by a newer grant after running out) is reported. A relay that restarts
 *   forgets the leases it granted: they still run out in the database, unreported.
 * - Every statement is bounded by `opTimeoutMs` (client-side query timeout, a race against the
 *   connection wait, and `statement_timeout`); the database being unreachable, frozen or failing makes every
 *   method reject with `UnavailableError` within it, and nothing is granted that the database
 *   did not commit. A grant whose answer was lost may have committed: it runs out by itself.
 */
export class PostgresLockBackend extends EventEmitter<LockBackendEvents> implements LockBackend {
  readonly kind = 'postgres' as const;
  readonly opTimeoutMs: number;
  private readonly rows: PostgresLockRows;
  private readonly keys = new Map<string, KeyState>();
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    opTimeoutMs: number,
    private readonly logger: Logger | undefined,
  ) {
    super();
    this.opTimeoutMs = opTimeoutMs;
    this.rows = new PostgresLockRows(pool);
  }

  /**
   * Connects to the database, creates or migrates the schema (the lock table is migration 3;
   * a relay's document store has usually done it already), and resolves with the backend.
   * Rejects when the database cannot be reached now or is newer than this relay (the relay does
   * not start, as with its document store).
   */
  static async open(options: PostgresLockBackendOptions): Promise<PostgresLockBackend> {
    const opTimeoutMs = options.opTimeoutMs ?? 2_000;
    if (!(opTimeoutMs > 0)) throw new CapsyncError('internal', 'PostgreSQL lock backend: opTimeoutMs must be positive');
    // Migrating may wait for another relay's migration (an advisory lock): on a connection of
    // its own, without the lock statements' short timeouts, or relays started together could
    // fail to start.
    const admin = new pg.Client({ connectionString: options.url, connectionTimeoutMillis: Math.max(opTimeoutMs, MIGRATE_TIMEOUT_MS), query_timeout: MIGRATE_TIMEOUT_MS });
    admin.on('error', () => {});
    try {
      await admin.connect();
      await migrate(admin);
    } catch (err) {
      if (err instanceof CapsyncError) throw err;
      throw new CapsyncError('storage-failure', `cannot open the PostgreSQL lock authority at ${redactUrl(options.url)}: ${(err as Error).message}`, { cause: err });
    } finally {
      await admin.end().catch(() => {});
    }
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 4,
      connectionTimeoutMillis: opTimeoutMs,
      query_timeout: opTimeoutMs,
      // Server side too: a statement stuck behind a row lock gives up rather than piling up.
      statement_timeout: opTimeoutMs,
      application_name: 'capsync-locks',
      keepAlive: true,
    });
    // An idle connection the server ends (restart, admin kill) is reported here; unhandled it
    // would crash the process. The pool drops it, and the next statement opens a new one.
    pool.on('error', () => {});
    return new PostgresLockBackend(pool, opTimeoutMs, options.logger);
  }

  acquire(received: AcquireRequest): Promise<LockGrant> {
    const request = { ...received, receivedAt: received.receivedAt ?? performance.now() };
    if (this.closed) return Promise.reject(shuttingDown());
    if (request.signal?.aborted) return Promise.reject(withdrawn());
    const st = this.state(request.key);
    // This relay's earlier waiters come first: one that may not wait is refused at once.
    if (request.waitMs <= 0 && st.waiters.length > 0) return Promise.reject(lockBusy(request.key, 0));
    return new Promise<LockGrant>((resolve, reject) => {
      const waiter: Waiter = {
        request,
        deadline: performance.now() + Math.max(0, request.waitMs),
        resolve,
        reject,
        timer: undefined,
        onAbort: () => {
          const head = st.waiters[0] === waiter;
          this.dropWaiter(st, waiter);
          reject(withdrawn());
          if (head) st.wake?.();
        },
      };
      // Only a waiter behind the head needs its own timer: the head's loop never pauses past its deadline.
      if (request.waitMs > 0) {
        waiter.timer = setTimeout(() => {
          if (st.waiters[0] === waiter) return;
          this.dropWaiter(st, waiter);
          reject(lockBusy(request.key, request.waitMs));
        }, request.waitMs);
      }
      request.signal?.addEventListener('abort', waiter.onAbort, { once: true });
      st.waiters.push(waiter);
      if (!st.serving) void this.serve(request.key, st);
    });
  }

  async renew(key: string, token: number, ttlMs: number, owner: string): Promise<LockGrant> {
    if (this.closed) throw shuttingDown();
    const started = performance.now();
    await this.rows.renew(key, token, ttlMs, owner, started + this.opTimeoutMs);
    // Granted here: its expiry check moves with it.
    const held = this.keys.get(key)?.held;
    if (held?.token === token) this.armExpiry(key, held, started + ttlMs);
    return { key, token, ttlMs };
  }

  async release(key: string, token: number, owner: string): Promise<void> {
    if (this.closed) throw shuttingDown();
    await this.rows.release(key, token, owner, performance.now() + this.opTimeoutMs);
    const st = this.keys.get(key);
    if (st?.held?.token === token) {
      clearTimeout(st.held.timer);
      st.held = null;
    }
    if (st) this.freed(key, st);
  }

  async check(key: string, token: number, owner: string): Promise<void> {
    if (this.closed) throw shuttingDown();
    await this.rows.check(key, token, owner, performance.now() + this.opTimeoutMs);
  }

  /** Rejects every waiter and stops every timer; leases stay in the database and run out there. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const st of this.keys.values()) {
      if (st.held) clearTimeout(st.held.timer);
      st.held = null;
      for (const w of st.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.request.signal?.removeEventListener('abort', w.onAbort);
        w.reject(shuttingDown());
      }
      st.wake?.();
    }
    this.keys.clear();
    await this.pool.end().catch(() => {});
  }

  // ---- internals ----

  private state(key: string): KeyState {
    let st = this.keys.get(key);
    if (!st) this.keys.set(key, (st = { waiters: [], serving: false, wake: null, kicked: false, held: null }));
    return st;
  }

  /**
   * The attempt loop of a key's queue: the head tries to take the key; held elsewhere, it
   * pauses (see the class comment) and tries again, until it is granted, its `waitMs` is over
   * (one last attempt decides), or it is withdrawn. Then the next waiter, until none is left.
   */
  private async serve(key: string, st: KeyState): Promise<void> {
    st.serving = true;
    let pause = FIRST_RETRY_MS;
    let head: Waiter | undefined;
    while (!this.closed && (head = st.waiters[0])) {
      const { owner, ttlMs } = head.request;
      const started = performance.now();
      st.kicked = false;
      let outcome;
      try {
        outcome = await this.rows.tryGrant(key, owner, ttlMs, started + this.opTimeoutMs);
      } catch (err) {
        if (st.waiters[0] === head) {
          this.dropWaiter(st, head);
          head.reject(err);
        }
        pause = FIRST_RETRY_MS;
        continue;
      }
      if (outcome.granted) {
        pause = FIRST_RETRY_MS;
        if (st.waiters[0] !== head || this.closed) {
          // Nobody will learn of this grant (withdrawn, or shutting down): end it now rather
          // than let it block the key until it runs out.
          void this.rows.end(key, outcome.token, performance.now() + this.opTimeoutMs).catch(() => {});
          continue;
        }
        this.dropWaiter(st, head);
        if (st.held) {
          // The database granted anew, so the lease this relay granted before is over: released
          // through another relay, or run out before this relay's check came round (reported).
          clearTimeout(st.held.timer);
          if (outcome.releasedToken !== st.held.token) this.emit('expired', key, st.held.token);
        }
        st.held = { token: outcome.token, owner, timer: undefined as unknown as NodeJS.Timeout };
        this.armExpiry(key, st.held, started + ttlMs);
        // Counted from receipt (the LockGrant contract): a waited grant runs ttl from `started`.
        head.resolve({ key, token: outcome.token, ttlMs: ttlMs + Math.max(0, Math.floor(started - (head.request.receivedAt ?? started))) });
        continue;
      }
      if (st.waiters[0] !== head) continue;
      const now = performance.now();
      if (now >= head.deadline) {
        this.dropWaiter(st, head);
        head.reject(lockBusy(key, head.request.waitMs));
        pause = FIRST_RETRY_MS;
        continue;
      }
      // The holder released (or its lease ran out) here while the attempt was on its way: at once.
      if (st.kicked) continue;
      // Not past the holder's expiry (+1 ms: on time, not a hair early) nor the waiter's deadline.
      const untilFree = outcome.remainingMs === null ? pause : Math.max(1, Math.ceil(outcome.remainingMs) + 1);
      await this.sleep(st, Math.min(pause, untilFree, head.deadline - now));
      pause = Math.min(pause * 2, MAX_RETRY_MS);
    }
    st.serving = false;
    this.forget(key, st);
  }

  private sleep(st: KeyState, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        if (st.wake === done) st.wake = null;
        resolve();
      }
      st.wake = done;
    });
  }

  /** The key was released or expired here: the head waiter tries at once. */
  private freed(key: string, st: KeyState): void {
    if (st.wake) st.wake();
    else if (st.serving) st.kicked = true;
    else this.forget(key, st);
  }

  /** At `deadline` (the relay's clock, a little before the database's), asks the database whether the lease ran out. */
  private armExpiry(key: string, held: NonNullable<KeyState['held']>, deadline: number): void {
    clearTimeout(held.timer);
    held.timer = setTimeout(() => void this.expiryDue(key, held), Math.max(0, deadline - performance.now()));
  }

  private async expiryDue(key: string, held: NonNullable<KeyState['held']>): Promise<void> {
    const st = this.keys.get(key);
    if (this.closed || st?.held !== held) return;
    let renewedForMs = 0;
    let released = false;
    try {
      const row = await this.rows.read(key, performance.now() + this.opTimeoutMs, `reading "${key}" at its lease's deadline`);
      if (row.lastToken === held.token && row.owner !== null && row.remainingMs > 0) renewedForMs = row.remainingMs;
      released = row.releasedToken === held.token;
    } catch (err) {
      // The deadline the client counts with has passed either way: the lease is over for this relay.
      this.logger?.warn({ err, key }, 'PostgreSQL lock authority unreachable at a lease deadline; reporting it expired');
    }
    if (this.closed || st.held !== held) return;
    if (renewedForMs > 0) {
      // Renewed through another relay, or the database's clock started a little later: wait for it.
      this.armExpiry(key, held, performance.now() + renewedForMs + 1);
      return;
    }
    st.held = null;
    if (!released) this.emit('expired', key, held.token);
    this.freed(key, st);
  }

  /** Forgets a key nothing refers to any more (the database keeps its counter). */
  private forget(key: string, st: KeyState): void {
    if (st.serving || st.held || st.waiters.length > 0) return;
    if (this.keys.get(key) === st) this.keys.delete(key);
  }

  private dropWaiter(st: KeyState, waiter: Waiter): void {
    const i = st.waiters.indexOf(waiter);
    if (i >= 0) st.waiters.splice(i, 1);
    clearTimeout(waiter.timer);
    waiter.request.signal?.removeEventListener('abort', waiter.onAbort);
  }
}
