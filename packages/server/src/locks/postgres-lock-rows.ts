/**
 * The PostgreSQL lock authority's rows and the statements on them (table `capsync_locks`,
 * migration 3 in storage/postgres-schema.ts). When to run which statement is the backend's
 * (postgres-backend.ts); this file only knows the rows.
 *
 * One row per lock key, never deleted:
 * - `last_token`: the key's counter, the highest fencing token ever granted. A grant sets it to
 *   `last_token + 1` (1 for a new key) in the same statement that records the lease, under the
 *   row's lock, so tokens strictly increase per key and are never reused, whichever relay
 *   grants and however often relays restart.
 * - `owner`, `expires_at`: the lease of `last_token`, if one was granted and not released. It is
 *   current while `expires_at > clock_timestamp()`: expiry is decided by the database's clock
 *   alone, in the statements themselves (never by a relay's clock). An expired lease stays in
 *   the row until the next grant overwrites it; a release clears both.
 * - `released_token`: the last token its owner released, so the relay that granted a lease can
 *   tell a release through another relay from a lease that ran out (for its `expired` event).
 *
 * Every statement is one statement in autocommit: it resolves only once committed, and two
 * relays' statements on one key are serialized by the row lock (`INSERT ... ON CONFLICT DO
 * UPDATE` and `UPDATE ... WHERE` re-check their condition on the newest row version), so at
 * most one unexpired lease per key exists, as the database sees it.
 *
 * Every call is bounded by its deadline (`performance.now()` ms): past it, or when the database
 * fails, it rejects with `UnavailableError` (the statement may still commit: a grant that
 * nobody learns of runs out by itself, as the LockBackend contract allows).
 */
import { UnavailableError, type CapsyncError } from '@capsync/core';
import type pg from 'pg';
import { leaseLost, notOwner, staleToken } from './lock-backend.js';

/**
 * What a grant attempt found: the new token (and the last token released before it), or the key
 * held (and for about how long, on the database's clock).
 */
export type GrantOutcome = { granted: true; token: number; releasedToken: number } | { granted: false; remainingMs: number | null };

/** A key's row as `read` returns it (`lastToken` 0: no row, never granted). */
export interface LockRow {
  lastToken: number;
  /** Identity of the lease of `lastToken`, null when released (or never granted). */
  owner: string | null;
  /** Milliseconds the lease of `lastToken` still runs on the database's clock (<= 0: expired). */
  remainingMs: number;
  /** The last token released (0: none). */
  releasedToken: number;
}

/** `$n` milliseconds as an interval (the parameter is sent as text; the cast makes it a number). */
const ms = (n: number) => `($${n}::double precision * interval '1 millisecond')`;
/** Milliseconds from now (the database's clock) until `expires_at`. */
const REMAINING = `(extract(epoch FROM expires_at - clock_timestamp()) * 1000)::double precision`;

export class PostgresLockRows {
  constructor(private readonly pool: pg.Pool) {}

  /**
   * Takes the key if it has no current lease: the next token, the lease for `owner` until
   * `ttlMs` from now on the database's clock. Else reports it held, with the holder's
   * remaining time as seen at the start of the statement (a hint for when to try again; null
   * when that view did not have the row yet).
   */
  async tryGrant(key: string, owner: string, ttlMs: number, deadline: number): Promise<GrantOutcome> {
    const rows = await this.run<{ token: string | null; released: string | null; remaining: number | null }>(
      `granting "${key}"`,
      deadline,
      `WITH granted AS (
         INSERT INTO capsync_locks AS l (key, last_token, owner, expires_at)
         VALUES ($1, 1, $2, clock_timestamp() + ${ms(3)})
         ON CONFLICT (key) DO UPDATE SET last_token = l.last_token + 1, owner = excluded.owner, expires_at = excluded.expires_at
           WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp()
         RETURNING last_token, released_token)
       SELECT (SELECT last_token FROM granted) AS token, (SELECT released_token FROM granted) AS released,
              (SELECT ${REMAINING} FROM capsync_locks WHERE key = $1 AND owner IS NOT NULL) AS remaining`,
      [key, owner, ttlMs],
    );
    const row = rows[0];
    if (row?.token != null) return { granted: true, token: Number(row.token), releasedToken: Number(row.released ?? 0) };
    return { granted: false, remainingMs: row?.remaining ?? null };
  }

  /**
   * Moves the lease's expiry to `ttlMs` from now (the database's clock), only if `token` is the
   * key's current unexpired lease and `owner`'s. Else `LeaseLostError`, or `NotOwnerError` when
   * it is current but another identity's (nothing changed either way).
   */
  async renew(key: string, token: number, ttlMs: number, owner: string, deadline: number): Promise<void> {
    const rows = await this.run(
      `renewing "${key}"`,
      deadline,
      `UPDATE capsync_locks SET expires_at = clock_timestamp() + ${ms(4)}
       WHERE key = $1 AND last_token = $2 AND owner = $3 AND expires_at > clock_timestamp()
       RETURNING 1`,
      [key, token, owner, ttlMs],
    );
    if (rows.length === 0) throw await this.refusal(key, token, owner, deadline);
  }

