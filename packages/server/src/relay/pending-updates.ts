import * as Y from 'yjs';
import { CapsyncError, LimitExceededError, NotOwnerError, dropPending, hasPending, pendingBytes } from '@capsync/core';
import type { RelayMetrics } from '../metrics.js';
import type { UpdateSource } from './origins.js';
import { integrated, type UpdateLimits, type UpdateWriter, type WaitPrediction } from './update-admission.js';

/**
 * Bytes one pending deletion range counts for against `--max-pending-bytes-per-doc`. Yjs
 * re-reads the document's pending deletions in EVERY apply (not only in those that may
 * complete them), about 0.8 µs per range on the 2-core CI machine: 64 KiB of them (13,000
 * ranges of 5 bytes) made every update, honest ones too, cost 10 ms. Weighted like this, the
 * default cap allows 256 pending ranges, ~0.2 ms per apply, and still plenty for a legit
 * out-of-order deletion (one range per deleted run of another tab's text).
 */
export const PENDING_DELETION_RANGE_BYTES = 256;

/** An admitted update, as `PendingUpdates` remembers it should it wait. */
export interface Sent {
  /** Who sent it (counted against `--max-pending-updates-per-connection`), if known. */
  source: UpdateSource | undefined;
  /** The update as received (re-applied when other pending content is evicted). */
  update: Uint8Array;
  writer: UpdateWriter;
  /** Client ids nobody owned that it inserts content under, declared or not (see Admission.unowned). */
  unowned: number[];
  /** Those of them new to the document that its writer did not declare (see Admission.carried). */
  carried: number[];
}

/**
 * What becomes of a wait whose content integrated (see `PendingUpdates.settle`): null when
 * nothing is to be claimed, a commit of the claims it made, or why it must be refused.
 */
export type LateClaim = (sent: Sent) => Promise<void> | CapsyncError | null;

interface Waiter extends Sent {
  needs: Map<number, number>;
  resolve(committed: Promise<void>): void;
  reject(err: CapsyncError): void;
  timer: NodeJS.Timeout;
}

/** The limits PendingUpdates enforces. */
export type PendingLimits = Pick<
  UpdateLimits,
  'pendingTimeoutMs' | 'maxPendingBytesPerDoc' | 'maxPendingUpdatesPerConnection' | 'maxPendingUpdatesPerDoc'
>;

/**
 * Updates of one document that Yjs holds back as pending (their dependencies have not
 * arrived), waiting to integrate. Such content is kept in memory only (Yjs's pending
 * structs) and acknowledged only once it integrated and was committed with the update that
 * completed it; meanwhile the sender's acks wait. A dependency that does not arrive within
 * `--pending-timeout-ms` fails the wait with `missing-dependencies`. Content nobody waits for
 * any more is dropped from the document, so it never lingers.
 *
 * Cost. Yjs keeps all pending content of a document as one merged update: every update that
 * leaves content pending is merged into it, every update that may complete some of it
 * re-applies all of it, and pending deletions are re-read in every transaction. So an apply
 * costs what the update holds plus what is pending. That second term is what the caps bound,
 * and they are checked BEFORE the update is handed to Yjs (`admit`, from the admission
 * checks), so a refused update costs its decode only:
 * - `--max-pending-bytes-per-doc` (default 64 KiB) caps the pending term: any apply costs at
 *   most the update's own size plus a merge or re-integration of 64 KiB of pending content
 *   (~0.65 ms per merge, scaled from the review's 9 ms at 0.9 MiB; 2.2 ms per honest
 *   keystroke on average, measured, when each of 300 keystrokes completes part of 64 KiB of
 *   small pending structs planted to depend on them), however many updates wait. Pending deletion ranges, re-read in
 *   every apply, count `PENDING_DELETION_RANGE_BYTES` each.
 * - `--max-pending-updates-per-connection` / `--max-pending-updates-per-doc` (16 / 64) cap
 *   how many of those merges one connection, and all of them together, can cause before
 *   their waits end (dependencies arrive or `--pending-timeout-ms` passes), and how many
 *   waiters each apply checks (`settle`).
 * Over a cap only the newcomer is refused (`limit-exceeded`, with the cap's flag name):
 * honest senders already waiting keep waiting.
 *
 * A sender whose wait failed never got an ack, so nothing acknowledged is lost: a real client
 * keeps the update in its outbox and offers it again (with its dependencies) on reconnect.
 */
