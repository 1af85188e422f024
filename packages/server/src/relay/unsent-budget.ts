import { CapsyncError } from '@capsync/core';
import type { RelayMetrics } from '../metrics.js';

/** The relay-wide bounds on unsent bytes (flags `--max-unsent-bytes`, `--max-unsent-bytes-per-address`). */
export interface UnsentBudgetOptions {
  /** Unsent bytes of the whole relay (0 = no cap). */
  maxTotal: number;
  /** Unsent bytes of the connections and HTTP responses of one client address (0 = no cap). */
  maxPerAddress: number;
  /** How long a holder may keep unsent bytes without its buffer emptying before it may be closed. */
  graceMs: number;
}

type Limit = 'max-unsent-bytes' | 'max-unsent-bytes-per-address';

/** Least time between two refreshes of every backlogged holder's count outside a pass. */
const REFRESH_INTERVAL_MS = 50;

/** What holds unsent bytes: a connection's send buffer or an HTTP response. */
export interface UnsentHolder {
  /** Closes the holder as a slow consumer (its unsent bytes are dropped with it). */
  evict(err: CapsyncError): void;
  /** Reports its unsent bytes as they are now (`update`), for a holder that reports them lazily. */
  refresh?(): void;
}

/**
 * One holder's share of the budget. `bytes` is what it has unsent now (as last reported),
 * `since` when its buffer last went from empty to non-empty (performance.now()).
 */
export class UnsentAccount {
  bytes = 0;
  since = 0;
  closed = false;
  constructor(
    /** Undefined for peer relays: they are not one client's share (see UnsentBudget). */
    readonly address: string | undefined,
    readonly holder: UnsentHolder,
  ) {}
}

/**
 * The relay's budget of unsent bytes, over every connection (documents, locks, mesh) and every
 * heavy HTTP response. The per-connection `--send-buffer-limit` bounds what one connection
 * holds; without this, N connections that never read each hold just under it for ever (40 of
 * them parked 670 MiB).
 *
 * Why a total and a per-address share: the total bounds the relay's memory; the share keeps one
 * address (one attacker) from taking all of it, so that under pressure the relay evicts the
 * address that caused it and keeps serving the others. The share is per address rather than a
 * fraction of the total so that it means the same on every relay; behind a proxy every client
 * has the proxy's address (as for `--max-connections-per-address`): raise it or set it to 0.
 * Peer relays' links are counted in the total only: they carry many clients' traffic.
 *
 * Accounting is O(1) per report (`update`: a few additions and, only when a buffer goes from
 * empty to non-empty or back, one Set operation). Connections report when they send, so a
 * buffer that empties afterwards is still counted until its next send: the counts may be high,
 * never low. Only when a bound is exceeded is a pass scheduled (on a timer, at most one
 * pending): it first asks the holders with unsent bytes for their real count (`refresh`), then
 * acts; it looks at those holders only, not at every connection.
 *
 * Who is closed: a healthy reader's buffer empties between messages; a consumer that does not
 * read keeps bytes unsent. When the total (or an address's share) is exceeded, holders whose
 * buffer has not been empty for the grace period are closed as slow consumers, the ones holding
 * the most first, until the bound holds again; holders within their grace period are not
 * touched (they are given until it ends, the next pass is scheduled for then). One exception
 * bounds a burst: a holder whose report puts its address past twice its share is closed at
 * once (one client address asking for more than that within a grace period is not a burst).
 * The total has no such at-once rule: a large update fanned out to many healthy readers may
 * legitimately exceed it for a moment. Both act on refreshed counts, as do the refusals below.
 *
 * Over a bound means more than it, everywhere (waits, refusals, evictions): an address exactly at
 * its share is within it, so nothing waits on an address that no pass would evict.
 *
 * Before it is exceeded: while an address is over its share, its connections' full-state
 * answers (sync step 2 and each piece before it, awareness answers) wait (`hasRoom`; checking
 * only before an answer's first piece let 8 answers of 0.75 MiB started under a 2 MiB share
 * queue their next pieces to 4.3 MiB, past the at-once rule) and its document GETs are refused
 * (`refusal`), so that what one address holds is bounded before it is allocated, not only
 * evicted after.
 */
export class UnsentBudget {
  private total = 0;
  private readonly byAddress = new Map<string, number>();
  /** Accounts with unsent bytes: the only candidates of a pass. */
  private readonly backlogged = new Set<UnsentAccount>();
  private timer: NodeJS.Timeout | null = null;
  /** When `timer` fires (performance.now()), Infinity without one. */
  private timerAt = Infinity;
  /** When the backlogged holders last reported their real counts (see `refreshAll`). */
  private refreshedAt = -Infinity;
  private refreshing = false;
  /**
   * What waits for an address to be back within its share (see `hasRoom`), by address, then by
   * account: every wake, not one per account. An account is often shared by several waiters (a
   * multiplexed socket's sessions; a connection's step 2 and awareness answers; the next pieces
   * of a state going out in turn), and a wake that replaced another left that one waiting for ever.
   */
  private readonly waiting = new Map<string, Map<UnsentAccount, Set<() => void>>>();

