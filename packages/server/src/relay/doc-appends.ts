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
  /**
   * Settles once every append handed to storage so far has committed or failed. A chain, not a
   * count of appends in flight: waiting for that count to reach zero never ended while appends
   * kept coming (a barrier's ack then waited as long as its document was busy).
   */
  private allSettled: Promise<void> = Promise.resolve();

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
    const last = Promise.all([committed, earlier]).then(([result]) => {
      metrics.persistSeconds.observe((performance.now() - started) / 1000);
      this.replication.recordLocalDurable(position);
      this.committed(result.position);
      if (shouldCompact(result, compaction)) this.compaction.soon(result.position, result);
    });
    this.last = last;
    // After its bookkeeping (the durable position recorded), and after every earlier append's.
    this.allSettled = Promise.all([this.allSettled, last.catch(() => {})]).then(() => {});
    return last;
  }

  /**
   * Resolves when every append handed to storage so far has been committed (or failed); those
   * handed over later are not waited for (a barrier's ack must not wait for a busy document to
   * go quiet).
   */
  settled(): Promise<void> {
    return this.allSettled;
  }

  /**
   * Resolves once no append is in flight: also those handed over while it waits (unload,
   * shutdown and recovery, where only the cluster's notes may still add one).
   */
  async drained(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.allSettled;
      await seen;
    } while (seen !== this.allSettled);
  }
}
