import type * as Y from 'yjs';
import { CapsyncError, LimitExceededError, dropPending, hasPending, pendingBytes } from '@capsync/core';
import type { RelayMetrics } from '../metrics.js';
import { integrated, type UpdateLimits } from './update-admission.js';

interface Waiter {
  needs: Map<number, number>;
  resolve(committed: Promise<void>): void;
  reject(err: CapsyncError): void;
  timer: NodeJS.Timeout;
}

/**
 * Updates of one document that Yjs holds back as pending (their dependencies have not
 * arrived), waiting to integrate. Such content is kept in memory only (Yjs's pending
 * structs) and acknowledged only once it integrated and was committed with the update that
 * completed it; meanwhile the sender's acks wait. A dependency that does not arrive within
 * `--pending-timeout-ms` fails the wait with `missing-dependencies`; pending content over
 * `--max-pending-bytes-per-doc`
 * fails every wait with `limit-exceeded` ('max-pending-bytes-per-doc'). Content nobody waits
 * for any more is dropped from the document, so it never lingers.
 *
 * A sender whose wait failed never got an ack, so nothing acknowledged is lost: a real client
 * keeps the update in its outbox and offers it again (with its dependencies) on reconnect.
 */
export class PendingUpdates {
  private readonly waiters = new Set<Waiter>();

  constructor(
    private readonly doc: () => Y.Doc,
    private readonly limits: Pick<UpdateLimits, 'pendingTimeoutMs' | 'maxPendingBytesPerDoc'>,
    private readonly metrics: Pick<RelayMetrics, 'limitRefusals'>,
  ) {}

  get size(): number {
    return this.waiters.size;
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
      w.resolve(committed);
    }
  }

  /**
   * An update that left content pending: resolves once it integrated and was committed;
   * rejects with CapsyncError when it is given up.
   */
  wait(needs: Map<number, number>): Promise<void> {
    const maxBytes = this.limits.maxPendingBytesPerDoc;
    if (pendingBytes(this.doc()) > maxBytes) {
      const err = new LimitExceededError('max-pending-bytes-per-doc', `over ${maxBytes} bytes of this document wait for missing dependencies`);
      this.metrics.limitRefusals.inc({ limit: err.limit });
      this.failAll(err);
      dropPending(this.doc());
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
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
    });
  }

  /** Gives up every wait (the document is unloaded, or reloaded without the pending content). */
  failAll(err: CapsyncError): void {
    for (const w of this.waiters) {
      this.remove(w);
      w.reject(err);
    }
  }

  private remove(w: Waiter): void {
    clearTimeout(w.timer);
    this.waiters.delete(w);
    // Whatever is still pending now belongs to senders that were refused: drop it.
    if (this.waiters.size === 0 && hasPending(this.doc())) dropPending(this.doc());
  }
}
