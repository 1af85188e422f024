import type { RelayMetrics } from '../metrics.js';
import type { RelayDoc } from './relay-doc.js';

/**
 * The quorum wait of one connection's latest barrier (an empty update from a client that asked
 * for quorum acknowledgements): once everything the relay has applied by then is durable on a
 * majority of the mesh, `answer` runs. In a minority partition that never happens; the client's
 * flush times out with UnavailableError. One waiter per connection: a newer barrier replaces an
 * unanswered one (its ack, carrying the newer seq, answers both), so a client flushing through
 * a long partition costs nothing more.
 */
export class QuorumBarrier {
  /** Cancels the unanswered wait, if any. */
  private cancelWait: (() => void) | null = null;

  constructor(private readonly metrics: Pick<RelayMetrics, 'quorumWaits'>) {}

  /** Waits for a majority to hold what `doc` has applied now, then calls `answer`. */
  await(doc: RelayDoc, answer: () => void): void {
    this.cancel('superseded');
    let answered = false;
    const cancel = doc.replication.whenQuorum(doc.replication.applied, () => {
      // May run synchronously, inside whenQuorum: nothing to cancel then.
      answered = true;
      this.cancelWait = null;
      this.metrics.quorumWaits.inc({ outcome: 'acked' });
      answer();
    });
    if (answered) return;
    this.cancelWait = cancel;
    doc.requestPeerAcks();
  }

  /** Gives up the unanswered wait, if any (a newer barrier, or the connection closed). */
  cancel(outcome: 'superseded' | 'abandoned'): void {
    if (!this.cancelWait) return;
    this.cancelWait();
    this.cancelWait = null;
    this.metrics.quorumWaits.inc({ outcome });
  }
}
