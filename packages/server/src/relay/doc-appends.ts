import { shouldCompact } from '@capsync/core';
import type { DocReplication } from '../mesh/replication.js';
import type { BackgroundCompaction } from './doc-load.js';
import type { RelayDocDeps } from './relay-doc-deps.js';

/**
 * The appends of one document to storage: the part of RelayDoc's pipeline that makes changes
 * durable. Appends commit in call order (the DocStore contract), so "this append committed"
 * implies every earlier one did; each commit advances the relay's own replication position
 * to what had integrated when it was handed over, and may start a background compaction. An
 * append that fails calls `failed` (RelayDoc reloads the document from storage, so memory
 * never holds acknowledged-looking content storage lacks) and rejects.
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
    private readonly failed: (err: unknown) => void,
  ) {}

  /** Hands `update` to storage; resolves once it is committed. */
  append(update: Uint8Array): Promise<void> {
    const { store, metrics, compaction } = this.deps;
    this.inFlight++;
    const started = performance.now();
    // Everything integrated so far is in this append or an earlier one (appends commit in order).
    const position = this.replication.applied;
    return (this.last = store
      .append(this.name, update)
      .then(
        (result) => {
          metrics.persistSeconds.observe((performance.now() - started) / 1000);
          this.replication.recordLocalDurable(position);
          if (shouldCompact(result, compaction)) this.compaction.soon(result.position);
        },
        (err: unknown) => {
          // The document now holds content storage does not: reload it from storage, so that
          // nothing later (a resend of the same content, an update built on it) is acknowledged
          // on the strength of memory alone.
          this.failed(err);
          throw err;
        },
      )
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
