import { Backoff, StorageError, shouldCompact, type AppendResult } from '@capsync/core';
import type { DocReplication } from '../mesh/replication.js';
import type { BackgroundCompaction } from './doc-load.js';
import type { RelayDocDeps } from './relay-doc-deps.js';

/** Bounds of the wait between two tries of an append that could not reach storage. */
const RETRY = { baseMs: 50, maxMs: 2_000 };

/**
 * The appends of one document to storage: the part of RelayDoc's pipeline that makes changes
 * durable. Each append completes after every earlier one did ("this append committed" implies
 * the earlier ones did); each completion advances the relay's own replication position to what
 * had integrated when it was handed over, and may start a background compaction.
 *
 * Two kinds of failure:
 * - Storage could not be reached (a `retryable` StorageError: the database is down or
 *   partitioned away). The update stays in memory, where it already is, and is appended again,
 *   with backoff, until it commits: nothing is acknowledged meanwhile, and the relay tells its
 *   StorageOutage (/readyz 503). Updates commute, so one committed after a later one loads the
 *   same; completions stay in order. `stop` gives up (the relay is closing): the update was
 *   never acknowledged, so its sender still has it and sends it again.
 * - Any other failure calls `failed` (RelayDoc reloads the document from storage, so memory
 *   never holds acknowledged-looking content storage lacks) and rejects.
 */
export class DocAppends {
  /** The latest append handed to storage. */
  last: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private readonly backoff = new Backoff(RETRY);
  /** Wakes the appends waiting to be tried again (with `stop`: to give up). */
  private readonly sleeping = new Set<() => void>();
  private stopped = false;

  constructor(
    private readonly name: string,
    private readonly deps: Pick<RelayDocDeps, 'store' | 'metrics' | 'compaction' | 'outage'>,
    private readonly replication: DocReplication,
    private readonly compaction: BackgroundCompaction,
    private readonly failed: (err: unknown) => void,
  ) {}

  /** Hands `update` to storage; resolves once it and every earlier append are committed. */
  append(update: Uint8Array): Promise<void> {
    const { metrics, compaction } = this.deps;
    this.inFlight++;
    const started = performance.now();
    // Everything integrated so far is in this append or an earlier one.
    const position = this.replication.applied;
    const earlier = this.last.catch(() => {});
    const committed = this.commit(update).then(
      (result) => result,
      (err: unknown) => {
        // The document now holds content storage does not: reload it from storage, so that
        // nothing later (a resend of the same content, an update built on it) is acknowledged
        // on the strength of memory alone.
        if (!this.stopped) this.failed(err);
        throw err;
      },
    );
    return (this.last = Promise.all([committed, earlier])
      .then(([result]) => {
        metrics.persistSeconds.observe((performance.now() - started) / 1000);
        this.replication.recordLocalDurable(position);
        if (shouldCompact(result, compaction)) this.compaction.soon(result.position);
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

  /** Gives up the appends waiting for storage (they reject with their error); later ones are not tried again. */
  stop(): void {
    this.stopped = true;
    for (const wake of [...this.sleeping]) wake();
  }

  /** Appends `update`, again after each retryable failure until it commits or `stop`. */
  private async commit(update: Uint8Array): Promise<AppendResult> {
    const { store, outage } = this.deps;
    let waiting = false;
    try {
      for (;;) {
        try {
          const result = await store.append(this.name, update);
          this.backoff.reset();
          return result;
        } catch (err) {
          if (!(err instanceof StorageError && err.retryable) || this.stopped) throw err;
          if (!waiting) {
            waiting = true;
            outage.waitBegan();
          }
          await this.sleep(this.backoff.next());
          if (this.stopped) throw err;
          outage.retrying();
        }
      }
    } finally {
      if (waiting) outage.waitEnded();
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleeping.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleeping.add(wake);
    });
  }
}
