import type * as Y from 'yjs';
import { encodeStateVectorOf } from '../yjs/doc-state.js';

/**
 * The durable acks of one link (a client's connection, or a link to a peer relay), coalesced:
 * one ack per turn carries the highest committed message seq, and the state vector entries of
 * the client ids the messages it acknowledges wrote. That is what changed, so an ack costs what
 * the updates hold, never what the document holds (a document with a million client ids has a
 * state vector of megabytes).
 */
export class DurableAcks {
  private next: { seq: number; clients: Set<number> } | null = null;
  private scheduled = false;

  /**
   * `send` sends one ack; `doc` is the document the state vector entries are read from, or
   * null when the link is gone (nothing is sent then).
   */
  constructor(
    private readonly send: (seq: number, stateVector: Uint8Array) => void,
    private readonly doc: () => Y.Doc | null,
  ) {}

  /** Message `seq`, which wrote `clients` (none for a barrier), is committed. */
  committed(seq: number, clients: readonly number[]): void {
    this.next ??= { seq, clients: new Set() };
    if (seq > this.next.seq) this.next.seq = seq;
    for (const c of clients) this.next.clients.add(c);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      const ack = this.next;
      this.next = null;
      const doc = this.doc();
      if (ack && doc) this.send(ack.seq, encodeStateVectorOf(doc, ack.clients));
    });
  }
}
