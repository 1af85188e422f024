import { StaleTokenError } from '../errors.js';

/**
 * Where a `FencedResource` keeps the highest token it has accepted per key. Keep it in the
 * same place as the resource (the same database, the same file system) so the token and the
 * write it guards are stored together. The default keeps it in memory.
 *
 * Contract: `get` returns the last token `set` for the key (undefined if none), per key, and a
 * durable store still returns it after a restart; so that a `FencedResource` over it refuses a
 * write with an older token. Checked by `fenceStoreConformance` (`@capsync/core/conformance`,
 * locks/fence-store-conformance.ts): run it against your own store.
 */
export interface FenceStore {
  get(key: string): number | undefined | Promise<number | undefined>;
  set(key: string, token: number): void | Promise<void>;
}

/** A `FenceStore` in memory: fine for tests and for resources that live in this process. */
export class MemoryFenceStore implements FenceStore {
  private readonly tokens = new Map<string, number>();
  get(key: string): number | undefined {
    return this.tokens.get(key);
  }
  set(key: string, token: number): void {
    this.tokens.set(key, token);
  }
}

/**
 * The fencing check for a resource capsync does not own (a database row, a file, an external
 * API): a write carrying a lease's token is applied only if that token is at least the
 * highest the resource has accepted for the key, so a holder whose lease ran out (a paused
 * process, a slow network) can never overwrite what a newer holder wrote.
 *
 * Writes to one key are serialized: the check, the new high-water mark and `apply` happen as
 * one step, with no other write to that key in between. Writes to different keys run
 * concurrently.
 *
 * ```ts
 * const stock = new FencedResource()
 * await stock.write('sku-42', lease.token, () => db.update(...))   // StaleTokenError if stale
 * ```
 */
export class FencedResource {
  private readonly store: FenceStore;
  private readonly tails = new Map<string, Promise<unknown>>();

  constructor(options: { store?: FenceStore } = {}) {
    this.store = options.store ?? new MemoryFenceStore();
  }

  /** The highest token accepted for `key`, or undefined. */
  async highest(key: string): Promise<number | undefined> {
    return this.store.get(key);
  }

  /**
   * Runs `apply` if `token` is at least the highest token accepted for `key`, and records
   * `token` as the new highest before it runs. Rejects with `StaleTokenError` (and does not
   * run `apply`) otherwise. If `apply` fails, the token stays recorded: a holder whose write
   * failed half-way must not be overtaken by an older holder.
   */
  write<T>(key: string, token: number, apply: () => T | Promise<T>): Promise<T> {
    if (!Number.isSafeInteger(token) || token < 1) return Promise.reject(new RangeError(`fencing token must be a positive integer, got ${token}`));
    const prev = this.tails.get(key) ?? Promise.resolve();
    const run = prev.then(async () => {
      const highest = await this.store.get(key);
      if (highest !== undefined && token < highest) {
        throw new StaleTokenError(`token ${token} for "${key}" is stale: ${highest} has written since`);
      }
      if (highest !== token) await this.store.set(key, token);
      return apply();
    });
    const tail = run.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }
}
