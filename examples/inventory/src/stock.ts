/**
 * Stock counts: the CP half of the store. Each product's count is the fenced value
 * `stock/<id>` of the store's document, and the lock of the same name guards it.
 *
 * Reading a count is an AP read (this replica's copy, offline too). Changing one is a
 * read-modify-write that must never work from a stale count, or two buyers of the last item
 * would both get it. So every change:
 *
 * 1. takes the lock `stock/<id>` (waiting up to `waitMs` behind other buyers);
 * 2. catches this replica up with the relay (`whenSynced`). Holding the lock makes us the only
 *    writer from now on, but the previous holder's write may not have reached this replica
 *    yet: it was committed on the relay before that lock was released, so one sync round
 *    trip started after the grant is guaranteed to bring it;
 * 3. decides on the fresh count and writes the new one with `cp.set`, fenced by the lease: the
 *    relay refuses it if the lease is no longer current, so a buyer that stalled past its
 *    lease cannot overwrite a newer count. The write is conditional on the revision that was
 *    read (`ifRev`): if a previous holder's write was delayed past its lease and lands after
 *    our read, ours is refused (ConflictError) and steps 2-3 run again, instead of silently
 *    undoing that sale;
 * 4. gives the lock back.
 *
 * All of it runs under one deadline (`waitMs + timeoutMs`): cut off from the relay, a change
 * fails with UnavailableError by then instead of hanging, and nothing is written.
 */
import { UnavailableError, isCapsyncError, type CapsyncClient, type DocHandle } from '@capsync/client';

/** The fenced key, and lock, of a product's stock count. */
export function stockKey(productId: string): string {
  return `stock/${productId}`;
}

const STOCK_PREFIX = 'stock/';

export interface StockOptions {
  /** How long to wait while another purchase or restock of the product holds its lock. Default 2 s. */
  waitMs?: number;
  /** How long the relay and its lock authority may take to answer, on top of `waitMs`. Default 3 s. */
  timeoutMs?: number;
}

export type PurchaseResult =
  | { ok: true; productId: string; quantity: number; remaining: number }
  | { ok: false; reason: 'out-of-stock'; productId: string; quantity: number; available: number };

/**
 * The write was sent but its answer never came (the link dropped or the deadline passed): the
 * relay may or may not have applied it. Still an UnavailableError (code 'unavailable'), so
 * callers that only branch on the code keep working; this subclass lets a UI say so honestly.
 */
export class OutcomeUnknownError extends UnavailableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OutcomeUnknownError';
  }
}

const DEFAULT_WAIT_MS = 2_000;
const DEFAULT_TIMEOUT_MS = 3_000;

export class Stock {
  constructor(
    private readonly client: CapsyncClient,
    private readonly handle: DocHandle,
  ) {}

  /** The count as this replica knows it (works offline); undefined if never stocked. */
  get(productId: string): number | undefined {
    const value = this.handle.cp.get(stockKey(productId));
    return typeof value === 'number' ? value : undefined;
  }

  /** Every stocked product's count, by product id. */
  all(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [key, entry] of this.handle.cp.entries()) {
      if (key.startsWith(STOCK_PREFIX) && typeof entry.value === 'number') out.set(key.slice(STOCK_PREFIX.length), entry.value);
    }
    return out;
  }

  /**
   * Buys `quantity` of a product. Resolves with the new count, or with an 'out-of-stock'
   * result (nothing changed) when fewer are left. Rejects with UnavailableError when the relay
   * cannot be reached by the deadline (nothing was bought; OutcomeUnknownError if the final
   * write was sent but not confirmed), LockTimeoutError when other buyers held the product
   * for all of `waitMs`, LeaseLostError or StaleTokenError when the lease was lost midway
   * (nothing was bought).
   */
  purchase(productId: string, quantity: number, options: StockOptions = {}): Promise<PurchaseResult> {
    checkCount('quantity', quantity);
    return this.change<PurchaseResult>(productId, options, (available) =>
      available >= quantity
        ? { next: available - quantity, result: { ok: true, productId, quantity, remaining: available - quantity } }
        : { result: { ok: false, reason: 'out-of-stock', productId, quantity, available } },
    );
  }

  /** Adds `count` to a product's stock; resolves with the new count. Same errors as `purchase`. */
  restock(productId: string, count: number, options: StockOptions = {}): Promise<number> {
    checkCount('count', count);
    return this.change<number>(productId, options, (current) => ({ next: current + count, result: current + count }));
  }

  /** Steps 1 to 4 of the file comment; `decide` sees the fresh count and may decline to write. */
  private async change<R>(productId: string, options: StockOptions, decide: (current: number) => { next?: number; result: R }): Promise<R> {
    const waitMs = options.waitMs ?? DEFAULT_WAIT_MS;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = performance.now() + waitMs + timeoutMs;
    const remaining = (): number => Math.max(1, Math.ceil(deadline - performance.now()));
    // The document link is down (the app went offline, or the link was declared dead): the
    // fresh read of step 2 cannot happen, so say so now rather than take a lock and wait.
    if (this.handle.status === 'offline') {
      throw new UnavailableError(`"${this.handle.name}" is not connected to the relay; stock changes need it`);
    }
    const key = stockKey(productId);
    // The lease outlives the whole deadline, so it needs no renewal; a buyer that vanishes
    // mid-purchase blocks the product for at most this long.
    const lease = await this.client.locks.acquire(key, { ttlMs: 2 * (waitMs + timeoutMs), waitMs, timeoutMs });
    try {
      for (;;) {
        await this.handle.whenSynced({ timeoutMs: remaining() });
        const entry = this.handle.cp.entry(key);
        const { next, result } = decide(typeof entry?.value === 'number' ? entry.value : 0);
        if (next === undefined) return result;
        try {
          await this.handle.cp.set(key, next, lease, { timeoutMs: remaining(), ifRev: entry?.rev ?? 0 });
          return result;
        } catch (err) {
          if (isCapsyncError(err, 'conflict')) continue; // someone's late write landed: read again
          if (isCapsyncError(err, 'unavailable')) {
            throw new OutcomeUnknownError(`the stock change of "${productId}" was not confirmed: ${err.message}`, { cause: err });
          }
          throw err;
        }
      }
    } finally {
      // Within what is left of the deadline; if the relay does not hear it, the lease runs out.
      await lease.release({ timeoutMs: Math.min(remaining(), 1_000) }).catch(() => {});
    }
  }
}

function checkCount(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`${what} must be a positive whole number, not ${n}`);
}
