import { StorageError, shouldCompact } from '@capsync/core';
import type { DocReplication } from '../mesh/replication.js';
import type { BackgroundCompaction } from './doc-load.js';
import type { RelayDocDeps } from './relay-doc-deps.js';
import type { StorageRetries } from './storage-retries.js';

/**
 * The appends of one document to storage: the part of RelayDoc's pipeline that makes changes
 * durable. Each append completes after every earlier one did ("this append committed" implies
 * the earlier ones did); each completion advances the relay's own replication position to what
 * had integrated when it was handed over, and may start a background compaction.
 *
 * Two kinds of failure:
 * - Storage could not be reached (a `retryable` StorageError: the database is down or
 *   partitioned away). The update stays in memory, where it already is, and is appended again
 *   until it commits (StorageRetries): nothing is acknowledged meanwhile. If the retries are
 *   given up (the relay is closing), the append rejects with that error; it was never
 *   acknowledged, so its sender still has it.
 * - Any other failure calls `failed` (RelayDoc reloads the document from storage, so memory
 *   never holds acknowledged-looking content storage lacks) and rejects.
 */
export class DocAppends {
  /** The latest append handed to storage. */
  last: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly name: string,
    private readonly deps: Pick<RelayDocDeps, 'store' | 'metrics' | 'compaction'>,
    private readonly replication: DocReplication,
    private readonly compaction: BackgroundCompaction,
    private readonly retries: StorageRetries,
    private readonly failed: (err: unknown) => void,
    /** Told the position of each commit (the backend's onStoreDocument hook). */
    private readonly committed: (position: number) => void = () => {},
  ) {}

  /**
   * The incarnation the document loaded, passed with every append: the store refuses an append
   * of a deleted incarnation (DocumentDeletedError, then `failed`: RelayDoc drops the document).
   */
  incarnation = 0;

  /** Hands `update` to storage; resolves once it and every earlier append are committed. */
  append(update: Uint8Array): Promise<void> {
    const { store, metrics, compaction } = this.deps;
    this.inFlight++;
    const started = performance.now();
    // Everything integrated so far is in this append or an earlier one.
    const position = this.replication.applied;
    const earlier = this.last.catch(() => {});
    const committed = this.retries
      .run(() => store.append(this.name, update, this.incarnation))
      .catch((err: unknown) => {
        // The document now holds content storage does not: reload it from storage, so that
        // nothing later (a resend of the same content, an update built on it) is acknowledged
        // on the strength of memory alone. (A retryable error here: the retries were given up.)
        if (!(err instanceof StorageError && err.retryable)) this.failed(err);
        throw err;
      });
    return (this.last = Promise.all([committed, earlier])
      .then(([result]) => {
        metrics.persistSeconds.observe((performance.now() - started) / 1000);
        this.replication.recordLocalDurable(position);
        this.committed(result.position);
        if (shouldCompact(result, compaction)) this.compaction.soon(result.position, result);
      })
      .finally(() => {
        if (--this.inFlight === 0) {
          const waiters = this.waiters;
          this.waiters = [];
          for (const w of waiters) w();
        }
      }));
  }

  /** Resolves when every append handed to storage so far has been committed (or failed). */
  async settled(): Promise<void> {
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}