export class PendingUpdates {
  private readonly waiters = new Set<Waiter>();
  private readonly perSource = new Map<UpdateSource, number>();
  /** Waiters by the unowned client ids their content is under (see `evict`). */
  private readonly byUnowned = new Map<number, Set<Waiter>>();
  /** The document's pending deletions last counted, and their range count (see `pendingCost`). */
  private countedDs: Uint8Array | null = null;
  private countedRanges = 0;

  constructor(
    private readonly doc: () => Y.Doc,
    private readonly limits: PendingLimits,
    private readonly metrics: Pick<RelayMetrics, 'limitRefusals'>,
    /** Checks and claims the unowned ids of content that integrated after it waited. */
    private readonly lateClaim: LateClaim = () => null,
  ) {}

  get size(): number {
    return this.waiters.size;
  }

  /**
   * Before an update is applied: records who sends it and, when it will wait for missing
   * dependencies (`prediction`, from `wouldWait`), refuses it if waiting would pass a cap.
   * Costs O(1) for an update that will not wait. Throws LimitExceededError (the caller counts
   * the refusal).
   */
  admit(sent: Sent, prediction: WaitPrediction): void {
    if (!prediction.waits) return;
    const over = this.overCap(sent.source, sent.update.byteLength + prediction.deletionRanges * PENDING_DELETION_RANGE_BYTES);
    if (over) throw over;
  }

  /**
   * After every apply: resolves the waits the apply completed with `committed` (the commit of
   * what it integrated, which includes their content).
   */
  settle(committed: Promise<void>): void {
    if (this.waiters.size === 0) return;
    const doc = this.doc();
    for (const w of this.waiters) {
      if (!integrated(doc, w.needs)) continue;
      this.remove(w);
      // Its ids are checked against the claims as they are now, and claimed for its sender.
      const late = w.unowned.length > 0 ? this.lateClaim(w) : null;
      if (late instanceof CapsyncError) w.reject(late);
      else w.resolve(late ? Promise.all([committed, late]).then(() => {}) : committed);
    }
  }

  /**
   * `owner` is claiming `clientIds`: content of another identity waiting under any of them
   * (sent while nobody owned them) must never integrate under the owner's ids. Its waits are
   * refused (`not-owner`) and the document's pending content is rebuilt without it: dropped,
   * and the updates of the other waits returned, for the caller to apply again (they wait
   * again, as before). Call before applying the update that makes the claims. Costs a lookup
   * per claimed id; a rebuild re-applies at most the pending caps' worth of updates.
   */
  evict(owner: string, clientIds: number[]): Uint8Array[] {
    if (this.byUnowned.size === 0) return [];
    const evicted = new Set<Waiter>();
    for (const id of clientIds) {
      for (const w of this.byUnowned.get(id) ?? []) if (w.writer.identity !== owner) evicted.add(w);
    }
    if (evicted.size === 0) return [];
    for (const w of evicted) {
      this.remove(w);
      w.reject(new NotOwnerError('another identity wrote under a client id your pending update uses; write under your own client id'));
    }
    dropPending(this.doc());
    return Array.from(this.waiters, (w) => w.update);
  }

