import type * as Y from 'yjs';
import { docFromUpdates, shouldCompact, verifiedSnapshot } from '@capsync/core';
import type { RelayDocDeps } from './relay-doc.js';

/**
 * Loading a document from storage and merging its log into a snapshot (RelayDoc's storage
 * side, apart from the live pipeline).
 */

/**
 * Builds a document from storage, skipping (and reporting) stored updates Yjs cannot apply;
 * merges the log into one snapshot on load, so the next load reads one snapshot.
 */
export async function loadDoc(name: string, deps: RelayDocDeps): Promise<{ doc: Y.Doc; head: number; incarnation: number }> {
  const stored = await deps.store.load(name);
  const { doc, skipped } = docFromUpdates(stored.updates);
  if (skipped.length > 0) {
    // Kept in storage (never delete data we cannot read); compaction will not drop them either
    // unless a verified snapshot replaces them.
    deps.logger.error({ doc: name, skipped: skipped.length }, 'stored updates that Yjs cannot apply were skipped');
    deps.metrics.refusals.inc({ reason: 'invalid-update' }, skipped.length);
  }
  if (skipped.length === 0 && stored.logCount > 0 && (stored.logCount > 1 || stored.updates.length > 1)) {
    // Merge on load: the next load reads one snapshot instead of replaying the log.
    await compactInto(name, doc, stored.head, deps, stored.incarnation);
  }
  return { doc, head: stored.head, incarnation: stored.incarnation };
}

/** Replaces the stored log up to `through` with a verified snapshot of `doc`; false when there is no snapshot to store. */
export async function compactInto(name: string, doc: Y.Doc, through: number, deps: RelayDocDeps, incarnation: number): Promise<boolean> {
  const snapshot = verifiedSnapshot(doc);
  if (!snapshot) {
    deps.logger.error({ doc: name }, 'no snapshot of the document loads back; keeping the log');
    return false;
  }
  if (snapshot.droppedPending) deps.logger.warn({ doc: name }, 'pending structs that do not load back were left out of the snapshot');
  // Of this incarnation only: a compaction that runs into a delete changes nothing (DocStore).
  await deps.store.compact(name, snapshot.update, through, incarnation);
  deps.metrics.compactions.inc();
  return true;
}

/**
 * Merges a loaded document's log into a snapshot, off the hot path, up to the newest committed
 * position. The snapshot is the current state, which contains every committed update (each was
 * applied before it was appended), and maybe later ones: harmless, Yjs updates are idempotent.
 * Crossings of the threshold during a compaction run it once more afterwards, if what that
 * compaction leaves in the log is over the threshold by itself.
 */
export class BackgroundCompaction {
  private running: Promise<void> | null = null;
  private again = false;
  private through = 0;
  /** The log as the newest append asking for a compaction left it (its position, count and bytes). */
  private latest: { position: number; logCount: number; logBytes: number } | null = null;
  /** The log at the running compaction's `through`, when known: what it removes. */
  private runningBase: { logCount: number; logBytes: number } | null = null;
  /** The running compaction took its `through` (before, what is asked is covered by it, see `soon`). */
  private started = false;
  /** Asked for before it took its `through`, or during it under the threshold: redone if it removes nothing. */
  private askedEarly = false;
  private askedDuring = false;
  /** The incarnation of the document it compacts (set by RelayDoc as it loads and reloads). */
  incarnation = 0;

  constructor(
    private readonly name: string,
    private readonly deps: RelayDocDeps,
    /** The document to snapshot; null while it must not be (paused, or destroyed). */
    private readonly current: () => Y.Doc | null,
    /** True once the document is destroyed: nothing is scheduled any more. */
    private readonly gone: () => boolean,
    /** See `soon`. */
    private readonly held: () => number = () => Number.POSITIVE_INFINITY,
  ) {}

  /**
   * Compacts through `through` soon (once more after the running compaction, if any), or through
   * `held()` if that is lower: the highest position the document is known to hold every entry up
   * to. On a store only this relay writes, every committed append; in a cluster, other relays
   * append too, so what this relay applied (ClusterFollower.appliedThrough).
   *
   * `log`: the log's size with the entry at `through` (an append's result). While a compaction
   * runs, every append still sees the log over the threshold (the compaction has not committed)
   * and asked for another: each compaction was followed by a nearly empty one (bench:cluster:
   * about one per 250 updates at a 500 threshold), and on a store with one write at a time each
   * holds the appends behind it. Now the next one is asked for only when the entries appended
   * since the running one's `through` are over the threshold themselves (or that is unknown).
   */
  soon(through: number, log?: { logCount: number; logBytes: number }): void {
    this.through = Math.max(this.through, through);
    if (log && through >= (this.latest?.position ?? 0)) this.latest = { position: through, logCount: log.logCount, logBytes: log.logBytes };
    if (this.running) {
      // Not started yet: it will take the newest `through` (decided when it starts).
      if (!this.started) this.askedEarly = true;
      else {
        const base = this.runningBase;
        if (!base || !log) this.again = true;
        else if (shouldCompact({ logCount: log.logCount - base.logCount, logBytes: log.logBytes - base.logBytes }, this.deps.compaction)) this.again = true;
        else this.askedDuring = true;
      }
      return;
    }
    this.started = false;
    this.askedEarly = false;
    this.askedDuring = false;
    let compacted = false;
    this.running = new Promise<void>((resolve) => setImmediate(resolve))
      .then(async () => {
        this.started = true;
        const doc = this.current();
        const through = Math.min(this.through, this.held());
        const latest = this.latest;
        this.runningBase = latest && latest.position === through ? { logCount: latest.logCount, logBytes: latest.logBytes } : null;
        // Asked for before it started, and it does not reach the newest position (held lower): once more.
        if (this.askedEarly && this.runningBase === null) this.again = true;
        if (doc && through > 0) compacted = await compactInto(this.name, doc, through, this.deps, this.incarnation);
      })
      .catch((err: unknown) => this.deps.logger.error({ err, doc: this.name }, 'compaction failed; the log is kept'))
      .finally(() => {
        // It removed nothing (failed, no snapshot, the document paused): what asked meanwhile asks again.
        if (!compacted && (this.askedDuring || this.askedEarly)) this.again = true;
        this.running = null;
        this.runningBase = null;
        this.started = false;
        if (this.again && !this.gone()) {
          this.again = false;
          this.soon(this.through);
        }
      });
  }

  /** Resolves once no compaction is running. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }
}