  /** Ends the lease if `token` is current and `owner`'s; refusals as `renew`. */
  async release(key: string, token: number, owner: string, deadline: number): Promise<void> {
    const rows = await this.run(
      `releasing "${key}"`,
      deadline,
      `UPDATE capsync_locks SET owner = NULL, expires_at = NULL, released_token = last_token
       WHERE key = $1 AND last_token = $2 AND owner = $3 AND expires_at > clock_timestamp()
       RETURNING 1`,
      [key, token, owner],
    );
    if (rows.length === 0) throw await this.refusal(key, token, owner, deadline);
  }

  /**
   * Resolves if `token` is the key's current unexpired lease and `owner`'s. Else
   * `NotOwnerError` (current, another identity's), `StaleTokenError` (a newer token was
   * granted) or `LeaseLostError`. One read of the row, so one point in time.
   */
  async check(key: string, token: number, owner: string, deadline: number): Promise<void> {
    const row = await this.read(key, deadline, `checking "${key}"`);
    if (row.lastToken === token && row.owner !== null && row.remainingMs > 0) {
      if (row.owner !== owner) throw notOwner(key);
      return;
    }
    throw this.notCurrent(key, token, row, true);
  }

  /** Ends the lease of `token` whoever holds it: a grant nobody will learn of (withdrawn, shutting down). */
  async end(key: string, token: number, deadline: number): Promise<void> {
    await this.run(`ending an unclaimed grant of "${key}"`, deadline, 'UPDATE capsync_locks SET owner = NULL, expires_at = NULL, released_token = last_token WHERE key = $1 AND last_token = $2', [key, token]);
  }

  async read(key: string, deadline: number, what = `reading "${key}"`): Promise<LockRow> {
    const rows = await this.run<{ last_token: string; owner: string | null; remaining: number | null; released_token: string | null }>(
      what,
      deadline,
      `SELECT last_token, owner, ${REMAINING} AS remaining, released_token FROM capsync_locks WHERE key = $1`,
      [key],
    );
    const row = rows[0];
    if (!row) return { lastToken: 0, owner: null, remainingMs: 0, releasedToken: 0 };
    return { lastToken: Number(row.last_token), owner: row.owner, remainingMs: row.remaining ?? 0, releasedToken: Number(row.released_token ?? 0) };
  }

  /**
   * Why a conditional update matched no row, read right after it: a later point in time, but
   * any answer true then is a true answer (the update changed nothing).
   */
  private async refusal(key: string, token: number, owner: string, deadline: number): Promise<CapsyncError> {
    const row = await this.read(key, deadline, `reading "${key}" after a refused change`);
    if (row.lastToken === token && row.owner !== null && row.remainingMs > 0 && row.owner !== owner) return notOwner(key);
    return this.notCurrent(key, token, row, false);
  }

  /** Renew and release say lease-lost for any token that is not current; check tells a stale one apart. */
  private notCurrent(key: string, token: number, row: LockRow, staleAllowed: boolean): CapsyncError {
    return staleAllowed && token < row.lastToken ? staleToken(key) : leaseLost(key);
  }

  /**
   * One statement with the time left until `deadline`: the driver abandons it then
   * (`query_timeout`, which also drops its connection), and the call rejects with
   * `UnavailableError` at the deadline even while it still waits for a connection.
   */
  private async run<R extends pg.QueryResultRow>(what: string, deadline: number, text: string, values: unknown[]): Promise<R[]> {
    const left = Math.floor(deadline - performance.now());
    if (left <= 0) throw unavailable(what, new Error('no time left'));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unavailable(what, new Error(`no answer within ${left} ms`))), left);
    });
    // query_timeout per query is read by pg's Client (config.query_timeout) but not in its types.
    const query = this.pool.query<R>({ text, values, query_timeout: left } as pg.QueryConfig);
    // The losing side must not become an unhandled rejection.
    query.catch(() => {});
    try {
      return (await Promise.race([query, timeout])).rows;
    } catch (err) {
      if (err instanceof UnavailableError) throw err;
      throw unavailable(what, err);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Any failure of the database (unreachable, too slow, shutting down, refusing the statement) is
 * the lock authority being unavailable: the caller is told so and nothing is granted on it.
 */
function unavailable(what: string, err: unknown): UnavailableError {
  return new UnavailableError(`PostgreSQL lock authority failed ${what}: ${(err as Error)?.message || String(err)}`, { cause: err });
}
