import * as Y from 'yjs';
import { CapsyncError, type Message } from '@capsync/core';
import { withTimeout } from '../deadline.js';
import { FROM_RELAY } from './origins.js';
import type { Outbox, OutboxEntry } from './outbox.js';
import type { DocLink } from './session-link.js';

/** A Yjs update with nothing in it: the barrier of a quorum flush. */
const EMPTY_UPDATE = new Uint8Array([0, 0]);

/** What a DocSession reports to its document handle. */
export interface DocSessionHooks {
  /** The relay acknowledged messages up to `seq`; `durable` names the local updates that became durable. */
  acked(seq: number, durable: string[]): void;
  /** Local updates of one task, merged, left for the relay (or would have, offline): other tabs get them too. */
  batched(update: Uint8Array, ids: string[]): void;
  error(err: CapsyncError): void;
  /** `caughtUp` changed. */
  changed(): void;
  /** The handle's status now, for deadline messages. */
  status(): string;
}

/**
 * The document side of one relay link: the sync protocol and durable acks. Per connection it
 * numbers the document-carrying messages it sends (the relay's ack positions), runs the sync
 * rounds (sync step 1/2, `whenSynced`), quorum barriers, and sends local updates in batches.
 *
 * Nothing of a connection carries over to the next: `onOpen` starts the counters afresh and
 * `onClose` marks every pending local update unsent (the next sync step 2 carries it).
 */