  constructor(
    private readonly options: UnsentBudgetOptions,
    private readonly metrics: RelayMetrics,
  ) {
    metrics.unsentSource = () => this.total;
  }

  /** Opens an account for a new holder; `close` it when the holder is gone. */
  open(address: string | undefined, holder: UnsentHolder): UnsentAccount {
    return new UnsentAccount(address, holder);
  }

  /**
   * The holder now has `bytes` unsent. Returns false when it was evicted by this report (its
   * address went past twice its share): nothing more should be sent to it.
   */
  update(account: UnsentAccount, bytes: number): boolean {
    if (account.closed) return false;
    const delta = bytes - account.bytes;
    if (delta === 0) return true;
    const wasEmpty = account.bytes === 0;
    account.bytes = bytes;
    this.total += delta;
    let fromAddress = 0;
    if (account.address !== undefined) {
      fromAddress = (this.byAddress.get(account.address) ?? 0) + delta;
      if (fromAddress > 0) this.byAddress.set(account.address, fromAddress);
      else this.byAddress.delete(account.address);
    }
    if (bytes === 0) this.backlogged.delete(account);
    else if (wasEmpty) {
      account.since = performance.now();
      this.backlogged.add(account);
    }
    if (delta < 0) {
      // Last: the wakes send at once, and their reports (nested calls) must find this one's
      // bookkeeping done. Woken first, an account reported empty here was taken out of
      // `backlogged` after the answers it woke had filled it again: no pass looked at it any
      // more, and the holders that went on waiting were never woken.
      if (account.address !== undefined && fromAddress <= this.options.maxPerAddress && fromAddress - delta > this.options.maxPerAddress) this.wake(account.address);
      return true;
    }
    const { maxTotal, maxPerAddress } = this.options;
    if (maxPerAddress > 0 && fromAddress > 2 * maxPerAddress && this.refreshAll() && this.unsent(account.address) > 2 * maxPerAddress) {
      this.evict(account, 'max-unsent-bytes-per-address', `more than ${2 * maxPerAddress} unsent bytes to this client address`);
      return false;
    }
    if ((maxTotal > 0 && this.total > maxTotal) || (maxPerAddress > 0 && fromAddress > maxPerAddress)) this.schedule(0);
    return true;
  }

  /** The holder is gone: its bytes leave the budget (idempotent). */
  close(account: UnsentAccount): void {
    if (account.closed) return;
    if (account.address !== undefined) {
      const waiting = this.waiting.get(account.address);
      // An address nobody waits for anymore leaves the map (a pass looks again while any wait).
      if (waiting?.delete(account) && waiting.size === 0) this.waiting.delete(account.address);
    }
    this.update(account, 0);
    account.closed = true;
  }

  /**
   * Whether the holder may send a full-state answer, or its next piece, now (sync step 2 and the
   * pieces before it, an awareness answer): true while its address is within its share. Else
   * false, and `wake` runs once the address is back within it (or never, if the holder closes
   * first). Every wake given is kept (the same function once): the waiters sharing an account
   * are all woken, and each checks again. So the requests of a non-reader's other connections
   * wait (coalesced, costing nothing) instead of each encoding a document the budget would then
   * have to evict: what one address holds is bounded before it is allocated, to its share plus
   * one piece (a state answer checks before each piece, see InTurn) plus the messages that never
   * wait (small ones, and broadcasts; edits made while a state goes out wait behind it in memory,
   * outside this count, up to 1 MiB per session, see InTurn.behind). What a closed holder left waiting is dropped at the next wake; an
   * address cannot stay over its share longer than the grace period without emptying (a pass
   * evicts it), so that is bounded too.
   */
  hasRoom(account: UnsentAccount, wake: () => void): boolean {
    const { maxPerAddress } = this.options;
    // A closed account's holder finds its send refused: waiting would only keep it (and what it
    // holds) in a map that nothing cleans for it any more.
    if (account.closed || account.address === undefined || maxPerAddress === 0 || (this.byAddress.get(account.address) ?? 0) <= maxPerAddress) return true;
    let waiting = this.waiting.get(account.address);
    if (!waiting) this.waiting.set(account.address, (waiting = new Map()));
    let wakes = waiting.get(account);
    if (!wakes) waiting.set(account, (wakes = new Set()));
    wakes.add(wake);
    // The count may be high (buffers that emptied since their last send): a pass refreshes it.
    this.schedule(0);
    return false;
  }

