import type * as Y from 'yjs';
import { CapsyncError } from '../errors.js';
import { isEmptyUpdate } from '../yjs/validate-update.js';
import { AckOrder } from './ack-order.js';
import { DurableAcks } from './durable-acks.js';
import type { SessionHooks, SessionReplica } from './session-types.js';

const NO_CLIENTS: number[] = [];

/** What ReceivedUpdates needs of its DocSession. */
export interface ReceivedUpdatesHost {
  readonly replica: SessionReplica;
  readonly hooks: Pick<SessionHooks, 'applyUpdate' | 'barrier' | 'durable' | 'unexpected'>;
  /** Whether acks go out now: the other side speaks the extensions, this side acknowledges, the session is open. */
  acknowledging(): boolean;
  sendAck(seq: number, stateVector: Uint8Array): void;
  /** The document an ack's state vector entries are read from; null once the session closed (no ack then). */
  ackDoc(): Y.Doc | null;
  /** Closes the session (a commit failed). */
  fail(err: CapsyncError): void;
}

/**
 * The document messages (sync step 2, update) one session received: numbered from 1, applied
 * through the host, and acknowledged once each and every earlier one is durable (AckOrder),
 * coalesced per turn (DurableAcks). An empty update is a barrier: acknowledged once every
 * earlier message and every pending write of the replica (from any link) are durable. A
 * failed commit closes the session with 'storage-failure' (its sender resends: nothing after a
 * lost write is acknowledged). One per session: its numbers mean nothing to the next one.
 */
export class ReceivedUpdates {
  /** Count of document messages received. */
  private seq = 0;
  /** Made on first use: a client's session acknowledges nothing. */
  private order: AckOrder | null = null;
  private acks: DurableAcks | null = null;

  constructor(private readonly host: ReceivedUpdatesHost) {}

  receive(update: Uint8Array, kind: 'sync-step-2' | 'update'): void {
    const seq = ++this.seq;
    const receivedAt = performance.now();
    const { hooks } = this.host;
    if (isEmptyUpdate(update)) {
      // Nothing to store, but the ack still promises that everything applied so far (for
      // example this side's updates sent on an earlier link, or delivered by another tab) is
      // committed: wait for every pending write of the replica.
      this.inOrder().barrier(this.host.replica.whenWritesSettled()).then(() => this.committed(seq, NO_CLIENTS, receivedAt, kind), () => {});
      hooks.barrier(seq);
      return;
    }
    const applied = hooks.applyUpdate(update, seq);
    if (!applied) return;
    // An update waiting for dependencies may commit after later ones: ack in order.
    this.inOrder().update(applied.durable).then(
      () => this.committed(seq, applied.clients, receivedAt, kind),
      (err: unknown) => {
        if (err instanceof CapsyncError && err.code !== 'storage-failure') return this.host.fail(err);
        hooks.unexpected(err, 'commit');
        this.host.fail(new CapsyncError('storage-failure', 'update could not be stored; resend it'));
      },
    );
  }

  /** Acks go to a side that said hello only, coalesced per turn (DurableAcks). */
  private committed(seq: number, clients: number[], receivedAt: number, kind: 'sync-step-2' | 'update'): void {
    this.host.hooks.durable(receivedAt, kind);
    if (!this.host.acknowledging()) return;
    this.acks ??= new DurableAcks(
      (ackSeq, stateVector) => this.host.sendAck(ackSeq, stateVector),
      () => this.host.ackDoc(),
    );
    this.acks.committed(seq, clients);
  }

  private inOrder(): AckOrder {
    return (this.order ??= new AckOrder());
  }
}