export class DocSession {
  private connection = 0;
  private seq = 0;
  private step1Sent = 0;
  private step2Received = 0;
  /**
   * A `whenSynced` came while a sync step 1 of this connection was unanswered: one more is sent
   * when that answer arrives. At most one step 1 is outstanding, because its answer is the full
   * state the replica lacks: a second one sent before the first answer arrived carries the same
   * (old) state vector, so the relay would encode and send the whole document twice (a 10 MB
   * document opened and awaited at once cost twice its sync). It also keeps the counting
   * honest: the relay coalesces step 1s that arrive while an answer is in flight (CoalescedReply).
   */
  private step1Owed = false;
  private caughtUpValue = false;
  /** This connection's sync step 2 went out: a barrier sent now covers every local update. */
  private step2Sent = false;
  private readonly quorumWaiters = new Set<{ connection: number; seq: number; resolve(): void }>();
  private readonly syncWaiters = new Set<{ connection: number; target: number; resolve(): void }>();
  private outgoing: { update: Uint8Array; entry: OutboxEntry; id: string }[] = [];
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly doc: Y.Doc,
    private readonly link: DocLink,
    private readonly outbox: Outbox,
    private readonly hooks: DocSessionHooks,
  ) {}

  /** Caught up with the relay on this connection (its sync step 2 arrived). */
  get caughtUp(): boolean {
    return this.caughtUpValue;
  }

  /**
   * Queues a local update. Local updates of one task go out together in the next microtask: a
   * keystroke still leaves at once, but a burst (paste, scripted edits, undo of many) is one
   * message, not thousands the relay must validate, store and acknowledge one by one.
   */
  queueLocal(update: Uint8Array, entry: OutboxEntry, id: string): void {
    if (this.outgoing.length === 0) queueMicrotask(this.sendOutgoing);
    this.outgoing.push({ update, entry, id });
  }

  private readonly sendOutgoing = (): void => {
    const batch = this.outgoing;
    this.outgoing = [];
    if (batch.length === 0 || this.closed) return;
    const update = batch.length === 1 ? batch[0]!.update : Y.mergeUpdates(batch.map((b) => b.update));
    // Offline: nothing to send; the next connection's sync step 2 carries these.
    if (this.sendDoc({ type: 'update', update })) for (const b of batch) this.outbox.sent(b.entry, this.seq);
    this.hooks.batched(update, batch.map((b) => b.id));
  };

  /** Sends an update that is not a local one of this tab (another tab's); returns its message seq, or null offline. */
  sendUpdate(update: Uint8Array): number | null {
    return this.sendDoc({ type: 'update', update }) ? this.seq : null;
  }

  /**
   * Quorum durability with a barrier: an empty update sent after this connection's sync step 2
   * (which carries every local update the relay lacked) and after every later local update.
   * The relay answers `quorum-ack` once everything it had applied by then is durable on a
   * majority of its mesh. A new connection (another relay, after failover) gets a new barrier.
   */
  async flushQuorum(timeoutMs: number): Promise<void> {
    // Local updates of this task are still queued for the next microtask: send them first.
    this.sendOutgoing();
    let waiter!: { connection: number; seq: number; resolve(): void };
    const promise = new Promise<void>((resolve) => {
      waiter = { connection: -1, seq: 0, resolve };
      this.quorumWaiters.add(waiter);
    });
    this.sendQuorumBarrier();
    await withTimeout(promise, timeoutMs, () => {
      this.quorumWaiters.delete(waiter);
      return `updates of "${this.name}" not durable on a majority of relays within ${timeoutMs} ms (status: ${this.hooks.status()})`;
    });
  }

  /** Sends one barrier for every quorum waiter not yet covered by one on this connection. */
  private sendQuorumBarrier(): void {
    if (!this.step2Sent) return;
    const waiting = Array.from(this.quorumWaiters).filter((w) => w.connection !== this.connection);
    if (waiting.length === 0) return;
    if (!this.sendDoc({ type: 'update', update: EMPTY_UPDATE })) return;
    for (const w of waiting) {
      w.connection = this.connection;
      w.seq = this.seq;
    }
  }

  /**
   * Resolves once this replica holds everything the relay had when this was called (a fresh
   * sync round trip). Rejects with UnavailableError after `timeoutMs`.
   */
  async whenSynced(timeoutMs: number): Promise<void> {
    let waiter!: { connection: number; target: number; resolve(): void };
    const promise = new Promise<void>((resolve) => {
      waiter = { connection: -1, target: 0, resolve };
      this.syncWaiters.add(waiter);
    });
    // On an open link ask now (or right after the round in flight: see step1Owed); otherwise
    // the next connection's first round answers it.
    if (this.link.state === 'open') {
      if (this.step1Sent > this.step2Received) {
        this.step1Owed = true;
        waiter.connection = this.connection;
        waiter.target = this.step1Sent + 1;
      } else if (this.sendStep1()) {
        waiter.connection = this.connection;
        waiter.target = this.step1Sent;
      }
    }
    await withTimeout(promise, timeoutMs, () => {
      this.syncWaiters.delete(waiter);
      return `"${this.name}" not synced with the relay within ${timeoutMs} ms (status: ${this.hooks.status()})`;
    });
  }

  /** Sends a document-carrying message (counted: acks name these positions). */
  private sendDoc(msg: Extract<Message, { type: 'update' | 'sync-step-2' }>): boolean {
    if (!this.link.send(msg)) return false;
    this.seq++;
    return true;
  }

  private sendStep1(): boolean {
    if (!this.link.send({ type: 'sync-step-1', stateVector: Y.encodeStateVector(this.doc) })) return false;
    this.step1Sent++;
    return true;
  }

  /** A connection opened (our hello went out): start its first sync round. */
  onOpen(connection: number): void {
    this.connection = connection;
    this.seq = 0;
    this.step2Sent = false;
    this.step1Sent = 0;
    this.step2Received = 0;
    this.step1Owed = false;
    this.caughtUpValue = false;
    this.sendStep1();
    // Waiters from before this connection are answered by its first sync round.
    for (const w of this.syncWaiters) {
      if (w.connection !== connection) {
        w.connection = connection;
        w.target = 1;
      }
    }
  }

  /** The connection is gone: its sequence numbers mean nothing to the next one. */
  onClose(): void {
    this.outbox.resetSent();
    this.caughtUpValue = false;
  }

  /** Handles a document message of the relay; false for messages that are not the session's. */
  onMessage(msg: Message): boolean {
    switch (msg.type) {
      case 'sync-step-1': {
        let update: Uint8Array;
        try {
          update = Y.encodeStateAsUpdate(this.doc, msg.stateVector);
        } catch (err) {
          this.hooks.error(new CapsyncError('bad-message', 'the relay sent a state vector that does not decode', { cause: err }));
          return true;
        }
        // Everything the relay lacks goes out here, so it carries every pending update.
        if (this.sendDoc({ type: 'sync-step-2', update })) {
          this.outbox.sentAll(this.seq);
          this.step2Sent = true;
          this.sendQuorumBarrier();
        }
        return true;
      }
      case 'sync-step-2':
        this.applyRemote(msg.update);
        this.step2Received++;
        // The round a later whenSynced waits for starts now, with the state vector this answer made.
        if (this.step1Owed && this.step2Received === this.step1Sent) {
          this.step1Owed = false;
          this.sendStep1();
        }
        if (!this.caughtUpValue) {
          this.caughtUpValue = true;
          this.link.healthy();
        }
        for (const w of this.syncWaiters) {
          if (w.connection === this.connection && w.target <= this.step2Received) {
            this.syncWaiters.delete(w);
            w.resolve();
          }
        }
        this.hooks.changed();
        return true;
      case 'update':
        this.applyRemote(msg.update);
        return true;
      case 'ack':
        this.hooks.acked(msg.seq, this.outbox.ack(msg.seq));
        return true;
      case 'quorum-ack':
        for (const w of this.quorumWaiters) {
          if (w.connection === this.connection && w.seq <= msg.seq) {
            this.quorumWaiters.delete(w);
            w.resolve();
          }
        }
        return true;
      default:
        return false;
    }
  }

  private applyRemote(update: Uint8Array): void {
    try {
      Y.applyUpdate(this.doc, update, FROM_RELAY);
    } catch (err) {
      this.hooks.error(new CapsyncError('invalid-update', 'an update from the relay could not be applied', { cause: err }));
    }
  }

  /** The handle closed: nothing is sent any more, and waiters are dropped (their deadlines reject them). */
  close(): void {
    this.closed = true;
    this.syncWaiters.clear();
    this.quorumWaiters.clear();
  }
}