  /**
   * A refusal for a new heavy HTTP response to `address` while the budget is exceeded (its
   * share, or the total), else undefined. Counted in `capsync_limit_refusals_total`.
   */
  refusal(address: string | undefined): CapsyncError | undefined {
    const { maxTotal, maxPerAddress } = this.options;
    const over = (): Limit | undefined =>
      maxPerAddress > 0 && address !== undefined && (this.byAddress.get(address) ?? 0) > maxPerAddress
        ? 'max-unsent-bytes-per-address'
        : maxTotal > 0 && this.total > maxTotal
          ? 'max-unsent-bytes'
          : undefined;
    // Counts may be high (see the class): refuse on real ones.
    const limit = over() && this.refreshAll() ? over() : undefined;
    if (!limit) return undefined;
    this.metrics.limitRefusals.inc({ limit });
    return new CapsyncError('limit-exceeded', `--${limit}: too many unsent bytes ${limit === 'max-unsent-bytes' ? 'on the relay' : 'to this client address'}; read the responses you asked for, or retry later`);
  }

  /** Unsent bytes now: of the relay, or of one address. */
  unsent(address?: string): number {
    return address === undefined ? this.total : (this.byAddress.get(address) ?? 0);
  }

  /** Stops the pending pass (the relay is closing). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  /** Runs a pass in `delayMs`, or sooner if one is due sooner already. */
  private schedule(delayMs: number): void {
    const at = performance.now() + delayMs;
    if (this.timer) {
      if (at >= this.timerAt) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.pass();
    }, delayMs);
    this.timer.unref();
  }

  /** Closes the largest holders past their grace period until every bound holds (see the class). */
  /**
   * Asks the holders with unsent bytes for their real counts (an account that emptied leaves
   * the set; its address may wake). O(those holders): done by a pass, and before an at-once
   * eviction or a refusal, at most once per REFRESH_INTERVAL_MS (so a client cannot make the
   * relay do it per request); between two, counts are at most that stale. Returns true.
   */
  private refreshAll(force = false): true {
    const now = performance.now();
    if (this.refreshing || (!force && now - this.refreshedAt < REFRESH_INTERVAL_MS)) return true;
    this.refreshing = true;
    this.refreshedAt = now;
    try {
      for (const a of Array.from(this.backlogged)) a.holder.refresh?.();
    } finally {
      this.refreshing = false;
    }
    return true;
  }

  private pass(): void {
    const { maxTotal, maxPerAddress, graceMs } = this.options;
    this.refreshAll(true);
    const overTotal = (): boolean => maxTotal > 0 && this.total > maxTotal;
    const overShare = (a: UnsentAccount): boolean =>
      maxPerAddress > 0 && a.address !== undefined && (this.byAddress.get(a.address) ?? 0) > maxPerAddress;
    const now = performance.now();
    const due: UnsentAccount[] = [];
    let nextDue = Infinity;
    for (const a of this.backlogged) {
      if (!overTotal() && !overShare(a)) continue;
      if (now - a.since >= graceMs) due.push(a);
      else nextDue = Math.min(nextDue, a.since + graceMs);
    }
    due.sort((a, b) => b.bytes - a.bytes);
    for (const a of due) {
      if (a.closed) continue;
      if (overShare(a)) this.evict(a, 'max-unsent-bytes-per-address', `over ${maxPerAddress} unsent bytes to this client address for ${graceMs} ms`);
      else if (overTotal()) this.evict(a, 'max-unsent-bytes', `the relay holds over ${maxTotal} unsent bytes and this connection has not read for ${graceMs} ms`);
    }
    // Holders waiting for room send nothing, so nothing else reports their buffers draining:
    // look again shortly while any wait (without this they waited for the grace period, one
    // wake at a time; a multiplexed socket's sessions never all synced).
    if (this.waiting.size > 0) nextDue = Math.min(nextDue, now + REFRESH_INTERVAL_MS);
    if (nextDue < Infinity) this.schedule(Math.max(1, nextDue - now));
  }

  /** `address` is back within its share: its waiting holders may answer (each checks again). */
  private wake(address: string): void {
    const waiting = this.waiting.get(address);
    if (!waiting) return;
    this.waiting.delete(address);
    for (const wakes of waiting.values()) for (const wake of wakes) wake();
  }

  private evict(account: UnsentAccount, limit: Limit, message: string): void {
    this.metrics.limitRefusals.inc({ limit });
    this.close(account);
    account.holder.evict(new CapsyncError('slow-consumer', `--${limit}: ${message}`));
  }
}