  /**
   * An update that left content pending: resolves once it integrated and was committed;
   * rejects with CapsyncError when it is given up. Only this update is refused when a cap is
   * passed (`admit` predicts waiting from the update's references; this catches what the
   * prediction missed, after the fact): the others keep waiting.
   */
  wait(needs: Map<number, number>, sent: Sent = { source: undefined, update: new Uint8Array(0), writer: { trusted: true, identity: null }, unowned: [], carried: [] }): Promise<void> {
    const source = sent.source;
    // Its content is pending already (Yjs merged it): only the bytes over the cap matter now.
    const over = this.overCap(source, 0);
    if (over) {
      this.metrics.limitRefusals.inc({ limit: over.limit });
      // With nobody else waiting, the refused content goes at once; otherwise with the last wait.
      if (this.waiters.size === 0) dropPending(this.doc());
      return Promise.reject(over);
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        ...sent,
        needs,
        resolve,
        reject,
        timer: setTimeout(() => {
          const err = new CapsyncError('missing-dependencies', `the update's dependencies did not arrive within ${this.limits.pendingTimeoutMs} ms; it was not stored`);
          this.remove(w);
          w.reject(err);
        }, this.limits.pendingTimeoutMs),
      };
      w.timer.unref();
      this.waiters.add(w);
      if (source !== undefined) this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
      for (const id of w.unowned) {
        const set = this.byUnowned.get(id);
        if (set) set.add(w);
        else this.byUnowned.set(id, new Set([w]));
      }
    });
  }

  /** Gives up every wait (the document is unloaded, or reloaded without the pending content). */
  failAll(err: CapsyncError): void {
    for (const w of this.waiters) {
      this.remove(w);
      w.reject(err);
    }
  }

  /** The cap one more wait, bringing `bytes` more pending content, would pass, if any. */
  private overCap(source: UpdateSource | undefined, bytes: number): LimitExceededError | null {
    const { maxPendingUpdatesPerDoc, maxPendingUpdatesPerConnection, maxPendingBytesPerDoc } = this.limits;
    if (source !== undefined && (this.perSource.get(source) ?? 0) >= maxPendingUpdatesPerConnection) {
      return new LimitExceededError('max-pending-updates-per-connection', `${maxPendingUpdatesPerConnection} updates of this connection already wait for missing dependencies; send their dependencies first`);
    }
    if (this.waiters.size >= maxPendingUpdatesPerDoc) {
      return new LimitExceededError('max-pending-updates-per-doc', `${maxPendingUpdatesPerDoc} updates of this document already wait for missing dependencies`);
    }
    if (this.pendingCost() + bytes > maxPendingBytesPerDoc) {
      return new LimitExceededError('max-pending-bytes-per-doc', `over ${maxPendingBytesPerDoc} bytes of this document would wait for missing dependencies`);
    }
    return null;
  }

  /**
   * The pending content's bytes, its deletion ranges weighted (`PENDING_DELETION_RANGE_BYTES`).
   * Counting the ranges decodes the pending deletions, which the cap keeps small, and only
   * when they changed since the last count.
   */
  private pendingCost(): number {
    const doc = this.doc();
    const ds = doc.store.pendingDs;
    if (ds !== this.countedDs) {
      this.countedDs = ds;
      this.countedRanges = 0;
      if (ds !== null) {
        try {
          for (const ranges of Y.decodeUpdateV2(ds).ds.clients.values()) this.countedRanges += ranges.length;
        } catch {
          this.countedRanges = Math.ceil(ds.byteLength / 2); // unreadable: assume the densest encoding
        }
      }
    }
    return pendingBytes(doc) + this.countedRanges * PENDING_DELETION_RANGE_BYTES;
  }

  private remove(w: Waiter): void {
    clearTimeout(w.timer);
    if (!this.waiters.delete(w)) return;
    for (const id of w.unowned) {
      const set = this.byUnowned.get(id);
      if (set?.delete(w) && set.size === 0) this.byUnowned.delete(id);
    }
    if (w.source !== undefined) {
      const n = (this.perSource.get(w.source) ?? 1) - 1;
      if (n > 0) this.perSource.set(w.source, n);
      else this.perSource.delete(w.source);
    }
    // Whatever is still pending now belongs to senders that were refused: drop it.
    if (this.waiters.size === 0 && hasPending(this.doc())) dropPending(this.doc());
  }
}
