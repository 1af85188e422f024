import { BroadcastBatch } from './broadcast-batch.js';
import type { DocOwnership } from './doc-ownership.js';
import type { DocPeer } from './relay-doc-deps.js';

/** A Yjs update with nothing in it (what `requestPeerAcks` sends). */
const EMPTY_UPDATE = new Uint8Array([0, 0]);

/**
 * The fan-out of one document: every change that integrated is queued here with the peer it
 * came from, and sent once per event-loop turn to every other peer (BroadcastBatch merges them;
 * in a busy turn a client may get its own small changes back with the others'), after the client id claims the changes are written under (DocOwnership.flush). While
 * `held` (a fenced write is being committed) nothing is sent: nobody may see a value before it
 * is durable. Part of RelayDoc, which decides when to hold, truncate and flush.
 */
export class DocBroadcast {
  /** A fenced write is being committed: nothing may be sent yet (flushed when it committed). */
  held = false;
  private readonly batch = new BroadcastBatch<DocPeer>();
  private scheduled = false;
  private readonly flushLater = (): void => this.flush();

  constructor(
    private readonly peers: ReadonlySet<DocPeer>,
    private readonly ownership: DocOwnership,
  ) {}

  /** Changes queued and not yet sent. */
  get size(): number {
    return this.batch.size;
  }

  /** Drops changes queued after the queue had `size` (a transaction that failed, a write never committed). */
  truncate(size: number): void {
    this.batch.truncate(size);
  }

  /**
   * Queues a change from `source` (null: made on the relay itself) for the other peers (and, in
   * a busy turn, a small one back to a client `source` too: BroadcastBatch.take).
   */
  queue(update: Uint8Array, source: DocPeer | null): void {
    this.batch.add(update, source);
    this.schedule();
  }

  /** Sends what is queued at the end of this event-loop turn. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushLater);
  }

  /** Sends what is queued now (unless held). */
  flush(): void {
    this.scheduled = false;
    if (this.held) return; // flushed when the fenced write committed
    this.ownership.flush(this.peers); // claims before the content written under them
    if (this.batch.size === 0) return;
    const updateFor = this.batch.take();
    for (const peer of this.peers) {
      // A relay peer must not get its own changes back (it would store them again); clients may.
      const update = updateFor(peer, peer.peerRelayId === undefined);
      if (update) peer.sendUpdate(update);
    }
  }

  /**
   * Asks every peer relay linked for this document for a fresh acknowledgement: an empty
   * update, which a peer acks once its store committed everything it applied. Quorum waiters
   * need it because a change a peer sent us counts as durable there only through an ack of a
   * later message, and nothing else may be on its way to that peer. Skipped while broadcasts
   * are queued or held: an ack of the empty update would then claim changes not yet sent, and
   * the broadcasts bring acks themselves.
   */
  requestPeerAcks(): void {
    this.flush();
    if (this.held || this.batch.size > 0) return;
    for (const peer of this.peers) if (peer.peerRelayId !== undefined) peer.sendUpdate(EMPTY_UPDATE);
  }
}
