import type { DocSession } from '@capsync/core';
import type { RelayMetrics } from '../metrics.js';

/**
 * Refuses the updates of a connection with read access, without closing it: a capsync side
 * (it said hello) gets a typed `error` naming the refused message; a stock y-websocket client
 * gets y-protocols' permission-denied message (`auth-denied`), once, as that is all it
 * understands.
 */
export class ReadOnlyRefusal {
  private deniedNotified = false;

  constructor(
    private readonly session: DocSession,
    private readonly docName: string,
    private readonly metrics: Pick<RelayMetrics, 'refusals'>,
  ) {}

  /** Refuses received document message `seq`. */
  refuse(seq: number): void {
    this.metrics.refusals.inc({ reason: 'read-only' });
    if (this.session.extended) {
      this.session.send({ type: 'error', code: 'read-only', message: `read-only access to "${this.docName}": update refused`, seq });
    } else if (!this.deniedNotified) {
      this.deniedNotified = true;
      this.session.send({ type: 'auth-denied', reason: 'read-only: updates are refused' });
    }
  }
}
